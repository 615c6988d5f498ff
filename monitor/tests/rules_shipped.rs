//! The shipped rule set: loads with no warnings, follows the house conventions, and every
//! rule fires on its fixtures (and stays quiet on the benign ones).

mod rules_common;

use std::collections::BTreeSet;

use monitor::rules::{LoadOptions, Priority, expand_paths, fixture, load, load_str};

fn rules_dir() -> std::path::PathBuf {
    rules_common::workspace().join("rules")
}

#[test]
fn shipped_rules_load_without_warnings() {
    let (set, diags) =
        load(&[rules_dir()], &LoadOptions::default()).unwrap_or_else(|d| panic!("{d:#?}"));
    let noisy: Vec<String> = diags
        .iter()
        .filter(|d| d.severity >= monitor::rules::Severity::Warning)
        .map(|d| d.render())
        .collect();
    assert!(noisy.is_empty(), "{}", noisy.join("\n"));
    assert!(set.len() >= 50, "{} rules", set.len());
    assert_eq!(
        set.unindexed_rules(),
        0,
        "every shipped rule is constrained by evt.type"
    );
}

#[test]
fn shipped_rules_follow_conventions() {
    let mut ids = BTreeSet::new();
    for f in expand_paths(&[rules_dir()]).into_iter().map(Result::unwrap) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("\t"), "{}: tabs", f.display());
        // monitor.d holds refinements (overrides of rules defined in rules/*.yaml), which
        // inherit their rule's conventions, and monitor-only rules, which follow them too.
        let in_monitor_d = f.parent().is_some_and(|d| d.ends_with(monitor::rules::MONITOR_DIR));
        for block in text
            .split("\n- ")
            .filter(|b| b.starts_with("rule:"))
            .filter(|b| !(in_monitor_d && b.contains("override:")))
        {
            let name = block
                .lines()
                .next()
                .unwrap()
                .trim_start_matches("rule:")
                .trim();
            let tags_line = block
                .lines()
                .find(|l| l.trim_start().starts_with("tags:"))
                .unwrap_or_else(|| panic!("{name}: no tags"));
            let id = tags_line
                .split(['[', ',', ']'])
                .map(str::trim)
                .find(|t| t.starts_with("MON-"))
                .unwrap_or_else(|| panic!("{name}: no MON tag"));
            assert!(ids.insert(id.to_string()), "{name}: duplicate {id}");
            assert!(tags_line.contains("mitre_"), "{name}: no MITRE tactic");
            assert!(
                tags_line
                    .split(['[', ',', ']'])
                    .any(|t| t.trim().starts_with('T')
                        && t.trim()[1..].starts_with(|c: char| c.is_ascii_digit())),
                "{name}: no technique"
            );
            for needle in [
                "%container.id",
                "%container.name",
                "%container.image",
                "%k8s.pod.name",
                "%k8s.ns.name",
                "%user.name",
                "%proc.cmdline",
                "%proc.pname",
                "%proc.aname[2]",
            ] {
                assert!(block.contains(needle), "{name}: output lacks {needle}");
            }
            assert!(
                block.contains("and not user_expected_"),
                "{name}: no tuning hook"
            );
            for key in ["desc:", "priority:", "condition:", "output:"] {
                assert!(block.contains(key), "{name}: no {key}");
            }
        }
    }
    assert!(ids.len() >= 50);
}

#[test]
fn every_shipped_rule_has_passing_fixtures() {
    let (set, _) = load(&[rules_dir()], &LoadOptions::default()).expect("loads");
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for f in expand_paths(&[rules_dir()])
        .into_iter()
        .map(Result::unwrap)
        .flat_map(|f| fixture::files_for(&f))
    {
        for c in fixture::read_file(&f).unwrap_or_else(|e| panic!("{e}")) {
            cases += 1;
            let o = fixture::run_case(&set, &c);
            if !o.passed {
                failures.push(format!(
                    "{} :: {}: {:?} fired {:?}",
                    f.display(),
                    o.case,
                    o.problems,
                    o.fired
                ));
            }
            covered.extend(c.expect.iter().cloned());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let missing: Vec<&str> = set.rule_names().filter(|n| !covered.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "rules without a firing fixture: {missing:?}"
    );
    assert!(cases >= 2 * set.len(), "{cases} cases");
}

#[test]
fn deploy_time_selection() {
    let dir = rules_dir();
    let all = load(std::slice::from_ref(&dir), &LoadOptions::default())
        .unwrap()
        .0
        .len();
    let crit = load(
        std::slice::from_ref(&dir),
        &LoadOptions {
            min_priority: Priority::Critical,
            ..Default::default()
        },
    )
    .unwrap()
    .0;
    assert!(crit.len() < all && !crit.is_empty());
    let net = load(
        std::slice::from_ref(&dir),
        &LoadOptions {
            enable_tags: vec!["network".into()],
            ..Default::default()
        },
    )
    .unwrap()
    .0;
    assert!(net.rule_names().any(|n| n == "Reverse shell"));
    assert!(!net.rule_names().any(|n| n == "Write below etc"));
    let no = load(
        std::slice::from_ref(&dir),
        &LoadOptions {
            disable_rules: vec!["Write below*".into()],
            ..Default::default()
        },
    )
    .unwrap()
    .0;
    assert_eq!(no.len(), all - 3);
    let tag = load(
        &[dir],
        &LoadOptions {
            disable_tags: vec!["MON-0001".into()],
            ..Default::default()
        },
    )
    .unwrap()
    .0;
    assert_eq!(tag.len(), all - 1);
}

#[test]
fn local_overrides_append_and_replace() {
    // Per process: a fixed path would be shared by concurrent runs of this binary.
    let dir = std::env::temp_dir().join(format!("monitor-rules-override-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ov = dir.join("local.yaml");
    std::fs::write(
        &ov,
        "\
- list: user_expected_listen_ports
  items: [4444]
  override:
    items: append
- rule: Reverse shell
  enabled: false
- macro: user_expected_write_below_etc
  condition: (proc.name = confd)
  override:
    condition: replace
- rule: Read of shadow password database
  exceptions:
    - name: auditors
      fields: [proc.name, container.image.repository]
      comps: [=, startswith]
      values:
        - [cat, ghcr.io/acme/audit]
  override:
    exceptions: append
",
    )
    .unwrap();
    let opts = LoadOptions {
        overrides: vec![ov],
        ..Default::default()
    };
    let (set, d) = load(&[rules_dir()], &opts).unwrap_or_else(|d| panic!("{d:#?}"));
    assert!(
        d.iter()
            .all(|d| d.severity < monitor::rules::Severity::Warning),
        "{d:#?}"
    );
    assert!(!set.rule_names().any(|n| n == "Reverse shell"));
    let fire = |yaml: &str| -> Vec<String> {
        let c = format!("cases:\n  - name: x\n    event: {yaml}\n");
        let p = dir.join("case.yaml");
        std::fs::write(&p, c).unwrap();
        let case = fixture::read_file(&p).unwrap().remove(0);
        set.evaluate(&case.event)
            .into_iter()
            .map(|m| m.rule)
            .collect()
    };
    let listen = "{type: listen, container: {id: abc}, fd: {type: ipv4, net: {l4proto: tcp, server_ip: 0.0.0.0, server_port: 4444}}}";
    assert!(fire(listen).is_empty());
    let etc = "{type: openat, ret: 3, args: {flags: {raw: 1, text: O_WRONLY}}, process: {comm: confd}, fd: {num: 3, type: file, path: /etc/app.conf}}";
    assert!(fire(etc).is_empty());
    let shadow = |repo: &str| {
        format!(
            "{{type: openat, ret: 3, args: {{flags: {{raw: 0, text: O_RDONLY}}}}, process: {{comm: cat}}, container: {{id: abc, image_repository: {repo}}}, fd: {{num: 3, type: file, path: /etc/shadow}}}}"
        )
    };
    assert!(fire(&shadow("ghcr.io/acme/audit-tools")).is_empty());
    assert_eq!(
        fire(&shadow("docker.io/library/debian")),
        ["Read of shadow password database"]
    );
}

#[test]
fn output_escapes_untrusted_values_and_fills_output_fields() {
    let y = "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: ran %proc.cmdline (%(proc.name)) pid=%proc.pid tty=%proc.tty parent=%proc.pname.\n  priority: NOTICE\n  tags: [t]\n";
    let (set, d) = load_str("t.yaml", y, &LoadOptions::default());
    assert!(d.is_empty(), "{d:#?}");
    let mut ev = monitor::event::Event {
        schema: 1,
        ..Default::default()
    };
    ev.kind = monitor::event::EventType::Execve;
    ev.process.comm = "x".into();
    ev.process.args = vec!["a\nFAKE ALERT".into(), "b".repeat(3000)].into();
    ev.process.pid = 7;
    let m = set.evaluate(&ev).remove(0);
    assert!(
        m.output.starts_with("ran x a\\nFAKE ALERT bbb"),
        "{}",
        m.output
    );
    assert!(
        m.output.contains("... (x) pid=7 tty=0 parent=<NA>."),
        "{}",
        m.output
    );
    assert!(!m.output.contains('\n'));
    assert_eq!(m.output_fields["proc.pid"], serde_json::json!(7));
    assert_eq!(m.output_fields["proc.pname"], serde_json::Value::Null);
    assert_eq!(m.priority, Priority::Notice);
    assert_eq!(m.tags, ["t"]);
}

#[test]
fn readme_documents_every_field() {
    let readme = std::fs::read_to_string(rules_dir().join("README.md")).unwrap();
    for f in monitor::rules::fields::FIELDS {
        assert!(
            readme.contains(&format!("`{}`", f.name)),
            "rules/README.md lacks {}",
            f.name
        );
    }
    for (f, _) in monitor::rules::fields::UNSUPPORTED {
        assert!(
            readme.contains(&format!("`{f}`")),
            "rules/README.md lacks unsupported {f}"
        );
    }
}
