//! The memory-budget watchdog against a real process' resident memory: a child (this test
//! binary re-run as a memory holder) grows and frees memory on command, and the watchdog that
//! `monitor run` uses for itself watches it. The daemon sizes its queues so that an event storm
//! stays under the high-water mark (tests/tests/memory.rs shows that), so a storm cannot push
//! the real daemon across it on purpose; here the memory is driven directly.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use monitor::alert::{DROP_RULE, Dispatcher, RateLimitConfig, Redactor};
use monitor::budget::{self, Pressure, PressureHandle, Shedder, Watchdog};
use monitor::event::EventType;
use monitor::metrics::counter_value;
use monitor::sink::{SinkConfig, Sinks};

const MIB: u64 = 1 << 20;
const HOLDER_ENV: &str = "MONITOR_OPS_BUDGET_HOLDER";

/// Not a test when run normally; in the child it holds memory: `grow N` allocates and touches N
/// MiB, `free N` releases the last N MiB grown, `rss` prints the resident bytes; every command
/// is answered with a line.
#[test]
fn memory_holder() {
    if std::env::var_os(HOLDER_ENV).is_none() {
        return;
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|n| n.parse::<usize>().ok())) {
            (Some("grow"), Some(n)) => {
                for _ in 0..n {
                    // Touch every page so it is resident, not just reserved.
                    held.push(vec![1u8; MIB as usize]);
                }
            }
            (Some("free"), Some(n)) => {
                for _ in 0..n.min(held.len()) {
                    held.pop();
                }
                held.shrink_to_fit();
            }
            _ => {}
        }
        let rss = budget::resident_bytes(Path::new("/proc"), None).unwrap();
        writeln!(out, "ok {rss}").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0);
}

struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn start() -> Holder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "memory_holder", "--nocapture", "--test-threads=1", "-q"])
            .env(HOLDER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut h = Holder { child, stdin, stdout };
        h.cmd("rss");
        h
    }

    /// Send a command and return the child's RSS after it.
    fn cmd(&mut self, c: &str) -> u64 {
        writeln!(self.stdin, "{c}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "the memory holder exited"
            );
            // The test harness prints its own lines around ours.
            if let Some(rss) = line.trim().strip_prefix("ok ") {
                return rss.parse().unwrap();
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until the watchdog has moved to `want`: the handle the shedder reads and the exported
/// gauge both (the watchdog task sets one, then the other, on another thread). A slow CI run
/// may take seconds for a sample; a minute only passes on a real failure.
async fn wait_pressure(h: &PressureHandle, want: Pressure, what: &str) {
    let t = Instant::now();
    while h.get() != want || gauge("monitor_memory_pressure") != want as i64 as f64 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what}: pressure stayed {:?} (gauge {}), wanted {want:?}",
            h.get(),
            gauge("monitor_memory_pressure")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn gauge(name: &str) -> f64 {
    counter_value(name, &[]).unwrap_or(-1.0)
}

fn shed_total() -> f64 {
    counter_value("monitor_queue_dropped_events_total", &[("stage", "memory_budget")]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_follows_a_real_process_memory_and_sheds_counted() {
    monitor::metrics::init();
    let mut holder = Holder::start();
    let pid = holder.child.id();
    let idle = holder.cmd("rss");
    // Marks relative to what the child holds now.
    let (high, low, limit) = (idle + 96 * MIB, idle + 48 * MIB, idle + 192 * MIB);
    let pressure = PressureHandle::default();
    let shedder = Shedder::new(pressure.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let episodes0 = gauge("monitor_memory_shed_episodes_total");
    let task = budget::spawn_watchdog_for(
        Watchdog::with_marks(high, low, limit),
        Some(pid),
        pressure.clone(),
        stop_rx,
    );

    // Under the high-water mark nothing is shed.
    let rss = holder.cmd("grow 40");
    assert!(rss < high, "{rss} {high}");
    tokio::time::sleep(budget::SAMPLE_INTERVAL * 3).await;
    assert_eq!(pressure.get(), Pressure::Normal);
    assert!(shedder.admit(EventType::Openat));

    // Above it: bulk events are dropped and counted, the rest go on.
    let rss = holder.cmd("grow 80");
    assert!(rss >= high && rss < limit, "{rss} {high} {limit}");
    wait_pressure(&pressure, Pressure::High, "above the high-water mark").await;
    assert_eq!(gauge("monitor_memory_pressure"), 1.0);
    let resident = gauge("monitor_memory_resident_bytes");
    assert!(resident >= high as f64, "resident gauge {resident}");
    let shed0 = shed_total();
    assert!(!shedder.admit(EventType::Openat));
    assert!(!shedder.admit(EventType::Unlinkat));
    assert!(shedder.admit(EventType::Execve));
    assert!(shedder.admit(EventType::Connect));
    assert!(shed_total() >= shed0 + 2.0);

    // Above the budget: everything is dropped.
    let rss = holder.cmd("grow 100");
    assert!(rss >= limit, "{rss} {limit}");
    wait_pressure(&pressure, Pressure::Critical, "above the budget").await;
    assert_eq!(gauge("monitor_memory_pressure"), 2.0);
    assert!(!shedder.admit(EventType::Execve));

    // Back under the budget but above the low-water mark: bulk shedding only (hysteresis).
    let rss = holder.cmd("free 150");
    assert!(rss < limit && rss >= low, "{rss} {low} {limit}");
    wait_pressure(&pressure, Pressure::High, "under the budget, above the low-water mark").await;
    assert!(shedder.admit(EventType::Execve));
    assert!(!shedder.admit(EventType::Openat));

    // Under the low-water mark: normal.
    let rss = holder.cmd("free 70");
    assert!(rss < low, "{rss} {low}");
    wait_pressure(&pressure, Pressure::Normal, "under the low-water mark").await;
    assert_eq!(gauge("monitor_memory_pressure"), 0.0);
    assert!(shedder.admit(EventType::Openat));
    // One episode: Normal -> High -> Critical -> High -> Normal.
    assert_eq!(gauge("monitor_memory_shed_episodes_total") - episodes0, 1.0);

    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// The shed events reach the alert stream the way every drop does: the overload alert carries
/// them under their stage, `memory_budget`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_events_are_reported_by_the_drop_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let sinks = Sinks::start(
        &[SinkConfig::File {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        }],
        16,
    )
    .unwrap();
    let mut d = Dispatcher::new(
        Redactor::disabled(),
        RateLimitConfig::default(),
        Duration::from_secs(10),
        sinks,
        "node-a".to_string(),
    );
    let drops = [("memory_budget".to_string(), 1234u64)].into_iter().collect();
    d.report_drops(&drops, Instant::now());
    d.shutdown(Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let a: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(a["rule"], DROP_RULE);
    assert_eq!(a["output_fields"]["n_drops_memory_budget"], 1234);
    assert!(a["output"].as_str().unwrap().contains("memory_budget=1234"), "{a}");
}
