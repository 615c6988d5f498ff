//! Event order under a backlog (root): the reader must not let a later record of one ring
//! overtake records still waiting in the other.
//!
//! The reader (monitor/src/bpf/mod.rs, `Reader::drain`) reads at most DRAIN_BATCH (4096)
//! records from each ring per drain and forwards, in kernel-time order, what is older than
//! `now - IN_FLIGHT_HOLD` while a ring still holds records. Records left in the bulk ring past
//! the batch limit were older than that horizon too once the reader had fallen more than
//! 10 ms behind, so a later urgent record (here the workload's procexit) went first: the
//! process table saw the exit before the process' last opens (all 10000 of them, found by
//! this test). The horizon is now capped, for a ring that filled its batch, at the newest
//! kernel time read from it minus the hold.

use std::time::Duration;

use monitor_tests::capture::{int_at, str_at};
use monitor_tests::harness::{MonitorProcess, TestCgroup, skip_unless_root};
use serde_json::Value;

/// Opens by the workload: two batches and more, well under what the 8 MiB bulk ring holds
/// (about 30k open records) so that nothing is dropped.
const OPENS: usize = 10_000;

#[test]
fn a_backlog_past_the_batch_limit_keeps_kernel_time_order() {
    if skip_unless_root() {
        return;
    }
    let cg = TestCgroup::new("ordering").expect("test cgroup");
    let cgid = cg.id.to_string();
    let mut m = MonitorProcess::spawn(
        &["events", "--cgroup", &cgid, "--kind", "openat", "--kind", "procexit"],
        Some("Capture ready"),
    )
    .expect("monitor starts");
    let daemon = m.child.id() as libc::pid_t;
    // The reader falls behind: stopped while the workload fills the bulk ring.
    // SAFETY: signals to our own child.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGSTOP) }, 0);
    let code = format!(
        "import os\nfor _ in range({OPENS}): os.close(os.open('/etc/hostname', os.O_RDONLY))\n"
    );
    let mut child = cg.command("python3").args(["-c", &code]).spawn().expect("workload");
    let pid = i64::from(child.id());
    assert!(child.wait().expect("wait").success());
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGCONT) }, 0);

    let mine = |v: &Value| int_at(v, "process.pid") == Some(pid);
    let is_open =
        |v: &Value| mine(v) && str_at(v, "type") == Some("openat") && str_at(v, "fd.path") == Some("/etc/hostname");
    // Every open and the exit, in whatever order they come (a minute is only spent on a loss).
    let count = |m: &MonitorProcess| {
        m.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| is_open(v))
            .count()
    };
    let exit = m.wait_for(Duration::from_secs(60), |v| mine(v) && str_at(v, "type") == Some("procexit"));
    assert!(exit.is_some(), "no procexit for the workload (pid {pid})");
    let start = std::time::Instant::now();
    while count(&m) < OPENS && start.elapsed() < Duration::from_secs(60) {
        let _ = m.wait_for(Duration::from_millis(200), |_| false);
    }
    let events: Vec<Value> = m
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| mine(v))
        .collect();
    let exit_at = events
        .iter()
        .position(|v| str_at(v, "type") == Some("procexit"))
        .expect("procexit seen");
    let opens_after_exit = events[exit_at..].iter().filter(|v| is_open(v)).count();
    let ts: Vec<i64> = events.iter().filter_map(|v| int_at(v, "ts")).collect();
    let backwards = ts.windows(2).filter(|w| w[1] < w[0]).count();
    let seen = count(&m);
    eprintln!("{seen} opens seen of {OPENS}; {opens_after_exit} came after the procexit; {backwards} steps back in time");
    let _ = m.stop();
    assert_eq!(seen, OPENS, "every open reported");
    assert_eq!(opens_after_exit, 0, "opens forwarded after the process' exit");
    assert_eq!(backwards, 0, "events of one process out of kernel-time order");
}
