//! A benign recording replayed through the shipped rules must raise zero alerts.
//!
//! `rules/fixtures/benign/*.jsonl` are real `monitor record` captures of ordinary container work,
//! taken with `--cgroup <the container's cgroup>` so they hold every event of that container,
//! the runtime's own setup included (runc init's setns/setuid/capset, `runc exec` joins). The
//! ancestors above runc (the build machine's own shells) had their arguments scrubbed; nothing
//! else was edited.
//!
//! busybox-web-and-shell-suite.jsonl: a runc container (CRI annotations, pod benign/web-0)
//! serving files with busybox httpd while a wget loop fetches them 30 times, then a shell
//! "test suite" creating, grepping and deleting files, `find`, and a tar/gzip of a directory.

use std::collections::BTreeSet;
use std::path::PathBuf;

use monitor::event::Event;
use monitor::rules::{LoadOptions, load};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn benign_recordings_raise_no_alerts() {
    let (set, _) = load(&[workspace().join("rules")], &LoadOptions::default()).expect("shipped rules load");
    let dir = workspace().join("rules/fixtures/benign");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules/fixtures/benign")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no benign recordings in {}", dir.display());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| Event::from_json_line(l).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
            .collect();
        // The recording must exercise what the rules look at, or zero alerts proves nothing.
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind.name()).collect();
        for k in ["execve", "openat", "connect", "accept", "dup2", "unlink", "setuid"] {
            assert!(kinds.contains(k), "{}: no {k} event", f.display());
        }
        assert!(events.len() > 500, "{}: {} events", f.display(), events.len());
        assert!(events.iter().any(|e| e.process.is_container_runtime), "runtime setup is in the recording");
        assert!(events.iter().all(|e| e.container.id != "host"), "only the container's events");
        let fired: Vec<String> = events
            .iter()
            .flat_map(|e| set.evaluate(e).into_iter().map(move |m| format!("{} <- {} {}", m.rule, e.kind.name(), e.process.comm)))
            .collect();
        assert!(fired.is_empty(), "{}: {} alerts on ordinary work:\n{}", f.display(), fired.len(), fired.join("\n"));
    }
}
