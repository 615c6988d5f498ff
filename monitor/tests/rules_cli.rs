//! The `monitor rules` and `monitor replay` command lines, as CI and operators use them.

use std::process::Command;

fn monitor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
}

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    // Per process: a fixed path would be shared by concurrent runs of this binary.
    let dir = std::env::temp_dir().join(format!("monitor-rules-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_passes_on_the_shipped_rules_and_fails_with_carets() {
    let ws = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = monitor()
        .args(["rules", "check", "--deny-warnings"])
        .arg(ws.join("rules"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = tmp(
        "bad.yaml",
        "- rule: r\n  desc: d\n  condition: evt.type = open and proc.nmae = x\n  output: o\n  priority: INFO\n",
    );
    let out = monitor()
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[R0201]: unknown field `proc.nmae` (in r)"),
        "{err}"
    );
    assert!(err.contains("bad.yaml:3:34"), "{err}");
    assert!(
        err.contains("  |                                  ^^^^^^^^^"),
        "{err}"
    );

    let warn = tmp(
        "warn.yaml",
        "- rule: r\n  desc: d\n  condition: evt.type = execve and proc.aenv contains X\n  output: o\n  priority: INFO\n",
    );
    assert_eq!(
        monitor()
            .args(["rules", "check"])
            .arg(&warn)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        monitor()
            .args(["rules", "check", "--deny-warnings"])
            .arg(&warn)
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn test_command_runs_the_fixtures() {
    let ws = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = monitor()
        .args(["rules", "test"])
        .arg(ws.join("rules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn replay_prints_falco_json_alerts() {
    let ws = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rec = tmp(
        "rec.jsonl",
        concat!(
            r#"{"schema":1,"ts":1700000000123456789,"type":"execve","ret":0,"process":{"pid":10,"comm":"bash","exepath":"/usr/bin/bash","tty":34816},"cgroup_id":5,"container":{"id":"3ad7c1e0b2f4","name":"web"}}"#,
            "\n{not json\n"
        ),
    );
    let out = monitor()
        .args(["replay", "--rules"])
        .arg(ws.join("rules"))
        .arg(&rec)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreadable line is reported in the exit code"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let alert: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(alert["rule"], "Shell with terminal started in container");
    assert_eq!(alert["priority"], "Notice");
    assert_eq!(alert["source"], "syscall");
    assert_eq!(alert["time"], "2023-11-14T22:13:20.123456789Z");
    assert!(
        alert["output"]
            .as_str()
            .unwrap()
            .starts_with("22:13:20.123456789: Notice Shell with a terminal")
    );
    assert_eq!(alert["output_fields"]["container.name"], "web");
    assert!(
        alert["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "MON-0001")
    );
    assert!(alert["hostname"].is_string());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 unreadable lines"));
}
