//! `monitor events`: capture and print enriched-by-process events as JSON lines on stdout.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{Context as _, bail};

use crate::bpf::{Capture, CaptureOptions};
use crate::event::EventType;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these event types (Falco names: execve, openat, connect ...); repeatable.
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

pub fn parse_kinds(names: &[String]) -> anyhow::Result<Option<HashSet<EventType>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = HashSet::new();
    for n in names {
        for n in n.split(',').filter(|s| !s.is_empty()) {
            match EventType::from_name(n) {
                Some(k) => {
                    out.insert(k);
                }
                None => bail!(
                    "unknown event type {n:?}; known: {}",
                    EventType::ALL
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }
    Ok(Some(out))
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let kinds = parse_kinds(&args.kinds)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(args, kinds))
}

async fn run(args: Args, kinds: Option<HashSet<EventType>>) -> anyhow::Result<i32> {
    let opts = CaptureOptions {
        ring_bulk_bytes: args.ring_bulk_bytes,
        ring_urgent_bytes: args.ring_urgent_bytes,
        kinds,
        containers_only: args.containers_only,
        ..CaptureOptions::default()
    };
    let (capture, mut rx) = Capture::start(opts)?;
    let cov = capture.coverage();
    tracing::info!(
        attached = cov.attached.len(),
        failed = cov.failed.len(),
        "Capture ready: kernel programs attached."
    );
    let pids: HashSet<u32> = args.pids.iter().copied().collect();
    let cgroups: HashSet<u64> = args.cgroups.iter().copied().collect();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                // Write what is queued now, then flush once: every line is out as soon as the
                // queue is empty, without a write(2) per event under load.
                let mut next = Some(ev);
                let mut failed = false;
                let mut n = 0;
                while let Some(ev) = next.take() {
                    let keep = (pids.is_empty() || pids.contains(&ev.process.pid))
                        && (cgroups.is_empty() || cgroups.contains(&ev.cgroup_id));
                    if keep && writeln!(out, "{}", ev.to_json_line()).is_err() {
                        failed = true;
                        break;
                    }
                    n += 1;
                    if n < 1024 {
                        next = rx.try_recv().ok();
                    }
                }
                if failed || out.flush().is_err() {
                    // stdout closed (e.g. piped into head): stop quietly.
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    drop(out);
    let st = capture.stats();
    capture.shutdown();
    tracing::info!(
        events = st.events,
        kernel_dropped = st.kernel_dropped,
        queue_dropped = st.queue_dropped,
        decode_errors = st.decode_errors,
        "Capture stopped."
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_repeated_and_comma_separated() {
        assert_eq!(parse_kinds(&[]).unwrap(), None);
        let k = parse_kinds(&["execve,openat".into(), "connect".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            k,
            [EventType::Execve, EventType::Openat, EventType::Connect]
                .into_iter()
                .collect()
        );
        let e = parse_kinds(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown event type \"nope\""), "{e}");
    }
}
