//! Hot reload: a broken file never replaces a working rule set.

use std::sync::Arc;

use arc_swap::ArcSwap;
use monitor::rules::{LoadOptions, RuleSet, load, reload};

/// One series' value from the text exposition, `name` including its labels as exposed.
fn metric(name: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn reload_with_a_broken_file_keeps_the_old_set() {
    // A directory of its own: a fixed path would be shared by concurrent runs of this test.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let f = dir.join("r.yaml");
    let good =
        "- rule: one\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n";
    std::fs::write(&f, good).unwrap();
    let paths = vec![f.clone()];
    let (set, _) = load(&paths, &LoadOptions::default()).unwrap();
    let live = ArcSwap::from_pointee(set);
    let old_hash = live.load().content_hash();

    // A second rule, valid: swapped in.
    std::fs::write(&f, format!("{good}- rule: two\n  desc: d\n  condition: evt.type = openat\n  output: o\n  priority: INFO\n")).unwrap();
    reload(&live, &paths, &LoadOptions::default()).unwrap();
    assert_eq!(live.load().len(), 2);
    assert_ne!(live.load().content_hash(), old_hash);
    assert_eq!(metric("monitor_rules_loaded"), 2.0);

    // Broken YAML, then a bad field: both rejected, the two-rule set stays live.
    let before = metric(r#"monitor_rules_reloads_total{result="failure"}"#).max(0.0);
    let held: Arc<RuleSet> = live.load_full();
    std::fs::write(&f, "- rule: [broken\n").unwrap();
    let diags = reload(&live, &paths, &LoadOptions::default()).unwrap_err();
    assert!(diags.iter().any(|d| d.is_error()));
    std::fs::write(
        &f,
        "- rule: one\n  desc: d\n  condition: proc.nope = 1\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    reload(&live, &paths, &LoadOptions::default()).unwrap_err();
    assert!(Arc::ptr_eq(&held, &live.load_full()));
    assert_eq!(live.load().len(), 2);
    assert_eq!(metric(r#"monitor_rules_reloads_total{result="failure"}"#), before + 2.0);

    // A missing file is a failure too, never a panic.
    reload(&live, &[dir.join("absent.yaml")], &LoadOptions::default()).unwrap_err();
    assert_eq!(live.load().len(), 2);
}
