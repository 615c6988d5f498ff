//! Wires the stages together: capture -> attribution -> rules -> alert shaping -> sinks, with
//! metrics and the HTTP endpoints beside them. Each stage is a tokio task joined to the next by
//! a bounded channel; ARCHITECTURE.md says what happens when each is full.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::alert::{self, Alert, Dispatcher};
use crate::budget::{self, PressureHandle, Shedder};
use crate::bpf::{Capture, CaptureOptions};
use crate::config::{Config, RulesConfig};
use crate::container::{self, Attributor, AttributorOptions};
use crate::event::{Event, EventType};
use crate::http::{HttpServer, Readiness};
use crate::rules::{self, Diagnostic, LoadOptions, RuleSet};
use crate::sink::Sinks;
use crate::metrics;

/// How long shutdown waits for queued alerts to reach the sinks.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
/// At most one overload ("events dropped") alert per interval, like Falco's default.
const DROP_ALERT_INTERVAL: Duration = Duration::from_secs(10);
/// How often the rule files are checked for changes (besides SIGHUP).
const RULE_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Capture plus attribution: the enriched event stream behind `monitor run`, `monitor events`
/// and `monitor record`.
pub struct EnrichedStream {
    pub capture: Capture,
    pub attributor: Arc<Attributor>,
    pub events: mpsc::Receiver<Box<Event>>,
}

impl EnrichedStream {
    /// Must run inside a tokio runtime. Containers already running are discovered before the
    /// programs attach, so their first events attribute at once.
    pub fn start(capture: CaptureOptions, attribution: AttributorOptions) -> Result<EnrichedStream> {
        let attributor = Arc::new(Attributor::new(attribution).context("setting up container attribution")?);
        let found = attributor.discover();
        info!(containers = found, "Discovered the containers already running.");
        let queue = capture.queue_capacity;
        let (capture, raw) = Capture::start(capture).context("loading and attaching the eBPF programs")?;
        let events = container::spawn_stage(attributor.clone(), raw, queue);
        Ok(EnrichedStream { capture, attributor, events })
    }
}

/// Kind names (`execve`) or family names (`process`, `file` ...) to a set of kinds.
pub fn parse_kinds(names: &[String]) -> Result<Option<HashSet<EventType>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut set = HashSet::new();
    for name in names.iter().flat_map(|n| n.split(',')).filter(|n| !n.is_empty()) {
        if let Some(k) = EventType::from_name(name) {
            set.insert(k);
            continue;
        }
        let family: Vec<_> = EventType::ALL.iter().copied().filter(|k| k.family().name() == name).collect();
        anyhow::ensure!(
            !family.is_empty(),
            "unknown event type or family {name:?}; families: process, file, network, security, side_door; types: {}",
            EventType::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        );
        set.extend(family);
    }
    Ok(Some(set))
}


/// The rule paths to load: the configured ones, or the shipped set. The shipped set is
/// `/etc/monitor/rules.d` in the image; from a source checkout it is the repository's `rules/`.
pub fn rule_paths(cfg: &RulesConfig) -> Vec<PathBuf> {
    let installed = PathBuf::from("/etc/monitor/rules.d");
    if cfg.paths == [installed.clone()] && !installed.exists() {
        return vec![rules::shipped_rules_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))];
    }
    cfg.paths.clone()
}

pub fn load_options(cfg: &RulesConfig) -> LoadOptions {
    LoadOptions {
        min_priority: cfg.min_priority,
        enable_tags: cfg.enable_tags.clone(),
        disable_tags: cfg.disable_tags.clone(),
        enable_rules: cfg.enable_rules.clone(),
        disable_rules: cfg.disable_rules.clone(),
        overrides: cfg.overrides.iter().cloned().collect(),
    }
}

fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        // Rendered with file:line:col and a caret; one block per diagnostic.
        eprintln!("{d}");
    }
}

/// The live rule set and what it was loaded from; swapped atomically on reload.
struct LiveRules {
    set: Arc<ArcSwap<RuleSet>>,
    paths: Vec<PathBuf>,
    opts: LoadOptions,
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

impl LiveRules {
    fn load(paths: Vec<PathBuf>, opts: LoadOptions) -> Result<LiveRules> {
        let (set, diags) = match rules::load(&paths, &opts) {
            Ok(loaded) => loaded,
            Err(diags) => {
                log_diagnostics(&diags);
                metrics::record_reload(false);
                anyhow::bail!("the rule files have errors (see above); nothing was started");
            }
        };
        log_diagnostics(&diags);
        rules::set_loaded_metric(&set);
        metrics::record_reload(true);
        let live = LiveRules { set: Arc::new(ArcSwap::from_pointee(set)), stamp: stamp(&paths, &opts), paths, opts };
        live.publish();
        Ok(live)
    }

    /// Export what the live set is: its hash in build_info and a zero series per rule.
    fn publish(&self) {
        let set = self.set.load();
        metrics::set_build_info(env!("CARGO_PKG_VERSION"), &metrics::kernel_release(), &set.content_hash());
        metrics::register_rules(set.rule_priorities().map(|(name, prio)| (name, prio.as_str())));
    }

    /// Reload; a failure keeps the previous set live (logged and counted).
    fn reload(&mut self, why: &str) {
        self.stamp = stamp(&self.paths, &self.opts);
        // rules::reload counts the attempt (monitor_rules_reloads_total{result}).
        match rules::reload(&self.set, &self.paths, &self.opts) {
            Ok(diags) => {
                log_diagnostics(&diags);
                self.publish();
                info!(reason = why, rules = self.set.load().len(), "Rules reloaded.");
            }
            Err(diags) => {
                log_diagnostics(&diags);
                warn!(reason = why, "Rule reload failed; the previous rules stay live.");
            }
        }
    }

    fn changed_on_disk(&self) -> bool {
        stamp(&self.paths, &self.opts) != self.stamp
    }
}

/// Modification time and size of every rule file: a cheap change detector that also sees
/// files replaced by rename (editors, ConfigMap updates).
fn stamp(paths: &[PathBuf], opts: &LoadOptions) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    rules::expand_paths(paths)
        .into_iter()
        .chain(rules::expand_paths(&opts.overrides))
        .filter_map(Result::ok)
        .map(|p| {
            let md = std::fs::metadata(&p).ok();
            let mtime = md.as_ref().and_then(|m| m.modified().ok());
            let len = md.map(|m| m.len()).unwrap_or(0);
            (p, mtime, len)
        })
        .collect()
}

/// Totals of everything dropped so far, by stage, for the overload alert.
fn drop_totals() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for mf in prometheus::gather() {
        let stage_label = match mf.name() {
            "monitor_capture_kernel_dropped_events_total" => Some("kernel"),
            "monitor_queue_dropped_events_total" => None,
            "monitor_sink_dropped_alerts_total" => Some("sink"),
            _ => continue,
        };
        for m in mf.get_metric() {
            let stage = stage_label.map(str::to_string).unwrap_or_else(|| {
                m.get_label().iter().find(|l| l.name() == "stage").map(|l| l.value().to_string()).unwrap_or_default()
            });
            *out.entry(stage).or_insert(0) += m.get_counter().get_value() as u64;
        }
    }
    out
}

fn deltas(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Evaluate one event and hand every match to the alert stage.
fn evaluate(set: &RuleSet, ev: &Event, dispatcher: &mut Dispatcher, hostname: &str) {
    let started = Instant::now();
    let matches = set.evaluate(ev);
    metrics::observe_rule_eval(started.elapsed());
    for m in matches {
        dispatcher.dispatch(Alert::from_match(m, ev, hostname), ev.ts, Instant::now());
    }
}

/// `monitor run`: everything, until SIGINT/SIGTERM.
pub async fn run_daemon(cfg: Config) -> Result<()> {
    metrics::init();
    metrics::configure_labels(cfg.metrics.labels);
    let readiness = Readiness::new();
    let hostname = alert::hostname();

    // HTTP first: /healthz answers while the programs load; /readyz waits for both flags.
    let server = HttpServer::bind(&cfg.http).await.context("binding the metrics address")?;
    info!(address = %server.local_addr(), "Serving /metrics, /healthz and /readyz.");
    let (stop_http, mut http_stopped) = watch::channel(false);
    let http = tokio::spawn(server.run(readiness.clone(), async move {
        let _ = http_stopped.wait_for(|stop| *stop).await;
    }));
    // Sizes come from the memory budget; the watchdog enforces it from here on.
    let plan = cfg.memory_plan().context("memory budget")?;
    plan.publish();
    let pressure = PressureHandle::default();
    let watchdog = budget::spawn_watchdog(&plan, pressure.clone(), stop_http.subscribe());
    let shedder = Shedder::new(pressure);

    let mut live = LiveRules::load(rule_paths(&cfg.rules), load_options(&cfg.rules))?;
    info!(rules = live.set.load().len(), "Rules loaded.");
    readiness.set_rules_loaded(true);

    let sinks = Sinks::start(&cfg.effective_sinks(), plan.alert_queue)
        .context("starting the alert sinks")?
        .with_queue_bytes(plan.alert_queue_bytes);
    let redactor = cfg.redaction.redactor().context("redaction patterns")?;
    let rate_limit = alert::RateLimitConfig { max_keys: Some(plan.rate_limit_keys), ..cfg.rate_limit.clone() };
    let mut dispatcher = Dispatcher::new(redactor, rate_limit, DROP_ALERT_INTERVAL, sinks, hostname.to_string());

    let mut capture = CaptureOptions {
        kinds: parse_kinds(&cfg.capture.kinds).context("capture.kinds")?,
        containers_only: cfg.capture.containers_only,
        queue_capacity: plan.event_queue,
        proctable_capacity: plan.proctable_capacity,
        ..CaptureOptions::default()
    };
    capture.ring_bulk_bytes = u32::try_from(cfg.capture.ring_buffer_bytes.0).context("capture.ring_buffer_bytes")?;
    let attribution = AttributorOptions {
        cache_capacity: plan.cgroup_cache_capacity,
        max_containers: plan.max_containers,
        ..AttributorOptions::default()
    };
    let mut stream = EnrichedStream::start(capture, attribution)?;
    let coverage = stream.capture.coverage();
    for hook in &coverage.attached {
        metrics::set_hook_attached(hook, true);
    }
    for (hook, why) in &coverage.failed {
        metrics::set_hook_attached(hook, false);
        warn!(hook = %hook, reason = %why, "A hook could not attach; its events are not seen on this kernel.");
    }
    // Never blind without saying so: every event kind this build or kernel does not see.
    for (kind, k) in coverage.kinds.iter().filter(|(_, k)| !k.covered) {
        warn!(kind = %kind, reason = k.reason.as_deref().unwrap_or("unknown"), "Event kind not covered.");
    }
    for note in &coverage.notes {
        warn!(note = %note, "Known blind spot.");
    }
    // A monitor that sees nothing must not report ready: with no program attached (typically
    // CAP_PERFMON or CAP_BPF missing) stop with the reasons instead.
    if coverage.attached.is_empty() {
        let first = coverage.failed.iter().next().map(|(h, why)| format!("{h}: {why}")).unwrap_or_default();
        anyhow::bail!(
            "no eBPF program could attach ({} failed; first: {first}); the monitor needs CAP_BPF and CAP_PERFMON",
            coverage.failed.len()
        );
    }
    // Before "ready": a signal sent once the operator (or a test) has seen it must reach the
    // orderly shutdown below, not the default action.
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    readiness.set_programs_attached(true);
    info!(attached = coverage.attached.len(), failed = coverage.failed.len(), "Monitor ready.");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut watch_rules = tokio::time::interval(RULE_WATCH_INTERVAL);
    let mut dropped_before = drop_totals();

    loop {
        tokio::select! {
            ev = stream.events.recv() => match ev {
                Some(ev) => if shedder.admit(ev.kind) { evaluate(&live.set.load(), &ev, &mut dispatcher, hostname) },
                None => { warn!("The event stream ended."); break; }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                dispatcher.tick(now);
                let totals = drop_totals();
                dispatcher.report_drops(&deltas(&totals, &dropped_before), now);
                dropped_before = totals;
            }
            _ = watch_rules.tick() => if live.changed_on_disk() { live.reload("rule files changed") },
            _ = sighup.recv() => live.reload("SIGHUP"),
            _ = sigterm.recv() => { info!("SIGTERM: shutting down."); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down."); break; }
        }
    }

    // Detach first so nothing new arrives, then let what is queued reach the rules and sinks.
    readiness.set_programs_attached(false);
    let t = Instant::now();
    stream.capture.shutdown();
    debug!(elapsed_ms = t.elapsed().as_millis() as u64, "Programs detached.");
    let drain_until = tokio::time::Instant::now() + SHUTDOWN_FLUSH;
    while let Ok(Some(ev)) = tokio::time::timeout_at(drain_until, stream.events.recv()).await {
        evaluate(&live.set.load(), &ev, &mut dispatcher, hostname);
    }
    debug!(elapsed_ms = t.elapsed().as_millis() as u64, "Queued events evaluated.");
    dispatcher.shutdown(SHUTDOWN_FLUSH).await;
    let _ = stop_http.send(true);
    let _ = http.await;
    let _ = watchdog.await;
    info!(elapsed_ms = t.elapsed().as_millis() as u64, "Stopped cleanly.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_families_parse_repeated_and_comma_separated() {
        assert_eq!(parse_kinds(&[]).unwrap(), None);
        let k = parse_kinds(&["execve,openat".into(), "connect".into()]).unwrap().unwrap();
        assert_eq!(k, [EventType::Execve, EventType::Openat, EventType::Connect].into_iter().collect());
        let net = parse_kinds(&["network".into()]).unwrap().unwrap();
        assert!(net.contains(&EventType::Connect) && net.contains(&EventType::Accept4));
        assert!(!net.contains(&EventType::Execve));
        let e = parse_kinds(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown event type or family \"nope\""), "{e}");
    }
}
