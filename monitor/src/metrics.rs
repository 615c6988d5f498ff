//! Daemon-wide Prometheus metrics that are not owned by one pipeline stage, plus the small
//! functions the rest of the daemon calls to update them. Every metric lives in the default
//! registry, so `http` serves them all through `prometheus::gather()`. Names, types and labels
//! are documented in docs/METRICS.md; keep the two in step.
//!
//! Label sets are bounded: `rule` by the loaded rule set, `priority` by the eight Falco
//! priorities, `sink` by the configured sinks, `hook` by the programs the daemon knows, `ring`
//! by the ring buffers it creates. Pod and namespace labels are high-cardinality and only
//! appear on `monitor_alerts_by_workload_total`, which stays empty unless the operator opts in
//! ([`configure_labels`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, register_gauge,
    register_gauge_vec, register_histogram, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

/// `monitor_build_info{version,kernel,rules_hash}`: constant 1, the labels carry the facts.
static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "monitor_build_info",
        "Build and run-time facts of this monitor; the value is always 1.",
        &["version", "kernel", "rules_hash"]
    )
    .expect("metric registers once")
});

/// `monitor_hook_attached{hook}`: 1 when the kernel program is attached, 0 when it is not.
static HOOK_ATTACHED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "monitor_hook_attached",
        "Whether a kernel hook is attached (1) or not (0).",
        &["hook"]
    )
    .expect("metric registers once")
});

static RELOAD_TIMESTAMP: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "monitor_rules_last_reload_timestamp_seconds",
        "Unix time of the last rules load or reload attempt."
    )
    .expect("metric registers once")
});

static RELOAD_SUCCESS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_rules_last_reload_success",
        "Whether the last rules load or reload succeeded (1) or failed and kept the previous rules (0)."
    )
    .expect("metric registers once")
});

/// `result` is `success` or `failure`.
static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "monitor_rules_reloads_total",
        "Rules loads and reloads by result.",
        &["result"]
    )
    .expect("metric registers once")
});

/// Rule evaluation is expected to take microseconds; the buckets reach 10 ms to show outliers.
static RULE_EVAL: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "monitor_rule_eval_duration_seconds",
            "Time to evaluate the rules that apply to one event."
        )
        .buckets(vec![1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2])
    )
    .expect("metric registers once")
});

/// From the kernel timestamp of the event to the alert being handed to the sinks.
static EVENT_TO_ALERT: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "monitor_event_to_alert_latency_seconds",
            "Time from the kernel event to its alert being queued for the sinks."
        )
        .buckets(vec![1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0])
    )
    .expect("metric registers once")
});

/// `monitor_ring_fill_ratio{ring}`: 0..1, the highest the reader found in the last 15 s.
static RING_FILL: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "monitor_ring_fill_ratio",
        "Highest fill (0 to 1) of a kernel ring buffer found by the reader over the last 15 s.",
        &["ring"]
    )
    .expect("metric registers once")
});

/// Every rule match, before dedup and rate limiting. `rule`, `priority`.
pub(crate) static ALERTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "monitor_alerts_total",
        "Rule matches, counted before deduplication and rate limiting.",
        &["rule", "priority"]
    )
    .expect("metric registers once")
});

/// Matches held back by dedup or the rate limiter. `rule`.
pub(crate) static ALERTS_SUPPRESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "monitor_alerts_suppressed_total",
        "Rule matches held back by deduplication or rate limiting (reported in summary alerts).",
        &["rule"]
    )
    .expect("metric registers once")
});

/// Opt-in, high-cardinality: `rule`, `namespace`, `pod`.
static ALERTS_BY_WORKLOAD: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "monitor_alerts_by_workload_total",
        "Rule matches by Kubernetes workload (only with metrics.labels.namespace or .pod enabled).",
        &["rule", "namespace", "pod"]
    )
    .expect("metric registers once")
});

/// `sink` is the sink's label (`stdout`, `file`, `webhook`, `syslog`, suffixed `_N` when a
/// type is configured more than once).
pub(crate) static SINK_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("monitor_sink_sent_alerts_total", "Alerts a sink delivered.", &["sink"])
        .expect("metric registers once")
});

pub(crate) static SINK_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "monitor_sink_dropped_alerts_total",
        "Alerts a sink lost: its queue was full, or delivery failed after all retries.",
        &["sink"]
    )
    .expect("metric registers once")
});

pub(crate) static SINK_QUEUE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "monitor_sink_queue_length",
        "Alerts waiting in a sink's queue.",
        &["sink"]
    )
    .expect("metric registers once")
});

static LABEL_NAMESPACE: AtomicBool = AtomicBool::new(false);
static LABEL_POD: AtomicBool = AtomicBool::new(false);

/// Which high-cardinality labels the operator opted into (`metrics.labels` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelOptIns {
    pub namespace: bool,
    pub pod: bool,
}

/// Apply the label opt-ins; call once at start-up.
pub fn configure_labels(opt: LabelOptIns) {
    LABEL_NAMESPACE.store(opt.namespace, Ordering::Relaxed);
    LABEL_POD.store(opt.pod, Ordering::Relaxed);
}

/// Force registration of every metric of this module so that they are exported (at zero)
/// from the first scrape, and make sure the process collector is present.
pub fn init() {
    LazyLock::force(&BUILD_INFO);
    LazyLock::force(&HOOK_ATTACHED);
    LazyLock::force(&RELOAD_TIMESTAMP);
    LazyLock::force(&RELOAD_SUCCESS);
    LazyLock::force(&RELOADS);
    LazyLock::force(&RULE_EVAL);
    LazyLock::force(&EVENT_TO_ALERT);
    LazyLock::force(&RING_FILL);
    LazyLock::force(&ALERTS);
    LazyLock::force(&ALERTS_SUPPRESSED);
    LazyLock::force(&ALERTS_BY_WORKLOAD);
    LazyLock::force(&SINK_SENT);
    LazyLock::force(&SINK_DROPPED);
    LazyLock::force(&SINK_QUEUE);
    register_rules([(crate::alert::DROP_RULE, crate::alert::Priority::Critical.as_str())]);
    crate::budget::init_metrics();
    export_drop_series_at_zero();
    ensure_process_collector();
}

/// The loss counters other modules own appear on their first increment; export every series of
/// their bounded label sets at 0 from the start, so that `increase()` in the alert rules
/// (`MonitorEventsDropped`) sees the first drop and the first decode error instead of a series
/// that starts at its first value.
fn export_drop_series_at_zero() {
    for k in crate::event::EventType::ALL {
        crate::bpf::KERNEL_DROPPED.with_label_values(&[k.name()]).inc_by(0);
    }
    crate::bpf::QUEUE_DROPPED.with_label_values(&["capture"]).inc_by(0);
    // decode.rs: `DecodeError::reason`.
    for reason in ["short", "version", "length", "kind", "strings"] {
        crate::decode::DECODE_ERRORS.with_label_values(&[reason]).inc_by(0);
    }
}

/// The prometheus crate's default registry registers a `ProcessCollector` for this process on
/// Linux when the `process` feature is on; register one ourselves only if it is missing, so a
/// change in that behaviour cannot silently drop `process_cpu_seconds_total` and friends.
fn ensure_process_collector() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let present = prometheus::gather()
            .iter()
            .any(|mf| mf.name() == "process_cpu_seconds_total");
        if !present {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = prometheus::register(Box::new(pc)) {
                tracing::warn!(error = %e, "Could not register the process collector; process metrics are missing.");
            }
        }
    });
}

/// Set `monitor_build_info`. Replaces any earlier labels (the rules hash changes on reload).
pub fn set_build_info(version: &str, kernel: &str, rules_hash: &str) {
    BUILD_INFO.reset();
    BUILD_INFO.with_label_values(&[version, kernel, rules_hash]).set(1);
}

/// The running kernel's release (`uname -r`), for `set_build_info`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Record whether a hook is attached; call for every hook the capture layer tried.
pub fn set_hook_attached(hook: &str, attached: bool) {
    HOOK_ATTACHED.with_label_values(&[hook]).set(i64::from(attached));
}

/// Record the outcome of a rules load or reload.
pub fn record_reload(success: bool) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    RELOAD_TIMESTAMP.set(now.as_secs_f64());
    RELOAD_SUCCESS.set(i64::from(success));
    RELOADS
        .with_label_values(&[if success { "success" } else { "failure" }])
        .inc();
}

pub fn observe_rule_eval(d: Duration) {
    RULE_EVAL.observe(d.as_secs_f64());
}

/// `event_ts_ns` is the event's `ts` (ns since the Unix epoch). Clock skew that would make the
/// latency negative is recorded as 0.
pub fn observe_event_to_alert(event_ts_ns: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let lat = now.saturating_sub(u128::from(event_ts_ns)) as f64 / 1e9;
    EVENT_TO_ALERT.observe(lat);
}

/// Put a module's metric in the default registry. If the name is taken (a clash between
/// modules), the metric still counts, unexported, rather than taking the process down.
pub(crate) fn register<M: prometheus::core::Collector + Clone + 'static>(m: prometheus::Result<M>) -> M {
    let m = m.expect("static metric definition is valid");
    if let Err(e) = prometheus::default_registry().register(Box::new(m.clone())) {
        tracing::warn!(error = %e, "Metric could not be registered; it will not be exported.");
    }
    m
}

/// `fill` is clamped to 0..=1.
pub fn set_ring_fill(ring: &str, fill: f64) {
    RING_FILL.with_label_values(&[ring]).set(fill.clamp(0.0, 1.0));
}

/// Export `monitor_alerts_total` and `monitor_alerts_suppressed_total` at 0 for every loaded
/// rule. Call after each (re)load: a series that first appears at 1 is invisible to
/// `increase()`/`rate()`, so without this the first match of a rule would not fire the
/// Prometheus alert rules. `priority` is the Falco spelling (`Priority::as_str`).
pub fn register_rules<'a>(rules: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (rule, priority) in rules {
        ALERTS.with_label_values(&[rule, priority]).inc_by(0);
        ALERTS_SUPPRESSED.with_label_values(&[rule]).inc_by(0);
    }
}

/// Count one rule match (also the opt-in workload counter). Called by `alert::NoiseControl`.
pub(crate) fn count_alert(rule: &str, priority: &str, namespace: Option<&str>, pod: Option<&str>) {
    ALERTS.with_label_values(&[rule, priority]).inc();
    let ns_on = LABEL_NAMESPACE.load(Ordering::Relaxed);
    let pod_on = LABEL_POD.load(Ordering::Relaxed);
    if ns_on || pod_on {
        let ns = if ns_on { namespace.unwrap_or("") } else { "" };
        let pod = if pod_on { pod.unwrap_or("") } else { "" };
        ALERTS_BY_WORKLOAD.with_label_values(&[rule, ns, pod]).inc();
    }
}

/// Helpers for tests that read one series of the default registry.
#[doc(hidden)]
pub fn counter_value(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for mf in prometheus::gather() {
        if mf.name() != name {
            continue;
        }
        for m in mf.get_metric() {
            let ok = labels
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v));
            if ok {
                return Some(match mf.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_replaces_labels_and_process_metrics_exist() {
        init();
        set_build_info("0.1.0", "6.18.0", "aaa");
        set_build_info("0.1.0", "6.18.0", "bbb");
        assert_eq!(counter_value("monitor_build_info", &[("rules_hash", "bbb")]), Some(1.0));
        assert_eq!(counter_value("monitor_build_info", &[("rules_hash", "aaa")]), None);
        let names: Vec<String> = prometheus::gather().iter().map(|m| m.name().to_string()).collect();
        assert!(names.iter().any(|n| n == "process_resident_memory_bytes"), "{names:?}");
    }

    #[test]
    fn loss_counters_are_exported_at_zero_from_the_start() {
        init();
        for (name, label, value) in [
            ("monitor_capture_kernel_dropped_events_total", "type", "openat"),
            ("monitor_capture_kernel_dropped_events_total", "type", "execve"),
            ("monitor_queue_dropped_events_total", "stage", "capture"),
            ("monitor_queue_dropped_events_total", "stage", "memory_budget"),
            ("monitor_decode_errors_total", "reason", "strings"),
        ] {
            assert!(counter_value(name, &[(label, value)]).is_some(), "{name}{{{label}={value}}}");
        }
    }

    #[test]
    fn hook_gauge_and_ring_fill_clamp() {
        set_hook_attached("sys_enter_execve", true);
        set_hook_attached("lsm_bprm", false);
        assert_eq!(
            counter_value("monitor_hook_attached", &[("hook", "sys_enter_execve")]),
            Some(1.0)
        );
        assert_eq!(
            counter_value("monitor_hook_attached", &[("hook", "lsm_bprm")]),
            Some(0.0)
        );
        set_ring_fill("events", 3.0);
        assert_eq!(
            counter_value("monitor_ring_fill_ratio", &[("ring", "events")]),
            Some(1.0)
        );
    }

    #[test]
    fn registered_rules_export_zero() {
        register_rules([("Zero rule", "Notice")]);
        assert_eq!(
            counter_value("monitor_alerts_total", &[("rule", "Zero rule"), ("priority", "Notice")]),
            Some(0.0)
        );
        assert_eq!(
            counter_value("monitor_alerts_suppressed_total", &[("rule", "Zero rule")]),
            Some(0.0)
        );
    }

    #[test]
    fn reload_records_result() {
        record_reload(false);
        assert_eq!(counter_value("monitor_rules_last_reload_success", &[]), Some(0.0));
        record_reload(true);
        assert_eq!(counter_value("monitor_rules_last_reload_success", &[]), Some(1.0));
        assert!(counter_value("monitor_rules_reloads_total", &[("result", "failure")]).unwrap() >= 1.0);
    }
}
