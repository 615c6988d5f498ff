//! The attribution stage: attributes every event and holds back the ones whose container is not
//! known yet (a container's first events usually race its runtime writing the state files).
//!
//! Policy:
//! - Held events wait in one FIFO per cgroup id. A later event of a process that already has
//!   held events joins that process' queue, whatever its cgroup, so each process' events leave
//!   in order. Events of other processes are not delayed.
//! - Every `retry_interval` the head of each queue is attributed again; once it resolves the
//!   whole queue is released. After `retry_hold` the queue is released anyway and what is still
//!   unresolved goes on as `unknown` ([`Attributor::give_up`]).
//! - At most `capacity` events are held. When a new one must be held beyond that, the queue with
//!   the oldest head is released early (as `unknown` where unresolved) and counted in
//!   `monitor_attribution_evicted_events_total`: nothing is dropped here. Drops happen upstream,
//!   where the reader `try_send`s into this stage's input.
//! - The output is awaited (backpressure reaches the input channel). The runtime state is
//!   rescanned every `refresh_interval` (new containers, removals and their grace period).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::mpsc::{self, Receiver, Sender};

use super::{Attribution, Attributor, register};
use crate::event::Event;

static HELD: LazyLock<IntGauge> = LazyLock::new(|| {
    register(IntGauge::new(
        "monitor_attribution_held_events",
        "Events held by the attribution retry stage now.",
    ))
});
static EVICTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "monitor_attribution_evicted_events_total",
        "Held events released early (as unknown where unresolved) because the retry stage was full.",
    ))
});

pub(super) fn register_metrics() {
    LazyLock::force(&HELD);
    LazyLock::force(&EVICTED);
}

/// Start the stage on the current tokio runtime. `capacity` bounds both the events held and the
/// output channel.
pub fn spawn_stage(
    attributor: Arc<Attributor>,
    input: Receiver<Box<Event>>,
    capacity: usize,
) -> Receiver<Box<Event>> {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    tokio::spawn(run(attributor, input, tx, capacity));
    rx
}

struct Held {
    ev: Box<Event>,
    since: Instant,
}

#[derive(Default)]
struct Pending {
    queues: HashMap<u64, VecDeque<Held>>,
    /// pid -> (queue key, events of that pid held).
    by_pid: HashMap<u32, (u64, usize)>,
    total: usize,
}

impl Pending {
    fn push(&mut self, key: u64, ev: Box<Event>) {
        let pid = ev.process.pid;
        self.queues.entry(key).or_default().push_back(Held {
            ev,
            since: Instant::now(),
        });
        let e = self.by_pid.entry(pid).or_insert((key, 0));
        e.1 += 1;
        self.total += 1;
        HELD.set(self.total as i64);
    }

    fn take(&mut self, key: u64) -> VecDeque<Held> {
        let q = self.queues.remove(&key).unwrap_or_default();
        for h in &q {
            if let Some(e) = self.by_pid.get_mut(&h.ev.process.pid) {
                e.1 -= 1;
                if e.1 == 0 {
                    self.by_pid.remove(&h.ev.process.pid);
                }
            }
        }
        self.total -= q.len();
        HELD.set(self.total as i64);
        q
    }

    fn oldest_key(&self) -> Option<u64> {
        self.queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|h| (h.since, *k)))
            .min()
            .map(|(_, k)| k)
    }
}

async fn run(a: Arc<Attributor>, mut input: Receiver<Box<Event>>, tx: Sender<Box<Event>>, capacity: usize) {
    let opts = a.options().clone();
    let mut pending = Pending::default();
    let mut next_refresh = Instant::now() + opts.refresh_interval;
    let mut last_retry = Instant::now();
    loop {
        let wait = if pending.total > 0 {
            opts.retry_interval
        } else {
            next_refresh.saturating_duration_since(Instant::now())
        };
        tokio::select! {
            msg = input.recv() => match msg {
                Some(ev) => {
                    if !accept(&a, &mut pending, ev, &tx, capacity).await {
                        return;
                    }
                }
                None => {
                    let keys: Vec<u64> = pending.queues.keys().copied().collect();
                    for k in keys {
                        if !release(&a, &mut pending, k, &tx).await {
                            return;
                        }
                    }
                    return;
                }
            },
            _ = tokio::time::sleep(wait) => {}
        }
        if pending.total > 0 && last_retry.elapsed() >= opts.retry_interval {
            last_retry = Instant::now();
            if !retry(&a, &mut pending, &tx, opts.retry_hold).await {
                return;
            }
        }
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + opts.refresh_interval;
            let a2 = Arc::clone(&a);
            // File and /proc reads: keep them off the async workers.
            let _ = tokio::task::spawn_blocking(move || a2.discover()).await;
        }
    }
}

/// Returns false when the output is closed.
async fn accept(
    a: &Attributor,
    pending: &mut Pending,
    mut ev: Box<Event>,
    tx: &Sender<Box<Event>>,
    capacity: usize,
) -> bool {
    let key = if let Some(&(key, _)) = pending.by_pid.get(&ev.process.pid) {
        Some(key)
    } else if pending.queues.contains_key(&ev.cgroup_id)
        || a.attribute(&mut ev) == Attribution::NotYet
    {
        // Behind the cgroup's held events, or the first one held for it.
        Some(ev.cgroup_id)
    } else {
        None
    };
    let Some(key) = key else {
        return tx.send(ev).await.is_ok();
    };
    while pending.total >= capacity {
        let Some(oldest) = pending.oldest_key() else {
            break;
        };
        let n = pending.queues.get(&oldest).map_or(0, VecDeque::len);
        EVICTED.inc_by(n as u64);
        tracing::debug!(
            cgroup_id = oldest,
            events = n,
            "The attribution retry stage is full; releasing its oldest held events early."
        );
        if !release(a, pending, oldest, tx).await {
            return false;
        }
    }
    pending.push(key, ev);
    true
}

async fn retry(
    a: &Attributor,
    pending: &mut Pending,
    tx: &Sender<Box<Event>>,
    hold: std::time::Duration,
) -> bool {
    let keys: Vec<u64> = pending.queues.keys().copied().collect();
    for key in keys {
        let ready = match pending.queues.get_mut(&key).and_then(|q| q.front_mut()) {
            Some(head) => {
                head.since.elapsed() >= hold || a.attribute(&mut head.ev) != Attribution::NotYet
            }
            None => true,
        };
        if ready && !release(a, pending, key, tx).await {
            return false;
        }
    }
    true
}

/// Release one queue in order; unresolved events go on as unknown.
async fn release(a: &Attributor, pending: &mut Pending, key: u64, tx: &Sender<Box<Event>>) -> bool {
    for Held { mut ev, .. } in pending.take(key) {
        if a.attribute(&mut ev) == Attribution::NotYet {
            a.give_up(&mut ev);
        }
        if tx.send(ev).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::container::{AttributorOptions, RuntimeRoots};
    use crate::event::Process;

    const HOST_PIDNS: u64 = 100;
    const HOST_MNTNS: u64 = 200;

    /// A fake node in a temp dir: a directory standing for the cgroup2 mount (real inodes), a
    /// fake /proc with `<pid>/cgroup` files, and a containerd task root.
    struct Node {
        dir: PathBuf,
    }

    impl Node {
        fn new(name: &str) -> Node {
            let dir =
                std::env::temp_dir().join(format!("monitor-stage-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for d in ["cg", "proc", "tasks"] {
                std::fs::create_dir_all(dir.join(d)).expect("mkdir");
            }
            Node { dir }
        }

        fn opts(&self, hold_ms: u64) -> AttributorOptions {
            AttributorOptions {
                cgroup2_mount: Some(self.dir.join("cg")),
                proc_root: self.dir.join("proc"),
                roots: RuntimeRoots {
                    runc: vec![],
                    containerd_tasks: vec![self.dir.join("tasks")],
                    podman_storage: vec![],
                    crio_run_storage: vec![],
                    docker: vec![],
                },
                host_pidns: Some(HOST_PIDNS),
                host_mntns: Some(HOST_MNTNS),
                retry_hold: Duration::from_millis(hold_ms),
                retry_interval: Duration::from_millis(5),
                refresh_interval: Duration::from_secs(3600),
                walk_min_interval: Duration::from_millis(0),
                ..AttributorOptions::default()
            }
        }

        /// A container cgroup `/default/<id>` with process `pid` in it; returns the cgroup id.
        fn container_cgroup(&self, id: &str, pid: u32) -> u64 {
            use std::os::unix::fs::MetadataExt;
            let cg = self.dir.join("cg/default").join(id);
            std::fs::create_dir_all(&cg).expect("mkdir");
            self.process(pid, &format!("/default/{id}"));
            std::fs::metadata(cg).expect("stat").ino()
        }

        fn process(&self, pid: u32, cgroup: &str) {
            let p = self.dir.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(p.join("cgroup"), format!("0::{cgroup}\n")).expect("write");
        }

        /// containerd writes the task state: the container becomes resolvable.
        fn start_container(&self, id: &str, pid: u32) {
            let d = self.dir.join("tasks/default").join(id);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("config.json"), "{}").expect("write");
            std::fs::write(d.join("init.pid"), pid.to_string()).expect("write");
        }

        fn root_id(&self) -> u64 {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(self.dir.join("cg")).expect("stat").ino()
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn ev(pid: u32, cgroup_id: u64, seq: i64) -> Box<Event> {
        Box::new(Event {
            schema: crate::event::SCHEMA_VERSION,
            ret: seq,
            cgroup_id,
            process: Process {
                pid,
                tid: pid,
                pidns: HOST_PIDNS,
                mntns: HOST_MNTNS,
                ..Process::default()
            },
            ..Event::default()
        })
    }

    /// The next released event. Generous: a loaded CI machine can stall the stage for
    /// seconds; the limit is only reached when the event never comes.
    async fn recv(rx: &mut Receiver<Box<Event>>) -> Box<Event> {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("stage answers in time")
            .expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_until_resolved_in_order_per_process() {
        let node = Node::new("order");
        let id = "c".repeat(64);
        let cg = node.container_cgroup(&id, 4242);
        node.process(1, "/");
        let a = Arc::new(Attributor::new(node.opts(10_000)).expect("attributor"));
        let (tx, rx) = mpsc::channel(16);
        let mut out = spawn_stage(Arc::clone(&a), rx, 16);
        let mut in_container = ev(4242, cg, 1);
        in_container.process.pidns = 7;
        tx.send(in_container.clone()).await.expect("send");
        tx.send(ev(1, node.root_id(), 2)).await.expect("send");
        // Same process, now seen in the root cgroup: must wait behind its held event.
        let mut moved = ev(4242, node.root_id(), 3);
        moved.process.pidns = 7;
        tx.send(moved).await.expect("send");
        let host = recv(&mut out).await;
        assert_eq!((host.ret, host.container.id.as_str()), (2, "host"));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), out.recv())
                .await
                .is_err(),
            "held events stay held"
        );
        node.start_container(&id, 4242);
        let first = recv(&mut out).await;
        assert_eq!(first.ret, 1);
        assert_eq!(first.container.full_id, id);
        assert_eq!(first.container.id, "cccccccccccc");
        assert_eq!(first.container.runtime, "containerd");
        assert!(first.container.metadata_complete);
        let second = recv(&mut out).await;
        assert_eq!(second.ret, 3);
        // Root cgroup with a foreign pid namespace: not host, unknown after the (released) hold.
        assert_eq!(second.container.id, "unknown");
        assert!(!second.container.metadata_complete);
        assert_eq!(
            (
                second.container.runtime.as_str(),
                second.container.name.as_str()
            ),
            ("", "")
        );
        // Now cached: a new event passes straight through.
        tx.send(ev(4242, cg, 4)).await.expect("send");
        let third = recv(&mut out).await;
        assert_eq!(
            (third.ret, third.container.full_id.as_str()),
            (4, id.as_str())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unresolved_goes_on_as_unknown_after_the_hold() {
        let node = Node::new("hold");
        let id = "d".repeat(64);
        let cg = node.container_cgroup(&id, 5000);
        let a = Arc::new(Attributor::new(node.opts(80)).expect("attributor"));
        let (tx, rx) = mpsc::channel(16);
        let mut out = spawn_stage(Arc::clone(&a), rx, 16);
        let start = Instant::now();
        for seq in 0..3 {
            tx.send(ev(5000, cg, seq)).await.expect("send");
        }
        for seq in 0..3 {
            let e = recv(&mut out).await;
            assert_eq!(e.ret, seq);
            // What the path alone says is kept; metadata is incomplete.
            assert_eq!(e.container.id, "dddddddddddd");
            assert_eq!(e.container.full_id, id);
            assert_eq!(e.container.runtime, "");
            assert!(!e.container.metadata_complete);
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(80),
            "released after {waited:?}"
        );
        // Released by the hold (without it they would stay held until `recv` gives up): far
        // above the 80 ms hold plus what a slow run adds to it.
        assert!(waited < Duration::from_secs(20), "released after {waited:?}");
        // An id that maps to no cgroup at all: plain unknown.
        tx.send(ev(0, 999_999_999, 9)).await.expect("send");
        let e = recv(&mut out).await;
        assert_eq!(
            (e.container.id.as_str(), e.container.full_id.as_str()),
            ("unknown", "")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_stage_releases_oldest_early_and_keeps_order() {
        let node = Node::new("bound");
        let (id1, id2) = ("1".repeat(64), "2".repeat(64));
        let cg1 = node.container_cgroup(&id1, 6001);
        let cg2 = node.container_cgroup(&id2, 6002);
        let a = Arc::new(Attributor::new(node.opts(60_000)).expect("attributor"));
        let (tx, rx) = mpsc::channel(16);
        let mut out = spawn_stage(Arc::clone(&a), rx, 2);
        tx.send(ev(6001, cg1, 1)).await.expect("send");
        tx.send(ev(6001, cg1, 2)).await.expect("send");
        // Third held event: the stage holds 2, so cgroup 1's queue leaves early, in order.
        tx.send(ev(6002, cg2, 3)).await.expect("send");
        let e1 = recv(&mut out).await;
        let e2 = recv(&mut out).await;
        assert_eq!((e1.ret, e2.ret), (1, 2));
        assert_eq!(e1.container.full_id, id1);
        assert!(!e1.container.metadata_complete);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), out.recv())
                .await
                .is_err(),
            "cgroup 2 still held"
        );
        // Closing the input releases everything.
        drop(tx);
        let e3 = recv(&mut out).await;
        assert_eq!((e3.ret, e3.container.full_id.as_str()), (3, id2.as_str()));
        assert!(out.recv().await.is_none());
    }

    #[test]
    fn removed_container_attributes_within_grace_then_is_forgotten() {
        let node = Node::new("grace");
        let id = "e".repeat(64);
        let cg = node.container_cgroup(&id, 7000);
        node.start_container(&id, 7000);
        let mut opts = node.opts(10);
        opts.removed_grace = Duration::from_millis(150);
        let a = Attributor::new(opts).expect("attributor");
        assert_eq!(a.discover(), 1);
        let s = a.containers();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].cgroup_id, Some(cg));
        // The container goes away: state, cgroup and process.
        std::fs::remove_dir_all(node.dir.join("tasks/default").join(&id)).expect("rm");
        std::fs::remove_dir(node.dir.join("cg/default").join(&id)).expect("rm");
        std::fs::remove_dir_all(node.dir.join("proc/7000")).expect("rm");
        a.discover();
        assert!(a.containers()[0].removed);
        let mut late = ev(7000, cg, 1);
        assert_eq!(a.attribute(&mut late), Attribution::Found);
        assert_eq!(late.container.full_id, id);
        std::thread::sleep(Duration::from_millis(200));
        a.discover();
        assert!(a.containers().is_empty());
        let mut later = ev(7000, cg, 2);
        assert_eq!(a.attribute(&mut later), Attribution::NotYet);
    }

    /// Figures, not assertions:
    /// `cargo test -p monitor --lib --release container::stage -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints figures"]
    fn attribute_hot_path_figures() {
        let node = Node::new("bench");
        let id = "f".repeat(64);
        let cg = node.container_cgroup(&id, 8000);
        node.start_container(&id, 8000);
        let a = Attributor::new(node.opts(10)).expect("attributor");
        a.discover();
        let n = 1_000_000u32;
        for (what, mut e) in [
            ("container", ev(8000, cg, 0)),
            ("host", ev(1, node.root_id(), 0)),
        ] {
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(a.attribute(&mut e));
            }
            println!(
                "attribute() on a cached {what} cgroup: {:?} per event",
                start.elapsed() / n
            );
        }
    }
}
