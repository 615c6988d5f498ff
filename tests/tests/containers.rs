//! Container attribution against real runtimes (root): runc with CRI annotations, podman,
//! containerd + ctr. Each test takes a real process inside a container, builds the event a
//! capture would produce for it (cgroup v2 id + namespace inodes from /proc) and checks the
//! exact attribution. Run with `--test-threads=1`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitor::container::{Attribution, Attributor, AttributorOptions, RuntimeRoots};
use monitor::event::{Container, K8s};
use monitor_tests::containers::{
    Containerd, PodmanContainer, RuncContainer, TEST_IMAGE, TempDir, event_for, have, host_path_of,
    proc_identity,
};
use monitor_tests::harness::{TestCgroup, skip_unless_root};

/// containerd namespace for the CRI-annotated container (not the real `k8s.io`: shared machine).
const K8S_NS: &str = "monitor-test-k8s";
const POD_UID: &str = "6f1c2f9e-8a7b-4c3d-9e2f-0a1b2c3d4e5f";

fn cri_annotations() -> Vec<(&'static str, &'static str)> {
    vec![
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-name", "shop-web-5d8f7"),
        ("io.kubernetes.cri.sandbox-namespace", "shop"),
        ("io.kubernetes.cri.sandbox-uid", POD_UID),
        ("io.kubernetes.cri.container-name", "web"),
        (
            "io.kubernetes.cri.image-name",
            "registry.example:5000/team/web:1.4.2",
        ),
    ]
}

fn opts(runc: Vec<PathBuf>, containerd_tasks: Vec<PathBuf>) -> AttributorOptions {
    AttributorOptions {
        // Only the roots the test names: the machine may run other containers.
        roots: RuntimeRoots {
            runc,
            containerd_tasks,
            podman_storage: vec![],
            crio_run_storage: vec![],
            docker: vec![],
        },
        removed_grace: Duration::from_secs(60),
        walk_min_interval: Duration::from_millis(0),
        ..AttributorOptions::default()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn skip_unless(binaries: &[&str]) -> bool {
    if skip_unless_root() {
        return true;
    }
    for b in binaries {
        if !have(b) {
            eprintln!("SKIPPED: {b} is not installed");
            return true;
        }
    }
    false
}

fn expected_runc(c: &RuncContainer, start_ts: Option<u64>) -> Container {
    Container {
        id: c.id[..12].to_string(),
        full_id: c.id.clone(),
        name: "web".into(),
        runtime: "runc".into(),
        image: "registry.example:5000/team/web:1.4.2".into(),
        image_repository: "registry.example:5000/team/web".into(),
        image_tag: "1.4.2".into(),
        image_digest: String::new(),
        privileged: Some(false),
        start_ts,
        metadata_complete: true,
        foreign_namespace: false,
        k8s: Some(K8s {
            pod_name: "shop-web-5d8f7".into(),
            namespace: "shop".into(),
            pod_uid: POD_UID.into(),
            container_name: "web".into(),
            labels: Default::default(),
        }),
    }
}

fn assert_recent(ts: Option<u64>) {
    let ts = ts.expect("start time known");
    let now = now_ns();
    assert!(
        ts <= now + 2_000_000_000 && now - ts < 120_000_000_000,
        "start_ts {ts} not within 2 min of now {now}"
    );
}

#[test]
fn runc_cri_annotations_discovered_at_start_up() {
    if skip_unless(&["runc"]) {
        return;
    }
    let c = RuncContainer::start(&cri_annotations()).expect("runc container");
    let a = Attributor::new(opts(vec![c.root.clone()], vec![])).expect("attributor");
    assert!(a.discover() >= 1);
    let summary = a
        .containers()
        .into_iter()
        .find(|s| s.full_id == c.id)
        .expect("discovered");
    assert_eq!(summary.runtime, "runc");
    assert_eq!(summary.cgroup_path.as_deref(), Some(c.cgroup_path.as_str()));
    assert_eq!(summary.init_pid, Some(c.init_pid().expect("pid")));

    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    assert_eq!(summary.cgroup_id, Some(id.cgroup_id));
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_recent(ev.container.start_ts);
    assert_eq!(*ev.container, expected_runc(&c, ev.container.start_ts));

    // A second process, moved into a child cgroup the container made: same container.
    let pid2 = c.exec_sleep().expect("exec");
    let mount = monitor_tests::harness::cgroup2_mount().expect("cgroup2");
    let child = mount
        .join(c.cgroup_path.trim_start_matches('/'))
        .join("worker");
    std::fs::create_dir_all(&child).expect("mkdir child cgroup");
    std::fs::write(child.join("cgroup.procs"), pid2.to_string()).expect("move into child cgroup");
    let id2 = proc_identity(pid2).expect("identity");
    assert_ne!(id2.cgroup_id, id.cgroup_id);
    let mut ev2 = event_for(&id2);
    assert_eq!(a.attribute(&mut ev2), Attribution::Found);
    assert_eq!(ev2.container, ev.container);
    // Let runc remove the container cgroup: move the process back first.
    std::fs::write(
        mount
            .join(c.cgroup_path.trim_start_matches('/'))
            .join("cgroup.procs"),
        pid2.to_string(),
    )
    .expect("move back");
    let _ = std::fs::remove_dir(&child);
}

#[test]
fn runc_container_created_after_start_up_resolves_on_miss() {
    if skip_unless(&["runc"]) {
        return;
    }
    let state = TempDir::new("runc-late").expect("tmp");
    // The attributor is built and has scanned first: it knows no container.
    let a = Attributor::new(opts(vec![state.0.clone()], vec![])).expect("attributor");
    assert_eq!(a.discover(), 0);
    let c =
        RuncContainer::start_with_root(Some(&state.0), &cri_annotations()).expect("runc container");
    assert!(a.containers().is_empty());
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    // The cgroup id is unknown: /proc/<pid>/cgroup gives the path, runc's state the metadata.
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_eq!(*ev.container, expected_runc(&c, ev.container.start_ts));
    assert_eq!(a.containers().len(), 1);

    // Same cgroup id from a pid that is gone (0): resolved from the cache.
    let mut ev2 = event_for(&id);
    ev2.process.pid = 0;
    assert_eq!(a.attribute(&mut ev2), Attribution::Found);
    assert_eq!(ev2.container.full_id, c.id);
}

#[test]
fn runc_container_with_a_free_form_id_and_cgroup_path() {
    if skip_unless(&["runc"]) {
        return;
    }
    let state = TempDir::new("runc-named").expect("tmp");
    let a = Attributor::new(opts(vec![state.0.clone()], vec![])).expect("attributor");
    a.discover();
    // No naming pattern matches `/monitor-test-runc/web-<n>`: runc's state names the cgroup.
    let name = format!("web-{}", std::process::id());
    let c = RuncContainer::start_custom(Some(&state.0), Some(name.clone()), &cri_annotations())
        .expect("runc container");
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_eq!(ev.container.full_id, name);
    assert_eq!(ev.container.id, name.chars().take(12).collect::<String>());
    assert_eq!(ev.container.runtime, "runc");
    assert_eq!(
        ev.container.k8s.as_ref().map(|k| k.pod_name.as_str()),
        Some("shop-web-5d8f7")
    );
}

#[test]
fn runc_cgroup_id_without_pid_resolves_by_walking_the_tree() {
    if skip_unless(&["runc"]) {
        return;
    }
    let c = RuncContainer::start(&[]).expect("runc container");
    let a = Attributor::new(opts(vec![c.root.clone()], vec![])).expect("attributor");
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    // A pid that no longer names the process (exited, or another task): the cgroup id alone.
    ev.process.pid = u32::MAX - 1;
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_eq!(ev.container.full_id, c.id);
    assert_eq!(ev.container.runtime, "runc");
    // No annotations: the runc id is the name, no image, no k8s.
    assert_eq!(ev.container.name, c.id);
    assert_eq!(
        (ev.container.image.as_str(), ev.container.k8s.clone()),
        ("", None)
    );
    assert!(ev.container.metadata_complete);
}

#[test]
fn removed_container_keeps_attributing_late_events_within_grace() {
    if skip_unless(&["runc"]) {
        return;
    }
    let c = RuncContainer::start(&cri_annotations()).expect("runc container");
    let mut o = opts(vec![c.root.clone()], vec![]);
    o.removed_grace = Duration::from_millis(500);
    let a = Attributor::new(o).expect("attributor");
    a.discover();
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    c.remove().expect("remove container");
    a.discover();
    let s = a
        .containers()
        .into_iter()
        .find(|s| s.full_id == c.id)
        .expect("still listed");
    assert!(s.removed);
    // A late event (the process is gone, its cgroup too) still attributes.
    let mut late = event_for(&id);
    assert_eq!(a.attribute(&mut late), Attribution::Found);
    assert_eq!(*late.container, expected_runc(&c, late.container.start_ts));
    std::thread::sleep(Duration::from_millis(600));
    a.discover();
    assert!(
        a.containers().iter().all(|s| s.full_id != c.id),
        "forgotten after the grace period"
    );
    let mut later = event_for(&id);
    assert_eq!(a.attribute(&mut later), Attribution::NotYet);
    a.give_up(&mut later);
    assert_eq!(later.container.id, "unknown");
    assert!(!later.container.metadata_complete);
}

#[test]
fn podman_container() {
    if skip_unless(&["podman", "runc"]) {
        return;
    }
    let c = PodmanContainer::start(&[]).expect("podman container");
    let digest = PodmanContainer::image_digest().expect("digest");
    let a = Attributor::new(AttributorOptions::default()).expect("attributor");
    a.discover();
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_recent(ev.container.start_ts);
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        *ev.container,
        Container {
            id: c.id[..12].to_string(),
            full_id: c.id.clone(),
            name: c.name.clone(),
            runtime: "podman".into(),
            image: TEST_IMAGE.into(),
            image_repository: "localhost/monitor-test-busybox".into(),
            image_tag: "latest".into(),
            image_digest: digest,
            privileged: Some(false),
            start_ts: ev.container.start_ts,
            metadata_complete: true,
            foreign_namespace: false,
            k8s: None,
        }
    );
    // fd.host_path names the same inode the container sees: on the overlay rootfs, and on the
    // files podman bind-mounts from its run directory.
    for path in ["/etc/passwd", "/bin/busybox", "/etc/hosts", "/etc/hostname"] {
        let (host, same) = host_path_of(&a, &id, path).expect("host path");
        assert!(same, "{path}: host_path {host:?} is not the file the container sees");
    }
    assert_eq!(host_path_of(&a, &id, "/proc/1/status").expect("host path").0, None);
}

#[test]
fn podman_privileged_container_created_after_start_up() {
    if skip_unless(&["podman", "runc"]) {
        return;
    }
    let a = Attributor::new(AttributorOptions::default()).expect("attributor");
    a.discover();
    let c = PodmanContainer::start(&["--privileged"]).expect("podman container");
    let id = proc_identity(c.init_pid().expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_eq!(ev.container.full_id, c.id);
    assert_eq!(ev.container.name, c.name);
    assert_eq!(ev.container.privileged, Some(true));
}

#[test]
fn containerd_ctr_container() {
    if skip_unless(&["containerd", "ctr", "podman", "runc"]) {
        return;
    }
    let d = Containerd::start().expect("containerd");
    let ns = "monitor-test";
    d.import_test_image(ns).expect("image import");
    d.import_test_image(K8S_NS).expect("image import");
    let ann = cri_annotations();
    let plain = d.run_container(ns, &[]).expect("ctr run");
    let a = Attributor::new(opts(vec![], vec![d.task_root()])).expect("attributor");
    assert_eq!(a.discover(), 1);
    assert!(
        a.containers()
            .iter()
            .any(|s| s.full_id == plain && s.runtime == "containerd")
    );
    let cri = d
        .run_container(K8S_NS, &ann)
        .expect("ctr run with CRI annotations");

    let id = proc_identity(d.task_pid(ns, &plain).expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_recent(ev.container.start_ts);
    assert_eq!(
        *ev.container,
        Container {
            id: plain[..12].to_string(),
            full_id: plain.clone(),
            name: plain.clone(),
            runtime: "containerd".into(),
            // ctr keeps the image only in containerd's database.
            image: String::new(),
            image_repository: String::new(),
            image_tag: String::new(),
            image_digest: String::new(),
            privileged: Some(false),
            start_ts: ev.container.start_ts,
            metadata_complete: true,
            foreign_namespace: false,
            k8s: None,
        }
    );

    // fd.host_path: the bundle's rootfs mount, the same inode the container sees.
    for path in ["/etc/passwd", "/bin/busybox"] {
        let (host, same) = host_path_of(&a, &id, path).expect("host path");
        assert!(same, "{path}: host_path {host:?} is not the file the container sees");
        assert!(
            host.as_deref().is_some_and(|h| h.starts_with(d.task_root().to_str().unwrap())),
            "{host:?} is not under containerd's task root"
        );
    }

    // Created after discovery, with CRI annotations: resolved on the miss.
    let id = proc_identity(d.task_pid(K8S_NS, &cri).expect("pid")).expect("identity");
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Found);
    assert_eq!(ev.container.full_id, cri);
    assert_eq!(ev.container.runtime, "containerd");
    assert_eq!(ev.container.name, "web");
    assert_eq!(ev.container.image, "registry.example:5000/team/web:1.4.2");
    assert_eq!(
        ev.container.k8s.as_ref().map(|k| k.pod_name.as_str()),
        Some("shop-web-5d8f7")
    );
    assert_eq!(
        ev.container.k8s.as_ref().map(|k| k.namespace.as_str()),
        Some("shop")
    );
    assert_eq!(
        ev.container.k8s.as_ref().map(|k| k.pod_uid.as_str()),
        Some(POD_UID)
    );
}

#[test]
fn host_processes_are_host() {
    if skip_unless_root() {
        return;
    }
    let a = Attributor::new(AttributorOptions::default()).expect("attributor");
    a.discover();
    // Ourselves, wherever the test runs.
    let me = proc_identity(std::process::id()).expect("identity");
    let mut ev = event_for(&me);
    assert_eq!(a.attribute(&mut ev), Attribution::Host);
    assert_eq!(
        (
            ev.container.id.as_str(),
            ev.container.name.as_str(),
            ev.container.runtime.as_str()
        ),
        ("host", "host", "")
    );
    assert!(ev.container.metadata_complete);
    // A process in a non-container cgroup.
    let cg = TestCgroup::new("attr-host").expect("cgroup");
    let mut child = cg.command("sleep").arg("100").spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(50));
    let id = proc_identity(child.id()).expect("identity");
    assert_eq!(id.cgroup_id, cg.id);
    let mut ev = event_for(&id);
    assert_eq!(a.attribute(&mut ev), Attribution::Host);
    assert_eq!(ev.container.id, "host");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn foreign_pid_namespace_outside_container_cgroups_is_not_host() {
    if skip_unless(&["unshare"]) {
        return;
    }
    let a = Attributor::new(AttributorOptions::default()).expect("attributor");
    let mut unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "sleep", "100"])
        .spawn()
        .expect("unshare");
    // The forked child is the sleeper in the new pid namespace.
    let mut sleeper = None;
    // Until unshare has forked (a loaded machine can take seconds), at most a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
                .unwrap_or_default();
        if let Some(p) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok())
        {
            sleeper = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = sleeper.expect("unshare forked");
    let id = proc_identity(pid).expect("identity");
    let me = proc_identity(std::process::id()).expect("identity");
    assert_ne!(id.pidns, me.pidns);
    let mut ev = event_for(&id);
    // Not host: held, then unknown with the foreign-namespace marks.
    assert_eq!(a.attribute(&mut ev), Attribution::NotYet);
    a.give_up(&mut ev);
    assert_eq!(
        (
            ev.container.id.as_str(),
            ev.container.full_id.as_str(),
            ev.container.name.as_str(),
            ev.container.runtime.as_str()
        ),
        ("unknown", "", "", "")
    );
    assert!(!ev.container.metadata_complete);
    assert!(ev.container.foreign_namespace, "a foreign pid namespace must be flagged");
    let _ = unshare.kill();
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = unshare.wait();
}

#[test]
fn monitor_containers_command_lists_a_runc_container() {
    if skip_unless(&["runc"]) {
        return;
    }
    let bin = monitor_tests::harness::monitor_bin();
    if !bin.exists() {
        eprintln!(
            "SKIPPED: {} is not built (cargo build -p monitor)",
            bin.display()
        );
        return;
    }
    let c = RuncContainer::start(&cri_annotations()).expect("runc container");
    let none = TempDir::new("none").expect("tmp");
    let empty = none.0.to_string_lossy().to_string();
    let out = std::process::Command::new(&bin)
        .args(["containers", "--runc-root", &c.root.to_string_lossy()])
        .args([
            "--containerd-task-root",
            &empty,
            "--podman-storage",
            &empty,
            "--crio-run-storage",
            &empty,
        ])
        .args(["--docker-root", &empty])
        .output()
        .expect("run monitor containers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v = &lines[0];
    assert_eq!(v["full_id"], c.id.as_str());
    assert_eq!(v["id"], &c.id[..12]);
    assert_eq!(v["runtime"], "runc");
    assert_eq!(v["name"], "web");
    assert_eq!(v["image"], "registry.example:5000/team/web:1.4.2");
    assert_eq!(v["cgroup_path"], c.cgroup_path.as_str());
    assert_eq!(v["init_pid"], c.init_pid().expect("pid"));
    assert_eq!(v["k8s"]["pod_name"], "shop-web-5d8f7");
    assert_eq!(v["k8s"]["namespace"], "shop");
    assert_eq!(v["removed"], false);
    let table = std::process::Command::new(&bin)
        .args([
            "containers",
            "--table",
            "--runc-root",
            &c.root.to_string_lossy(),
        ])
        .args([
            "--containerd-task-root",
            &empty,
            "--podman-storage",
            &empty,
            "--crio-run-storage",
            &empty,
        ])
        .output()
        .expect("run monitor containers --table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID "), "{text}");
    assert!(
        text.contains(&c.id[..12]) && text.contains("shop/shop-web-5d8f7"),
        "{text}"
    );
}
