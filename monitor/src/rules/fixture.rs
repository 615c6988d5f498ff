//! Rule fixtures: sample events with the expected verdict, run by `monitor rules test` and by
//! the test suite.
//!
//! Format (YAML, one file per behaviour family, under `<rules dir>/fixtures/<rule-file-stem>/`):
//!
//! ```yaml
//! base:                     # deep-merged under every case's event (optional)
//!   type: execve
//!   container: {id: 0123456789ab, name: web}
//! cases:
//!   - name: bash started in a container
//!     event: {process: {comm: bash, exepath: /usr/bin/bash}}
//!     expect: [Terminal shell in container]   # must fire
//!     reject: [Run shell untrusted]            # must not fire
//!     only: true                               # and nothing else may fire
//! ```
//!
//! The event is the JSON Lines [`Event`] written as YAML; `schema`, `ts`, `ret`, `cgroup_id`
//! and `process` default when left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::RuleSet;
use crate::event::{Event, SCHEMA_VERSION};

#[derive(Debug, Clone)]
pub struct Case {
    pub file: PathBuf,
    pub name: String,
    pub event: Event,
    pub expect: Vec<String>,
    pub reject: Vec<String>,
    pub only: bool,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub case: String,
    pub file: PathBuf,
    pub passed: bool,
    pub fired: Vec<String>,
    pub problems: Vec<String>,
}

fn to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value as J;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        Yaml::Integer(i) => J::from(*i),
        Yaml::String(s) => J::String(s.clone()),
        Yaml::Boolean(b) => J::Bool(*b),
        Yaml::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => J::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r.clone(),
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Read one fixture file.
pub fn read_file(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(doc) = docs.first() else {
        return Ok(Vec::new());
    };
    let mut base = serde_json::json!({"schema": SCHEMA_VERSION, "ts": 1_700_000_000_000_000_000u64, "ret": 0, "cgroup_id": 0, "process": {}});
    if !doc["base"].is_badvalue() {
        merge(&mut base, &to_json(&doc["base"]));
    }
    let mut out = Vec::new();
    let Yaml::Array(cases) = &doc["cases"] else {
        return Err(format!("{}: no `cases` sequence", path.display()));
    };
    for (i, c) in cases.iter().enumerate() {
        let name = c["name"]
            .as_str()
            .map_or_else(|| format!("case {}", i + 1), str::to_string);
        let mut ev = base.clone();
        if !c["event"].is_badvalue() {
            merge(&mut ev, &to_json(&c["event"]));
        }
        let event: Event = serde_json::from_value(ev)
            .map_err(|e| format!("{}: case `{name}`: bad event: {e}", path.display()))?;
        out.push(Case {
            file: path.to_path_buf(),
            name,
            event,
            expect: strings(&c["expect"]),
            reject: strings(&c["reject"]),
            only: c["only"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// Fixture files for a rule file: `<dir>/fixtures/<stem>/*.yaml`.
pub fn files_for(rule_file: &Path) -> Vec<PathBuf> {
    let Some(stem) = rule_file.file_stem() else {
        return Vec::new();
    };
    let dir = rule_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("fixtures")
        .join(stem);
    files_in(&dir)
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    v
}

pub fn run_case(set: &RuleSet, c: &Case) -> Outcome {
    let fired: Vec<String> = set.evaluate(&c.event).into_iter().map(|m| m.rule).collect();
    let fired_set: BTreeSet<&str> = fired.iter().map(String::as_str).collect();
    let known: BTreeSet<&str> = set.rule_names().collect();
    let mut problems = Vec::new();
    for e in &c.expect {
        if !known.contains(e.as_str()) {
            problems.push(format!("expected rule `{e}` is not loaded"));
        } else if !fired_set.contains(e.as_str()) {
            problems.push(format!("`{e}` did not fire"));
        }
    }
    for r in &c.reject {
        if fired_set.contains(r.as_str()) {
            problems.push(format!("`{r}` fired but must not"));
        }
    }
    if c.only {
        for f in &fired_set {
            if !c.expect.iter().any(|e| e == f) {
                problems.push(format!("`{f}` fired but is not expected"));
            }
        }
    }
    Outcome {
        case: c.name.clone(),
        file: c.file.clone(),
        passed: problems.is_empty(),
        fired,
        problems,
    }
}
