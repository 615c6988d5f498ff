//! Process and cgroup helpers shared by every end-to-end test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The `monitor` binary under test: `$MONITOR_BIN`, else `<workspace>/target/debug/monitor`.
pub fn monitor_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MONITOR_BIN") {
        return PathBuf::from(p);
    }
    workspace_root().join("target/debug/monitor")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Skip (with the reason printed) unless running as root: the tier-2 tests load eBPF programs.
/// Returns true when the caller must return early.
pub fn skip_unless_root() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to load eBPF programs");
        return true;
    }
    false
}

/// The cgroup2 mount point, from /proc/self/mountinfo (never assumed).
pub fn cgroup2_mount() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let mut halves = line.splitn(2, " - ");
        let (pre, post) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        if post.split_whitespace().next() == Some("cgroup2")
            && let Some(mp) = pre.split_whitespace().nth(4) {
                return Ok(PathBuf::from(mp));
            }
    }
    bail!("no cgroup2 mount in /proc/self/mountinfo")
}

/// A fresh cgroup v2 directory, removed on drop. Its id is the directory's inode number.
pub struct TestCgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl TestCgroup {
    pub fn new(name: &str) -> Result<TestCgroup> {
        use std::os::unix::fs::MetadataExt;
        let path = cgroup2_mount()?.join(format!("monitor-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let id = std::fs::metadata(&path)?.ino();
        Ok(TestCgroup { path, id })
    }

    /// A `Command` whose child moves itself into this cgroup before exec.
    pub fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let procs = self.path.join("cgroup.procs");
        let mut cmd = Command::new(program);
        unsafe {
            cmd.pre_exec(move || {
                std::fs::write(&procs, b"0")?;
                Ok(())
            });
        }
        cmd
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Kill stragglers, then remove the directory (retry: the kernel frees it lazily, and
        // on a loaded machine 1 s was seen not to be enough: the directory stayed behind).
        let _ = std::fs::write(self.path.join("cgroup.kill"), b"1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("NOTE: test cgroup {} could not be removed", self.path.display());
    }
}

/// A running `monitor` process whose stdout lines are collected in the background.
pub struct MonitorProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    /// Every stderr (log) line so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl MonitorProcess {
    /// Start `monitor <args>`; waits until it prints `ready_marker` on stderr (if given).
    pub fn spawn(args: &[&str], ready_marker: Option<&str>) -> Result<MonitorProcess> {
        let mut child = Command::new(monitor_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", monitor_bin().display()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let marker = ready_marker.map(str::to_string);
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_w = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[monitor] {line}");
                let ready = marker.as_deref().is_some_and(|m| line.contains(m));
                // Kept before the ready signal: whatever was logged before the marker can be
                // read as soon as spawn returns.
                if let Ok(mut l) = log_w.lock() {
                    l.push(line);
                }
                if ready {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_marker.is_some() {
            // Loading ~120 programs takes seconds; a loaded CI machine can take many more.
            ready_rx.recv_timeout(Duration::from_secs(120)).context("monitor did not become ready in 120 s")?;
        }
        Ok(MonitorProcess { child, lines: rx, seen: Vec::new(), log })
    }

    /// The address the HTTP server bound (`--metrics-address 127.0.0.1:0` lets the kernel pick
    /// a free port: no window in which another process on the machine can take it), from the
    /// daemon's "Serving /metrics" log line, which comes before "Monitor ready".
    pub fn metrics_address(&self) -> Result<String> {
        let log = self.log.lock().map_err(|_| anyhow::anyhow!("log lock poisoned"))?;
        log.iter()
            .filter(|l| l.contains("Serving /metrics"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("address=")))
            .map(str::to_string)
            .with_context(|| format!("no \"Serving /metrics ... address=\" line in the log: {log:?}"))
    }

    /// Wait up to `timeout` for a stdout line satisfying `pred`; every line seen is kept.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        // Lines already seen first.
        for l in &self.seen {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l)
                && pred(&v) {
                    return Some(v);
                }
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let parsed = serde_json::from_str::<serde_json::Value>(&line).ok();
                    self.seen.push(line);
                    if let Some(v) = parsed
                        && pred(&v) {
                            return Some(v);
                        }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        // Detaching ~120 programs and draining the rings is quick on an idle machine; the
        // limit is for a loaded one (a hang still fails).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("monitor did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MonitorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
