//! Alert sinks: stdout, a rotating file, an HTTP webhook and syslog.
//!
//! Each sink has its own bounded queue and its own task. [`Sinks::send`] only `try_send`s into
//! each queue, so a slow or dead sink never blocks the caller or the other sinks: when a queue is
//! full the alert is dropped for that sink and counted in
//! `monitor_sink_dropped_alerts_total{sink}`. Delivered alerts are counted in
//! `monitor_sink_sent_alerts_total{sink}`.
//!
//! A queue is bounded twice: by a count of alerts and by their bytes ([`Alert::approx_bytes`],
//! [`Sinks::with_queue_bytes`]), because an alert's size follows untrusted command lines and
//! paths: a stuck webhook holding a full queue of hundred-kilobyte alerts must not cost a
//! hundred times what the memory budget planned for it.

mod file;
mod syslog;
mod webhook;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::metrics::{SINK_DROPPED, SINK_QUEUE, SINK_SENT};

pub use file::FileSink;
pub use syslog::{Facility, format_rfc5424};

/// One configured sink, as written in the config file (`type: stdout|file|webhook|syslog`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to `path`, rotated at `max_bytes` keeping `keep` old files
    /// (`path.1` newest ... `path.<keep>` oldest).
    File {
        path: PathBuf,
        #[serde(default = "default_max_bytes")]
        max_bytes: u64,
        #[serde(default = "default_keep")]
        keep: u32,
    },
    /// POST each alert as JSON.
    Webhook {
        url: String,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// Attempts after the first, with exponential backoff from `backoff`.
        #[serde(default = "default_retries")]
        retries: u32,
        #[serde(default = "default_backoff", with = "humantime_serde")]
        backoff: Duration,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// PEM file with extra CA certificates to trust (besides the built-in web roots).
        #[serde(default)]
        tls_ca: Option<PathBuf>,
    },
    /// RFC 5424 messages over a unix datagram socket and/or UDP.
    Syslog {
        /// Unix datagram socket, usually `/dev/log`.
        #[serde(default)]
        socket: Option<PathBuf>,
        /// `host:port` for UDP.
        #[serde(default)]
        udp: Option<String>,
        #[serde(default)]
        facility: Facility,
        #[serde(default = "default_app_name")]
        app_name: String,
    },
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_app_name() -> String {
    "monitor".to_string()
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Stdout => "stdout",
            SinkConfig::File { .. } => "file",
            SinkConfig::Webhook { .. } => "webhook",
            SinkConfig::Syslog { .. } => "syslog",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sinks need a tokio runtime; Sinks::start was called outside one")]
    NoRuntime,
    #[error("sink {sink}: {message}")]
    Config { sink: String, message: String },
    #[error("sink {sink}: cannot open {path}: {source}")]
    Open {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Running {
    label: String,
    tx: mpsc::Sender<Arc<Alert>>,
    task: JoinHandle<()>,
    /// Bytes of the alerts in this sink's queue.
    queued_bytes: Arc<AtomicU64>,
}

/// The running sinks.
pub struct Sinks {
    sinks: Vec<Running>,
    /// Most bytes of alerts one sink's queue may hold.
    queue_bytes: u64,
}

/// What every sink task gets: its label (for metrics and logs) and its queue.
pub(crate) struct SinkCtx {
    pub label: String,
    pub rx: mpsc::Receiver<Arc<Alert>>,
    queued_bytes: Arc<AtomicU64>,
}

impl SinkCtx {
    pub(crate) fn sent(&self) {
        SINK_SENT.with_label_values(&[&self.label]).inc();
    }
    pub(crate) fn dropped(&self, n: u64) {
        SINK_DROPPED.with_label_values(&[&self.label]).inc_by(n);
    }
    /// Call for every alert taken from the queue.
    pub(crate) fn dequeued(&self, alert: &Alert) {
        SINK_QUEUE.with_label_values(&[&self.label]).dec();
        self.queued_bytes.fetch_sub(alert.approx_bytes(), Ordering::Relaxed);
    }
}

impl Sinks {
    /// Start one task per sink, each with a queue of `queue_capacity` alerts. Must be called
    /// inside a tokio runtime. Fails when a sink cannot start (bad URL, unwritable file ...).
    pub fn start(cfgs: &[SinkConfig], queue_capacity: usize) -> anyhow::Result<Sinks> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| SinkError::NoRuntime)?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut sinks = Vec::new();
        for cfg in cfgs {
            let n = seen.entry(cfg.kind()).or_default();
            let label = if *n == 0 {
                cfg.kind().to_string()
            } else {
                format!("{}_{n}", cfg.kind())
            };
            *n += 1;
            let (tx, rx) = mpsc::channel(queue_capacity.max(1));
            let queued_bytes = Arc::new(AtomicU64::new(0));
            let ctx = SinkCtx {
                label: label.clone(),
                rx,
                queued_bytes: queued_bytes.clone(),
            };
            // Export the counters at zero from the start, so rate() works on the first drop.
            SINK_SENT.with_label_values(&[&label]).inc_by(0);
            SINK_DROPPED.with_label_values(&[&label]).inc_by(0);
            SINK_QUEUE.with_label_values(&[&label]).set(0);
            let task = match cfg {
                // Not locked for the task's life: other code may print too.
                SinkConfig::Stdout => handle.spawn_blocking(move || lines_sink(ctx, std::io::stdout())),
                SinkConfig::File { path, max_bytes, keep } => {
                    let f = FileSink::open(path.clone(), *max_bytes, *keep).map_err(|source| SinkError::Open {
                        sink: label.clone(),
                        path: path.clone(),
                        source,
                    })?;
                    handle.spawn_blocking(move || file::run(ctx, f))
                }
                SinkConfig::Webhook {
                    url,
                    timeout,
                    retries,
                    backoff,
                    headers,
                    tls_ca,
                } => {
                    let w = webhook::Webhook::new(url, *timeout, *retries, *backoff, headers, tls_ca.as_deref())
                        .map_err(|e| SinkError::Config {
                            sink: label.clone(),
                            message: format!("{e:#}"),
                        })?;
                    handle.spawn(webhook::run(ctx, w))
                }
                SinkConfig::Syslog {
                    socket,
                    udp,
                    facility,
                    app_name,
                } => {
                    let s = syslog::Syslog::new(socket.clone(), udp.clone(), *facility, app_name).map_err(|e| {
                        SinkError::Config {
                            sink: label.clone(),
                            message: format!("{e:#}"),
                        }
                    })?;
                    handle.spawn_blocking(move || syslog::run(ctx, s))
                }
            };
            tracing::info!(sink = %label, "Alert sink started.");
            sinks.push(Running {
                label,
                tx,
                task,
                queued_bytes,
            });
        }
        Ok(Sinks {
            sinks,
            queue_bytes: u64::MAX,
        })
    }

    /// Bound each sink's queue to `bytes` of alerts as well (the memory plan's share per sink).
    /// An alert that does not fit is dropped for that sink and counted; one alert is always
    /// admitted into an empty queue, however large.
    pub fn with_queue_bytes(mut self, bytes: u64) -> Sinks {
        self.queue_bytes = bytes;
        self
    }

    /// Queue the alert for every sink. Never blocks; a full queue drops for that sink only.
    pub fn send(&self, alert: Arc<Alert>) {
        let size = alert.approx_bytes();
        for s in &self.sinks {
            // Reserve before the send so the consumer's decrements never run first.
            let before = s.queued_bytes.fetch_add(size, Ordering::Relaxed);
            let q = SINK_QUEUE.with_label_values(&[&s.label]);
            q.inc();
            let over = before > 0 && before.saturating_add(size) > self.queue_bytes;
            if over || s.tx.try_send(Arc::clone(&alert)).is_err() {
                q.dec();
                s.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                SINK_DROPPED.with_label_values(&[&s.label]).inc();
            }
        }
    }

    /// Bytes of alerts queued for each sink now (labels in configuration order).
    pub fn queued_bytes(&self) -> Vec<(String, u64)> {
        self.sinks
            .iter()
            .map(|s| (s.label.clone(), s.queued_bytes.load(Ordering::Relaxed)))
            .collect()
    }

    /// The sinks' labels, in configuration order.
    pub fn labels(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.label.clone()).collect()
    }

    /// Close the queues and wait up to `timeout` for every sink to deliver what it holds.
    /// Sinks still busy then are abandoned (their queued alerts are lost and logged).
    pub async fn shutdown(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tasks = Vec::new();
        for s in self.sinks {
            drop(s.tx);
            tasks.push((s.label, s.task));
        }
        for (label, mut task) in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(sink = %label, error = %e, "Alert sink task failed; its queued alerts are lost.")
                }
                Err(_) => {
                    task.abort();
                    let lost = SINK_QUEUE.with_label_values(&[&label]).get();
                    tracing::error!(sink = %label, queued = lost, "Alert sink did not finish in time at shutdown; its queued alerts are lost.");
                }
            }
        }
    }
}

/// Write JSON lines to a blocking writer, flushing when the queue runs empty.
fn lines_sink(mut ctx: SinkCtx, mut w: impl Write) {
    while let Some(a) = ctx.rx.blocking_recv() {
        let mut batch = vec![a];
        while let Ok(more) = ctx.rx.try_recv() {
            batch.push(more);
            if batch.len() >= 256 {
                break;
            }
        }
        for a in &batch {
            ctx.dequeued(a);
            let mut line = a.to_json();
            line.push('\n');
            match w.write_all(line.as_bytes()) {
                Ok(()) => ctx.sent(),
                Err(e) => {
                    ctx.dropped(1);
                    tracing::warn!(sink = %ctx.label, error = %e, "Could not write an alert.");
                }
            }
        }
        if let Err(e) = w.flush() {
            tracing::warn!(sink = %ctx.label, error = %e, "Could not flush alerts.");
        }
    }
}
