//! The memory budget on the real daemon (root, real kernel): `monitor run` with a small budget
//! under an open storm stays under the budget (peak resident set, start-up included), exports
//! the budget metrics and the shed counter, and a budget the rings cannot fit is refused before
//! anything loads.
//!
//! The daemon sizes its queues from the budget so that a storm fills them (and drops, counted)
//! below the high-water mark: a storm cannot push it across on purpose, which is the point. The
//! shedding path is exercised against a real process' memory in monitor/tests/ops_budget.rs.
//!
//! Run: `cargo test -p monitor-tests --test memory -- --test-threads=1`

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monitor_tests::containers::TempDir;
use monitor_tests::harness::{MonitorProcess, monitor_bin, skip_unless_root, workspace_root};
use monitor_tests::prom::http_get;

const MIB: u64 = 1 << 20;

/// `name` or `name{labels}` exactly as exposed; the sample's value.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sum of every sample of `name` (all label sets).
fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `VmRSS` / `VmHWM` (peak) of `pid` from /proc/<pid>/status, in bytes.
fn vm(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// openat+close of one file in `threads` threads for `dur`; returns the opens done.
fn open_storm(threads: usize, dur: Duration) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let path = std::ffi::CString::new("/etc/hostname").unwrap();
    let until = Instant::now() + dur;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let done = done.clone();
            let path = &path;
            s.spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    for _ in 0..1000 {
                        // SAFETY: a valid C string; the fd is closed at once.
                        let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
                        if fd >= 0 {
                            unsafe { libc::close(fd) };
                        }
                    }
                    n += 1000;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    done.load(Ordering::Relaxed)
}

#[test]
fn event_storm_stays_under_a_small_budget() {
    if skip_unless_root() {
        return;
    }
    let budget = 160 * MIB;
    let dir = TempDir::new("memory").unwrap();
    let cfg = dir.0.join("monitor.yaml");
    std::fs::write(
        &cfg,
        format!(
            "rules: {{ paths: [{rules}] }}\nsinks: [{{ type: file, path: {alerts} }}]\nhttp: {{ address: \"127.0.0.1:0\" }}\nmemory: {{ budget_bytes: {budget} }}\n",
            rules = workspace_root().join("rules").display(),
            alerts = dir.0.join("alerts.json").display(),
        ),
    )
    .unwrap();
    let m = MonitorProcess::spawn(&["run", "--config", cfg.to_str().unwrap()], Some("Monitor ready.")).unwrap();
    let pid = m.child.id();
    let url = format!("http://{}/metrics", m.metrics_address().unwrap());

    let before = http_get(&url).unwrap();
    assert_eq!(sample(&before, "monitor_memory_budget_bytes"), Some(budget as f64));
    assert_eq!(
        sample(&before, "monitor_memory_high_water_bytes"),
        Some((budget as f64 * 0.9).floor())
    );
    let planned_queues = sample(&before, "monitor_memory_planned_bytes{part=\"event_queues\"}").unwrap();
    let planned_total = total(&before, "monitor_memory_planned_bytes");
    assert!(
        planned_queues > 0.0 && planned_total <= budget as f64 * 0.9 * 0.8,
        "{planned_total}"
    );

    // Sample the resident set all along, besides the kernel's own peak (VmHWM).
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = vm(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let opens = open_storm(2, Duration::from_secs(10));
    // The daemon works through what the storm left in its rings and queues, and exports the
    // kernel's drop counters once a second: poll until the storm is accounted for and the
    // pressure is back under critical (a loaded machine takes longer than an idle one), and
    // keep sampling the resident set meanwhile.
    let accounted = |m: &str| {
        let decoded = sample(m, "monitor_capture_events_total{type=\"openat\"}").unwrap_or(0.0)
            - sample(&before, "monitor_capture_events_total{type=\"openat\"}").unwrap_or(0.0);
        let dropped = sample(m, "monitor_queue_dropped_events_total{stage=\"capture\"}").unwrap_or(0.0)
            + total(m, "monitor_capture_kernel_dropped_events_total");
        decoded + dropped > opens as f64 / 2.0 && sample(m, "monitor_memory_pressure").is_some_and(|p| p < 2.0)
    };
    let settled = Instant::now();
    while !accounted(&http_get(&url).unwrap()) && settled.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let after = http_get(&url).unwrap();
    let hwm = vm(pid, "VmHWM:").unwrap();
    let sampled = peak.load(Ordering::Relaxed);
    let resident = sample(&after, "monitor_memory_resident_bytes").unwrap();
    let dropped_capture = sample(&after, "monitor_queue_dropped_events_total{stage=\"capture\"}").unwrap_or(0.0);
    let dropped_kernel = total(&after, "monitor_capture_kernel_dropped_events_total");
    let shed = sample(&after, "monitor_queue_dropped_events_total{stage=\"memory_budget\"}");
    let pressure = sample(&after, "monitor_memory_pressure");
    eprintln!(
        "opens {opens}; peak RSS {} MiB sampled, {} MiB VmHWM (start-up included), last watchdog sample {} MiB; budget {} MiB; planned {} MiB; drops: capture queue {dropped_capture}, kernel {dropped_kernel}, memory budget {shed:?}; pressure {pressure:?}",
        sampled / MIB,
        hwm / MIB,
        resident as u64 / MIB,
        budget / MIB,
        planned_total as u64 / MIB,
    );
    assert!(opens > 100_000, "the storm did not run: {opens} opens");
    assert!(hwm < budget, "peak RSS {hwm} reached the budget {budget}");
    assert!(sampled < budget && sampled > 0);
    assert!(resident > 0.0 && resident < budget as f64);
    // The shed counter is exported (at 0 when the watchdog never had to shed) and pressure is
    // back to normal once the storm is over.
    assert!(
        shed.is_some(),
        "monitor_queue_dropped_events_total{{stage=\"memory_budget\"}} is not exported"
    );
    assert!(pressure.is_some_and(|p| p < 2.0), "{pressure:?}");
    // The daemon was loaded: it decoded the storm's events or dropped (and counted) what did
    // not fit its bounded queues and rings, instead of holding it in memory.
    let decoded = sample(&after, "monitor_capture_events_total{type=\"openat\"}").unwrap_or(0.0)
        - sample(&before, "monitor_capture_events_total{type=\"openat\"}").unwrap_or(0.0);
    assert!(
        decoded + dropped_capture + dropped_kernel > opens as f64 / 2.0,
        "{opens} opens, {decoded} openat decoded, {} dropped: the storm did not reach the daemon",
        dropped_capture + dropped_kernel
    );
    let st = m.stop().unwrap();
    assert!(st.success(), "{st:?}");
}

#[test]
fn a_budget_the_rings_cannot_fit_is_refused_at_start() {
    // Validation happens before anything loads: no root needed.
    let dir = TempDir::new("memory-refused").unwrap();
    let cfg = dir.0.join("monitor.yaml");
    std::fs::write(
        &cfg,
        "memory: { budget_bytes: 96MiB }\ncapture: { ring_buffer_bytes: 32MiB }\n",
    )
    .unwrap();
    let out = Command::new(monitor_bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid config: key `memory.budget_bytes`: 96 MiB cannot hold the fixed parts: baseline 48 MiB, kernel rings 66 MiB (capture.ring_buffer_bytes 32 MiB plus the 1.0 MiB urgent ring, each mapped twice)"),
        "{err}"
    );
    assert!(
        err.contains("use at least ") && err.contains("or a smaller capture.ring_buffer_bytes"),
        "{err}"
    );
}
