//! `monitor events`: the decoded, enriched event stream (process ancestry, container and
//! Kubernetes attribution) as JSON lines on stdout. `monitor record` writes the same stream to
//! a file. Strings from inside processes are escaped and bounded by the decoder.

use std::collections::HashSet;
use std::io::Write;

use anyhow::Context as _;

use crate::bpf::CaptureOptions;
use crate::container::AttributorOptions;
use crate::pipeline::{EnrichedStream, parse_kinds};

/// What to capture and which events to keep; shared by `events` and `record`.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only these event types or families (execve, openat, connect ... or process, file,
    /// network, security, side_door); repeatable or comma-separated.
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only events of these processes (tgid); repeatable.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Only events from these cgroup v2 ids (the inode of the cgroup directory); repeatable.
    #[arg(long = "cgroup")]
    pub cgroups: Vec<u64>,
    /// Skip host processes in the kernel (host mount namespace and the cgroup2 root).
    #[arg(long)]
    pub containers_only: bool,
    /// Bulk (file) ring buffer size in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub ring_bulk_bytes: u32,
    /// Urgent (exec, network, security) ring buffer size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub ring_urgent_bytes: u32,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub filter: Filter,
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    stream(args.filter, std::io::BufWriter::new(stdout.lock()))
}

/// Capture, attribute and write events as JSON lines until SIGINT/SIGTERM or a closed output.
/// How long a stopping stream waits for the events still in the rings and queues.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

pub fn stream(filter: Filter, mut out: impl Write) -> anyhow::Result<i32> {
    let opts = CaptureOptions {
        ring_bulk_bytes: filter.ring_bulk_bytes,
        ring_urgent_bytes: filter.ring_urgent_bytes,
        kinds: parse_kinds(&filter.kinds)?,
        containers_only: filter.containers_only,
        ..CaptureOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let EnrichedStream { capture, attributor: _attributor, mut events } =
            EnrichedStream::start(opts, AttributorOptions::default())?;
        // Before "ready": a signal sent once the caller has seen it must reach the drain below.
        let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let cov = capture.coverage();
        tracing::info!(
            attached = cov.attached.len(),
            failed = cov.failed.len(),
            "Capture ready: kernel programs attached."
        );
        let pids: HashSet<u32> = filter.pids.iter().copied().collect();
        let cgroups: HashSet<u64> = filter.cgroups.iter().copied().collect();
        // False when the output is closed (e.g. piped into head): stop quietly.
        let emit = |out: &mut dyn Write, ev: &crate::event::Event| -> bool {
            if (!pids.is_empty() && !pids.contains(&ev.process.pid))
                || (!cgroups.is_empty() && !cgroups.contains(&ev.cgroup_id))
            {
                return true;
            }
            writeln!(out, "{}", ev.to_json_line()).is_ok()
        };
        // Flush at most every few ms, not per line: a storm of events must not turn into a
        // storm of write syscalls, and a reader still sees each event promptly.
        let mut flush = tokio::time::interval(std::time::Duration::from_millis(20));
        let mut signalled = false;
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    if !emit(&mut out, &ev) {
                        break;
                    }
                }
                _ = flush.tick() => if out.flush().is_err() { break },
                _ = sigint.recv() => { signalled = true; break }
                _ = sigterm.recv() => { signalled = true; break }
            }
        }
        let stats = capture.stats();
        // Detach, then write what the rings and queues still hold: a recording ends with
        // everything that happened before the signal, however far behind the reader was.
        capture.shutdown();
        if signalled {
            let until = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
            while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.recv()).await {
                if !emit(&mut out, &ev) {
                    break;
                }
            }
        }
        let _ = out.flush();
        // One field each (name=value), as scripts and `cargo xtask bench` read them.
        tracing::info!(
            events = stats.events,
            kernel_dropped = stats.kernel_dropped,
            queue_dropped = stats.queue_dropped,
            decode_errors = stats.decode_errors,
            "Capture stopped."
        );
        Ok(0)
    })
}
