//! Compatibility with Falco's own rule files (falcosecurity/rules, kept outside the repository
//! in `<workspace>/../shared/third_party`). The counts here are also in rules/README.md.

mod rules_common;

use std::collections::BTreeMap;

use monitor::rules::{Code, LoadOptions, Severity, fixture, load, load_lenient};

/// Load every rule of a file, `enabled: false` ones included.
fn load_all(file: &str) -> Option<(usize, usize, Vec<monitor::rules::Diagnostic>)> {
    let dir = rules_common::falco_rules_dir()?;
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let total = text.lines().filter(|l| l.starts_with("- rule:")).count();
    let opts = LoadOptions {
        enable_rules: vec!["*".into()],
        ..LoadOptions::default()
    };
    let (set, diags) = load_lenient(&[path], &opts);
    Some((total, set.len(), diags))
}

fn never_firing(diags: &[monitor::rules::Diagnostic]) -> Vec<&str> {
    let mut v: Vec<&str> = diags
        .iter()
        .filter(|d| d.message.starts_with("rule can never fire"))
        .filter_map(|d| d.item.as_deref())
        .collect();
    v.sort();
    v
}

fn summary(diags: &[monitor::rules::Diagnostic]) -> BTreeMap<(&'static str, Severity), usize> {
    let mut m = BTreeMap::new();
    for d in diags {
        *m.entry((d.code.as_str(), d.severity)).or_default() += 1;
    }
    m
}

#[test]
fn stable_rules_all_load_unmodified() {
    let Some((total, loaded, diags)) = load_all("falco_rules.yaml") else {
        return;
    };
    assert_eq!(total, 25);
    assert_eq!(loaded, 25, "{diags:#?}");
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:#?}");
    // The strict loader accepts the file as is (warnings only).
    let dir = rules_common::falco_rules_dir().unwrap();
    let (set, _) =
        load(&[dir.join("falco_rules.yaml")], &LoadOptions::default()).expect("strict load");
    assert_eq!(set.len(), 25);
    // What the warnings are: Falco fields our events do not carry, each named.
    let unsupported: std::collections::BTreeSet<String> = diags
        .iter()
        .filter(|d| d.code == Code::UnsupportedField)
        .map(|d| d.message.split('`').nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(unsupported.into_iter().collect::<Vec<_>>(), ["fd.sip.name"]);
    // Only "Contact K8S API Server From Container" (fd.sip.name) can never fire.
    let never: Vec<&str> = diags
        .iter()
        .filter(|d| d.message.starts_with("rule can never fire"))
        .filter_map(|d| d.item.as_deref())
        .collect();
    assert_eq!(never, ["Contact K8S API Server From Container"]);
}

#[test]
fn stable_rules_fire_on_their_behaviour() {
    let Some(dir) = rules_common::falco_rules_dir() else {
        return;
    };
    let (set, _) = load(&[dir.join("falco_rules.yaml")], &LoadOptions::default()).expect("loads");
    let fx = rules_common::workspace().join("rules/fixtures/falco_rules");
    let mut fired_rules = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for f in fixture::files_in(&fx) {
        for c in fixture::read_file(&f).unwrap() {
            let o = fixture::run_case(&set, &c);
            if !o.passed {
                failures.push(format!("{}: {:?} fired {:?}", o.case, o.problems, o.fired));
            }
            fired_rules.extend(c.expect.clone());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Every stable rule but the one needing DNS names has a firing fixture.
    assert_eq!(fired_rules.len(), 24, "{fired_rules:?}");
}

#[test]
fn incubating_rules_load_or_say_why() {
    let Some((total, loaded, diags)) = load_all("falco-incubating_rules.yaml") else {
        return;
    };
    assert_eq!((total, loaded), (31, 31), "{:#?}", summary(&diags));
    assert!(!diags.iter().any(|d| d.is_error()));
    assert_eq!(
        never_firing(&diags),
        ["Launch Excessively Capable Container"]
    );
}

#[test]
fn sandbox_rules_load_or_say_why() {
    let Some((total, loaded, diags)) = load_all("falco-sandbox_rules.yaml") else {
        return;
    };
    assert_eq!((total, loaded), (37, 37), "{:#?}", summary(&diags));
    assert!(
        !diags.iter().any(|d| d.is_error()),
        "{:#?}",
        diags.iter().filter(|d| d.is_error()).collect::<Vec<_>>()
    );
    assert_eq!(never_firing(&diags), SANDBOX_NEVER);
}

/// Sandbox rules that load but depend only on data the events lack (each has an R0202 or
/// R0209 diagnostic naming it).
const SANDBOX_NEVER: [&str; 4] = [
    "Basic Interactive Reconnaissance",
    "Detect outbound connections to common miner pool ports",
    "Java Process Class File Download",
    "Unprivileged Delegation of Page Faults Handling to a Userspace Process",
];
