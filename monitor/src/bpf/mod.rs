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
pub mod dirs;

use std::collections::{BTreeMap, HashSet, VecDeque};
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
/// Seconds of ring-fill peaks the gauge reports the highest of: Prometheus' usual scrape
/// interval, so a burst between two scrapes is not lost.
const FILL_WINDOW: usize = 15;
/// How long events wait for records that may precede them while a ring still holds unread
/// records (see `Reader::drain`). A record is in flight for microseconds; this covers a vCPU
/// descheduled mid-write, at the cost of that much latency while the rings are busy.
const IN_FLIGHT_HOLD_NS: u64 = 10_000_000;

/// CLOCK_BOOTTIME, the clock of bpf_ktime_get_boot_ns.
fn boottime_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub ring_bulk_bytes: u32,
    pub ring_urgent_bytes: u32,
    /// None = all kinds.
    pub kinds: Option<HashSet<EventType>>,
    /// Drop events from the host mount namespace and the cgroup2 root in the kernel.
    pub containers_only: bool,
    pub queue_capacity: usize,
    /// Processes the table keeps (least recently seen evicted first); from the memory plan.
    pub proctable_capacity: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            ring_bulk_bytes: 8 << 20,
            ring_urgent_bytes: 1 << 20,
            kinds: None,
            containers_only: false,
            queue_capacity: 16384,
            proctable_capacity: proctable::DEFAULT_CAPACITY,
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
    /// Never aborted: after `stop` the reader forwards what the rings hold, then ends.
    _reader: tokio::task::JoinHandle<()>,
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

/// The host's mount namespace, as the kernel programs compare it (a u32 inode number).
fn host_mntns() -> anyhow::Result<u32> {
    let n = crate::nsfs::host_ns_inode(Path::new("/proc"), "mnt").context("the host's mount namespace")?;
    u32::try_from(n).context("mount namespace inode above u32")
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
    pub fn start(opts: CaptureOptions) -> anyhow::Result<(Capture, mpsc::Receiver<Box<Event>>)> {
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
        offsets.tp_uring_req = uring("req");
        offsets.tp_exit_group_dead = tp_field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0);
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
        // Typing a chmod's target needs the directory events even when no rule asks for them.
        let types_chmod = wanted.contains(&EventType::Chmod) || wanted.contains(&EventType::Fchmodat);
        {
            let mut enabled: Array<_, u8> =
                Array::try_from(ebpf.map_mut(MAP_KIND_ENABLED).context("KIND_ENABLED map")?)?;
            for k in EventType::ALL {
                let on = wanted.contains(k)
                    || (types_chmod && dirs::FEED.contains(k))
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

        let (mut coverage, links) = attach_all(&mut ebpf, &btf);
        if offsets.ovl_present == 0 {
            coverage.notes.push(
                "overlayfs has no BTF in vmlinux (module): is_exe_upper_layer is always false"
                    .into(),
            );
        }

        let urgent_map = ebpf.take_map(MAP_EVENTS_URGENT).context("EVENTS_URGENT map")?;
        let bulk_map = ebpf.take_map(MAP_EVENTS_BULK).context("EVENTS_BULK map")?;
        let levels = [
            RingLevel::map("bulk", &bulk_map, ring_size(opts.ring_bulk_bytes)),
            RingLevel::map("urgent", &urgent_map, ring_size(opts.ring_urgent_bytes)),
        ];
        let urgent = RingBuf::try_from(urgent_map)?;
        let bulk = RingBuf::try_from(bulk_map)?;
        let drops: Arc<PerCpuArray<MapData, u64>> = Arc::new(PerCpuArray::try_from(
            ebpf.take_map(MAP_DROPS).context("DROPS map")?,
        )?);

        let mut table = ProcTable::new(opts.proctable_capacity.max(1), proctable::DEFAULT_DEPTH);
        table.set_host_mntns(u64::from(config.host_mntns));
        table.seed_from_procfs(Path::new("/proc"));
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let reader = Reader {
            pending: VecDeque::new(),
            fresh: Vec::new(),
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
            levels,
            peak_fill: [VecDeque::from([0.0]), VecDeque::from([0.0])],
            next_num: 1,
            dirs: dirs::DirMemory::new(dirs::DEFAULT_CAPACITY),
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
                _reader: handle,
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

    /// Detach the programs, then let the reader forward what the rings still hold and stop;
    /// the event stream ends when it has.
    pub fn shutdown(self) {
        detach_parallel(self.links);
        let _ = self.stop.send(true);
        drop(self._ebpf);
    }
}

/// Load and attach every program whose tracepoint exists; report the rest.
pub fn attach_all(ebpf: &mut Ebpf, btf: &btf::Btf) -> (Coverage, Vec<TracePointLink>) {
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
    compat::attach(ebpf, btf, &mut cov);
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
    let uring_note = if btf.offset("io_open.filename").is_ok() {
        "io_uring submissions bypass the syscall tracepoints: they are reported as io_uring_submit with the opcode; OPENAT/OPENAT2, UNLINKAT and RENAMEAT also with their paths and flags (the file rules see them), other opcodes without their paths or arguments (connects and sends are seen by the cgroup hooks)"
    } else {
        "io_uring submissions bypass the syscall tracepoints: they are reported as io_uring_submit with the opcode, without per-opcode arguments or paths (io_uring's request types are not in this kernel's BTF)"
    };
    cov.notes = vec![
        uring_note.into(),
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
    /// Events read and not yet forwarded, in kernel-time order (see `drain`).
    pending: VecDeque<Box<Event>>,
    /// The records of one drain, before they join `pending`; reused between drains. Boxed
    /// here already: every later hop (ordering queue, channels, stage) then moves a pointer.
    #[allow(clippy::vec_box)]
    fresh: Vec<Box<Event>>,
    decoder: Decoder,
    table: ProcTable,
    tx: mpsc::Sender<Box<Event>>,
    /// By kind id: forward to the pipeline (an index, not a SipHash set lookup per event).
    wanted: Vec<bool>,
    /// Containers-only mode: (host mount namespace, cgroup2 root id). The kernel lets the
    /// process lifecycle of host processes through for the process table; they stop here.
    host_scope: Option<(u64, u64)>,
    queue_dropped: prometheus::IntCounter,
    last_drops: Vec<u64>,
    /// Fill gauges of [bulk, urgent]; absent when a ring could not be mapped for reading.
    levels: [Option<RingLevel>; 2],
    /// Highest fill seen at a drain in each of the last FILL_WINDOW seconds, per ring.
    peak_fill: [VecDeque<f64>; 2],
    /// `evt.num` of the next event forwarded (see `number`).
    next_num: u64,
    /// Directories the stream saw created, to type chmods by name (see `dirs`).
    dirs: dirs::DirMemory,
}

/// Fill level of a BPF ring buffer from its producer and consumer positions, which the kernel
/// exposes in the ring map's first two pages (the consumer page, then the producer page; both
/// may be mapped read-only beside aya's own mapping). Two loads per sample, no syscall.
struct RingLevel {
    name: &'static str,
    pages: std::ptr::NonNull<libc::c_void>,
    page: usize,
    data_bytes: u64,
}

// SAFETY: the mapping is read-only and only read with atomic loads.
unsafe impl Send for RingLevel {}

impl RingLevel {
    fn map(name: &'static str, map: &aya::maps::Map, data_bytes: u32) -> Option<RingLevel> {
        use std::os::fd::{AsFd, AsRawFd};
        let aya::maps::Map::RingBuf(data) = map else { return None };
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        // SAFETY: a fresh read-only shared mapping of the ring map's two position pages; the
        // kernel keeps it valid until munmap, whatever happens to the fd.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            tracing::warn!(ring = name, error = %std::io::Error::last_os_error(), "Cannot map the ring's positions; its fill level is not exported.");
            return None;
        }
        Some(RingLevel {
            name,
            pages: std::ptr::NonNull::new(addr)?,
            page,
            data_bytes: u64::from(data_bytes),
        })
    }

    /// Records reserved and not yet consumed: committed ones past a batch limit, or one still
    /// being written (which hides those committed after it).
    fn unread(&self) -> bool {
        let (consumer, producer) = self.positions();
        producer > consumer
    }

    fn positions(&self) -> (u64, u64) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let base = self.pages.as_ptr().cast::<u8>();
        // SAFETY: both positions are u64s at the start of their pages, inside the mapping.
        unsafe {
            (
                (*base.cast::<AtomicU64>()).load(Ordering::Acquire),
                (*base.add(self.page).cast::<AtomicU64>()).load(Ordering::Acquire),
            )
        }
    }

    /// Bytes written and not yet consumed, as a fraction of the ring.
    fn fill(&self) -> f64 {
        let (consumer, producer) = self.positions();
        producer.saturating_sub(consumer) as f64 / self.data_bytes.max(1) as f64
    }
}

impl Drop for RingLevel {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.pages.as_ptr(), 2 * self.page) };
    }
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
        // One tick per second of wall time: after a stall, a burst of catch-up ticks would push
        // the peak the reader is about to find out of the fill window.
        drops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                guard = urgent.readable_mut() => {
                    match guard {
                        Ok(mut g) => {
                            let more = self.drain(&mut bulk, g.get_inner_mut(), false);
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
                        let more = self.drain(&mut bulk, urgent.get_mut(), false);
                        if !more {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                _ = drops_tick.tick() => {
                    self.read_drops(&drops);
                    self.report_fill();
                }
                _ = stop.changed() => {
                    // The programs are detached by now: what the rings hold is all there is.
                    while self.drain(&mut bulk, urgent.get_mut(), true) {}
                    return;
                }
            }
            if self.tx.is_closed() {
                return;
            }
        }
    }

    /// Read up to DRAIN_BATCH records from each ring, then complete and forward, in
    /// kernel-time order, those whose predecessors must have been read; true when a ring
    /// filled its batch (more may be waiting). `flush` forwards everything (shutdown).
    ///
    /// The process table must see a process' fork and exec before the events that follow
    /// them, and its exit after them, or events are blamed on the wrong program or lose
    /// their process. The two rings are separate, so the order is restored here by sorting
    /// on the kernel timestamp. That is only safe once every record that could precede an
    /// event read now has been read too. A causal predecessor (the fork before the child's
    /// first call, an exec before the opens that follow) is committed before its successor
    /// starts, so it is already in its ring, but a ring is read in reservation order and a
    /// record reserved earlier by another CPU and not yet committed hides everything behind
    /// it (on a VM, a vCPU can be descheduled mid-copy for milliseconds). So when either
    /// ring still holds records after the reads (in flight, or past the batch limit), only
    /// events older than IN_FLIGHT_HOLD are forwarded and the rest wait for the next drain;
    /// when both rings are empty, all of them go. Found by the live rules test: an httpd
    /// child's dup2 was evaluated before the fork that created it.
    fn drain(&mut self, bulk: &mut RingBuf<MapData>, urgent: &mut RingBuf<MapData>, flush: bool) -> bool {
        // Sampled as the reader arrives, when the rings are fullest.
        for (level, peaks) in self.levels.iter().zip(self.peak_fill.iter_mut()) {
            if let (Some(l), Some(peak)) = (level, peaks.back_mut()) {
                *peak = peak.max(l.fill());
            }
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        let mut more = false;
        // A ring left holding records past the batch limit holds records reserved after the
        // newest one read from it: nothing newer than that (less the hold, for records
        // stamped before they were reserved) may leave yet, or a later record of the other
        // ring (a procexit) would overtake them once the reader has fallen behind.
        let mut backlog_cap = u64::MAX;
        for ring in [bulk, urgent] {
            let mut read = 0;
            let mut newest = 0;
            while read < DRAIN_BATCH {
                let Some(item) = ring.next() else { break };
                read += 1;
                if let Ok(ev) = self.decoder.decode(&item) {
                    newest = newest.max(ev.ts);
                    fresh.push(Box::new(ev));
                }
            }
            if read == DRAIN_BATCH {
                more = true;
                backlog_cap = backlog_cap.min(newest.saturating_sub(IN_FLIGHT_HOLD_NS));
            }
        }
        // Stable: records with equal timestamps keep their ring order. Held events are
        // already in order; the new ones usually all come after them, and only otherwise is
        // the whole queue sorted again.
        fresh.sort_by_key(|ev| ev.ts);
        let in_order = match (self.pending.back(), fresh.first()) {
            (Some(last), Some(first)) => last.ts <= first.ts,
            _ => true,
        };
        self.pending.extend(fresh.drain(..));
        self.fresh = fresh;
        if !in_order {
            self.pending.make_contiguous().sort_by_key(|ev| ev.ts);
        }
        let unread = self.levels.iter().flatten().any(|l| l.unread());
        let horizon = if flush || !unread {
            u64::MAX
        } else {
            self.decoder.boot_to_epoch(boottime_ns().saturating_sub(IN_FLIGHT_HOLD_NS))
        };
        self.forward(horizon.min(backlog_cap));
        more
    }

    /// Complete, filter, number and send the held events older than `horizon`, oldest first.
    fn forward(&mut self, horizon: u64) {
        while self.pending.front().is_some_and(|ev| ev.ts < horizon) {
            let Some(mut ev) = self.pending.pop_front() else { break };
            self.complete(&mut ev);
            if !self.wanted.get(ev.kind as usize).copied().unwrap_or(false) {
                continue;
            }
            if let Some((host_mntns, root_cgroup)) = self.host_scope
                && (ev.process.mntns == host_mntns || ev.cgroup_id == root_cgroup)
            {
                continue;
            }
            self.number(&mut ev);
            if self.tx.try_send(ev).is_err() {
                // A cached handle: under overload this path runs per event.
                self.queue_dropped.inc();
            }
        }
    }

    /// Falco's `evt.num`: numbered here, as events leave in kernel-time order, so that the
    /// numbers follow that order; events the reader filters out take no number, and one the
    /// pipeline queue refuses leaves a gap. Starts at 1: Falco's `never_true` is `evt.num=0`.
    fn number(&mut self, ev: &mut Event) {
        ev.num = self.next_num;
        self.next_num += 1;
    }

    /// procfs fallback for what the kernel could not read, then the process table.
    fn complete(&mut self, ev: &mut Event) {
        if matches!(ev.kind, EventType::Execve | EventType::Execveat)
            && ev.process.exepath.is_empty()
            && let Ok(p) = std::fs::read_link(format!("/proc/{}/exe", ev.process.pid))
        {
            ev.process.exepath =
                crate::decode::escape_bytes(p.as_os_str().as_encoded_bytes(), 4096).into();
        }
        self.dirs.complete(ev);
        self.table.observe(ev);
    }

    /// Export each ring's highest fill over the last FILL_WINDOW seconds (called once a
    /// second), so that a burst shows in a scrape taken up to a scrape interval later.
    fn report_fill(&mut self) {
        for (level, peaks) in self.levels.iter().zip(self.peak_fill.iter_mut()) {
            if let Some(l) = level {
                crate::metrics::set_ring_fill(l.name, peaks.iter().copied().fold(0.0, f64::max));
            }
            if peaks.len() >= FILL_WINDOW {
                peaks.pop_front();
            }
            peaks.push_back(0.0);
        }
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

    /// A reader with no rings: `forward` is driven by filling `pending` by hand.
    fn reader(queue: usize, containers_only: bool) -> (Reader, mpsc::Receiver<Box<Event>>) {
        let (tx, rx) = mpsc::channel(queue);
        let r = Reader {
            pending: VecDeque::new(),
            fresh: Vec::new(),
            decoder: Decoder::new(0, "test-boot".into()),
            table: ProcTable::new(100, 8),
            tx,
            wanted: (0..MAX_KIND_ID).map(|i| i != EventType::Clone as u32).collect(),
            host_scope: containers_only.then_some((111, 1)),
            queue_dropped: QUEUE_DROPPED.with_label_values(&["test"]),
            last_drops: vec![0; MAX_KIND_ID as usize],
            levels: [None, None],
            peak_fill: [VecDeque::from([0.0]), VecDeque::from([0.0])],
            next_num: 1,
            dirs: dirs::DirMemory::new(8),
        };
        (r, rx)
    }

    fn held(ts: u64, kind: EventType, pid: u32, mntns: u64) -> Box<Event> {
        let mut ev = Box::new(Event {
            ts,
            kind,
            ..Event::default()
        });
        ev.process.pid = pid;
        ev.process.mntns = mntns;
        ev.cgroup_id = 5;
        ev
    }

    fn nums(rx: &mut mpsc::Receiver<Box<Event>>) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.ts, e.num))
            .collect()
    }

    #[test]
    fn forwarded_events_are_numbered_from_one_in_time_order() {
        let (mut r, mut rx) = reader(16, true);
        r.pending.extend([
            held(10, EventType::Openat, 1, 222),
            held(20, EventType::Clone, 1, 222),
            held(30, EventType::Openat, 2, 111),
            held(40, EventType::Execve, 1, 222),
            held(50, EventType::Openat, 1, 222),
        ]);
        // Held back: only what is older than the horizon leaves, and numbering resumes
        // where it stopped. Unwanted kinds (clone) and host processes in containers-only mode
        // take no number.
        r.forward(45);
        assert_eq!(nums(&mut rx), [(10, 1), (40, 2)]);
        r.forward(u64::MAX);
        assert_eq!(nums(&mut rx), [(50, 3)]);
        assert!(r.pending.is_empty());
    }

    #[test]
    fn an_event_the_queue_refuses_leaves_a_gap_in_the_numbers() {
        let (mut r, mut rx) = reader(2, false);
        r.pending.extend((1..=3).map(|i| held(i, EventType::Openat, 7, 222)));
        r.forward(u64::MAX);
        assert_eq!(nums(&mut rx), [(1, 1), (2, 2)]);
        r.pending.push_back(held(4, EventType::Openat, 7, 222));
        r.forward(u64::MAX);
        assert_eq!(nums(&mut rx), [(4, 4)]);
    }

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
        assert_eq!(hooks_for(EventType::Sendto)[1].1, "sys_exit_sendto");
    }

    #[test]
    fn namespace_links_parse() {
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
