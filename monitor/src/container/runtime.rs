//! Runtime state on the node: where each runtime keeps its containers' bundles and names, read
//! without talking to any daemon or cluster API.
//!
//! | runtime | found in | metadata |
//! |---|---|---|
//! | runc (and anything driving it with `--root /run/runc`: podman, CRI-O) | `<runc root>/<id>/state.json` (`init_process_pid`, `created`, `bundle=` label) | bundle `config.json` annotations |
//! | containerd (ctr, CRI, docker's `moby` namespace) | `<task root>/<namespace>/<id>/{config.json,init.pid}` | annotations; CRI: k8s names and image |
//! | podman | `<storage>/overlay-containers/<id>/userdata/config.json`, `containers.json`, `overlay-images/images.json` | name, image, image digest |
//! | CRI-O | `<run storage>/overlay-containers/<id>/userdata/{config.json,pidfile}` | `io.kubernetes.*` annotations, image, labels |
//! | docker | `<docker root>/containers/<id>/config.v2.json` | name, image |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cgroup::{self, RT_CONTAINERD, RT_CRIO, RT_DOCKER, RT_PODMAN, RT_RUNC};
use super::oci::{self, Spec};
use crate::event::K8s;

/// Where the runtimes keep their state. Every list may name several roots (tests point them at
/// temporary directories).
#[derive(Clone, Debug)]
pub struct RuntimeRoots {
    /// runc `--root` directories: `<root>/<id>/state.json`.
    pub runc: Vec<PathBuf>,
    /// containerd shim task roots: `<root>/<namespace>/<id>/config.json`.
    pub containerd_tasks: Vec<PathBuf>,
    /// containers/storage graph roots used by podman: `<root>/overlay-containers/...`.
    pub podman_storage: Vec<PathBuf>,
    /// containers/storage run roots used by CRI-O (bundles live there).
    pub crio_run_storage: Vec<PathBuf>,
    /// docker data roots: `<root>/containers/<id>/config.v2.json`.
    pub docker: Vec<PathBuf>,
}

impl Default for RuntimeRoots {
    fn default() -> Self {
        RuntimeRoots {
            runc: vec![
                "/run/runc".into(),
                "/run/containerd/runc/k8s.io".into(),
                "/run/containerd/runc/moby".into(),
            ],
            containerd_tasks: vec![
                "/run/containerd/io.containerd.runtime.v2.task".into(),
                "/run/containerd/io.containerd.runtime.v1.linux".into(),
            ],
            podman_storage: vec!["/var/lib/containers/storage".into()],
            crio_run_storage: vec!["/run/containers/storage".into()],
            docker: vec!["/var/lib/docker".into()],
        }
    }
}

/// Everything known about one container, before it is shaped into an event's `Container`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub full_id: String,
    pub runtime: &'static str,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub privileged: Option<bool>,
    pub start_ts: Option<u64>,
    pub k8s: Option<K8s>,
    pub init_pid: Option<u32>,
    /// v2 cgroup path relative to the cgroup2 mount, when known.
    pub cgroup_path: Option<String>,
    pub bundle: Option<PathBuf>,
    /// containerd namespace, for containerd-managed containers.
    pub namespace: Option<String>,
    /// True when the runtime's own description (bundle config) was read.
    pub config_read: bool,
    /// The root filesystem and mounts the bundle declares (for `fd.host_path`).
    pub fs_view: Option<std::sync::Arc<super::hostpath::FsView>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuncState {
    id: String,
    init_process_pid: u32,
    init_process_start: u64,
    created: String,
    config: RuncStateConfig,
    cgroup_paths: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuncStateConfig {
    labels: Vec<String>,
}

/// Ids of the containers present in every root (not yet parsed).
pub fn list_ids(roots: &RuntimeRoots) -> Vec<String> {
    let mut ids = Vec::new();
    let push_dir_names = |dir: &Path, ids: &mut Vec<String>| {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    ids.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    };
    for r in &roots.runc {
        push_dir_names(r, &mut ids);
    }
    for r in &roots.containerd_tasks {
        if let Ok(rd) = std::fs::read_dir(r) {
            for ns in rd.flatten() {
                push_dir_names(&ns.path(), &mut ids);
            }
        }
    }
    for r in roots.podman_storage.iter().chain(&roots.crio_run_storage) {
        // Only running ones: a live pidfile/conmon is checked when the record is built.
        push_dir_names(&r.join("overlay-containers"), &mut ids);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Build the record of container `id` from whichever runtime knows it, or None.
/// `proc_root` is normally /proc. Only containers with a live init process are returned.
pub fn lookup(roots: &RuntimeRoots, proc_root: &Path, id: &str) -> Option<Record> {
    // Ids are directory names: never let one climb out of a root.
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return None;
    }
    let mut rec: Option<Record> = None;
    for root in &roots.containerd_tasks {
        let Ok(rd) = std::fs::read_dir(root) else {
            continue;
        };
        for ns in rd.flatten() {
            let dir = ns.path().join(id);
            if dir.join("config.json").is_file() {
                let ns_name = ns.file_name().to_string_lossy().into_owned();
                rec = Some(from_containerd_task(&dir, &ns_name, id));
                break;
            }
        }
        if rec.is_some() {
            break;
        }
    }
    if rec.is_none() {
        for root in &roots.runc {
            let state = root.join(id).join("state.json");
            if state.is_file() {
                rec = from_runc_state(&state, proc_root);
                if rec.is_some() {
                    break;
                }
            }
        }
    }
    if rec.is_none() {
        for root in &roots.crio_run_storage {
            let userdata = root.join("overlay-containers").join(id).join("userdata");
            if userdata.join("config.json").is_file() {
                rec = Some(from_bundle(&userdata, id, RT_CRIO));
                if let Some(r) = rec.as_mut() {
                    r.init_pid = read_pid_file(&userdata.join("pidfile"));
                }
                break;
            }
        }
    }
    let mut rec = rec.or_else(|| {
        // Podman without a runc state (another OCI runtime root): its userdata still has the bundle.
        for root in &roots.podman_storage {
            let userdata = root.join("overlay-containers").join(id).join("userdata");
            if userdata.join("config.json").is_file() {
                let mut r = from_bundle(&userdata, id, RT_PODMAN);
                for run in &roots.crio_run_storage {
                    if let Some(pid) = read_pid_file(
                        &run.join("overlay-containers")
                            .join(id)
                            .join("userdata/pidfile"),
                    ) {
                        r.init_pid = Some(pid);
                    }
                }
                return Some(r);
            }
        }
        None
    })?;
    let pid = rec
        .init_pid
        .filter(|p| *p > 0 && proc_root.join(p.to_string()).exists())?;
    if rec.cgroup_path.is_none() {
        rec.cgroup_path = cgroup::proc_cgroup_path(proc_root, pid);
    }
    if rec.start_ts.is_none() {
        rec.start_ts = process_start_ns(proc_root, pid);
    }
    if rec.runtime == RT_PODMAN {
        add_podman_metadata(&mut rec, &roots.podman_storage);
    }
    if rec.runtime == RT_DOCKER {
        add_docker_metadata(&mut rec, &roots.docker);
    }
    Some(rec)
}

fn from_containerd_task(dir: &Path, namespace: &str, id: &str) -> Record {
    let mut rec = from_bundle(dir, id, RT_CONTAINERD);
    if namespace == "moby" {
        rec.runtime = RT_DOCKER;
    } else if rec.runtime != RT_CONTAINERD && rec.runtime != RT_DOCKER {
        // A bundle under containerd's task root is containerd's whatever its annotations say.
        rec.runtime = RT_CONTAINERD;
    }
    rec.namespace = Some(namespace.to_string());
    rec.init_pid = read_pid_file(&dir.join("init.pid"));
    if rec.name.is_empty() && rec.k8s.is_none() {
        rec.name = id.to_string();
    }
    rec
}

fn from_runc_state(state_path: &Path, proc_root: &Path) -> Option<Record> {
    let state: RuncState = oci::read_json_bounded(state_path).ok()?;
    let bundle = state
        .config
        .labels
        .iter()
        .find_map(|l| l.strip_prefix("bundle="))
        .map(PathBuf::from);
    let mut rec = match &bundle {
        Some(b) if b.join("config.json").is_file() => from_bundle(b, &state.id, RT_RUNC),
        _ => {
            // Bundle gone (moved or deleted): runc copies the annotations into its labels.
            let annotations: BTreeMap<String, String> = state
                .config
                .labels
                .iter()
                .filter_map(|l| l.split_once('='))
                .filter(|(k, _)| *k != "bundle")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let spec = Spec {
                annotations,
                ..Default::default()
            };
            from_spec(&spec, &state.id, RT_RUNC, false)
        }
    };
    rec.bundle = bundle;
    // Guard against pid reuse: the init process must still be the one runc started.
    let pid = state.init_process_pid;
    if pid > 0 && process_start_ticks(proc_root, pid) == Some(state.init_process_start) {
        rec.init_pid = Some(pid);
    }
    if let Some(p) = state.cgroup_paths.get("") {
        rec.cgroup_path = relative_to_any_cgroup2(p);
    }
    if let Some(ts) = parse_rfc3339_ns(&state.created) {
        rec.start_ts = Some(ts);
    }
    if rec.runtime == RT_RUNC && rec.name.is_empty() && rec.k8s.is_none() {
        rec.name = state.id.clone();
    }
    Some(rec)
}

/// runc records absolute paths; keep the part below the cgroup2 mount it used.
fn relative_to_any_cgroup2(abs: &str) -> Option<String> {
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Some(rest) = abs.strip_prefix(mount)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return Some(if rest.is_empty() {
                "/".into()
            } else {
                rest.to_string()
            });
        }
    }
    None
}

fn from_bundle(dir: &Path, id: &str, default_runtime: &'static str) -> Record {
    match oci::read_spec(&dir.join("config.json")) {
        Ok(spec) => {
            let mut r = from_spec(&spec, id, default_runtime, true);
            r.fs_view = super::hostpath::FsView::from_spec(&spec, dir).map(std::sync::Arc::new);
            r.bundle = Some(dir.to_path_buf());
            r
        }
        Err(e) => {
            tracing::debug!(error = %e, "Could not read the container's bundle config.");
            Record {
                full_id: id.to_string(),
                runtime: default_runtime,
                bundle: Some(dir.to_path_buf()),
                ..Default::default()
            }
        }
    }
}

fn from_spec(spec: &Spec, id: &str, default_runtime: &'static str, config_read: bool) -> Record {
    let a = &spec.annotations;
    let runtime = match (default_runtime, oci::runtime_from_annotations(a)) {
        // A bundle under runc's root with containerd CRI annotations was still run by hand
        // (containerd never uses /run/runc): report who runs it.
        (RT_RUNC, Some(RT_CONTAINERD)) => RT_RUNC,
        (_, Some(rt)) => rt,
        (rt, None) => rt,
    };
    let k8s = oci::k8s_from_annotations(a);
    let image = oci::image_from_annotations(a).unwrap_or_default();
    let mut image_digest = String::new();
    if let Some(r) = a.get(oci::ann::CRIO_IMAGE_REF)
        && let Some((_, d)) = r.split_once('@')
    {
        image_digest = oci::bounded(d);
    }
    let name = k8s
        .as_ref()
        .map(|k| k.container_name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| a.get(oci::ann::CRIO_NAME).map(|s| oci::bounded(s)))
        .unwrap_or_default();
    Record {
        full_id: id.to_string(),
        runtime,
        name,
        image,
        image_digest,
        privileged: oci::is_privileged(spec),
        k8s,
        config_read,
        ..Default::default()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StorageContainer {
    id: String,
    names: Vec<String>,
    image: String,
    metadata: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StorageContainerMeta {
    #[serde(rename = "image-name")]
    image_name: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StorageImage {
    id: String,
    digest: String,
}

fn add_podman_metadata(rec: &mut Record, storages: &[PathBuf]) {
    for root in storages {
        let Ok(list) = oci::read_json_bounded::<Vec<StorageContainer>>(
            &root.join("overlay-containers/containers.json"),
        ) else {
            continue;
        };
        let Some(c) = list.into_iter().find(|c| c.id == rec.full_id) else {
            continue;
        };
        let meta: StorageContainerMeta = serde_json::from_str(&c.metadata).unwrap_or_default();
        let name = c.names.first().cloned().unwrap_or(meta.name);
        if !name.is_empty() {
            rec.name = oci::bounded(&name);
        }
        if !meta.image_name.is_empty() {
            rec.image = oci::bounded(&meta.image_name);
        }
        if let Ok(images) =
            oci::read_json_bounded::<Vec<StorageImage>>(&root.join("overlay-images/images.json"))
            && let Some(img) = images.into_iter().find(|i| i.id == c.image)
        {
            rec.image_digest = oci::bounded(&img.digest);
        }
        return;
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DockerConfigV2 {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: DockerConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DockerConfig {
    #[serde(rename = "Image")]
    image: String,
}

fn add_docker_metadata(rec: &mut Record, roots: &[PathBuf]) {
    for root in roots {
        let path = root
            .join("containers")
            .join(&rec.full_id)
            .join("config.v2.json");
        let Ok(cfg) = oci::read_json_bounded::<DockerConfigV2>(&path) else {
            continue;
        };
        if rec.k8s.is_none() {
            rec.name = oci::bounded(cfg.name.trim_start_matches('/'));
        }
        if rec.image.is_empty() {
            rec.image = oci::bounded(&cfg.config.image);
        }
        return;
    }
}

fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Field 22 of `/proc/<pid>/stat`: start time in clock ticks after boot.
pub fn process_start_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // comm may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process' start time in ns since the epoch (btime + start ticks; second resolution on btime).
pub fn process_start_ns(proc_root: &Path, pid: u32) -> Option<u64> {
    let ticks = process_start_ticks(proc_root, pid)?;
    let stat = std::fs::read_to_string(proc_root.join("stat")).ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(btime * 1_000_000_000 + ticks * (1_000_000_000 / hz))
}

/// `2026-11-23T04:47:51.375257267Z` (UTC, as runc and containers/storage write it) to ns since
/// the epoch. Offsets other than `Z` are accepted as `+hh:mm` / `-hh:mm`.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        let kept = &digits[..digits.len().min(9)];
        frac_ns = kept.parse::<i64>().ok()? * 10_i64.pow(9 - kept.len() as u32);
    }
    let offset_s: i64 = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let v = o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60;
            if o.starts_with('+') { v } else { -v }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac_ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T04:47:51.375257267Z"),
            Some(1_795_409_271_375_257_267)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T04:47:51.3Z"),
            Some(1_795_409_271_300_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-23T05:47:51+01:00"),
            Some(1_795_409_271_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-23T04:47:51",
            "2026-11-23T04:47:51.Zx",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn runc_cgroup_paths_are_made_relative() {
        assert_eq!(
            relative_to_any_cgroup2("/sys/fs/cgroup/unified/libpod_parent/x").as_deref(),
            Some("/libpod_parent/x")
        );
        assert_eq!(
            relative_to_any_cgroup2("/sys/fs/cgroup/default/x").as_deref(),
            Some("/default/x")
        );
        assert_eq!(relative_to_any_cgroup2("/elsewhere/x"), None);
    }

    /// A containerd task dir, a CRI-O run storage and a docker root built in a temp dir, resolved
    /// for a live pid (our own), so lookup's file layout handling is checked without root.
    #[test]
    fn lookup_in_fake_roots() {
        let tmp = std::env::temp_dir().join(format!("monitor-rt-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let me = std::process::id();
        let id_ctrd = "1".repeat(64);
        let id_docker = "2".repeat(64);
        let id_crio = "3".repeat(64);
        let tasks = tmp.join("tasks");
        let cri = r#"{"annotations":{"io.kubernetes.cri.sandbox-name":"p","io.kubernetes.cri.sandbox-namespace":"n",
            "io.kubernetes.cri.sandbox-uid":"u","io.kubernetes.cri.container-name":"c","io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.image-name":"docker.io/library/nginx:1.25"}}"#;
        for (ns, id, cfg) in [("k8s.io", &id_ctrd, cri), ("moby", &id_docker, "{}")] {
            let d = tasks.join(ns).join(id);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("config.json"), cfg).expect("write");
            std::fs::write(d.join("init.pid"), me.to_string()).expect("write");
        }
        let docker = tmp.join("docker");
        std::fs::create_dir_all(docker.join("containers").join(&id_docker)).expect("mkdir");
        std::fs::write(
            docker
                .join("containers")
                .join(&id_docker)
                .join("config.v2.json"),
            r#"{"Name":"/web","Config":{"Image":"nginx:latest"}}"#,
        )
        .expect("write");
        let crio = tmp.join("crio");
        let ud = crio
            .join("overlay-containers")
            .join(&id_crio)
            .join("userdata");
        std::fs::create_dir_all(&ud).expect("mkdir");
        std::fs::write(
            ud.join("config.json"),
            r#"{"annotations":{"io.kubernetes.pod.name":"db-0","io.kubernetes.pod.namespace":"data","io.kubernetes.pod.uid":"u2",
            "io.kubernetes.container.name":"pg","io.kubernetes.cri-o.ContainerType":"container",
            "io.kubernetes.cri-o.ImageName":"quay.io/pg:16","io.kubernetes.cri-o.ImageRef":"quay.io/pg@sha256:feed",
            "io.kubernetes.cri-o.Labels":"{\"app\":\"db\"}"}}"#,
        )
        .expect("write");
        std::fs::write(ud.join("pidfile"), me.to_string()).expect("write");
        let roots = RuntimeRoots {
            runc: vec![],
            containerd_tasks: vec![tasks],
            podman_storage: vec![],
            crio_run_storage: vec![crio],
            docker: vec![docker],
        };
        let proc_root = Path::new("/proc");
        let r = lookup(&roots, proc_root, &id_ctrd).expect("containerd");
        assert_eq!(
            (r.runtime, r.name.as_str(), r.image.as_str()),
            ("containerd", "c", "docker.io/library/nginx:1.25")
        );
        assert_eq!(
            r.k8s
                .as_ref()
                .map(|k| (k.pod_name.as_str(), k.namespace.as_str())),
            Some(("p", "n"))
        );
        assert_eq!(r.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(r.init_pid, Some(me));
        let r = lookup(&roots, proc_root, &id_docker).expect("docker");
        assert_eq!(
            (r.runtime, r.name.as_str(), r.image.as_str()),
            ("docker", "web", "nginx:latest")
        );
        let r = lookup(&roots, proc_root, &id_crio).expect("crio");
        assert_eq!(
            (
                r.runtime,
                r.name.as_str(),
                r.image.as_str(),
                r.image_digest.as_str()
            ),
            ("cri-o", "pg", "quay.io/pg:16", "sha256:feed")
        );
        assert_eq!(r.k8s.as_ref().map(|k| k.labels.len()), Some(1));
        assert!(lookup(&roots, proc_root, "../../etc").is_none());
        assert!(lookup(&roots, proc_root, &"4".repeat(64)).is_none());
        let mut ids = list_ids(&roots);
        ids.sort();
        assert_eq!(ids, vec![id_ctrd, id_docker, id_crio]);
        let _ = std::fs::remove_dir_all(&tmp);
    }

    /// Broken or hostile state files never panic: the container is still attributed by id,
    /// marked incomplete; an oversized config is refused unread.
    #[test]
    fn bad_state_files() {
        let tmp = std::env::temp_dir().join(format!("monitor-rt-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let me = std::process::id();
        let tasks = tmp.join("tasks/default");
        let cases: [(&str, Vec<u8>); 3] = [
            ("a", b"{not json".to_vec()),
            ("b", b"[1,2,3]".to_vec()),
            ("c", vec![b' '; (oci::MAX_CONFIG_BYTES + 1) as usize]),
        ];
        for (c, body) in &cases {
            let d = tasks.join(c.repeat(64));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("config.json"), body).expect("write");
            std::fs::write(d.join("init.pid"), me.to_string()).expect("write");
        }
        // A runc root whose state.json is garbage and one whose init pid is dead.
        let runc = tmp.join("runc");
        std::fs::create_dir_all(runc.join("d".repeat(64))).expect("mkdir");
        std::fs::write(runc.join("d".repeat(64)).join("state.json"), "garbage").expect("write");
        std::fs::create_dir_all(runc.join("e".repeat(64))).expect("mkdir");
        std::fs::write(
            runc.join("e".repeat(64)).join("state.json"),
            r#"{"id":"eee","init_process_pid":999999999,"init_process_start":1,"config":{"labels":[]}}"#,
        )
        .expect("write");
        let roots = RuntimeRoots {
            runc: vec![runc],
            containerd_tasks: vec![tmp.join("tasks")],
            podman_storage: vec![],
            crio_run_storage: vec![],
            docker: vec![],
        };
        for (c, _) in &cases {
            let r = lookup(&roots, Path::new("/proc"), &c.repeat(64)).expect("attributed by id");
            assert_eq!(r.runtime, RT_CONTAINERD);
            assert!(!r.config_read, "{c}");
            assert_eq!(r.k8s, None);
        }
        assert!(lookup(&roots, Path::new("/proc"), &"d".repeat(64)).is_none());
        assert!(lookup(&roots, Path::new("/proc"), &"e".repeat(64)).is_none());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
