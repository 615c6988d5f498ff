//! The shipped rules split: rules/*.yaml use only Falco's fields and event types (Falco
//! itself can load them), the monitor-only refinements live in rules/monitor.d and are
//! loaded after them whenever the rules directory is given.

mod rules_common;

use std::path::PathBuf;

use monitor::rules::{Code, LoadOptions, MONITOR_DIR, expand_paths, load, load_falco_only};

fn rules_dir() -> PathBuf {
    rules_common::workspace().join("rules")
}

/// rules/*.yaml as Falco reads the directory: its files, no subdirectories.
fn falco_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn falco_files_use_falco_fields_only() {
    let files = falco_files();
    assert!(files.len() >= 7, "{files:?}");
    let (set, diags) = load_falco_only(&files, &LoadOptions::default());
    let bad: Vec<String> = diags
        .iter()
        .filter(|d| d.severity >= monitor::rules::Severity::Warning)
        .map(|d| d.render())
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(set.len(), 62);
}

#[test]
fn falco_only_mode_rejects_monitor_extensions() {
    let mut files = falco_files();
    files.push(rules_dir().join(MONITOR_DIR).join("refinements.yaml"));
    let (set, diags) = load_falco_only(&files, &LoadOptions::default());
    let not_falco: Vec<&str> = diags
        .iter()
        .filter(|d| d.code == Code::NotFalco)
        .map(|d| d.message.as_str())
        .collect();
    for needle in [
        "field `proc.is_container_runtime`",
        "field `proc.stdin_type`",
        "field `fd.target_path`",
        "event type `sock_connect`",
        "output field `proc.stdin_type`",
    ] {
        assert!(
            not_falco.iter().any(|m| m.contains(needle)),
            "no R0701 for {needle}: {not_falco:#?}"
        );
    }
    assert!(
        diags
            .iter()
            .filter(|d| d.code == Code::NotFalco)
            .all(|d| d.is_error())
    );
    // Every rule that reaches a refined macro is skipped.
    assert!(set.len() < 57, "{} rules", set.len());
}

#[test]
fn directory_loads_monitor_d_after_its_files() {
    let files: Vec<PathBuf> = expand_paths(&[rules_dir()])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first_refinement = files
        .iter()
        .position(|f| f.parent().unwrap().ends_with(MONITOR_DIR))
        .expect("rules/monitor.d is loaded");
    assert!(first_refinement >= 7);
    assert!(
        files[first_refinement..]
            .iter()
            .all(|f| f.parent().unwrap().ends_with(MONITOR_DIR)),
        "{files:?}"
    );
    // The refinements override macros, so they load cleanly only after the base files.
    let (set, diags) = load(&[rules_dir()], &LoadOptions::default()).unwrap();
    // 62 Falco-loadable rules in rules/*.yaml plus 2 monitor-only rules in monitor.d.
    assert_eq!(set.len(), 64);
    assert!(
        diags
            .iter()
            .all(|d| d.severity < monitor::rules::Severity::Warning)
    );
}

#[test]
fn refinements_change_verdicts_falco_cannot_reach() {
    use monitor::event::Event;
    let mut ev = Event {
        kind: monitor_common::EventType::Mount,
        // never_true is `evt.rawtime = 0`
        ts: 1,
        ..Event::default()
    };
    ev.process.pid = 7;
    ev.process.comm = "runc:[2:INIT]".into();
    ev.process.exepath = "/usr/sbin/runc".into();
    ev.process.is_container_runtime = true;
    std::sync::Arc::make_mut(&mut ev.container).id = "0123456789ab".into();
    let (falco, _) = load_falco_only(&falco_files(), &LoadOptions::default());
    let (ours, _) = load(&[rules_dir()], &LoadOptions::default()).unwrap();
    let fired = |s: &monitor::rules::RuleSet, ev: &Event| -> Vec<String> {
        s.evaluate(ev).into_iter().map(|m| m.rule).collect()
    };
    // Falco cannot tell the runtime's setup from the workload; the monitor can.
    assert_eq!(fired(&falco, &ev), ["Mount in container"]);
    assert!(fired(&ours, &ev).is_empty(), "{:?}", fired(&ours, &ev));
    // The workload's own mount alerts in both.
    ev.process.is_container_runtime = false;
    assert_eq!(fired(&falco, &ev), ["Mount in container"]);
    assert_eq!(fired(&ours, &ev), ["Mount in container"]);
}
