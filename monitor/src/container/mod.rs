//! Container and Kubernetes attribution: fills [`Event::container`] from the event's cgroup v2
//! id, pid and namespaces, using only what the node itself records (no cluster API, no runtime
//! daemon socket).
//!
//! # How an event is attributed
//! 1. `cgroup_id` (the inode of the cgroup's directory in the cgroup2 mount, found in
//!    /proc/self/mountinfo: /sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on pure v2)
//!    is looked up in a bounded cache.
//! 2. On a miss the id is turned into a path: first from `/proc/<pid>/cgroup` (accepted only if
//!    that path's inode is the event's id, so a recycled pid cannot mislead), else from a
//!    rate-limited walk of the cgroup2 tree.
//! 3. The path is matched against the runtimes' cgroup patterns ([`cgroup::parse_cgroup_path`]):
//!    `docker-<id>.scope`, `/docker/<id>`, `cri-containerd-<id>.scope`, `crio-<id>(.scope)`,
//!    `libpod-<id>(.scope)` (podman, e.g. `/libpod_parent/libpod-<id>`), `/<namespace>/<id>`
//!    (containerd), kubepods slices (`pod<uid>` gives the pod uid), bare `<64 hex>` (runc). The
//!    outermost match wins, so child cgroups a container creates belong to it. Paths that match
//!    no pattern are checked against the cgroup paths recorded by the runtimes (runc containers
//!    with arbitrary `cgroupsPath`).
//! 4. The id is resolved in the runtimes' state directories ([`runtime`]): bundle `config.json`
//!    annotations give Kubernetes pod name, namespace, uid, container name (containerd CRI's
//!    `io.kubernetes.cri.*`, CRI-O's `io.kubernetes.pod.*`/`io.kubernetes.container.name`,
//!    labels from `io.kubernetes.cri-o.Labels`) and the image; capabilities + device rules give
//!    `privileged`.
//!
//! | runtime | id/full_id | name | image (repo, tag, digest) | k8s | start |
//! |---|---|---|---|---|---|
//! | runc (`/run/runc`) | yes | runc id, or k8s container name | from CRI/CRI-O annotations only | annotations | state.json `created` |
//! | podman | yes | `containers.json` name | image name + digest from containers/storage | no | state.json `created` |
//! | containerd (ctr) | yes | container id | not on disk outside containerd's database: empty | no | init process start |
//! | containerd (CRI) | yes | k8s container name | `io.kubernetes.cri.image-name` | annotations | init process start |
//! | CRI-O | yes | k8s container name | `ImageName`, digest from `ImageRef` | annotations + labels | init process start |
//! | docker | yes | `config.v2.json` name | `config.v2.json` image | when run by CRI | init process start |
//!
//! runc, podman and containerd (ctr, with and without CRI annotations) are checked against the
//! real runtimes in `tests/tests/containers.rs`; CRI-O and docker against their file layouts
//! only (unit tests), as neither runs on the test machines.
//!
//! File events of a container's processes also get `fd.host_path` (the file's path on the host,
//! through the bundle's rootfs and bind mounts; exact and approximate cases in [`hostpath`]).
//!
//! Image repository/tag/digest are split from the reference (`registry:5000/ns/app:tag@digest`).
//! A container whose runtime state is still missing after the retry hold goes on with what its
//! cgroup path alone says: `id`/`full_id` and, when the pattern names it, `runtime` (plus the
//! pod uid under kubepods), with `metadata_complete = false`; with no container path at all it
//! is plain `unknown`.
//!
//! # Never trusting the container
//! Attribution uses only kernel facts (cgroup id, namespace inodes) and host files written by
//! the runtimes; never `comm`, argv or anything else a container controls. A process outside
//! every container cgroup whose pid namespace differs from the host's (or, in the root cgroup,
//! whose pid or mount namespace differs) is NOT reported as host: it is held like an unknown
//! container and then goes on as `unknown` with `metadata_complete = false`, `name = ""`,
//! `runtime = ""` and `full_id = ""` (see [`is_foreign_namespace`]). Host services in their own
//! mount namespace (systemd `PrivateTmp=`) stay `host`.
//!
//! # Metrics
//! `monitor_containers_tracked`, `monitor_attribution_misses_total`,
//! `monitor_attribution_unresolved_total{reason}`, `monitor_attribution_cgroup_walks_total`,
//! `monitor_attribution_cache_evictions_total`, and from the retry stage
//! `monitor_attribution_held_events`, `monitor_attribution_evicted_events_total`.
//!
//! # Limits
//! - runc ids need not be hex: a runc container named `web` gets `full_id = "web"` and
//!   `id` = its first 12 characters. If such a container also uses a cgroupsPath no pattern
//!   knows and shares the host pid namespace, its first events can be attributed `host` until
//!   the next rescan (at most `refresh_interval`) reads its state.
//! - A container removed before any of its events was attributed (its cgroup gone) cannot be
//!   resolved later: those late events go on as `unknown`.
//! - Attribution does blocking file reads on a miss (tmpfs and procfs, microseconds); the stage
//!   runs them inline and the periodic rescan on the blocking pool.
//! - cgroup v1-only nodes: the kernel's v2 cgroup id is then the root's for every task, so no
//!   event can be attributed by cgroup; start-up fails with a clear error. This cannot be tested
//!   on the hybrid machines this project runs on. On hybrid hosts a runtime that places
//!   containers in v1 hierarchies only leaves them in the v2 root cgroup: the namespace rule
//!   then reports them `unknown`, never `host`.
//! - The daemon must see the host's cgroup namespace and /proc (hostPID) to resolve paths.
//! - `ctr`-created containers have no image on disk outside containerd's bolt database.

pub mod cgroup;
pub mod hostpath;
pub mod oci;
pub mod runtime;
pub mod stage;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use serde::Serialize;

pub use runtime::{Record, RuntimeRoots};
pub use stage::spawn_stage;

use crate::event::{Container, Event, HOST_CONTAINER_ID, K8s};
use crate::metrics::register;

static TRACKED: LazyLock<IntGauge> = LazyLock::new(|| {
    register(IntGauge::new(
        "monitor_containers_tracked",
        "Containers known to attribution now (removed ones leave after the grace period).",
    ))
});
static MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "monitor_attribution_misses_total",
        "Events whose cgroup was not attributable yet when first seen (held by the retry stage).",
    ))
});
/// Label `reason`: `unknown_container` (a container cgroup whose runtime state was never found),
/// `unknown_cgroup` (the cgroup id could not be mapped to a path), `foreign_namespace`
/// (outside container cgroups but in another pid/mount namespace than the host).
static UNRESOLVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        Opts::new(
            "monitor_attribution_unresolved_total",
            "Events that went on as `unknown` after the retry hold.",
        ),
        &["reason"],
    ))
});
static WALKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "monitor_attribution_cgroup_walks_total",
        "Walks of the cgroup2 tree done to resolve unknown cgroup ids.",
    ))
});
static CACHE_EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "monitor_attribution_cache_evictions_total",
        "Times the cgroup cache reached its bound and dropped its non-container entries.",
    ))
});

/// Register this module's metrics now, so they are exported (at zero) before the first event.
/// [`Attributor::new`] calls it.
pub fn register_metrics() {
    LazyLock::force(&TRACKED);
    LazyLock::force(&MISSES);
    LazyLock::force(&UNRESOLVED);
    LazyLock::force(&WALKS);
    LazyLock::force(&CACHE_EVICTIONS);
    stage::register_metrics();
}

#[derive(Debug, thiserror::Error)]
pub enum AttributorError {
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("cgroup2 mount {path} is not readable: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct AttributorOptions {
    /// cgroup2 mount point; None = first cgroup2 mount in /proc/self/mountinfo.
    pub cgroup2_mount: Option<PathBuf>,
    /// Runtime state directories.
    pub roots: RuntimeRoots,
    /// procfs root (tests may point elsewhere).
    pub proc_root: PathBuf,
    /// Host pid/mnt namespace inodes; None = /proc/1/ns/{pid,mnt}, falling back to our own
    /// (/proc/self/ns) when pid 1's are not readable (as inside some VMs' init).
    pub host_pidns: Option<u64>,
    pub host_mntns: Option<u64>,
    /// Most cgroup ids cached (container and non-container).
    pub cache_capacity: usize,
    /// Most containers tracked at once.
    pub max_containers: usize,
    /// How long a removed container keeps attributing late events.
    pub removed_grace: Duration,
    /// How long the retry stage holds an event whose container is not known yet.
    pub retry_hold: Duration,
    /// How often the retry stage retries held cgroups.
    pub retry_interval: Duration,
    /// How often the retry stage rescans the runtime state (new and removed containers).
    pub refresh_interval: Duration,
    /// Minimum time between two walks of the cgroup2 tree, and between two rescans on a miss.
    pub walk_min_interval: Duration,
    /// Most directories a cgroup2 walk visits.
    pub walk_max_dirs: usize,
}

impl Default for AttributorOptions {
    fn default() -> Self {
        AttributorOptions {
            cgroup2_mount: None,
            roots: RuntimeRoots::default(),
            proc_root: PathBuf::from("/proc"),
            host_pidns: None,
            host_mntns: None,
            cache_capacity: 16_384,
            max_containers: 8_192,
            removed_grace: Duration::from_secs(30),
            retry_hold: Duration::from_millis(500),
            retry_interval: Duration::from_millis(20),
            refresh_interval: Duration::from_secs(2),
            walk_min_interval: Duration::from_millis(200),
            walk_max_dirs: 65_536,
        }
    }
}

/// Outcome of [`Attributor::attribute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// `ev.container` now describes the container.
    Found,
    /// `ev.container` is `host`.
    Host,
    /// Not attributable yet (new container, or foreign namespaces): hold and retry, then call
    /// [`Attributor::give_up`]. `ev.container` is untouched.
    NotYet,
}

/// One line of `monitor containers`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerSummary {
    pub id: String,
    pub full_id: String,
    pub runtime: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub privileged: Option<bool>,
    pub start_ts: Option<u64>,
    pub init_pid: Option<u32>,
    pub cgroup_id: Option<u64>,
    pub cgroup_path: Option<String>,
    pub k8s: Option<K8s>,
    /// Set once the container's state disappeared; it is forgotten after the grace period.
    pub removed: bool,
}

struct Tracked {
    record: Record,
    container: Container,
    cgroup_id: Option<u64>,
    removed_at: Option<Instant>,
}

/// What attribution hands to each event of a container.
struct Known {
    /// Shared by every event of the container: attribution is a reference count, not a copy.
    container: Arc<Container>,
    fs: Option<Arc<hostpath::FsView>>,
}

impl Known {
    fn of(t: &Tracked) -> Arc<Known> {
        Arc::new(Known {
            container: Arc::new(t.container.clone()),
            fs: t.record.fs_view.clone(),
        })
    }

    fn apply(&self, ev: &mut Event) {
        ev.container = self.container.clone();
        if let Some(fs) = &self.fs {
            hostpath::fill(ev, fs);
        }
    }
}

#[derive(Clone)]
enum Class {
    Container(Arc<Known>),
    /// Not a container cgroup; `root` is the cgroup2 root.
    NotContainer {
        root: bool,
    },
}

#[derive(Default)]
struct Inner {
    /// Looked up for every event: FxHash, as cgroup ids are the kernel's, not chosen.
    by_cgroup: rustc_hash::FxHashMap<u64, Class>,
    containers: HashMap<String, Tracked>,
    /// Container cgroup path -> full id, for cgroups that match no naming pattern.
    by_path: HashMap<String, String>,
    /// Ids listed in a state dir whose lookup failed (stopped, half-written), and when.
    failed_lookups: HashMap<String, Instant>,
}

/// How long discovery skips an id whose lookup failed. New containers do not wait for it: a
/// miss on their cgroup looks their id up directly.
const FAILED_LOOKUP_BACKOFF: Duration = Duration::from_secs(5);

struct WalkState {
    last_walk: Option<Instant>,
    last_rescan: Option<Instant>,
    id_to_path: HashMap<u64, String>,
}

/// Attribution state. `Send + Sync`: share it in an `Arc` between the stage and `monitor
/// containers`. Every map is bounded by the options.
pub struct Attributor {
    opts: AttributorOptions,
    mount: PathBuf,
    host_pidns: u64,
    host_mntns: u64,
    root_cgroup_id: u64,
    inner: RwLock<Inner>,
    walk: Mutex<WalkState>,
    host_container: Arc<Container>,
}

// The stage and `monitor containers` share one attributor across tasks and threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Attributor>();
};

/// True when a process outside container cgroups must not be called `host`: its pid namespace
/// differs from the host's, or it sits in the root cgroup with a different pid or mount
/// namespace. Zero (not captured) never counts as different.
pub fn is_foreign_namespace(
    in_root_cgroup: bool,
    pidns: u64,
    mntns: u64,
    host_pidns: u64,
    host_mntns: u64,
) -> bool {
    let differs = |v: u64, host: u64| v != 0 && host != 0 && v != host;
    differs(pidns, host_pidns) || (in_root_cgroup && differs(mntns, host_mntns))
}

impl Attributor {
    pub fn new(opts: AttributorOptions) -> Result<Attributor, AttributorError> {
        register_metrics();
        let mount = match &opts.cgroup2_mount {
            Some(m) => m.clone(),
            None => cgroup::find_cgroup2_mount(&opts.proc_root.join("self/mountinfo"))?,
        };
        let root_cgroup_id = std::fs::metadata(&mount)
            .map_err(|source| AttributorError::Mount {
                path: mount.clone(),
                source,
            })?
            .ino();
        let ns = |kind: &str, given: Option<u64>| {
            given
                .or_else(|| crate::nsfs::host_ns_inode(&opts.proc_root, kind).ok())
                .unwrap_or(0)
        };
        let host_pidns = ns("pid", opts.host_pidns);
        let host_mntns = ns("mnt", opts.host_mntns);
        let mut inner = Inner::default();
        inner
            .by_cgroup
            .insert(root_cgroup_id, Class::NotContainer { root: true });
        let host_container = Arc::new(Container {
            id: HOST_CONTAINER_ID.to_string(),
            name: HOST_CONTAINER_ID.to_string(),
            metadata_complete: true,
            ..Container::default()
        });
        tracing::info!(mount = %mount.display(), root_cgroup_id, host_pidns, host_mntns, "Container attribution is ready.");
        Ok(Attributor {
            opts,
            mount,
            host_pidns,
            host_mntns,
            root_cgroup_id,
            inner: RwLock::new(inner),
            walk: Mutex::new(WalkState {
                last_walk: None,
                last_rescan: None,
                id_to_path: HashMap::new(),
            }),
            host_container,
        })
    }

    pub fn options(&self) -> &AttributorOptions {
        &self.opts
    }

    pub fn cgroup2_mount(&self) -> &Path {
        &self.mount
    }

    /// Scan the runtime state directories and track every running container found. Returns how
    /// many live (not removed) containers are tracked afterwards. Also marks containers whose
    /// state vanished as removed and forgets those removed longer than the grace period.
    pub fn discover(&self) -> usize {
        self.discover_inner(false)
    }

    /// `retry_failed`: also look up ids whose lookup failed recently. A miss on a cgroup that
    /// matches no naming pattern asks for it: that container's state dir may have been listed
    /// half-written a moment ago (runc creates it before state.json), and the backoff would
    /// otherwise outlast the retry hold.
    fn discover_inner(&self, retry_failed: bool) -> usize {
        let ids = runtime::list_ids(&self.opts.roots);
        let now = Instant::now();
        let mut fresh = Vec::new();
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            for id in &ids {
                let tracked = inner
                    .containers
                    .get(id)
                    .is_some_and(|t| t.removed_at.is_none());
                // Stopped containers keep their state (podman's storage): do not re-read them
                // on every scan.
                let failed_recently = !retry_failed
                    && inner
                        .failed_lookups
                        .get(id)
                        .is_some_and(|t| now.duration_since(*t) < FAILED_LOOKUP_BACKOFF);
                if !tracked && !failed_recently {
                    fresh.push(id.clone());
                }
            }
        }
        // Parse outside the lock: file reads.
        let mut records = Vec::new();
        let mut failed = Vec::new();
        for id in fresh {
            match runtime::lookup(&self.opts.roots, &self.opts.proc_root, &id) {
                Some(r) => records.push(r),
                None => failed.push(id),
            }
        }
        let listed: std::collections::HashSet<&String> = ids.iter().collect();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.failed_lookups.len() + failed.len() > self.opts.max_containers {
            inner.failed_lookups.clear();
        }
        for id in failed {
            inner.failed_lookups.insert(id, now);
        }
        for rec in records {
            inner.failed_lookups.remove(&rec.full_id);
            self.track(&mut inner, rec);
        }
        let mut forget = Vec::new();
        for (id, t) in inner.containers.iter_mut() {
            // Alive while its cgroup exists (processes may still run while the runtime tears
            // it down), or while it is listed and its init process lives.
            let cgroup_alive =
                t.record.cgroup_path.as_deref().is_some_and(|p| {
                    p != "/" && self.mount.join(p.trim_start_matches('/')).is_dir()
                });
            let init_alive = t
                .record
                .init_pid
                .is_some_and(|pid| self.opts.proc_root.join(pid.to_string()).exists());
            let alive = cgroup_alive || (listed.contains(id) && init_alive);
            match t.removed_at {
                None if !alive => {
                    tracing::debug!(container_id = %id, "A container was removed; it keeps attributing late events for the grace period.");
                    t.removed_at = Some(now);
                }
                Some(at) if now.duration_since(at) >= self.opts.removed_grace => {
                    forget.push(id.clone())
                }
                _ => {}
            }
        }
        for id in forget {
            if let Some(t) = inner.containers.remove(&id) {
                if let Some(cg) = t.cgroup_id {
                    inner.by_cgroup.remove(&cg);
                }
                if let Some(p) = &t.record.cgroup_path {
                    inner.by_path.remove(p);
                }
                tracing::debug!(container_id = %id, "Forgot a container removed longer than the grace period.");
            }
        }
        // Entries for forgotten containers may remain under other cgroup ids (child cgroups).
        let live: std::collections::HashSet<String> = inner.containers.keys().cloned().collect();
        inner.by_cgroup.retain(|_, c| match c {
            Class::Container(c) => live.contains(&c.container.full_id),
            Class::NotContainer { .. } => true,
        });
        let n = inner
            .containers
            .values()
            .filter(|t| t.removed_at.is_none())
            .count();
        TRACKED.set(n as i64);
        n
    }

    fn track(&self, inner: &mut Inner, rec: Record) {
        if inner.containers.len() >= self.opts.max_containers
            && !inner.containers.contains_key(&rec.full_id)
        {
            tracing::warn!(max = self.opts.max_containers, container_id = %rec.full_id, "Too many containers to track; this one will be attributed as unknown.");
            return;
        }
        let container = container_of(&rec);
        let cgroup_id = rec
            .cgroup_path
            .as_deref()
            .filter(|p| *p != "/")
            .and_then(|p| cgroup::cgroup_id_of(&self.mount, p));
        // A container left in the root cgroup (`ctr run --cgroup ""`) must not claim every
        // root-cgroup process.
        if let Some(p) = rec.cgroup_path.as_deref().filter(|p| *p != "/") {
            inner.by_path.insert(p.to_string(), rec.full_id.clone());
            if cgroup::parse_cgroup_path(p).is_empty() {
                // Its cgroups may have been cached as host before its state was read.
                inner
                    .by_cgroup
                    .retain(|_, c| !matches!(c, Class::NotContainer { root: false }));
            }
        }
        let shared = Arc::new(Known {
            container: Arc::new(container.clone()),
            fs: rec.fs_view.clone(),
        });
        if let Some(cg) = cgroup_id {
            Self::cache_insert(
                &mut inner.by_cgroup,
                self.opts.cache_capacity,
                cg,
                Class::Container(shared),
            );
        }
        tracing::debug!(container_id = %rec.full_id, runtime = rec.runtime, name = %rec.name, ?cgroup_id, "Tracking a container.");
        inner.containers.insert(
            rec.full_id.clone(),
            Tracked {
                record: rec,
                container,
                cgroup_id,
                removed_at: None,
            },
        );
        TRACKED.set(
            inner
                .containers
                .values()
                .filter(|t| t.removed_at.is_none())
                .count() as i64,
        );
    }

    fn cache_insert(map: &mut rustc_hash::FxHashMap<u64, Class>, cap: usize, id: u64, class: Class) {
        if map.len() >= cap && !map.contains_key(&id) {
            // Non-container entries are cheap to recompute; container ones also back late events.
            map.retain(|_, c| {
                matches!(c, Class::Container(_) | Class::NotContainer { root: true })
            });
            CACHE_EVICTIONS.inc();
            if map.len() >= cap {
                return;
            }
        }
        map.insert(id, class);
    }

    /// Fill `ev.container` from its cgroup id, pid and namespaces.
    pub fn attribute(&self, ev: &mut Event) -> Attribution {
        let cached = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            inner.by_cgroup.get(&ev.cgroup_id).cloned()
        };
        let class = match cached {
            Some(c) => c,
            None => match self.resolve(ev) {
                Some(c) => c,
                None => {
                    MISSES.inc();
                    return Attribution::NotYet;
                }
            },
        };
        match class {
            Class::Container(c) => {
                c.apply(ev);
                Attribution::Found
            }
            Class::NotContainer { root } => {
                if self.foreign(ev, root) {
                    MISSES.inc();
                    // A runtime we do not know by pattern may still own this cgroup.
                    if let Some(path) = self.path_of(ev.cgroup_id, ev.process.pid)
                        && path != "/"
                        && self.rescan_for_path(&path)
                        && let Some(Class::Container(c)) = self.resolve(ev)
                    {
                        c.apply(ev);
                        return Attribution::Found;
                    }
                    return Attribution::NotYet;
                }
                ev.container = Arc::clone(&self.host_container);
                Attribution::Host
            }
        }
    }

    fn foreign(&self, ev: &Event, root: bool) -> bool {
        is_foreign_namespace(
            root,
            ev.process.pidns,
            ev.process.mntns,
            self.host_pidns,
            self.host_mntns,
        )
    }

    /// After the retry hold: mark `ev` unknown, keeping what the cgroup path alone says (id and
    /// runtime from the pattern, pod uid) with `metadata_complete = false`.
    pub fn give_up(&self, ev: &mut Event) {
        let path = self.path_of(ev.cgroup_id, ev.process.pid);
        let matched = path
            .as_deref()
            .map(cgroup::parse_cgroup_path)
            .and_then(|m| m.into_iter().next());
        let mut c = Container::default();
        match (&path, matched) {
            (_, Some(m)) => {
                UNRESOLVED.with_label_values(&["unknown_container"]).inc();
                c.id = m.full_id[..12].to_string();
                c.full_id = m.full_id;
                c.runtime = m.runtime.unwrap_or("").to_string();
                c.k8s = m.pod_uid.map(|pod_uid| K8s {
                    pod_uid,
                    ..K8s::default()
                });
            }
            (Some(_), None) => {
                UNRESOLVED.with_label_values(&["foreign_namespace"]).inc();
                c.foreign_namespace = true;
            }
            (None, None) => {
                UNRESOLVED.with_label_values(&["unknown_cgroup"]).inc();
            }
        }
        c.metadata_complete = false;
        ev.container = Arc::new(c);
    }

    /// Resolve an uncached cgroup id. None = not attributable yet.
    fn resolve(&self, ev: &Event) -> Option<Class> {
        let path = self.path_of(ev.cgroup_id, ev.process.pid)?;
        if path == "/" {
            return Some(Class::NotContainer { root: true });
        }
        let matches = cgroup::parse_cgroup_path(&path);
        if matches.is_empty() {
            if let Some(c) = self.container_by_path(&path) {
                return Some(self.cache(ev.cgroup_id, Class::Container(c)));
            }
            // A runc container whose cgroupsPath follows no pattern: only its state names the
            // path. Rate-limited; the periodic rescan catches what this misses.
            if self.rescan_for_path(&path)
                && let Some(c) = self.container_by_path(&path)
            {
                return Some(self.cache(ev.cgroup_id, Class::Container(c)));
            }
            return Some(self.cache(ev.cgroup_id, Class::NotContainer { root: false }));
        }
        for m in &matches {
            if let Some(c) = self.known(&m.full_id) {
                return Some(self.cache(ev.cgroup_id, Class::Container(c)));
            }
        }
        for m in &matches {
            if let Some(rec) = runtime::lookup(&self.opts.roots, &self.opts.proc_root, &m.full_id) {
                let id = rec.full_id.clone();
                {
                    let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
                    self.track(&mut inner, rec);
                }
                if let Some(c) = self.known(&id) {
                    return Some(self.cache(ev.cgroup_id, Class::Container(c)));
                }
            }
        }
        None
    }

    fn cache(&self, cgroup_id: u64, class: Class) -> Class {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        Self::cache_insert(
            &mut inner.by_cgroup,
            self.opts.cache_capacity,
            cgroup_id,
            class.clone(),
        );
        class
    }

    fn known(&self, full_id: &str) -> Option<Arc<Known>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.containers.get(full_id).map(Known::of)
    }

    /// The container owning `path` or one of its ancestors, by recorded cgroup paths.
    fn container_by_path(&self, path: &str) -> Option<Arc<Known>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut p = path;
        loop {
            if let Some(id) = inner.by_path.get(p) {
                return inner.containers.get(id).map(Known::of);
            }
            match p.rfind('/') {
                Some(0) | None => return None,
                Some(i) => p = &p[..i],
            }
        }
    }

    /// Rescan the runtimes (rate-limited) and tell whether `path` now belongs to a container; if
    /// so, the cache entries for it were dropped so the next lookup resolves afresh.
    fn rescan_for_path(&self, path: &str) -> bool {
        {
            let mut w = self.walk.lock().unwrap_or_else(|e| e.into_inner());
            if w.last_rescan
                .is_some_and(|t| t.elapsed() < self.opts.walk_min_interval)
            {
                return false;
            }
            w.last_rescan = Some(Instant::now());
        }
        self.discover_inner(true);
        if self.container_by_path(path).is_none() {
            return false;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner
            .by_cgroup
            .retain(|_, c| !matches!(c, Class::NotContainer { root: false }));
        true
    }

    /// cgroup id -> path: /proc/<pid>/cgroup when its inode matches, else the walk cache, else a
    /// rate-limited walk.
    fn path_of(&self, cgroup_id: u64, pid: u32) -> Option<String> {
        if cgroup_id == self.root_cgroup_id {
            return Some("/".to_string());
        }
        if pid != 0
            && let Some(p) = cgroup::proc_cgroup_path(&self.opts.proc_root, pid)
            && cgroup::cgroup_id_of(&self.mount, &p) == Some(cgroup_id)
        {
            return Some(p);
        }
        let mut w = self.walk.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = w.id_to_path.get(&cgroup_id) {
            return Some(p.clone());
        }
        if w.last_walk
            .is_some_and(|t| t.elapsed() < self.opts.walk_min_interval)
        {
            return None;
        }
        w.last_walk = Some(Instant::now());
        WALKS.inc();
        w.id_to_path = cgroup::walk_tree(&self.mount, self.opts.walk_max_dirs);
        w.id_to_path.get(&cgroup_id).cloned()
    }

    /// Every tracked container, sorted by id.
    pub fn containers(&self) -> Vec<ContainerSummary> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ContainerSummary> = inner
            .containers
            .values()
            .map(|t| {
                let r = &t.record;
                ContainerSummary {
                    id: t.container.id.clone(),
                    full_id: r.full_id.clone(),
                    runtime: r.runtime.to_string(),
                    name: r.name.clone(),
                    image: r.image.clone(),
                    image_digest: r.image_digest.clone(),
                    privileged: r.privileged,
                    start_ts: r.start_ts,
                    init_pid: r.init_pid,
                    cgroup_id: t.cgroup_id,
                    cgroup_path: r.cgroup_path.clone(),
                    k8s: r.k8s.clone(),
                    removed: t.removed_at.is_some(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.full_id.cmp(&b.full_id));
        out
    }
}

/// Shape a record into the event's `Container`.
pub fn container_of(rec: &Record) -> Container {
    let image_ref = oci::parse_image_ref(&rec.image);
    let digest = if rec.image_digest.is_empty() {
        image_ref.digest
    } else {
        rec.image_digest.clone()
    };
    let short = rec.full_id.get(..12).unwrap_or(&rec.full_id).to_string();
    Container {
        id: short,
        full_id: rec.full_id.clone(),
        name: rec.name.clone(),
        runtime: rec.runtime.to_string(),
        image: rec.image.clone(),
        image_repository: image_ref.repository,
        image_tag: image_ref.tag,
        image_digest: digest,
        privileged: rec.privileged,
        start_ts: rec.start_ts,
        metadata_complete: rec.config_read,
        foreign_namespace: false,
        k8s: rec.k8s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_mismatch_rules() {
        let (hp, hm) = (4026531836, 4026531832);
        // Host process anywhere.
        assert!(!is_foreign_namespace(true, hp, hm, hp, hm));
        assert!(!is_foreign_namespace(false, hp, hm, hp, hm));
        // Root cgroup: either namespace differing is foreign.
        assert!(is_foreign_namespace(true, 1, hm, hp, hm));
        assert!(is_foreign_namespace(true, hp, 2, hp, hm));
        // Non-container cgroup: a private mount namespace is a sandboxed service, a pid namespace is not.
        assert!(!is_foreign_namespace(false, hp, 2, hp, hm));
        assert!(is_foreign_namespace(false, 1, hm, hp, hm));
        // Unknown values never accuse.
        assert!(!is_foreign_namespace(true, 0, 0, hp, hm));
        assert!(!is_foreign_namespace(true, 1, 2, 0, 0));
    }

    #[test]
    fn record_to_container() {
        let rec = Record {
            full_id: "ab".repeat(32),
            runtime: "podman",
            name: "web".into(),
            image: "localhost:5000/app:v1@sha256:aa".into(),
            config_read: true,
            ..Default::default()
        };
        let c = container_of(&rec);
        assert_eq!(c.id, "abababababab");
        assert_eq!(
            (
                c.image_repository.as_str(),
                c.image_tag.as_str(),
                c.image_digest.as_str()
            ),
            ("localhost:5000/app", "v1", "sha256:aa")
        );
        assert!(c.metadata_complete);
    }
}
