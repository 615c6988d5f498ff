//! A benign recording replayed through the shipped rules must raise zero alerts.
//!
//! `rules/fixtures/benign/*.jsonl` are real `monitor record` captures of ordinary container work,
//! taken with `--cgroup <the container's cgroup>` so they hold every event of that container,
//! the runtime's own setup included (runc init's setns/setuid/capset, `runc exec` joins). The
//! ancestors above runc (the build machine's own shells) had their arguments scrubbed; nothing
//! else was edited. Each is made by the `record-*.sh` script beside it (root, a real runc
//! container); `rules/fixtures/benign/README.md` says what each one holds.
//!
//! - busybox-web-and-shell-suite.jsonl: busybox httpd serving files while a wget loop fetches
//!   them 30 times, then a shell "test suite" creating, grepping and deleting files, `find`,
//!   and a tar/gzip of a directory (pod benign/web-0).
//! - python-test-suite.jsonl: a Python project's unittest suite (temp files, renames,
//!   `shutil.copytree`, a subprocess pipeline, an HTTP server and client on loopback, a gzip'd
//!   tar), `compileall` and a shell CI step (pod benign/tests-0).
//! - package-build.jsonl: a C package built as a CI job does: a configure script compiling and
//!   running a probe, `make` (gcc, `ar`, link), `make check` running the fresh test binary,
//!   `make install DESTDIR=`, `strip`, a tar.gz of the staged tree (pod benign/build-0).
//!
//! Zero alerts proves something only for the behaviour the files contain, so the test also
//! checks coverage: every recording must hold a container's basic life (exec, open, unlink,
//! exit, the runtime's setuid), and the recordings together must hold every syscall family the
//! rules look at (a package build has no reason to accept a connection; a web server has).

use std::collections::BTreeSet;
use std::path::PathBuf;

use monitor::event::Event;
use monitor::rules::{LoadOptions, load};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Kinds (by group of equivalent syscalls) every recording must hold.
const PER_RECORDING: &[&[&str]] = &[
    &["execve", "execveat"],
    &["openat", "open", "openat2", "creat"],
    &["unlink", "unlinkat"],
    &["procexit"],
    &["setuid", "setresuid", "setreuid"],
];

/// Kinds that at least one recording must hold.
const ACROSS_RECORDINGS: &[&[&str]] = &[
    &["connect", "sock_connect"],
    &["accept", "accept4"],
    &["bind"],
    &["listen"],
    &["dup2", "dup3"],
    &["mkdir", "mkdirat"],
    &["rmdir"],
    &["rename", "renameat", "renameat2"],
    &["chmod", "fchmodat"],
    &["symlink", "symlinkat"],
];

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
    let mut seen = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| Event::from_json_line(l).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
            .collect();
        // The recording must exercise what the rules look at, or zero alerts proves nothing.
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind.name()).collect();
        for group in PER_RECORDING {
            assert!(group.iter().any(|k| kinds.contains(k)), "{}: none of {group:?}", f.display());
        }
        seen.extend(kinds);
        assert!(events.len() > 500, "{}: {} events", f.display(), events.len());
        assert!(events.iter().any(|e| e.process.is_container_runtime), "runtime setup is in the recording");
        assert!(events.iter().all(|e| e.container.id != "host"), "only the container's events");
        let fired: Vec<String> = events
            .iter()
            .flat_map(|e| set.evaluate(e).into_iter().map(move |m| format!("{} <- {} {}", m.rule, e.kind.name(), e.process.comm)))
            .collect();
        assert!(fired.is_empty(), "{}: {} alerts on ordinary work:\n{}", f.display(), fired.len(), fired.join("\n"));
    }
    for group in ACROSS_RECORDINGS {
        assert!(group.iter().any(|k| seen.contains(k)), "no benign recording has any of {group:?}");
    }
}
