//! Load, attach and read the kernel programs: `Capture::start` hands back a bounded queue of
//! decoded events whose process fields (ancestors included) are filled from the process table.
//!
//! Backpressure: the reader never awaits a later stage. It `try_send`s into the queue and
//! counts what did not fit (`monitor_queue_dropped_events_total{stage="capture"}`); the kernel
//! counts what did not fit in the rings (`monitor_capture_kernel_dropped_events_total{type}`).
//! Urgent events (exec, fork, exit, connect, security) wake the reader; bulk events (file,
//! other socket calls) are submitted without wakeups and drained every `DRAIN_INTERVAL`.

pub mod btf;
pub mod cgroup;
pub mod compat;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::programs::trace_point::TracePointLink;
use aya::{Ebpf, EbpfLoader};
use monitor_common::{
    Config, EventType, MAP_DROPS, MAP_EVENTS_BULK, MAP_EVENTS_URGENT, MAP_KIND_ENABLED,
    MAP_SKIP_CGROUPS, MAX_KIND_ID,
};
use prometheus::IntCounterVec;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::decode::{Decoder, counter_vec};
use crate::event::Event;
use crate::proctable::{self, ProcTable};

/// Labels: stage in {capture} from this module.
pub static QUEUE_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_queue_dropped_events_total",
        "Events dropped because the next stage's queue was full, by stage",
        &["stage"],
    )
});

/// Labels: type = Falco event type name (bounded by `EventType::ALL`).
pub static KERNEL_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_capture_kernel_dropped_events_total",
        "Events the kernel programs could not write because the ring buffer was full, by event type",
        &["type"],
    )
});

const DRAIN_INTERVAL: Duration = Duration::from_millis(2);
const DRAIN_BATCH: usize = 4096;
const DROPS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub ring_bulk_bytes: u32,
    pub ring_urgent_bytes: u32,
    /// None = all kinds.
    pub kinds: Option<HashSet<EventType>>,
    /// Drop events from the host mount namespace and the cgroup2 root in the kernel.
    pub containers_only: bool,
    pub queue_capacity: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            ring_bulk_bytes: 8 << 20,
            ring_urgent_bytes: 1 << 20,
            kinds: None,
            containers_only: false,
            queue_capacity: 16384,
        }
    }
}

/// What attached and what is not covered, and why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub kernel: String,
    /// Hooks attached, as `category:name`.
    pub attached: Vec<String>,
    /// Hooks that failed, with the reason.
    pub failed: BTreeMap<String, String>,
    /// Per event type: covered, or the reason it is not.
    pub kinds: BTreeMap<String, KindCoverage>,
    /// Known blind spots of this build whatever the kernel.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KindCoverage {
    pub covered: bool,
    pub hooks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Totals since start (all event types).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CaptureStats {
    pub events: u64,
    pub kernel_dropped: u64,
    pub queue_dropped: u64,
    pub decode_errors: u64,
}

pub struct Capture {
    _ebpf: Ebpf,
    links: Vec<TracePointLink>,
    drops: Arc<PerCpuArray<MapData, u64>>,
    coverage: Coverage,
    stop: watch::Sender<bool>,
    reader: tokio::task::JoinHandle<()>,
}

/// The tracepoints behind an event type (all must attach for it to be covered).
fn hooks_for(kind: EventType) -> Vec<(&'static str, String)> {
    use EventType::*;
    match kind {
        Execve | Execveat => vec![
            ("sched", "sched_process_exec".into()),
            ("syscalls", format!("sys_enter_{}", kind.name())),
        ],
        Clone | Clone3 | Fork | Vfork => {
            vec![
                ("sched", "sched_process_fork".into()),
                ("syscalls", format!("sys_enter_{}", kind.name())),
            ]
        }
        ProcExit => vec![("sched", "sched_process_exit".into())],
        IoUringSubmit => vec![("io_uring", "io_uring_submit_req".into())],
        SockConnect | SockSendmsg => cgroup::hooks_for(kind).unwrap_or_default(),
        CompatSyscall => compat::hooks_for(kind).unwrap_or_default(),
        Sendto | Sendmsg => vec![],
        Umount2 => vec![
            ("syscalls", "sys_enter_umount".into()),
            ("syscalls", "sys_exit_umount".into()),
        ],
        k => vec![
            ("syscalls", format!("sys_enter_{}", k.name())),
            ("syscalls", format!("sys_exit_{}", k.name())),
        ],
    }
}

fn tracefs() -> &'static str {
    "/sys/kernel/tracing"
}

/// tracefs must be mounted for tracepoint ids; mount it when it is not (we are root).
fn ensure_tracefs() -> anyhow::Result<()> {
    let p = Path::new(tracefs());
    if p.join("events").exists() {
        return Ok(());
    }
    let src = std::ffi::CString::new("tracefs")?;
    let dst = std::ffi::CString::new(tracefs())?;
    // SAFETY: valid NUL-terminated strings; a plain mount with no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .context("tracefs is not mounted and mounting it on /sys/kernel/tracing failed (the monitor needs root, or CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON)");
    }
    Ok(())
}

/// Offset of a field in a tracepoint's record, from tracefs' format file.
fn tp_field_offset(category: &str, name: &str, field: &str) -> Option<u32> {
    let fmt =
        std::fs::read_to_string(format!("{}/events/{category}/{name}/format", tracefs())).ok()?;
    for line in fmt.lines() {
        let line = line.trim();
        let Some(decl) = line.strip_prefix("field:") else {
            continue;
        };
        let decl = decl.split(';').next()?;
        if decl.split_whitespace().last() == Some(field) {
            let off = line.split("offset:").nth(1)?.split(';').next()?;
            return off.trim().parse().ok();
        }
    }
    None
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// A namespace's inode from its `/proc/<pid>/ns/<type>` link (`mnt:[4026531832]`): readlink
/// works where stat is refused.
fn ns_inum(path: &str) -> anyhow::Result<u32> {
    let link = std::fs::read_link(path).with_context(|| format!("readlink {path}"))?;
    let s = link.to_string_lossy();
    s.split_once('[')
        .and_then(|(_, r)| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected namespace link {s:?}"))
}

/// The host's mount namespace: pid 1's, or (where pid 1's links are refused, as in some
/// sandboxes) our own, with a warning, since the daemon runs on the host.
fn host_mntns() -> anyhow::Result<u32> {
    match ns_inum("/proc/1/ns/mnt") {
        Ok(n) => Ok(n),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "Cannot read pid 1's mount namespace; taking the daemon's own as the host's.");
            ns_inum("/proc/self/ns/mnt")
        }
    }
}

/// The cgroup2 mount point (the one mountinfo parser lives in container::cgroup).
fn cgroup2_root() -> Option<PathBuf> {
    crate::container::cgroup::find_cgroup2_mount(Path::new("/proc/self/mountinfo")).ok()
}

fn ring_size(bytes: u32) -> u32 {
    // The kernel wants a power-of-two multiple of the page size.
    bytes.max(4096).next_power_of_two()
}

impl Capture {
    /// Must be called inside a tokio runtime. Loads, attaches, starts the reader; returns
    /// decoded events with process fields (incl. ancestors from the process table) filled,
    /// container left at its default.
    pub fn start(opts: CaptureOptions) -> anyhow::Result<(Capture, mpsc::Receiver<Event>)> {
        ensure_tracefs()?;
        let btf = btf::Btf::from_sys_fs()
            .context("reading kernel BTF (CONFIG_DEBUG_INFO_BTF is required)")?;
        let mut offsets = btf::offsets(&btf).context("finding kernel struct offsets in BTF")?;
        offsets.tp_fork_child_pid = tp_field_offset("sched", "sched_process_fork", "child_pid")
            .context("reading the sched_process_fork tracepoint format")?;
        // io_uring is optional (CONFIG_IO_URING); the hook is then absent and reported so.
        let uring = |f: &str| tp_field_offset("io_uring", "io_uring_submit_req", f).unwrap_or(0);
        offsets.tp_uring_opcode = uring("opcode");
        offsets.tp_uring_flags = uring("flags");
        offsets.tp_uring_op_str = uring("op_str");
        let config = Config {
            self_tgid: std::process::id(),
            containers_only: opts.containers_only as u32,
            host_mntns: host_mntns()?,
            _pad: 0,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(monitor_common::GLOBAL_OFFSETS, &offsets, true)
            .override_global(monitor_common::GLOBAL_CONFIG, &config, true)
            .map_max_entries(MAP_EVENTS_BULK, ring_size(opts.ring_bulk_bytes))
            .map_max_entries(MAP_EVENTS_URGENT, ring_size(opts.ring_urgent_bytes))
            .load(aya::include_bytes_aligned!(concat!(
                env!("OUT_DIR"),
                "/monitor"
            )))
            .context("loading the eBPF object")?;

        // Kinds: the process lifecycle is always on in the kernel (the process table needs it);
        // the user-space filter below drops what was not asked for.
        let wanted: HashSet<EventType> = opts
            .kinds
            .clone()
            .unwrap_or_else(|| EventType::ALL.iter().copied().collect());
        {
            let mut enabled: Array<_, u8> =
                Array::try_from(ebpf.map_mut(MAP_KIND_ENABLED).context("KIND_ENABLED map")?)?;
            for k in EventType::ALL {
                let on = wanted.contains(k)
                    || matches!(
                        k,
                        EventType::Execve
                            | EventType::Execveat
                            | EventType::Clone
                            | EventType::Clone3
                            | EventType::Fork
                            | EventType::Vfork
                            | EventType::ProcExit
                    );
                if (*k as u32) < MAX_KIND_ID {
                    enabled.set(*k as u32, &(on as u8), 0)?;
                }
            }
        }
        if opts.containers_only {
            let mut skip: BpfHashMap<_, u64, u8> =
                BpfHashMap::try_from(ebpf.map_mut(MAP_SKIP_CGROUPS).context("SKIP_CGROUPS map")?)?;
            if let Some(root) = cgroup2_root() {
                skip.insert(&ino(&root), &1, 0)?;
            }
        }

        let (mut coverage, links) = attach_all(&mut ebpf);
        if offsets.ovl_present == 0 {
            coverage.notes.push(
                "overlayfs has no BTF in vmlinux (module): is_exe_upper_layer is always false"
                    .into(),
            );
        }

        let urgent = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS_URGENT)
                .context("EVENTS_URGENT map")?,
        )?;
        let bulk = RingBuf::try_from(ebpf.take_map(MAP_EVENTS_BULK).context("EVENTS_BULK map")?)?;
        let drops: Arc<PerCpuArray<MapData, u64>> = Arc::new(PerCpuArray::try_from(
            ebpf.take_map(MAP_DROPS).context("DROPS map")?,
        )?);

        let mut table = ProcTable::new(proctable::DEFAULT_CAPACITY, proctable::DEFAULT_DEPTH);
        table.set_host_mntns(u64::from(config.host_mntns));
        table.seed_from_procfs(Path::new("/proc"));
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let reader = Reader {
            batch: Vec::new(),
            decoder: Decoder::from_system(),
            table,
            tx,
            wanted: (0..MAX_KIND_ID)
                .map(|i| wanted.iter().any(|k| *k as u32 == i))
                .collect(),
            host_scope: opts.containers_only.then(|| {
                (u64::from(config.host_mntns), cgroup2_root().map(|r| ino(&r)).unwrap_or(0))
            }),
            queue_dropped: QUEUE_DROPPED.with_label_values(&["capture"]),
            last_drops: vec![0; MAX_KIND_ID as usize],
        };
        // SAFETY: the ring owns its fd and lives inside the AsyncFd, so the fd stays open for as
        // long as it is registered.
        let urgent = unsafe { AsyncFd::register(urgent) }
            .map_err(|e| e.into_parts().1)
            .context("registering the urgent ring with the runtime")?;
        let handle = tokio::spawn(reader.run(urgent, bulk, drops.clone(), stop_rx));
        Ok((
            Capture {
                _ebpf: ebpf,
                links,
                drops,
                coverage,
                stop,
                reader: handle,
            },
            rx,
        ))
    }

    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Totals so far; kernel drops are read from the map now, not from the last metrics poll.
    pub fn stats(&self) -> CaptureStats {
        let kernel_dropped = EventType::ALL
            .iter()
            .filter_map(|k| self.drops.get(&(*k as u32), 0).ok())
            .map(|v| v.iter().sum::<u64>())
            .sum();
        let sum = |v: &IntCounterVec, labels: &[&str]| {
            labels
                .iter()
                .map(|l| v.with_label_values(&[l]).get())
                .sum::<u64>()
        };
        let names: Vec<&str> = EventType::ALL.iter().map(|k| k.name()).collect();
        CaptureStats {
            events: sum(&crate::decode::EVENTS_DECODED, &names),
            kernel_dropped,
            queue_dropped: QUEUE_DROPPED.with_label_values(&["capture"]).get(),
            decode_errors: sum(
                &crate::decode::DECODE_ERRORS,
                &["short", "version", "length", "kind", "strings"],
            ),
        }
    }

    /// Detach: stop the reader and unload the programs.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        self.reader.abort();
        detach_parallel(self.links);
        drop(self._ebpf);
    }
}

/// Load and attach every program whose tracepoint exists; report the rest.
pub fn attach_all(ebpf: &mut Ebpf) -> (Coverage, Vec<TracePointLink>) {
    let mut links = Vec::new();
    let mut cov = Coverage {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        ..Coverage::default()
    };
    for (name, prog) in ebpf.programs_mut() {
        if cgroup::is_cgroup_program(name) || compat::is_compat_program(name) {
            continue;
        }
        let category = if name.starts_with("sys_") {
            "syscalls"
        } else if name.starts_with("io_uring_") {
            "io_uring"
        } else {
            "sched"
        };
        let hook = format!("{category}:{name}");
        if !Path::new(&format!("{}/events/{category}/{name}", tracefs())).exists() {
            cov.failed
                .insert(hook, "tracepoint absent on this kernel".into());
            continue;
        }
        let r: anyhow::Result<TracePointLink> = (|| {
            let tp: &mut TracePoint = prog.try_into()?;
            tp.load()?;
            let id = tp.attach(category, name)?;
            Ok(tp.take_link(id)?)
        })();
        match r {
            Ok(link) => {
                links.push(link);
                cov.attached.push(hook)
            }
            Err(e) => {
                tracing::warn!(hook = %hook, error = %format!("{e:#}"), "A kernel program did not attach; its events are not covered.");
                cov.failed.insert(hook, format!("{e:#}"));
            }
        }
    }
    cgroup::attach(ebpf, &mut cov);
    compat::attach(ebpf, &mut cov);
    let attached: HashSet<&str> = cov.attached.iter().map(String::as_str).collect();
    for k in EventType::ALL {
        let hooks: Vec<String> = hooks_for(*k)
            .into_iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        let (covered, reason) = if hooks.is_empty() {
            (false, Some("no hook in this build".to_string()))
        } else if let Some(h) = hooks.iter().find(|h| !attached.contains(h.as_str())) {
            let why = cov
                .failed
                .get(h)
                .cloned()
                .unwrap_or_else(|| "not attached".into());
            (false, Some(format!("{h}: {why}")))
        } else {
            (true, None)
        };
        cov.kinds.insert(
            k.name().to_string(),
            KindCoverage {
                covered,
                hooks,
                reason,
            },
        );
    }
    cov.notes = vec![
        "io_uring submissions bypass the syscall tracepoints: they are reported as io_uring_submit with the opcode, without per-opcode arguments or paths".into(),
        compat::NOTE.into(),
        "paths of name-based calls (unlink, rename, mkdir, chmod ...) are the user string joined onto the kernel-resolved dirfd/cwd (path_source=user)".into(),
    ];
    (cov, links)
}

/// Detach every link, several at a time: each tracepoint detach waits for an RCU grace period
/// (~80 ms on a small VM), so one by one 120 of them take ~10 s, while concurrent detaches share
/// grace periods.
fn detach_parallel(links: Vec<TracePointLink>) {
    const THREADS: usize = 16;
    let mut buckets: Vec<Vec<TracePointLink>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (i, l) in links.into_iter().enumerate() {
        buckets[i % THREADS].push(l);
    }
    std::thread::scope(|s| {
        for b in buckets {
            s.spawn(move || drop(b));
        }
    });
}

struct Reader {
    /// Reused between drains: one allocation for the life of the reader.
    batch: Vec<Event>,
    decoder: Decoder,
    table: ProcTable,
    tx: mpsc::Sender<Event>,
    /// By kind id: forward to the pipeline (an index, not a SipHash set lookup per event).
    wanted: Vec<bool>,
    /// Containers-only mode: (host mount namespace, cgroup2 root id). The kernel lets the
    /// process lifecycle of host processes through for the process table; they stop here.
    host_scope: Option<(u64, u64)>,
    queue_dropped: prometheus::IntCounter,
    last_drops: Vec<u64>,
}

impl Reader {
    async fn run(
        mut self,
        mut urgent: AsyncFd<RingBuf<MapData>>,
        mut bulk: RingBuf<MapData>,
        drops: Arc<PerCpuArray<MapData, u64>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut drops_tick = tokio::time::interval(DROPS_INTERVAL);
        loop {
            tokio::select! {
                guard = urgent.readable_mut() => {
                    match guard {
                        Ok(mut g) => {
                            let more = self.drain(&mut bulk, g.get_inner_mut());
                            // Leave it ready when a batch filled: select! comes straight back.
                            if !more {
                                g.clear_ready();
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "Polling the urgent ring failed; capture stops.");
                            return;
                        }
                    }
                }
                _ = tick.tick() => {
                    // Bounded batches, urgent between them, yielding in between: a storm on
                    // the bulk ring never starves exec/connect events or the stop signal.
                    loop {
                        let more = self.drain(&mut bulk, urgent.get_mut());
                        if !more {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                _ = drops_tick.tick() => self.read_drops(&drops),
                _ = stop.changed() => return,
            }
            if self.tx.is_closed() {
                return;
            }
        }
    }

    /// Read up to DRAIN_BATCH records from each ring, then complete and forward them in
    /// kernel-time order; true when a ring filled its batch (more may be waiting).
    ///
    /// The process table must see a process' exec before the opens that follow it, or the
    /// open is blamed on the program the process ran before (and an exit before the events
    /// that preceded it would lose the process). The rings are separate, so the order is
    /// restored here: bulk is read first, and since every record read from it was submitted
    /// before that read, the exec/fork/exit that preceded it is already in the urgent ring and
    /// lands in the same batch; sorting by timestamp then puts it first.
    fn drain(&mut self, bulk: &mut RingBuf<MapData>, urgent: &mut RingBuf<MapData>) -> bool {
        let mut batch = std::mem::take(&mut self.batch);
        let mut more = false;
        for ring in [bulk, urgent] {
            let mut read = 0;
            while read < DRAIN_BATCH {
                let Some(item) = ring.next() else { break };
                read += 1;
                if let Ok(ev) = self.decoder.decode(&item) {
                    batch.push(ev);
                }
            }
            more |= read == DRAIN_BATCH;
        }
        // Stable: records with equal timestamps keep their ring order.
        batch.sort_by_key(|ev| ev.ts);
        for mut ev in batch.drain(..) {
            self.complete(&mut ev);
            if !self.wanted.get(ev.kind as usize).copied().unwrap_or(false) {
                continue;
            }
            if let Some((host_mntns, root_cgroup)) = self.host_scope
                && (ev.process.mntns == host_mntns || ev.cgroup_id == root_cgroup)
            {
                continue;
            }
            if self.tx.try_send(ev).is_err() {
                // A cached handle: under overload this path runs per event.
                self.queue_dropped.inc();
            }
        }
        self.batch = batch;
        more
    }

    /// procfs fallback for what the kernel could not read, then the process table.
    fn complete(&mut self, ev: &mut Event) {
        if matches!(ev.kind, EventType::Execve | EventType::Execveat)
            && ev.process.exepath.is_empty()
            && let Ok(p) = std::fs::read_link(format!("/proc/{}/exe", ev.process.pid))
        {
            ev.process.exepath =
                crate::decode::escape_bytes(p.as_os_str().as_encoded_bytes(), 4096);
        }
        self.table.observe(ev);
    }

    fn read_drops(&mut self, drops: &PerCpuArray<MapData, u64>) {
        for k in EventType::ALL {
            let i = *k as u32;
            let Ok(vals) = drops.get(&i, 0) else { continue };
            let total: u64 = vals.iter().sum();
            let last = &mut self.last_drops[i as usize];
            if total > *last {
                KERNEL_DROPPED
                    .with_label_values(&[k.name()])
                    .inc_by(total - *last);
                *last = total;
            }
        }
    }
}

/// Kernel drops so far, by type name (for benches and doctor).
pub fn kernel_drops_total() -> u64 {
    EventType::ALL
        .iter()
        .map(|k| KERNEL_DROPPED.with_label_values(&[k.name()]).get())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hooked_kind_names_its_tracepoints() {
        assert_eq!(hooks_for(EventType::Umount2)[0].1, "sys_enter_umount");
        assert_eq!(
            hooks_for(EventType::Openat),
            vec![
                ("syscalls", "sys_enter_openat".into()),
                ("syscalls", "sys_exit_openat".into())
            ]
        );
        assert_eq!(
            hooks_for(EventType::ProcExit),
            vec![("sched", "sched_process_exit".into())]
        );
        assert!(hooks_for(EventType::Sendto).is_empty());
    }

    #[test]
    fn namespace_links_parse() {
        assert!(ns_inum("/proc/self/ns/mnt").unwrap() > 0);
        assert!(ns_inum("/proc/self/no-such").is_err());
    }

    #[test]
    fn ring_sizes_round_to_a_power_of_two_of_pages() {
        assert_eq!(ring_size(0), 4096);
        assert_eq!(ring_size(5000), 8192);
        assert_eq!(ring_size(1 << 20), 1 << 20);
    }

    #[test]
    fn tracepoint_format_offsets() {
        if !Path::new("/sys/kernel/tracing/events/sched/sched_process_fork/format").exists() {
            eprintln!("SKIPPED: tracefs not mounted");
            return;
        }
        let off = tp_field_offset("sched", "sched_process_fork", "child_pid").unwrap();
        assert!(off >= 8, "{off}");
        assert_eq!(
            tp_field_offset("sched", "sched_process_fork", "no_such_field"),
            None
        );
    }
}
