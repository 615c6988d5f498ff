//! `cargo xtask bench capture`: exec, open+close and loopback connect storms, each without a
//! monitor and with each of:
//! - `monitor run` (the product: shipped rules, alerts to /dev/null, no per-event JSON), its
//!   events and drops read per storm from its /metrics;
//! - `monitor events` (every event as a JSON line, read and discarded by a counting thread),
//!   drops from its shutdown summary;
//!
//! all in one invocation, against one baseline. Then a paced open storm at increasing rates
//! under `monitor run`, reporting the highest rate held with zero kernel and queue drops, and
//! the open/connect storms with those kinds disabled in the kernel (the filtered cost).
//! `--monitor` may be repeated to compare builds (before/after) in the same run.
//! Also the monitor's own CPU time per delivered event (all its threads, from schedstat), the
//! steadiest figure on a shared machine. Figures only, never assertions. The machine is shared:
//! events/s and drops include any other process' activity during the storm, and a second
//! baseline at the end shows how much the load drifted.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// posix_spawn(/bin/true)+wait iterations.
    #[arg(long, default_value_t = 2000)]
    pub execs: u64,
    /// openat+close iterations.
    #[arg(long, default_value_t = 200_000)]
    pub opens: u64,
    /// loopback TCP connect+close iterations.
    #[arg(long, default_value_t = 5000)]
    pub connects: u64,
    /// The monitor binary (default: target/release/monitor, else target/debug/monitor).
    /// Repeat to compare builds in one run, against the same baseline.
    #[arg(long, env = "MONITOR_BIN", value_delimiter = ',')]
    pub monitor: Vec<PathBuf>,
    /// Which monitor commands to attach: run, events (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "run,events")]
    pub modes: Vec<String>,
    /// Highest paced open rate tried (events/s); 0 skips the paced storm.
    #[arg(long, default_value_t = 1_600_000)]
    pub paced_max: u64,
    /// Seconds per paced step.
    #[arg(long, default_value_t = 1.0)]
    pub paced_secs: f64,
}

fn exec_storm(n: u64) -> anyhow::Result<Duration> {
    let path = CString::new("/bin/true")?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let t = Instant::now();
    for _ in 0..n {
        let mut pid: libc::pid_t = 0;
        // SAFETY: valid NUL-terminated path and NULL-terminated argv/envp arrays.
        let r = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr() as *const *mut _,
                envp.as_ptr() as *const *mut _,
            )
        };
        if r != 0 {
            bail!("posix_spawn failed: {}", std::io::Error::from_raw_os_error(r));
        }
        let mut st = 0;
        // SAFETY: pid is our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
    }
    Ok(t.elapsed())
}

fn open_storm(n: u64) -> anyhow::Result<Duration> {
    let path = CString::new("/etc/hostname")?;
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: valid path; the fd is closed right away.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            bail!("open /etc/hostname: {}", std::io::Error::last_os_error());
        }
        unsafe { libc::close(fd) };
    }
    Ok(t.elapsed())
}

fn connect_storm(n: u64) -> anyhow::Result<Duration> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    // std listens with a backlog of 128: when the acceptor thread falls behind, SYNs are dropped
    // and retried after a second, which measures the retransmit timer instead of connect.
    // listen() again on a listening socket only raises the backlog.
    // SAFETY: a valid listening socket fd.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    let addr = listener.local_addr()?;
    let acceptor = std::thread::spawn(move || {
        for _ in 0..n {
            if listener.accept().is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        let s = std::net::TcpStream::connect(addr)?;
        drop(s);
    }
    let d = t.elapsed();
    let _ = acceptor.join();
    Ok(d)
}

/// Opens (and closes) /etc/hostname at `rate` per second for `secs`; returns the opens done and
/// the time taken. A single thread: above its unpaced speed the achieved rate falls short.
fn paced_open(rate: u64, secs: f64) -> anyhow::Result<(u64, Duration)> {
    let path = CString::new("/etc/hostname")?;
    let total = (rate as f64 * secs) as u64;
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        let due = (t.elapsed().as_secs_f64() * rate as f64) as u64;
        if done >= due {
            // Ahead of schedule: yield in small steps so the pace stays smooth.
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        for _ in done..due.min(total) {
            // SAFETY: valid path; the fd is closed right away.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                bail!("open /etc/hostname: {}", std::io::Error::last_os_error());
            }
            unsafe { libc::close(fd) };
        }
        done = due.min(total);
        if t.elapsed().as_secs_f64() > secs * 3.0 {
            break;
        }
    }
    Ok((done, t.elapsed()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Events,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Events => "events",
        }
    }
}

struct Monitor {
    child: Child,
    /// `events`: JSON lines read so far.
    lines: Arc<AtomicU64>,
    /// `run`: where /metrics is served.
    metrics: Option<std::net::SocketAddr>,
    stderr: std::thread::JoinHandle<String>,
}

/// Counters summed over their labels, from one /metrics scrape.
#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    events: u64,
    kernel_dropped: u64,
    queue_dropped: u64,
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let status = body.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body))
}

fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<Counts> {
    let (status, body) = http_get(addr, "/metrics")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let mut c = Counts::default();
    for line in body.lines() {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let slot = match name {
            "monitor_capture_events_total" => &mut c.events,
            "monitor_capture_kernel_dropped_events_total" => &mut c.kernel_dropped,
            "monitor_queue_dropped_events_total" => &mut c.queue_dropped,
            _ => continue,
        };
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *slot += v as u64;
        }
    }
    Ok(c)
}

fn start_monitor(bin: &PathBuf, mode: Mode, extra: &[&str]) -> anyhow::Result<Monitor> {
    let mut cmd = Command::new(bin);
    let mut metrics = None;
    match mode {
        Mode::Events => {
            cmd.arg("events");
        }
        Mode::Run => {
            // A free port: bind, note it, release it.
            let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            metrics = Some(addr);
            cmd.args(["run", "--no-stdout", "--output-file", "/dev/null"])
                .arg("--metrics-address")
                .arg(addr.to_string());
        }
    }
    let mut child = cmd
        .args(extra)
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let lines = Arc::new(AtomicU64::new(0));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        // Count newlines in large reads: as close to /dev/null as a counter gets.
        let mut r = stdout;
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            l2.fetch_add(
                buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
                Ordering::Relaxed,
            );
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Capture ready") || line.contains("Monitor ready") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut mon = Monitor {
        child,
        lines,
        metrics,
        stderr,
    };
    let t = Instant::now();
    loop {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Ok(Some(st)) = mon.child.try_wait() {
            let log = mon.stderr.join().unwrap_or_default();
            bail!("monitor {} exited with {st} before ready:\n{log}", mode.name());
        }
        if t.elapsed() > Duration::from_secs(120) {
            stop(&mut mon);
            bail!("monitor {} did not become ready in 120 s", mode.name());
        }
    }
    if let Some(addr) = metrics {
        // Ready means attached; /readyz also waits for the rules and the container discovery.
        while http_get(addr, "/readyz").map(|r| r.0).unwrap_or(0) != 200 {
            if t.elapsed() > Duration::from_secs(120) {
                stop(&mut mon);
                bail!("monitor run: /readyz not 200 in 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(mon)
}

fn stop(mon: &mut Monitor) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(mon.child.id() as i32, libc::SIGTERM) };
    let _ = mon.child.wait();
}

fn field(log: &str, name: &str) -> String {
    // tracing's text format: `name=value`, possibly wrapped in ANSI colour codes.
    let clean: String = strip_ansi(log);
    clean
        .rsplit(&format!("{name}="))
        .next()
        .filter(|_| clean.contains(&format!("{name}=")))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        if esc {
            if c.is_ascii_alphabetic() {
                esc = false;
            }
        } else if c == '\x1b' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

type Storm = fn(u64) -> anyhow::Result<Duration>;

/// A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in MiB.
fn mem_mib(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("?".to_string(), |kb| format!("{} MiB", kb / 1024))
}

/// CPU time (ns) all threads of `pid` have run, from /proc/<pid>/task/*/schedstat: a per-event
/// cost that a busy shared machine disturbs far less than wall time.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The kernel's drop counters reach /metrics once a second: wait that long after a storm.
const SETTLE: Duration = Duration::from_millis(1300);

struct Row {
    label: String,
    storm: usize,
    ns_op: f64,
    eps: f64,
    kernel: String,
    queue: String,
    /// Monitor CPU ns per event delivered.
    cpu_per_ev: f64,
}

fn attach_and_measure(
    bin: &PathBuf,
    label: &str,
    mode: Mode,
    storms: &[(&str, Storm, u64)],
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut mon = start_monitor(bin, mode, &[])?;
    for (i, (_, f, n)) in storms.iter().enumerate() {
        let before_lines = mon.lines.load(Ordering::Relaxed);
        let cpu0 = cpu_ns(mon.child.id());
        let before = match mon.metrics {
            Some(a) => scrape(a)?,
            None => Counts::default(),
        };
        let d = f(*n)?;
        let (ev, k, q) = match mon.metrics {
            Some(a) => {
                std::thread::sleep(SETTLE);
                let after = scrape(a)?;
                (
                    after.events - before.events,
                    (after.kernel_dropped - before.kernel_dropped).to_string(),
                    (after.queue_dropped - before.queue_dropped).to_string(),
                )
            }
            None => {
                // Let the bulk ring drain before counting.
                std::thread::sleep(Duration::from_millis(300));
                (
                    mon.lines.load(Ordering::Relaxed) - before_lines,
                    "(total)".to_string(),
                    "(total)".to_string(),
                )
            }
        };
        let cpu = cpu_ns(mon.child.id()).saturating_sub(cpu0);
        rows.push(Row {
            cpu_per_ev: cpu as f64 / ev.max(1) as f64,
            label: format!("{label} {}", mode.name()),
            storm: i,
            ns_op: d.as_nanos() as f64 / *n as f64,
            eps: ev as f64 / d.as_secs_f64(),
            kernel: k,
            queue: q,
        });
    }
    // The allocator matters here: glibc malloc kept 0.5-1.5 GiB after storms that mimalloc
    // served in 200 MiB and gave back.
    notes.push(format!(
        "{label} {}: memory after the storms: rss {} peak {}",
        mode.name(),
        mem_mib(mon.child.id(), "VmRSS:"),
        mem_mib(mon.child.id(), "VmHWM:")
    ));
    stop(&mut mon);
    let log = mon.stderr.join().unwrap_or_default();
    if mode == Mode::Events {
        notes.push(format!(
            "{label} events drop totals: events={} kernel_dropped={} queue_dropped={} decode_errors={}",
            field(&log, "events"),
            field(&log, "kernel_dropped"),
            field(&log, "queue_dropped"),
            field(&log, "decode_errors")
        ));
    }
    Ok(())
}

/// Paced open storms under `monitor run` at doubling rates; returns the printed lines.
fn paced(bin: &PathBuf, label: &str, max: u64, secs: f64) -> anyhow::Result<Vec<String>> {
    let mut mon = start_monitor(bin, Mode::Run, &[])?;
    let addr = mon.metrics.context("run serves metrics")?;
    let mut out = Vec::new();
    let mut best: Option<f64> = None;
    const RATES: [u64; 12] = [
        25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_200_000, 1_600_000,
    ];
    for rate in RATES.into_iter().filter(|&r| r <= max) {
        let before = scrape(addr)?;
        let cpu0 = cpu_ns(mon.child.id());
        let (done, d) = paced_open(rate, secs)?;
        std::thread::sleep(SETTLE);
        let after = scrape(addr)?;
        let cpu = cpu_ns(mon.child.id()).saturating_sub(cpu0);
        let achieved = done as f64 / d.as_secs_f64();
        let k = after.kernel_dropped - before.kernel_dropped;
        let q = after.queue_dropped - before.queue_dropped;
        let ev = after.events - before.events;
        out.push(format!(
            "  {label:<10} target {rate:>9}/s achieved {achieved:>9.0}/s events {ev:>9} kernel_drops {k:>8} queue_drops {q:>8} monitor_cpu {:>5.0} ns/event",
            cpu as f64 / ev.max(1) as f64
        ));
        if k == 0 && q == 0 {
            best = Some(best.map_or(achieved, |b: f64| b.max(achieved)));
        } else {
            break;
        }
        if achieved < rate as f64 * 0.9 {
            out.push(format!(
                "  {label:<10} (the storm thread saturated at {achieved:.0}/s with zero drops)"
            ));
            break;
        }
    }
    stop(&mut mon);
    out.push(format!(
        "  {label:<10} highest open rate held with zero drops: {}",
        best.map_or("none".to_string(), |b| format!("{b:.0}/s"))
    ));
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench capture loads eBPF programs: run it as root");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bins = if args.monitor.is_empty() {
        let rel = root.join("target/release/monitor");
        vec![if rel.exists() {
            rel
        } else {
            root.join("target/debug/monitor")
        }]
    } else {
        args.monitor.clone()
    };
    let mut modes = Vec::new();
    for m in &args.modes {
        modes.push(match m.as_str() {
            "run" => Mode::Run,
            "events" => Mode::Events,
            other => bail!("unknown mode {other:?} (run, events)"),
        });
    }
    for (i, b) in bins.iter().enumerate() {
        println!("monitor #{i}: {}", b.display());
    }
    let storms: [(&str, Storm, u64); 3] = [
        ("exec (posix_spawn /bin/true)", exec_storm, args.execs),
        ("open+close", open_storm, args.opens),
        ("loopback connect", connect_storm, args.connects),
    ];
    // Warm up caches once, then measure without the monitor.
    for (_, f, n) in &storms {
        f((*n / 10).max(1))?;
    }
    let base: Vec<f64> = storms
        .iter()
        .map(|(_, f, n)| f(*n).map(|d| d.as_nanos() as f64 / *n as f64))
        .collect::<anyhow::Result<_>>()?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (i, bin) in bins.iter().enumerate() {
        for &mode in &modes {
            attach_and_measure(bin, &format!("#{i}"), mode, &storms, &mut rows, &mut notes)?;
        }
    }
    // Attached but with only exec enabled: what a filtered-out event costs in the kernel.
    let mut mon = start_monitor(&bins[0], Mode::Events, &["--kind", "execve"])?;
    let filtered: Vec<f64> = storms
        .iter()
        .skip(1)
        .map(|(_, f, n)| f(*n).map(|d| d.as_nanos() as f64 / *n as f64))
        .collect::<anyhow::Result<_>>()?;
    stop(&mut mon);
    let mut paced_lines = Vec::new();
    if args.paced_max > 0 {
        for (i, bin) in bins.iter().enumerate() {
            paced_lines.extend(paced(bin, &format!("#{i} run"), args.paced_max, args.paced_secs)?);
        }
    }
    // The machine is shared: a second baseline shows how far it drifted during the run.
    let base2: Vec<f64> = storms
        .iter()
        .map(|(_, f, n)| f(*n).map(|d| d.as_nanos() as f64 / *n as f64))
        .collect::<anyhow::Result<_>>()?;

    println!();
    println!(
        "{:<30} {:<10} {:>10} {:>10} {:>7} {:>10} {:>12} {:>12} {:>10}",
        "workload",
        "monitor",
        "base ns/op",
        "with ns/op",
        "ratio",
        "events/s",
        "kernel drops",
        "queue drops",
        "cpu ns/ev"
    );
    for (s, (name, _, _)) in storms.iter().enumerate() {
        for r in rows.iter().filter(|r| r.storm == s) {
            println!(
                "{name:<30} {:<10} {:>10.0} {:>10.0} {:>6.2}x {:>10.0} {:>12} {:>12} {:>10.0}",
                r.label,
                base[s],
                r.ns_op,
                r.ns_op / base[s],
                r.eps,
                r.kernel,
                r.queue,
                r.cpu_per_ev
            );
        }
        if s > 0 {
            println!(
                "{name:<30} {:<10} {:>10.0} {:>10.0} {:>6.2}x",
                "kind off",
                base[s],
                filtered[s - 1],
                filtered[s - 1] / base[s]
            );
        }
        println!(
            "{name:<30} {:<10} {:>10.0} (baseline again at the end: drift {:+.0}%)",
            "none",
            base2[s],
            (base2[s] / base[s] - 1.0) * 100.0
        );
    }
    for n in notes {
        println!("{n}");
    }
    if !paced_lines.is_empty() {
        println!(
            "paced open+close storm under `monitor run` ({} s per rate, stops at the first drop):",
            args.paced_secs
        );
        for l in paced_lines {
            println!("{l}");
        }
    }
    Ok(())
}
