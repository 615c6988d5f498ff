//! The memory budget (`memory.budget_bytes`): the daemon plans its bounded structures from it
//! at start-up and sheds load, counted and alerted, when its resident memory nears it.
//!
//! Planning ([`MemoryPlan::derive`]). What the daemon holds is bounded everywhere; the bounds
//! that dominate are turned into bytes with the per-item costs below and fitted into
//! `PLAN_RATIO` of the high-water mark (the rest is headroom for what the estimates miss:
//! allocator fragmentation, rule-engine scratch, sink buffers):
//! - fixed: the baseline (code, rules, runtime), the kernel ring buffers as mapped into the
//!   process, and the reader's decode batch. A budget these do not fit is refused, naming the
//!   parts and the smallest budget that would do; so is one whose high-water mark is below the
//!   start-up peak (kernel BTF parsed while the programs load), or every start would shed;
//! - explicit: `queues.events` / `queues.alerts` / `rate_limit.max_keys` when the config sets
//!   them; they must fit too, or the config is refused naming that key;
//! - derived: everything else shares what is left by fixed weights, each clamped between a
//!   floor (below it the part stops doing its job) and a ceiling (more would not help).
//!
//! Enforcement ([`Watchdog`], [`spawn_watchdog`]). The resident set size (`/proc/self/statm`) is
//! sampled every `SAMPLE_INTERVAL`. At or above the high-water mark (`memory.high_water_ratio`
//! of the budget, 0.9 by default) the pressure is [`Pressure::High`] and the pipeline drops
//! bulk events (file, side-door and non-connect network events: the kinds the kernel puts on
//! the bulk ring) before rule evaluation; at or above the budget itself it is
//! [`Pressure::Critical`] and every event is dropped until memory is back under the budget.
//! Queues then drain at the speed of a counter increment, which is what frees their memory.
//! Shedding stops once memory is below the low-water mark (`LOW_WATER_GAP` under the high
//! one), so the state does not flap. Every shed event is counted in
//! `monitor_queue_dropped_events_total{stage="memory_budget"}`, which also raises the
//! rate-limited overload alert ("Monitor internal: syscall event drop") in the alert stream.
//!
//! The estimates are deliberately round numbers checked against measurements (see the
//! constants); the tier-2 test `tests/tests/memory.rs` runs the real daemon under an event
//! storm with a small budget and checks that it stays under it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, IntGaugeVec, register_int_counter, register_int_gauge, register_int_gauge_vec};

use monitor_common::Family;

use crate::event::{Event, EventType};

const MIB: u64 = 1 << 20;

/// The daemon's resident memory with empty queues, kernel rings excluded: executable and
/// libraries (file pages), the shipped rules compiled, the tokio runtime, the HTTP server and a
/// process table seeded from a small host's /proc. Measured with the debug build of `monitor
/// run` on Linux 6.18: 42-48 MiB steady (24 MiB anonymous, the rest file pages of the 18 MiB
/// of code touched). Start-up holds more for a moment: [`STARTUP_PEAK_BYTES`].
pub const BASELINE_BYTES: u64 = 48 * MIB;
/// How much more than [`BASELINE_BYTES`] the daemon holds while it loads and attaches: measured
/// 56-59 MiB for about 2 s around attach (kernel BTF parsed, programs loaded, /proc seeded, the
/// freed memory returned to the system a moment later), before any event is queued; rounded
/// up with room for a busier host.
pub const STARTUP_PEAK_BYTES: u64 = 72 * MIB;
/// How many times a ring's size shows in the resident set. The kernel maps a BPF ring buffer's
/// data pages twice in a row (so a record that wraps reads contiguously) and all of them are
/// present from mmap, so each data page counts twice (measured: file-backed RSS grows by
/// 24 MiB when the 8 + 1 MiB rings are mapped).
pub const RING_RSS_FACTOR: u64 = 2;
/// One event in flight: the owned [`Event`] plus its heap (strings, argv, the args map) as
/// measured on an exec/open storm, about 300 bytes on average; a shared ancestor chain costs
/// nothing extra per event.
pub const EVENT_HEAP_BYTES: u64 = 512;
/// The reader decodes up to this many records per drain (both rings) before forwarding them.
pub const READER_BATCH_EVENTS: u64 = 8192;
/// `queues.events` bounds three places: the capture queue, the events the attribution stage
/// holds, and its output queue.
pub const EVENT_QUEUES: u64 = 3;
/// One alert: output line, output fields, process ancestry, tags; shared by the sinks (`Arc`),
/// but a stuck sink keeps its own queue's worth alive.
pub const ALERT_BYTES: u64 = 4096;
/// One process-table entry: strings, argv, cached ancestor chain, map slot.
pub const PROC_ENTRY_BYTES: u64 = 1024;
/// One cgroup-id cache entry of the attributor.
pub const CGROUP_ENTRY_BYTES: u64 = 512;
/// One tracked container (ids, names, image, Kubernetes labels).
pub const CONTAINER_BYTES: u64 = 4096;
/// One rate-limit key: the bucket keeps the first suppressed alert as the summary's template.
pub const RATE_LIMIT_KEY_BYTES: u64 = ALERT_BYTES + 256;

/// What the plan fills of the high-water mark; the rest is headroom for the estimates' error.
pub const PLAN_RATIO: f64 = 0.8;
/// Shedding stops this fraction of the budget below the high-water mark.
pub const LOW_WATER_GAP: f64 = 0.1;
/// How often the watchdog samples the resident set.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// `memory.high_water_ratio` bounds: below 0.5 the plan would waste half the budget, above 0.99
/// there is no time to react before the budget is crossed.
pub const HIGH_WATER_RANGE: (f64, f64) = (0.5, 0.99);

/// Part names, the `part` label of `monitor_memory_planned_bytes` (a bounded set).
pub const PARTS: &[&str] = &[
    "baseline",
    "rings",
    "reader_batch",
    "event_queues",
    "alert_queues",
    "proctable",
    "cgroup_cache",
    "containers",
    "rate_limit",
];

/// A derived part: share of what is left, floor and ceiling (in items), bytes per item.
struct Elastic {
    part: &'static str,
    weight: u64,
    min: u64,
    max: u64,
    item_bytes: u64,
}

/// What the plan needs to know from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInputs {
    pub budget_bytes: u64,
    pub high_water_ratio: f64,
    /// Bulk and urgent ring sizes as the kernel rounds them (powers of two of pages).
    pub ring_bytes: [u64; 2],
    /// Sinks configured (the implicit stdout sink counts as one).
    pub sinks: usize,
    pub events: Option<usize>,
    pub alerts: Option<usize>,
    pub rate_limit_keys: Option<usize>,
}

/// The sizes the daemon runs with, and what each part may take.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub budget_bytes: u64,
    pub high_water_bytes: u64,
    pub low_water_bytes: u64,
    /// What the parts below add up to at most.
    pub planned_bytes: u64,
    /// `queues.events`: capture queue, attribution hold and attribution output, each.
    pub event_queue: usize,
    /// `queues.alerts`: each sink's queue.
    pub alert_queue: usize,
    /// Each sink's queue in bytes (`alert_queue` alerts of the planned size): alerts are as
    /// large as the command lines and paths in them, so the count alone bounds nothing.
    pub alert_queue_bytes: u64,
    /// For `ProcTable::new` (the capture layer's process table).
    pub proctable_capacity: usize,
    /// For `AttributorOptions::cache_capacity`.
    pub cgroup_cache_capacity: usize,
    /// For `AttributorOptions::max_containers`.
    pub max_containers: usize,
    /// `rate_limit.max_keys`.
    pub rate_limit_keys: usize,
    /// Bytes per part (keys from [`PARTS`]).
    pub parts: BTreeMap<&'static str, u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// `key` is the config key to change.
    #[error("{message}")]
    DoesNotFit { key: &'static str, message: String },
}

impl PlanError {
    pub fn key(&self) -> &'static str {
        match self {
            PlanError::DoesNotFit { key, .. } => key,
        }
    }
}

fn mib(b: u64) -> String {
    let m = b as f64 / MIB as f64;
    if m >= 10.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// `bytes` rounded up to whole MiB, as a config value.
fn mib_ceil(bytes: u64) -> String {
    format!("{}MiB", bytes.div_ceil(MIB))
}

pub fn event_bytes() -> u64 {
    std::mem::size_of::<Event>() as u64 + EVENT_HEAP_BYTES
}

impl MemoryPlan {
    pub fn derive(i: &PlanInputs) -> Result<MemoryPlan, PlanError> {
        let budget = i.budget_bytes;
        let high_water = (budget as f64 * i.high_water_ratio) as u64;
        let low_water = (budget as f64 * (i.high_water_ratio - LOW_WATER_GAP)) as u64;
        let target = (high_water as f64 * PLAN_RATIO) as u64;
        // The smallest budget whose target holds `need` bytes.
        let budget_for = |need: u64| (need as f64 / (i.high_water_ratio * PLAN_RATIO)).ceil() as u64;
        let ev = event_bytes();
        let sinks = i.sinks.max(1) as u64;

        let mut parts: BTreeMap<&'static str, u64> = BTreeMap::new();
        parts.insert("baseline", BASELINE_BYTES);
        parts.insert("rings", (i.ring_bytes[0] + i.ring_bytes[1]) * RING_RSS_FACTOR);
        parts.insert("reader_batch", READER_BATCH_EVENTS * ev);
        let fixed: u64 = parts.values().sum();

        let elastic = [
            Elastic {
                part: "event_queues",
                weight: 45,
                min: 1024,
                max: 65_536,
                item_bytes: ev * EVENT_QUEUES,
            },
            Elastic {
                part: "proctable",
                weight: 25,
                min: 4096,
                max: 65_536,
                item_bytes: PROC_ENTRY_BYTES,
            },
            Elastic {
                part: "alert_queues",
                weight: 8,
                min: 64,
                max: 4096,
                item_bytes: ALERT_BYTES * sinks,
            },
            Elastic {
                part: "rate_limit",
                weight: 10,
                min: 256,
                max: 10_000,
                item_bytes: RATE_LIMIT_KEY_BYTES,
            },
            Elastic {
                part: "cgroup_cache",
                weight: 6,
                min: 1024,
                max: 16_384,
                item_bytes: CGROUP_ENTRY_BYTES,
            },
            Elastic {
                part: "containers",
                weight: 6,
                min: 256,
                max: 8192,
                item_bytes: CONTAINER_BYTES,
            },
        ];
        let explicit = |part: &str| match part {
            "event_queues" => i.events.map(|n| (n as u64, "queues.events")),
            "alert_queues" => i.alerts.map(|n| (n as u64, "queues.alerts")),
            "rate_limit" => i.rate_limit_keys.map(|n| (n as u64, "rate_limit.max_keys")),
            _ => None,
        };
        let floors: u64 = elastic
            .iter()
            .filter(|e| explicit(e.part).is_none())
            .map(|e| e.min * e.item_bytes)
            .sum();
        // The start-up peak comes before any queue fills; it must stay under the high-water
        // mark, or every start would begin by shedding.
        let startup = BASELINE_BYTES + STARTUP_PEAK_BYTES + parts["rings"];
        if fixed + floors > target || startup > high_water {
            let min_budget = budget_for(fixed + floors).max((startup as f64 / i.high_water_ratio).ceil() as u64);
            return Err(PlanError::DoesNotFit {
                key: "memory.budget_bytes",
                message: format!(
                    "{} cannot hold the fixed parts: baseline {}, kernel rings {} (capture.ring_buffer_bytes {} plus the {} urgent ring, each mapped twice), reader batch {}, at least {} for queues and caches (all within {:.0}% of the {:.0}% high-water mark), and the start-up peak of {} more than the baseline (under the high-water mark); use at least {} or a smaller capture.ring_buffer_bytes",
                    mib(budget),
                    mib(parts["baseline"]),
                    mib(parts["rings"]),
                    mib(i.ring_bytes[0]),
                    mib(i.ring_bytes[1]),
                    mib(parts["reader_batch"]),
                    mib(floors),
                    PLAN_RATIO * 100.0,
                    i.high_water_ratio * 100.0,
                    mib(STARTUP_PEAK_BYTES),
                    mib_ceil(min_budget),
                ),
            });
        }
        // Explicit sizes next, in a fixed order so the error names the first that overflows.
        let mut used = fixed + floors;
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        for e in &elastic {
            if let Some((n, key)) = explicit(e.part) {
                let bytes = n * e.item_bytes;
                if used + bytes > target {
                    let room = target.saturating_sub(used) / e.item_bytes;
                    return Err(PlanError::DoesNotFit {
                        key,
                        message: format!(
                            "{n} needs about {} ({} each) and memory.budget_bytes {} leaves room for {room}; lower it, or leave it unset to derive it from the budget, or raise memory.budget_bytes to at least {}",
                            mib(bytes),
                            e.item_bytes,
                            mib(budget),
                            mib_ceil(budget_for(used + bytes)),
                        ),
                    });
                }
                used += bytes;
                counts.insert(e.part, n);
                parts.insert(e.part, bytes);
            }
        }
        // What is left (floors already counted) is shared by weight among the derived parts.
        let spare = target - used;
        let weights: u64 = elastic
            .iter()
            .filter(|e| !counts.contains_key(e.part))
            .map(|e| e.weight)
            .sum();
        for e in &elastic {
            if counts.contains_key(e.part) {
                continue;
            }
            let share = spare.checked_mul(e.weight).map_or(0, |x| x / weights.max(1));
            let n = (e.min + share / e.item_bytes).min(e.max);
            counts.insert(e.part, n);
            parts.insert(e.part, n * e.item_bytes);
        }
        let count = |p: &str| usize::try_from(counts[p]).unwrap_or(usize::MAX);
        Ok(MemoryPlan {
            budget_bytes: budget,
            high_water_bytes: high_water,
            low_water_bytes: low_water,
            planned_bytes: parts.values().sum(),
            event_queue: count("event_queues"),
            alert_queue: count("alert_queues"),
            alert_queue_bytes: counts["alert_queues"] * ALERT_BYTES,
            proctable_capacity: count("proctable"),
            cgroup_cache_capacity: count("cgroup_cache"),
            max_containers: count("containers"),
            rate_limit_keys: count("rate_limit"),
            parts,
        })
    }

    /// Log the plan and export it (`monitor_memory_budget_bytes`, `..._high_water_bytes`,
    /// `monitor_memory_planned_bytes{part}`).
    pub fn publish(&self) {
        BUDGET.set(clamp_i64(self.budget_bytes));
        HIGH_WATER.set(clamp_i64(self.high_water_bytes));
        for (part, bytes) in &self.parts {
            PLANNED.with_label_values(&[part]).set(clamp_i64(*bytes));
        }
        tracing::info!(
            budget_bytes = self.budget_bytes,
            high_water_bytes = self.high_water_bytes,
            planned_bytes = self.planned_bytes,
            event_queue = self.event_queue,
            alert_queue = self.alert_queue,
            alert_queue_bytes = self.alert_queue_bytes,
            proctable_capacity = self.proctable_capacity,
            cgroup_cache_capacity = self.cgroup_cache_capacity,
            max_containers = self.max_containers,
            rate_limit_keys = self.rate_limit_keys,
            "Memory budget planned."
        );
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Metrics

static BUDGET: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_memory_budget_bytes",
        "The configured memory budget (memory.budget_bytes)."
    )
    .expect("metric registers once")
});
static HIGH_WATER: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_memory_high_water_bytes",
        "Resident memory at which the daemon starts shedding bulk events."
    )
    .expect("metric registers once")
});
static RESIDENT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_memory_resident_bytes",
        "The daemon's resident memory as last sampled by the budget watchdog."
    )
    .expect("metric registers once")
});
/// 0 normal, 1 shedding bulk events, 2 shedding every event.
static PRESSURE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_memory_pressure",
        "Memory pressure: 0 normal, 1 above the high-water mark (bulk events shed), 2 above the budget (all events shed)."
    )
    .expect("metric registers once")
});
static EPISODES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "monitor_memory_shed_episodes_total",
        "Times resident memory crossed the high-water mark and shedding started."
    )
    .expect("metric registers once")
});
/// `part`: one of [`PARTS`].
static PLANNED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "monitor_memory_planned_bytes",
        "Bytes the memory plan allows each part at most (estimates; see docs/METRICS.md).",
        &["part"]
    )
    .expect("metric registers once")
});

/// Register this module's metrics so they are exported from the first scrape.
pub fn init_metrics() {
    LazyLock::force(&BUDGET);
    LazyLock::force(&HIGH_WATER);
    LazyLock::force(&RESIDENT);
    LazyLock::force(&PRESSURE);
    LazyLock::force(&EPISODES);
    LazyLock::force(&PLANNED);
    shed_counter().inc_by(0);
}

fn shed_counter() -> IntCounter {
    crate::bpf::QUEUE_DROPPED.with_label_values(&["memory_budget"])
}

// ---------------------------------------------------------------------------------------------
// Enforcement

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Pressure {
    Normal = 0,
    /// At or above the high-water mark: bulk events are shed.
    High = 1,
    /// At or above the budget: every event is shed.
    Critical = 2,
}

impl Pressure {
    fn from_u8(v: u8) -> Pressure {
        match v {
            0 => Pressure::Normal,
            1 => Pressure::High,
            _ => Pressure::Critical,
        }
    }
}

/// The current pressure, shared between the watchdog (writer) and the stages that shed
/// (readers: one relaxed atomic load per event).
#[derive(Clone, Debug, Default)]
pub struct PressureHandle(Arc<AtomicU8>);

impl PressureHandle {
    pub fn get(&self) -> Pressure {
        Pressure::from_u8(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, p: Pressure) {
        self.0.store(p as u8, Ordering::Relaxed);
    }
}

/// Whether an event of this kind is bulk: the kinds the kernel puts on the bulk ring (file,
/// side-door, and network except connect). Shed first because they are the volume; the
/// process lifecycle, exec, connect and security events are what most rules key on.
pub fn is_bulk(kind: EventType) -> bool {
    match kind.family() {
        Family::File | Family::SideDoor => true,
        Family::Network => kind != EventType::Connect,
        Family::Process | Family::Security => false,
    }
}

/// The pipeline's side of shedding: decide per event, count what is dropped.
#[derive(Clone, Debug)]
pub struct Shedder {
    pressure: PressureHandle,
    dropped: IntCounter,
}

impl Shedder {
    pub fn new(pressure: PressureHandle) -> Shedder {
        Shedder {
            pressure,
            dropped: shed_counter(),
        }
    }

    /// False when the event must be dropped for memory (and counts it).
    #[inline]
    pub fn admit(&self, kind: EventType) -> bool {
        let keep = match self.pressure.get() {
            Pressure::Normal => true,
            Pressure::High => !is_bulk(kind),
            Pressure::Critical => false,
        };
        if !keep {
            self.dropped.inc();
        }
        keep
    }
}

/// The watermark logic, apart from sampling so it can be tested on any numbers.
#[derive(Clone, Debug)]
pub struct Watchdog {
    pub high_water: u64,
    pub low_water: u64,
    pub budget: u64,
    state: Pressure,
}

impl Watchdog {
    pub fn new(plan: &MemoryPlan) -> Watchdog {
        Watchdog::with_marks(plan.high_water_bytes, plan.low_water_bytes, plan.budget_bytes)
    }

    /// Explicit marks (`low <= high <= budget`), for tests that drive another process' memory.
    pub fn with_marks(high_water: u64, low_water: u64, budget: u64) -> Watchdog {
        Watchdog {
            high_water,
            low_water: low_water.min(high_water),
            budget: budget.max(high_water),
            state: Pressure::Normal,
        }
    }

    pub fn state(&self) -> Pressure {
        self.state
    }

    /// The pressure after a sample of `rss` bytes. Between the low- and high-water marks the
    /// previous state holds (hysteresis), except that Critical ends as soon as the budget is
    /// no longer exceeded.
    pub fn observe(&mut self, rss: u64) -> Pressure {
        self.state = if rss >= self.budget {
            Pressure::Critical
        } else if rss >= self.high_water {
            Pressure::High
        } else if rss < self.low_water {
            Pressure::Normal
        } else {
            self.state.min(Pressure::High)
        };
        self.state
    }
}

/// Resident set size of `pid` (None: this process) from `<proc>/<pid>/statm`, in bytes.
pub fn resident_bytes(proc_root: &Path, pid: Option<u32>) -> std::io::Result<u64> {
    let dir = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
    let text = std::fs::read_to_string(proc_root.join(dir).join("statm"))?;
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected statm {text:?}")))?;
    Ok(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Sample this process' RSS every [`SAMPLE_INTERVAL`] on the current tokio runtime, publish it
/// and set `pressure`. Transitions are logged and counted. Ends when `stop` turns true.
pub fn spawn_watchdog(
    plan: &MemoryPlan,
    pressure: PressureHandle,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_watchdog_for(Watchdog::new(plan), None, pressure, stop)
}

/// [`spawn_watchdog`] for the process `pid` (None: this one) with the given marks. The
/// daemon watches itself; tests watch a child whose memory they control.
pub fn spawn_watchdog_for(
    mut wd: Watchdog,
    pid: Option<u32>,
    pressure: PressureHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let rss = match resident_bytes(Path::new("/proc"), pid) {
                Ok(r) => r,
                Err(e) => {
                    // Without a sample the last state holds; say so once.
                    if !warned {
                        tracing::warn!(error = %e, "Cannot read this process' resident memory; the memory budget is not enforced until it can.");
                        warned = true;
                    }
                    continue;
                }
            };
            RESIDENT.set(clamp_i64(rss));
            let before = wd.state();
            let now = wd.observe(rss);
            if now == before {
                continue;
            }
            pressure.set(now);
            PRESSURE.set(now as i64);
            let dropped = shed_counter().get();
            match now {
                Pressure::Normal => tracing::info!(
                    resident_bytes = rss,
                    low_water_bytes = wd.low_water,
                    shed_events = dropped,
                    "Memory back under the low-water mark; no longer shedding events."
                ),
                Pressure::High => {
                    if before == Pressure::Normal {
                        EPISODES.inc();
                    }
                    tracing::warn!(
                        resident_bytes = rss,
                        high_water_bytes = wd.high_water,
                        "Memory above the high-water mark; dropping bulk events (file, side-door, network) until it falls."
                    )
                }
                Pressure::Critical => {
                    if before == Pressure::Normal {
                        EPISODES.inc();
                    }
                    tracing::error!(
                        resident_bytes = rss,
                        budget_bytes = wd.budget,
                        "Memory above the budget; dropping every event until it falls."
                    )
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(budget_mib: u64) -> PlanInputs {
        PlanInputs {
            budget_bytes: budget_mib * MIB,
            high_water_ratio: 0.9,
            ring_bytes: [8 * MIB, MIB],
            sinks: 1,
            events: None,
            alerts: None,
            rate_limit_keys: None,
        }
    }

    #[test]
    fn plan_fits_under_the_high_water_mark_and_follows_the_budget() {
        let small = MemoryPlan::derive(&inputs(160)).unwrap();
        let big = MemoryPlan::derive(&inputs(512)).unwrap();
        for p in [&small, &big] {
            assert!(
                p.planned_bytes <= (p.high_water_bytes as f64 * PLAN_RATIO) as u64,
                "{p:?}"
            );
            assert_eq!(p.parts.values().sum::<u64>(), p.planned_bytes);
            assert!(p.parts.keys().all(|k| PARTS.contains(k)), "{p:?}");
            assert_eq!(p.parts["rings"], 18 * MIB);
            assert_eq!(
                p.parts["event_queues"],
                p.event_queue as u64 * event_bytes() * EVENT_QUEUES
            );
            assert_eq!(p.parts["alert_queues"], p.alert_queue_bytes);
        }
        assert_eq!(small.high_water_bytes, 160 * MIB * 9 / 10);
        assert_eq!(small.low_water_bytes, (160.0 * MIB as f64 * 0.8) as u64);
        assert!(small.event_queue < big.event_queue, "{small:?} {big:?}");
        assert!(small.proctable_capacity < big.proctable_capacity);
        assert!(small.event_queue >= 1024 && small.proctable_capacity >= 4096);
        // A large budget stops at the ceilings instead of growing the queues without end.
        let huge = MemoryPlan::derive(&inputs(64 * 1024)).unwrap();
        assert_eq!(
            (
                huge.event_queue,
                huge.proctable_capacity,
                huge.alert_queue,
                huge.rate_limit_keys,
                huge.cgroup_cache_capacity,
                huge.max_containers
            ),
            (65_536, 65_536, 4096, 10_000, 16_384, 8192)
        );
    }

    #[test]
    fn the_default_budget_keeps_the_process_table_at_its_ceiling() {
        // 512 MiB (the default budget): the process table keeps its historical size; the
        // event queue and the rate limiter are what give way.
        let p = MemoryPlan::derive(&inputs(512)).unwrap();
        assert_eq!(p.proctable_capacity, 65_536);
        assert!(p.event_queue > 30_000 && p.rate_limit_keys > 5000, "{p:?}");
        assert_eq!(p.alert_queue, 4096);
    }

    #[test]
    fn a_budget_the_fixed_parts_do_not_fit_is_refused_with_the_minimum() {
        let e = MemoryPlan::derive(&inputs(64)).unwrap_err();
        assert_eq!(e.key(), "memory.budget_bytes");
        let msg = e.to_string();
        assert!(msg.starts_with("64 MiB cannot hold the fixed parts: baseline 48 MiB, kernel rings 18 MiB (capture.ring_buffer_bytes 8.0 MiB plus the 1.0 MiB urgent ring, each mapped twice), reader batch"), "{msg}");
        // The minimum it names is accepted, one MiB less is not.
        let min: u64 = msg
            .split("use at least ")
            .nth(1)
            .unwrap()
            .split("MiB")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        MemoryPlan::derive(&inputs(min)).unwrap();
        assert!(MemoryPlan::derive(&inputs(min - 1)).is_err());
        // Smaller rings make the same budget fit.
        let mut i = inputs(min - 1);
        i.ring_bytes = [MIB, MIB];
        MemoryPlan::derive(&i).unwrap();
    }

    #[test]
    fn explicit_sizes_are_kept_or_refused_naming_their_key() {
        let mut i = inputs(256);
        i.events = Some(2000);
        i.alerts = Some(100);
        i.rate_limit_keys = Some(300);
        let p = MemoryPlan::derive(&i).unwrap();
        assert_eq!((p.event_queue, p.alert_queue, p.rate_limit_keys), (2000, 100, 300));
        // The room they leave goes to the derived parts.
        let derived = MemoryPlan::derive(&inputs(256)).unwrap();
        assert!(p.proctable_capacity >= derived.proctable_capacity);
        i.events = Some(1_000_000);
        let e = MemoryPlan::derive(&i).unwrap_err();
        assert_eq!(e.key(), "queues.events");
        assert!(e.to_string().starts_with("1000000 needs about "), "{e}");
        assert!(
            e.to_string().contains("leave it unset to derive it from the budget"),
            "{e}"
        );
        // Alerts are per sink: five sinks cost five times the same queue.
        let mut i = inputs(160);
        i.alerts = Some(2000);
        MemoryPlan::derive(&i).unwrap();
        i.sinks = 5;
        assert_eq!(MemoryPlan::derive(&i).unwrap_err().key(), "queues.alerts");
    }

    #[test]
    fn watchdog_hysteresis() {
        let plan = MemoryPlan::derive(&inputs(200)).unwrap();
        let mut w = Watchdog::new(&plan);
        let (lo, hi, b) = (w.low_water, w.high_water, w.budget);
        assert_eq!((hi, lo, b), (180 * MIB, 160 * MIB, 200 * MIB));
        assert_eq!(w.observe(lo + 1), Pressure::Normal);
        assert_eq!(w.observe(hi), Pressure::High);
        // Between the marks: stays High until under the low one.
        assert_eq!(w.observe(lo + 1), Pressure::High);
        assert_eq!(w.observe(lo - 1), Pressure::Normal);
        assert_eq!(w.observe(hi - 1), Pressure::Normal);
        assert_eq!(w.observe(b), Pressure::Critical);
        // Critical ends as soon as the budget is no longer exceeded.
        assert_eq!(w.observe(b - 1), Pressure::High);
        assert_eq!(w.observe(b), Pressure::Critical);
        assert_eq!(w.observe(lo + 1), Pressure::High);
        assert_eq!(w.observe(0), Pressure::Normal);
    }

    #[test]
    fn shedder_drops_bulk_then_everything_and_counts() {
        let h = PressureHandle::default();
        let s = Shedder::new(h.clone());
        let before = shed_counter().get();
        assert!(s.admit(EventType::Openat) && s.admit(EventType::Execve));
        h.set(Pressure::High);
        assert!(!s.admit(EventType::Openat));
        assert!(s.admit(EventType::Execve));
        assert!(s.admit(EventType::Connect));
        h.set(Pressure::Critical);
        assert!(!s.admit(EventType::Execve));
        // Other tests share the counter: at least ours are in it.
        assert!(shed_counter().get() >= before + 2);
    }

    #[test]
    fn bulk_kinds_match_the_kernels_bulk_ring() {
        assert!(is_bulk(EventType::Openat));
        assert!(!is_bulk(EventType::Connect));
        assert!(!is_bulk(EventType::Execve));
        assert!(!is_bulk(EventType::ProcExit));
        assert!(is_bulk(EventType::Accept4));
    }

    #[test]
    fn statm_parses_for_this_process_and_a_missing_one() {
        let rss = resident_bytes(Path::new("/proc"), None).unwrap();
        assert!(rss > MIB, "{rss}");
        let me = resident_bytes(Path::new("/proc"), Some(std::process::id())).unwrap();
        assert!(me > MIB);
        assert!(resident_bytes(Path::new("/proc"), Some(u32::MAX)).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("self")).unwrap();
        std::fs::write(dir.path().join("self/statm"), "garbage").unwrap();
        let e = resident_bytes(dir.path(), None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
