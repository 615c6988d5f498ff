//! The deploy/ artefacts are checked, not just shipped: promtool on the alert rules (both
//! forms, plus its unit tests), the ConfigMap against deploy/monitor.yaml and our own config
//! parser, the DaemonSet's security posture, the dashboard's metric names against
//! docs/METRICS.md, and the Kubernetes schema when `kubernetes-validate` is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use monitor::config::Config;
use yaml_serde::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    yaml_serde::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus) is needed; scripts/setup.sh installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_in_both_forms() {
    let plain = root().join("deploy/prometheus/monitor.rules.yml");
    let out = promtool(&["check", "rules", plain.to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 13 rules found"), "{out}");

    // The PrometheusRule's spec is a rules file; it must equal the plain one.
    let pr = yaml("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(pr["kind"], "PrometheusRule");
    assert_eq!(pr["spec"], yaml("deploy/prometheus/monitor.rules.yml"));
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("from-prometheusrule.yml");
    std::fs::write(&extracted, yaml_serde::to_string(&pr["spec"]).unwrap()).unwrap();
    let out = promtool(&["check", "rules", extracted.to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 13 rules found"), "{out}");

    let tests = root().join("deploy/prometheus/monitor.rules.test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn configmap_carries_the_example_config_and_it_is_valid() {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    let embedded = cm["data"]["monitor.yaml"].as_str().unwrap();
    assert_eq!(embedded, read("deploy/monitor.yaml"));
    let c = Config::from_yaml(embedded, Path::new("deploy/monitor.yaml")).unwrap();
    assert_eq!(c.http.address.to_string(), "0.0.0.0:9376");
    // Everything else in the example is the built-in default.
    let mut d = Config::default();
    d.http.address = c.http.address;
    d.memory = c.memory.clone();
    d.sinks = c.sinks.clone();
    assert_eq!(c, d);
}

#[test]
fn daemonset_security_posture() {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["hostNetwork"], false);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        sc["capabilities"]["drop"],
        yaml_serde::from_str::<Value>("[ALL]").unwrap()
    );
    let caps: Vec<&str> = sc["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        caps,
        // The minimum tests/tests/deploy.rs proves needed (it runs this spec under podman).
        ["BPF", "PERFMON", "SYS_PTRACE"]
    );
    // Every capability is justified in the manifest's header comment.
    let text = read("deploy/kubernetes/daemonset.yaml");
    for cap in &caps {
        assert!(
            text.contains(&format!("#   {cap} ")),
            "{cap} has no justification comment"
        );
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 9376);
    let node_name = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .unwrap();
    assert_eq!(node_name["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    // Every mount is read-only: the monitor writes no files.
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert_eq!(m["readOnly"], true, "{:?} is writable", m["name"]);
    }
    let host_paths: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for p in ["/sys/kernel/tracing", "/sys/fs/cgroup", "/run/containerd"] {
        assert!(host_paths.contains(&p), "{p} not mounted");
    }
    // hostPID gives the container the host's processes in its own /proc.
    assert!(
        !host_paths.contains(&"/proc"),
        "/proc is mounted although hostPID suffices"
    );
}

/// Every `monitor_*` name the dashboard or the rules use is documented, and every metric this
/// area registers is documented.
#[test]
fn metric_names_are_documented() {
    let doc = read("docs/METRICS.md");
    let mut used = String::new();
    used.push_str(&read("deploy/grafana/monitor-dashboard.json"));
    used.push_str(&read("deploy/prometheus/monitor.rules.yml"));
    let re = regex::Regex::new(r"\b(monitor_[a-z_]+?)(_bucket|_sum|_count)?\b").unwrap();
    for c in re.captures_iter(&used) {
        let name = &c[1];
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is used but not in docs/METRICS.md"
        );
    }
    monitor::metrics::init();
    monitor::metrics::set_hook_attached("x", true);
    monitor::metrics::set_ring_fill("x", 0.0);
    monitor::metrics::set_build_info("v", "k", "h");
    for mf in prometheus::gather() {
        let n = mf.name();
        if n.starts_with("monitor_") {
            assert!(
                doc.contains(&format!("`{n}`")),
                "{n} is registered but not in docs/METRICS.md"
            );
        }
    }
    let d: serde_json::Value = serde_json::from_str(&read("deploy/grafana/monitor-dashboard.json")).unwrap();
    assert!(d["panels"].as_array().unwrap().len() >= 10);
}

/// Every metric documented in docs/METRICS.md (first column of its tables) is queried by some
/// panel of the Grafana dashboard.
#[test]
fn every_documented_metric_has_a_dashboard_panel() {
    let doc = read("docs/METRICS.md");
    let d: serde_json::Value = serde_json::from_str(&read("deploy/grafana/monitor-dashboard.json")).unwrap();
    let exprs: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    let re = regex::Regex::new(r"^\| `((?:monitor|process)_[a-z_]+)` \|").unwrap();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| re.captures(l).and_then(|c| c.get(1)).map(|m| m.as_str()))
        .collect();
    assert!(documented.len() >= 30, "{documented:?}");
    let word = |e: &str, n: &str| {
        regex::Regex::new(&format!(r"\b{n}(_bucket|_sum|_count)?\b"))
            .unwrap()
            .is_match(e)
    };
    let missing: Vec<&&str> = documented
        .iter()
        .filter(|n| !exprs.iter().any(|e| word(e, n)))
        .collect();
    assert!(
        missing.is_empty(),
        "documented metrics without a dashboard panel: {missing:?}"
    );
    // The process collector's names are listed in prose, not a table.
    for n in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(exprs.iter().any(|e| word(e, n)), "{n} has no panel");
    }
}

#[test]
fn kubernetes_schema() {
    // KUBERNETES_VALIDATE names the binary when it lives in a virtualenv off PATH.
    let candidates = [
        std::env::var("KUBERNETES_VALIDATE").unwrap_or_default(),
        "kubernetes-validate".to_string(),
    ];
    let Some(kv) = candidates.iter().filter(|p| !p.is_empty()).find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        println!(
            "SKIP kubernetes_schema: kubernetes-validate (PyPI) is not installed; set KUBERNETES_VALIDATE or put it on PATH"
        );
        return;
    };
    let dir = root().join("deploy/kubernetes");
    let files: Vec<PathBuf> = [
        "namespace",
        "serviceaccount",
        "configmap",
        "daemonset",
        "service",
        "networkpolicy",
    ]
    .iter()
    .map(|f| dir.join(format!("{f}.yaml")))
    .collect();
    // 1.30 is the oldest version the DaemonSet's securityContext.appArmorProfile exists in.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(kv)
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubernetes-validate {version}:\n{text}");
        assert_eq!(text.matches(" passed for resource ").count(), files.len(), "{text}");
    }
}
