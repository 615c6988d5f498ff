//! The DaemonSet's security posture works (root, podman, runc): the image built from
//! deploy/Containerfile.local runs under exactly what deploy/kubernetes/daemonset.yaml declares
//! (parsed, not copied: capabilities, hostPID, read-only mounts, read-only root, no new
//! privileges, seccomp/AppArmor, env, args, memory limit, grace period), becomes ready, turns a
//! host process and a container reading /etc/shadow into Falco-format alerts that are counted
//! in /metrics, and stops cleanly on SIGTERM. Then each added capability is removed in turn and
//! the specific failure that proves it is needed is asserted, and the same for each host
//! mount; a capability or mount without such a proof fails the test, so the manifest cannot
//! grow privileges silently.
//!
//! Run with `cargo test -p monitor-tests --test deploy -- --test-threads=1` (about a minute).

use std::time::Duration;

use anyhow::Result;
use monitor_tests::containers::{Containerd, have, skip_unless_tools};
use monitor_tests::deploy::{
    Images, MonitorContainer, PendingShadowRead, Posture, Seccomp, Source, container_reads_shadow, ctr_run_monitor,
    metric_value, proc_security,
};
use monitor_tests::harness::{skip_unless_root, workspace_root};

const RULE: &str = "Read of shadow password database";
/// How long to wait for an alert: only a missing one takes this long; a loaded CI machine can
/// delay a present one by seconds.
const ALERT_WAIT: Duration = Duration::from_secs(60);

fn manifests() -> (String, String) {
    let root = workspace_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    (
        read("deploy/kubernetes/daemonset.yaml"),
        read("deploy/kubernetes/configmap.yaml"),
    )
}

fn skip() -> bool {
    if skip_unless_root() {
        return true;
    }
    if skip_unless_tools(&["podman", "runc", "ldd", "tar"]) {
        return true;
    }
    if !monitor_tests::harness::monitor_bin().exists() {
        eprintln!("SKIPPED: build the daemon first (cargo build -p monitor)");
        return true;
    }
    false
}

fn shadow_alert_from(pid: u32) -> impl Fn(&serde_json::Value) -> bool {
    move |a| a["rule"] == RULE && a["process"]["pid"] == pid
}

fn dump(c: &MonitorContainer) -> String {
    let (_, err) = c.logs().unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A run under `posture` with a host shell waiting to read /etc/shadow; returns the
/// container, whether it became ready, and the shell.
fn start(posture: &Posture, images: &Images, cm: &str) -> Result<(MonitorContainer, bool, PendingShadowRead)> {
    let pending = PendingShadowRead::start()?;
    let c = MonitorContainer::start(posture, &images.monitor, cm)?;
    // Loading the programs takes seconds; a loaded CI machine can take many more.
    let ready = c.wait_ready(Duration::from_secs(120));
    Ok((c, ready, pending))
}

#[test]
fn daemonset_posture_runs_alerts_and_stops_under_podman() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let (ds, cm) = manifests();
    let posture = Posture::from_daemonset(&ds)?;
    let images = Images::build()?;
    eprintln!(
        "image {} built; posture: caps {:?}, seccomp {:?}",
        images.monitor, posture.capabilities, posture.seccomp
    );

    // --- The posture as declared.
    let (c, ready, pending) = start(&posture, &images, &cm)?;
    assert!(ready, "not ready under the manifest's posture:\n{}", dump(&c));
    let (status, body) = c.http_get("/healthz")?;
    assert_eq!(status, 200, "{body}");

    // The kernel holds exactly what the manifest asked for (a capability the host lacks is
    // silently left out by runc, so checking the flags alone would prove nothing).
    let (cap_eff, no_new_privs, seccomp_mode) = proc_security(c.pid()?)?;
    assert_eq!(
        cap_eff,
        posture.capability_mask()?,
        "CapEff {cap_eff:#x} != manifest {:?}",
        posture.capabilities
    );
    assert_eq!(no_new_privs, u32::from(posture.no_new_privileges));
    let want_mode = match posture.seccomp {
        Seccomp::Unconfined => 0,
        Seccomp::RuntimeDefault => 2,
    };
    assert_eq!(seccomp_mode, want_mode, "Seccomp mode in /proc/<pid>/status");

    // A host process, started before the monitor, in its own cgroup.
    let shell_pid = pending.pid();
    pending.fire()?;
    let host = c
        .wait_alert(ALERT_WAIT, shadow_alert_from(shell_pid))?
        .unwrap_or_else(|| panic!("no alert for the host read of /etc/shadow:\n{}", dump(&c)));
    assert_eq!(host["priority"], "Warning");
    assert_eq!(host["source"], "syscall");
    assert_eq!(
        host["hostname"],
        c.node_name.as_str(),
        "NODE_NAME from the downward API"
    );
    assert_eq!(host["output_fields"]["fd.name"], "/etc/shadow");
    assert_eq!(host["output_fields"]["container.id"], "host");
    assert_eq!(host["container"]["id"], "host");
    assert!(host["output"].as_str().unwrap_or("").contains("/etc/shadow"), "{host}");
    // The shell existed before the monitor: its exe comes from /proc of the host, through
    // hostPID (and CAP_SYS_PTRACE, the shell being a full-capability root process).
    let sh = std::fs::canonicalize("/bin/sh")?;
    assert_eq!(host["process"]["exepath"], sh.to_str().unwrap(), "{host}");
    assert_eq!(host["output_fields"]["proc.pid"], shell_pid);
    assert!(host["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    // A container: attributed by its cgroup to podman and its id. Its name and image need
    // podman's /var/lib/containers, which the DaemonSet does not mount (podman is not a
    // Kubernetes runtime).
    let trigger = container_reads_shadow(&images.trigger)?;
    let short = &trigger.id[..12];
    let ctr = c
        .wait_alert(ALERT_WAIT, |a| a["rule"] == RULE && a["container"]["id"] == short)?
        .unwrap_or_else(|| panic!("no alert for container {short}:\n{}", dump(&c)));
    assert_eq!(ctr["container"]["runtime"], "podman");
    assert_eq!(ctr["output_fields"]["container.id"], short);
    assert_eq!(ctr["output_fields"]["fd.name"], "/etc/shadow");
    drop(trigger);

    // Both are counted.
    let (status, metrics) = c.http_get("/metrics")?;
    assert_eq!(status, 200);
    let n = metric_value(
        &metrics,
        "monitor_alerts_total",
        &[("priority", "Warning"), ("rule", RULE)],
    )
    .unwrap_or_else(|| panic!("monitor_alerts_total{{rule={RULE:?}}} missing"));
    assert!(n >= 2.0, "monitor_alerts_total for {RULE} is {n}, expected >= 2");

    // SIGTERM, within the pod's termination grace period.
    let (code, took) = c.stop(posture.grace_seconds)?;
    assert_eq!(code, 0, "exit code after SIGTERM:\n{}", dump(&c));
    assert!(
        took < Duration::from_secs(posture.grace_seconds),
        "stop took {took:?}: SIGKILLed?"
    );
    assert!(c.logs()?.1.contains("SIGTERM: shutting down."), "{}", dump(&c));
    drop(c);
    eprintln!("declared posture: ready, host and container alerts, counted, clean SIGTERM stop ({took:?})");

    // --- Each capability is needed: remove it and see the failure it prevents.
    for cap in &posture.capabilities {
        eprintln!("without {cap} ...");
        let mut less = posture.clone();
        less.capabilities.retain(|c| c != cap);
        let (c, ready, pending) = start(&less, &images, &cm)?;
        let (_, err) = c.logs()?;
        match cap.as_str() {
            // Every map creation needs CAP_BPF: the daemon stops with an error.
            "BPF" => {
                assert!(!ready, "ready without CAP_BPF");
                assert!(!c.running());
                assert_ne!(c.exit_code()?, 0);
                assert!(err.contains("failed to create map"), "{}", dump(&c));
                assert!(err.contains("Operation not permitted"), "{}", dump(&c));
            }
            // Tracing programs (tracepoints, cgroup hooks) need CAP_PERFMON to load: none
            // attaches, and a monitor that sees nothing refuses to start rather than report
            // ready.
            "PERFMON" => {
                assert!(!ready, "ready without CAP_PERFMON:\n{}", dump(&c));
                assert!(!c.running(), "{}", dump(&c));
                assert_ne!(c.exit_code()?, 0);
                assert!(err.contains("no eBPF program could attach"), "{}", dump(&c));
                assert!(err.contains("Operation not permitted"), "{}", dump(&c));
                drop(pending);
            }
            // /proc/<pid>/exe of full-capability host processes needs CAP_SYS_PTRACE: processes
            // that started before the monitor lose their executable path.
            "SYS_PTRACE" => {
                assert!(ready, "{}", dump(&c));
                let shell_pid = pending.pid();
                pending.fire()?;
                let a = c
                    .wait_alert(ALERT_WAIT, shadow_alert_from(shell_pid))?
                    .unwrap_or_else(|| panic!("no alert without SYS_PTRACE:\n{}", dump(&c)));
                assert_eq!(a["process"]["exepath"], "", "{a}");
            }
            other => panic!(
                "no evidence that {other} is needed: add the failure it prevents to this test, or \
                 remove it from deploy/kubernetes/daemonset.yaml"
            ),
        }
    }

    // --- Each host mount is needed, or is runtime state this machine cannot exercise.
    for m in &posture.mounts {
        let Source::HostPath { path, .. } = &m.source else {
            continue;
        };
        let evidence = match path.to_str().unwrap_or("") {
            // The syscall tracepoints' ids and record layouts; mounting tracefs needs SYS_ADMIN.
            "/sys/kernel/tracing" => "mounting it on /sys/kernel/tracing failed",
            // The host's cgroup2 tree: the container's own cgroup view has none on hybrid hosts
            // (and only its own subtree on cgroup2-only hosts).
            "/sys/fs/cgroup" => "no cgroup2 mount",
            // containerd's and CRI-O's bundles (Kubernetes names): no such pod runs here.
            "/run/containerd" | "/run/containers" => {
                eprintln!(
                    "hostPath {}: runtime state, not exercised by podman here",
                    path.display()
                );
                continue;
            }
            other => panic!(
                "no evidence that the hostPath {other} is needed: add the failure it prevents to \
                 this test, or remove it from deploy/kubernetes/daemonset.yaml"
            ),
        };
        eprintln!("without the {} mount ...", path.display());
        let mut less = posture.clone();
        less.mounts.retain(|x| x.volume != m.volume);
        let (c, ready, _pending) = start(&less, &images, &cm)?;
        assert!(!ready, "ready without the {} mount", path.display());
        assert!(c.logs()?.1.contains(evidence), "{}", dump(&c));
        assert_ne!(c.exit_code()?, 0);
    }

    // --- The seccomp choice: the runtime's default profile (containers-common, as podman and
    // CRI-O ship it) allows bpf() only with CAP_SYS_ADMIN.
    if posture.seccomp == Seccomp::Unconfined {
        let mut confined = posture.clone();
        confined.seccomp = Seccomp::RuntimeDefault;
        let (c, ready, _pending) = start(&confined, &images, &cm)?;
        assert!(!ready, "ready under RuntimeDefault seccomp: the manifest could keep it");
        let (_, err) = c.logs()?;
        assert!(err.contains("Operation not permitted"), "{}", dump(&c));
        assert_ne!(c.exit_code()?, 0);
        eprintln!("RuntimeDefault seccomp (containers-common, podman/CRI-O): refused, as the manifest says");
    }

    // --- containerd's own default profile (what its CRI plugin applies for RuntimeDefault)
    // admits bpf() and perf_event_open() with CAP_BPF/CAP_PERFMON: the alternative the
    // manifest's header offers on containerd nodes.
    if have("containerd") && have("ctr") {
        const NS: &str = "monitor-deploy-test";
        let d = Containerd::start()?;
        let pending = PendingShadowRead::start()?;
        let node_name = format!("ctr-node-{}", std::process::id());
        let (id, log) = ctr_run_monitor(&d, NS, &posture, &images.monitor, &cm, &node_name)?;
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !read_log().contains("Monitor ready.") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let text = read_log();
        assert!(
            text.contains("Monitor ready. attached="),
            "not ready under containerd:\n{text}"
        );
        assert!(
            !text.contains("Monitor ready. attached=0 "),
            "nothing attached under containerd"
        );
        let (cap_eff, _, seccomp_mode) = proc_security(d.task_pid(NS, &id)?)?;
        assert_eq!(seccomp_mode, 2, "containerd applied no seccomp filter");
        assert_eq!(cap_eff, posture.capability_mask()?);
        let shell_pid = pending.pid();
        pending.fire()?;
        let found = |t: &str| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|a| shadow_alert_from(shell_pid)(&a) && a["hostname"] == node_name.as_str())
        };
        let deadline = std::time::Instant::now() + ALERT_WAIT;
        while !found(&read_log()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(found(&read_log()), "no alert under containerd's seccomp profile");
        eprintln!("containerd RuntimeDefault seccomp with the manifest's capabilities: works");
    } else {
        eprintln!("containerd/ctr not installed: its default seccomp profile is not checked");
    }
    Ok(())
}
