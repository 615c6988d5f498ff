//! `cargo xtask bench capture`: exec, open+close and loopback connect storms, each without and
//! with `monitor events` attached (its JSON lines read and discarded by a counting thread), in
//! one invocation. Prints ns/op, the overhead ratio, events/s and the monitor's kernel and user
//! drops, plus the open and connect storms with the monitor attached but those kinds disabled
//! (the in-kernel filtered cost). Figures only, never assertions.

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
    #[arg(long, env = "MONITOR_BIN")]
    pub monitor: Option<PathBuf>,
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
            bail!(
                "posix_spawn failed: {}",
                std::io::Error::from_raw_os_error(r)
            );
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

struct Monitor {
    child: Child,
    lines: Arc<AtomicU64>,
    stderr: std::thread::JoinHandle<String>,
}

fn start_monitor(bin: &PathBuf, extra: &[&str]) -> anyhow::Result<Monitor> {
    let mut child = Command::new(bin)
        .arg("events")
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
            if line.contains("ready") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(120))
        .context("monitor did not become ready in 120 s")?;
    Ok(Monitor {
        child,
        lines,
        stderr,
    })
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

pub fn run(args: Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench capture loads eBPF programs: run it as root");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = args.monitor.clone().unwrap_or_else(|| {
        let rel = root.join("target/release/monitor");
        if rel.exists() {
            rel
        } else {
            root.join("target/debug/monitor")
        }
    });
    println!("monitor binary: {}", bin.display());
    type Storm = fn(u64) -> anyhow::Result<Duration>;
    let storms: [(&str, Storm, u64); 3] = [
        ("exec (posix_spawn /bin/true)", exec_storm, args.execs),
        ("open+close", open_storm, args.opens),
        ("loopback connect", connect_storm, args.connects),
    ];
    // Warm up caches once, then measure without the monitor.
    for (_, f, n) in &storms {
        f((*n / 10).max(1))?;
    }
    let base: Vec<Duration> = storms
        .iter()
        .map(|(_, f, n)| f(*n))
        .collect::<anyhow::Result<_>>()?;
    // Attached but with only exec enabled: what a filtered-out event costs in the kernel.
    let mon = start_monitor(&bin, &["--kind", "execve"])?;
    let filtered: Vec<Duration> = storms
        .iter()
        .skip(1)
        .map(|(_, f, n)| f(*n))
        .collect::<anyhow::Result<_>>()?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(mon.child.id() as i32, libc::SIGTERM) };
    let mut mon = mon;
    let _ = mon.child.wait();
    let mut mon = start_monitor(&bin, &[])?;
    let mut with = Vec::new();
    for (_, f, n) in &storms {
        let before = mon.lines.load(Ordering::Relaxed);
        let d = f(*n)?;
        // Let the bulk ring drain before counting.
        std::thread::sleep(Duration::from_millis(200));
        with.push((d, mon.lines.load(Ordering::Relaxed) - before));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(mon.child.id() as i32, libc::SIGTERM) };
    let _ = mon.child.wait();
    let log = mon.stderr.join().unwrap_or_default();
    println!(
        "{:<30} {:>12} {:>12} {:>9} {:>12} {:>14}",
        "workload", "base ns/op", "with ns/op", "overhead", "events/s", "filtered ns/op"
    );
    for (i, (name, _, n)) in storms.iter().enumerate() {
        let b = base[i].as_nanos() as f64 / *n as f64;
        let (d, ev) = with[i];
        let w = d.as_nanos() as f64 / *n as f64;
        let eps = ev as f64 / (d.as_secs_f64() + 0.2);
        let f = if i == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", filtered[i - 1].as_nanos() as f64 / *n as f64)
        };
        println!(
            "{name:<30} {b:>12.0} {w:>12.0} {:>8.2}x {eps:>12.0} {f:>14}",
            w / b
        );
    }
    println!(
        "monitor totals: events={} kernel_dropped={} queue_dropped={} decode_errors={}",
        field(&log, "events"),
        field(&log, "kernel_dropped"),
        field(&log, "queue_dropped"),
        field(&log, "decode_errors")
    );
    Ok(())
}
