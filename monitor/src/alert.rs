//! Alerts in Falco's JSON output format, plus our own context, and the last steps before the
//! sinks: redaction of secrets and noise control (dedup + per-(rule, container) rate limiting
//! with summary alerts).
//!
//! Falco's fields (`time`, `rule`, `priority`, `output`, `output_fields`, `tags`, `hostname`,
//! `source`) keep Falco's names, types and spellings so that Falcosidekick and anything else
//! that reads Falco's JSON reads ours. Our additions are extra top-level keys, which such
//! consumers ignore.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Event, HOST_CONTAINER_ID};
use crate::metrics;

/// Falco's priorities. `Ord` follows severity: `Debug < Informational < ... < Emergency`, so a
/// minimum-priority filter is `p >= min`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    #[default]
    Debug,
    Informational,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Debug,
        Priority::Informational,
        Priority::Notice,
        Priority::Warning,
        Priority::Error,
        Priority::Critical,
        Priority::Alert,
        Priority::Emergency,
    ];

    /// Falco's spelling, as written in `priority` of the JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }

    /// The syslog severity (RFC 5424): Falco's priorities are syslog's levels.
    pub const fn syslog_severity(self) -> u8 {
        match self {
            Priority::Emergency => 0,
            Priority::Alert => 1,
            Priority::Critical => 2,
            Priority::Error => 3,
            Priority::Warning => 4,
            Priority::Notice => 5,
            Priority::Informational => 6,
            Priority::Debug => 7,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown priority {0:?} (expected one of emergency, alert, critical, error, warning, notice, informational, debug)"
)]
pub struct ParsePriorityError(pub String);

impl FromStr for Priority {
    type Err = ParsePriorityError;

    /// Case-insensitive; also accepts Falco's rule-file aliases `info` and `warn`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p = match s.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" | "warn" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(ParsePriorityError(s.to_string())),
        };
        Ok(p)
    }
}

/// Serde for config files: case-insensitive names (`warning`, `WARNING`, `Warning`).
pub mod priority_ci {
    use serde::{Deserialize, Deserializer, de::Error};

    use super::Priority;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Priority, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Falco-compatible alert with our context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The event's kernel time, UTC, RFC 3339 with nanoseconds (`2026-11-23T04:46:23.123456789Z`).
    pub time: String,
    pub rule: String,
    pub priority: Priority,
    pub output: String,
    pub output_fields: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    pub hostname: String,
    /// Always `syscall` for rule alerts, as Falco's syscall source; `internal` for our own.
    pub source: String,
    // ---- our context (not in Falco's output) ----
    pub container: AlertContainer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<AlertK8s>,
    pub process: AlertProcess,
    /// MITRE ATT&CK technique (`T1059`, `T1059.004`) and tactic (`TA0002`) ids from the tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitre: Vec<String>,
    pub exec_id: String,
    /// True when container or Kubernetes metadata could not be resolved for this event.
    pub metadata_incomplete: bool,
    /// Set on summary alerts emitted by the rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppressed>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub runtime: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertK8s {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertProcess {
    pub pid: u32,
    pub exepath: String,
    /// `comm` followed by the arguments, space-separated as Falco's `proc.cmdline`.
    pub cmdline: String,
    pub uid: u32,
    /// Parent first.
    pub ancestors: Vec<AlertAncestor>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertAncestor {
    pub pid: u32,
    pub exepath: String,
    pub cmdline: String,
}

/// What a summary alert reports about the matches it stood in for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suppressed {
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Format ns since the Unix epoch as Falco does: UTC, RFC 3339, nine fractional digits.
fn system_time_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The node name for `hostname` (and `evt.hostname`): `NODE_NAME` (set from the downward API
/// in Kubernetes, where the kernel's host name is the pod's), else the kernel's host name (the
/// UTS namespace we run in). Read once.
pub fn hostname() -> &'static str {
    static NAME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        if let Ok(n) = std::env::var("NODE_NAME") {
            let n = n.trim();
            if !n.is_empty() {
                return n.to_string();
            }
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    });
    &NAME
}

/// MITRE ids in tags: `T1234`, `T1234.001`, `TA0001`, case-insensitive, normalised upper-case.
pub fn mitre_ids(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let u = t.trim().to_ascii_uppercase();
        let body = if let Some(rest) = u.strip_prefix("TA") {
            rest
        } else if let Some(rest) = u.strip_prefix('T') {
            rest
        } else {
            continue;
        };
        let (main, sub) = match body.split_once('.') {
            Some((m, s)) => (m, Some(s)),
            None => (body, None),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let ok = digits(main, 4) && sub.is_none_or(|s| digits(s, 3) && !u.starts_with("TA"));
        if ok && !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

fn cmdline(comm: &str, args: &[String]) -> String {
    let mut s = comm.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

impl Alert {
    /// Heap and inline bytes this alert holds, roughly (strings by length, map and vector
    /// slots by a fixed cost). The sinks bound their queues by it: an alert's size follows
    /// untrusted data (command lines, paths), from under a kilobyte to over a hundred.
    pub fn approx_bytes(&self) -> u64 {
        fn value_bytes(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len() + 24,
                Value::Array(a) => a.iter().map(value_bytes).sum::<usize>() + 24,
                Value::Object(o) => o.iter().map(|(k, v)| k.len() + value_bytes(v) + 48).sum::<usize>() + 24,
                _ => 16,
            }
        }
        let strings = self.time.len()
            + self.rule.len()
            + self.output.len()
            + self.hostname.len()
            + self.source.len()
            + self.exec_id.len()
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.mitre.iter().map(|t| t.len() + 24).sum::<usize>()
            + self.container.id.len()
            + self.container.name.len()
            + self.container.image.len()
            + self.container.runtime.len()
            + self.k8s.as_ref().map_or(0, |k| {
                k.namespace.len() + k.pod.len() + k.pod_uid.len() + k.container.len()
            })
            + self.process.exepath.len()
            + self.process.cmdline.len()
            + self
                .process
                .ancestors
                .iter()
                .map(|a| a.exepath.len() + a.cmdline.len() + 56)
                .sum::<usize>()
            + self
                .suppressed
                .as_ref()
                .map_or(0, |s| s.first_seen.len() + s.last_seen.len() + 56);
        let fields: usize = self
            .output_fields
            .iter()
            .map(|(k, v)| k.len() + 24 + value_bytes(v) + 48)
            .sum();
        (std::mem::size_of::<Alert>() + strings + fields) as u64
    }
}

impl Alert {
    /// Build an alert for a rule match on `ev`. Nothing is redacted or counted here: the caller
    /// runs [`Redactor::redact`] and [`NoiseControl::admit`] before the sinks.
    pub fn new(
        rule: &str,
        priority: Priority,
        tags: &[String],
        output: String,
        output_fields: BTreeMap<String, Value>,
        ev: &Event,
        hostname: &str,
    ) -> Alert {
        let c = &ev.container;
        let p = &ev.process;
        Alert {
            time: crate::time::rfc3339(ev.ts),
            rule: rule.to_string(),
            priority,
            output,
            output_fields,
            tags: tags.to_vec(),
            hostname: hostname.to_string(),
            source: "syscall".to_string(),
            container: AlertContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                runtime: c.runtime.clone(),
            },
            k8s: c.k8s.as_ref().map(|k| AlertK8s {
                namespace: k.namespace.clone(),
                pod: k.pod_name.clone(),
                pod_uid: k.pod_uid.clone(),
                container: k.container_name.clone(),
            }),
            process: AlertProcess {
                pid: p.pid,
                exepath: p.exepath.to_string(),
                cmdline: cmdline(&p.comm, &p.args),
                uid: p.uid,
                ancestors: p
                    .ancestors
                    .iter()
                    .map(|a| AlertAncestor {
                        pid: a.pid,
                        exepath: a.exepath.clone(),
                        cmdline: cmdline(&a.comm, &a.args),
                    })
                    .collect(),
            },
            mitre: mitre_ids(tags),
            exec_id: p.exec_id.to_string(),
            metadata_incomplete: c.id != HOST_CONTAINER_ID && !c.metadata_complete,
            suppressed: None,
        }
    }

    /// The alert for a rule match, written as Falco writes it: `output` prefixed with the
    /// event's time of day and the priority, and `evt.time` among the output fields. The one
    /// constructor for matches, shared by the daemon and replay.
    pub fn from_match(m: crate::rules::Match, ev: &Event, hostname: &str) -> Alert {
        let crate::rules::Match {
            rule,
            priority,
            tags,
            output,
            mut output_fields,
        } = m;
        let output = format!("{}: {} {}", crate::time::clock(ev.ts, true), priority.as_str(), output);
        output_fields.insert("evt.time".to_string(), Value::from(ev.ts));
        Alert::new(&rule, priority, &tags, output, output_fields, ev, hostname)
    }

    /// One JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string(self).expect("alert serialises")
    }
}

/// Rule name of the overload alert.
pub const DROP_RULE: &str = "Monitor internal: syscall event drop";

/// The overload alert, our equivalent of Falco's "Falco internal: syscall event drop":
/// `drops_by_stage` maps a pipeline stage (`kernel_ring`, `decode_queue` ...) to the events it
/// dropped since the previous drop alert. Rate-limit it with [`DropAlerter`].
pub fn drop_alert(drops_by_stage: &BTreeMap<String, u64>, hostname: &str, now: SystemTime) -> Alert {
    let total: u64 = drops_by_stage.values().sum();
    let mut fields = BTreeMap::new();
    fields.insert("n_drops".to_string(), Value::from(total));
    for (stage, n) in drops_by_stage {
        fields.insert(format!("n_drops_{stage}"), Value::from(*n));
    }
    let detail: Vec<String> = drops_by_stage
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s}={n}"))
        .collect();
    Alert {
        time: crate::time::rfc3339(system_time_ns(now)),
        rule: DROP_RULE.to_string(),
        priority: Priority::Critical,
        output: format!(
            "Monitor internal: syscall event drop. {total} events dropped since the last report ({}); detections may have been missed.",
            detail.join(" ")
        ),
        output_fields: fields,
        tags: vec!["internal".to_string()],
        hostname: hostname.to_string(),
        source: "internal".to_string(),
        container: AlertContainer {
            id: HOST_CONTAINER_ID.to_string(),
            ..Default::default()
        },
        k8s: None,
        process: AlertProcess::default(),
        mitre: Vec::new(),
        exec_id: String::new(),
        metadata_incomplete: false,
        suppressed: None,
    }
}

/// Emits at most one drop alert per `min_interval`, covering every drop since the last one.
#[derive(Debug)]
pub struct DropAlerter {
    min_interval: Duration,
    last: Option<Instant>,
    pending: BTreeMap<String, u64>,
}

impl DropAlerter {
    pub fn new(min_interval: Duration) -> Self {
        DropAlerter {
            min_interval,
            last: None,
            pending: BTreeMap::new(),
        }
    }

    /// Add newly observed drops (deltas, not running totals); returns an alert when one is due.
    pub fn observe(&mut self, new_drops: &BTreeMap<String, u64>, hostname: &str, now: Instant) -> Option<Alert> {
        for (k, v) in new_drops {
            if *v > 0 {
                *self.pending.entry(k.clone()).or_default() += v;
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        if self.last.is_some_and(|l| now.duration_since(l) < self.min_interval) {
            return None;
        }
        self.last = Some(now);
        let drops = std::mem::take(&mut self.pending);
        Some(drop_alert(&drops, hostname, SystemTime::now()))
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction

/// The text that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// A redaction pattern: a regex; when it has a capture group named `s`, only that group is
/// replaced, otherwise the whole match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionPattern {
    pub name: String,
    pub regex: String,
}

/// Built-in patterns, on unless `redaction.default_patterns: false`.
pub fn default_redaction_patterns() -> Vec<RedactionPattern> {
    let p = |name: &str, regex: &str| RedactionPattern {
        name: name.to_string(),
        regex: regex.to_string(),
    };
    vec![
        // -----BEGIN ... PRIVATE KEY----- blocks, also cut ones (argv is bounded).
        p(
            "private_key_block",
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
        ),
        // Authorization: Bearer/Basic/Token <credential>; a bare "Bearer <long token>" too. "token"
        // alone is too common in rule outputs (paths, field names) to key on.
        p(
            "authorization_header",
            r"(?i)\bauthorization\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?(?P<s>[A-Za-z0-9._~+/=-]{8,})",
        ),
        p("bearer_token", r"(?i)\bbearer\s+(?P<s>[A-Za-z0-9._~+/=-]{16,})"),
        // AWS access key ids.
        p("aws_access_key_id", r"\b(?P<s>(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b"),
        // GitHub and Slack tokens.
        p("github_token", r"\b(?P<s>(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{20,})"),
        p("slack_token", r"\b(?P<s>xox[abprs]-[A-Za-z0-9-]{10,})"),
        // Credentials in URLs: scheme://user:secret@host
        p(
            "url_credentials",
            r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?P<s>[^/\s@]+)@",
        ),
        // key=value / key: value for secret-looking keys (--password=x, token=x, PGPASSWORD=x,
        // aws_secret_access_key=x, "api_key": "x").
        p(
            "secret_key_value",
            r#"(?i)(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?)[A-Za-z0-9_-]*"?\s*[=:]\s*"?(?P<s>[^\s"'&;,]+)"#,
        ),
        // --password x (flag and value in separate argv words).
        p(
            "secret_flag_value",
            r"(?i)(?:^|\s)--?(?:password|passwd|pass|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|client[_-]?secret|auth[_-]?token)\s+(?P<s>[^\s-]\S*)",
        ),
        // Known tools whose short flag takes a password: sshpass -p x, mysql -px, redis-cli -a x.
        p("sshpass", r"\bsshpass\b(?:\s+-[a-oq-zA-Z]\S*)*\s+-p\s*(?P<s>\S+)"),
        p(
            "mysql_password",
            r"\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p(?P<s>[^\s-]\S*)",
        ),
        p("redis_cli_password", r"\bredis-cli\b[^\n]*?\s-a\s+(?P<s>\S+)"),
    ]
}

#[derive(Debug, thiserror::Error)]
#[error("redaction pattern {name:?} does not compile: {source}")]
pub struct RedactionError {
    pub name: String,
    #[source]
    pub source: regex::Error,
}

/// Replaces secrets in alert text before any sink sees it.
#[derive(Clone, Debug)]
pub struct Redactor {
    patterns: Vec<(String, Regex)>,
}

impl Redactor {
    pub fn new(patterns: &[RedactionPattern]) -> Result<Redactor, RedactionError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let re = Regex::new(&p.regex).map_err(|source| RedactionError {
                name: p.name.clone(),
                source,
            })?;
            out.push((p.name.clone(), re));
        }
        Ok(Redactor { patterns: out })
    }

    /// No-op redactor (redaction disabled).
    pub fn disabled() -> Redactor {
        Redactor { patterns: Vec::new() }
    }

    /// Redact one string; returns it unchanged (no allocation) when nothing matches.
    pub fn redact_str<'a>(&self, input: &'a str) -> std::borrow::Cow<'a, str> {
        let mut cur: Option<String> = None;
        for (_, re) in &self.patterns {
            let src: &str = cur.as_deref().unwrap_or(input);
            if !re.is_match(src) {
                continue;
            }
            let mut out = String::with_capacity(src.len());
            let mut last = 0;
            for caps in re.captures_iter(src) {
                let m = caps.name("s").or_else(|| caps.get(0)).expect("group 0 always exists");
                if m.start() < last {
                    continue;
                }
                out.push_str(&src[last..m.start()]);
                out.push_str(REDACTED);
                last = m.end();
            }
            out.push_str(&src[last..]);
            cur = Some(out);
        }
        match cur {
            Some(s) => std::borrow::Cow::Owned(s),
            None => std::borrow::Cow::Borrowed(input),
        }
    }

    fn redact_in_place(&self, s: &mut String) {
        if let std::borrow::Cow::Owned(new) = self.redact_str(s) {
            *s = new;
        }
    }

    fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.redact_in_place(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_value(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.redact_value(x)),
            _ => {}
        }
    }

    /// Redact `output`, every string in `output_fields` and the command lines in the context.
    pub fn redact(&self, alert: &mut Alert) {
        if self.patterns.is_empty() {
            return;
        }
        self.redact_in_place(&mut alert.output);
        alert.output_fields.values_mut().for_each(|v| self.redact_value(v));
        self.redact_in_place(&mut alert.process.cmdline);
        self.redact_in_place(&mut alert.process.exepath);
        for a in &mut alert.process.ancestors {
            self.redact_in_place(&mut a.cmdline);
            self.redact_in_place(&mut a.exepath);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Noise control

/// `rate_limit` in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Alerts per (rule, container) let through at once before limiting starts.
    pub burst: u32,
    /// Tokens added back per second (sustained rate once the burst is spent).
    pub refill_per_second: f64,
    /// How long suppressed matches are gathered before one summary alert reports them.
    #[serde(with = "humantime_serde")]
    pub summary_window: Duration,
    /// Identical alerts (same rule, container and output) within this window are duplicates.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Bound on tracked (rule, container) keys; beyond it keys share one overflow bucket.
    /// Unset: derived from `memory.budget_bytes` (at most [`DEFAULT_MAX_KEYS`]).
    pub max_keys: Option<usize>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            burst: 20,
            refill_per_second: 0.2,
            summary_window: Duration::from_secs(60),
            dedup_window: Duration::from_secs(10),
            max_keys: None,
        }
    }
}

/// `rate_limit.max_keys` when neither the config nor the memory plan sets it.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

impl RateLimitConfig {
    pub fn max_keys(&self) -> usize {
        self.max_keys.unwrap_or(DEFAULT_MAX_KEYS).max(1)
    }
}

/// Container id of the shared bucket used once `max_keys` keys are tracked.
const OVERFLOW_KEY: &str = "*overflow*";

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Matches held back since the summary window opened.
    suppressed: u64,
    window_start: Option<Instant>,
    first_seen: String,
    last_seen: String,
    /// A template for the summary: the first suppressed alert.
    template: Option<Alert>,
}

/// Dedup + token-bucket rate limiting per (rule, container id). Owned by the single task that
/// feeds the sinks; not used in replay or diff.
#[derive(Debug)]
pub struct NoiseControl {
    cfg: RateLimitConfig,
    buckets: HashMap<(String, String), Bucket>,
    /// Hash of (rule, container, output) -> last time seen, oldest first for expiry.
    recent: HashMap<u64, Instant>,
    recent_order: VecDeque<(u64, Instant)>,
}

fn dedup_hash(a: &Alert) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Fixed keys: the hash is only compared within this process.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(a.rule.as_bytes());
    h.write_u8(0);
    h.write(a.container.id.as_bytes());
    h.write_u8(0);
    h.write(a.output.as_bytes());
    h.finish()
}

impl NoiseControl {
    pub fn new(cfg: RateLimitConfig) -> Self {
        NoiseControl {
            cfg,
            buckets: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// Count the match and decide: `Some(alert)` goes to the sinks, `None` was held back (and
    /// will be reported by a summary from [`NoiseControl::due_summaries`]).
    pub fn admit(&mut self, alert: Alert, now: Instant) -> Option<Alert> {
        metrics::count_alert(
            &alert.rule,
            alert.priority.as_str(),
            alert.k8s.as_ref().map(|k| k.namespace.as_str()),
            alert.k8s.as_ref().map(|k| k.pod.as_str()),
        );
        if !self.cfg.enabled {
            return Some(alert);
        }
        let dup = self.is_duplicate(&alert, now);
        let key = self.key_for(&alert, now);
        let cfg = &self.cfg;
        let b = self.buckets.entry(key).or_insert_with(|| Bucket {
            tokens: f64::from(cfg.burst),
            refilled: now,
            suppressed: 0,
            window_start: None,
            first_seen: String::new(),
            last_seen: String::new(),
            template: None,
        });
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * cfg.refill_per_second).min(f64::from(cfg.burst));
        b.refilled = now;
        if !dup && b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Some(alert);
        }
        metrics::ALERTS_SUPPRESSED.with_label_values(&[&alert.rule]).inc();
        if b.suppressed == 0 {
            b.window_start = Some(now);
            b.first_seen = alert.time.clone();
        }
        b.suppressed += 1;
        b.last_seen = alert.time.clone();
        if b.template.is_none() {
            b.template = Some(alert);
        }
        None
    }

    fn is_duplicate(&mut self, alert: &Alert, now: Instant) -> bool {
        let w = self.cfg.dedup_window;
        if w.is_zero() {
            return false;
        }
        while let Some((h, t)) = self.recent_order.front().copied() {
            if now.saturating_duration_since(t) < w {
                break;
            }
            self.recent_order.pop_front();
            if self.recent.get(&h) == Some(&t) {
                self.recent.remove(&h);
            }
        }
        let h = dedup_hash(alert);
        let dup = self
            .recent
            .get(&h)
            .is_some_and(|t| now.saturating_duration_since(*t) < w);
        if !dup {
            // Bound memory as the bucket map: forget the oldest when full.
            if self.recent.len() >= self.cfg.max_keys()
                && let Some((old, t)) = self.recent_order.pop_front()
                && self.recent.get(&old) == Some(&t)
            {
                self.recent.remove(&old);
            }
            self.recent.insert(h, now);
            self.recent_order.push_back((h, now));
        }
        dup
    }

    fn key_for(&mut self, alert: &Alert, now: Instant) -> (String, String) {
        let key = (alert.rule.clone(), alert.container.id.clone());
        if self.buckets.contains_key(&key) || self.buckets.len() < self.cfg.max_keys() {
            return key;
        }
        // Forget idle keys: full bucket (after refill) and nothing pending.
        let (burst, rate) = (f64::from(self.cfg.burst), self.cfg.refill_per_second);
        self.buckets.retain(|_, b| {
            let refilled = b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * rate;
            b.suppressed > 0 || refilled < burst
        });
        if self.buckets.len() < self.cfg.max_keys() {
            key
        } else {
            (alert.rule.clone(), OVERFLOW_KEY.to_string())
        }
    }

    /// Summaries for keys whose summary window has ended; call about once a second.
    pub fn due_summaries(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.cfg.summary_window;
        self.take_summaries(|b| {
            b.window_start
                .is_some_and(|s| now.saturating_duration_since(s) >= window)
        })
    }

    /// Every pending summary, at shutdown.
    pub fn flush(&mut self) -> Vec<Alert> {
        self.take_summaries(|_| true)
    }

    fn take_summaries(&mut self, due: impl Fn(&Bucket) -> bool) -> Vec<Alert> {
        let mut out = Vec::new();
        for ((_, cid), b) in self.buckets.iter_mut() {
            if b.suppressed == 0 || !due(b) {
                continue;
            }
            let Some(mut a) = b.template.take() else {
                continue;
            };
            let count = std::mem::take(&mut b.suppressed);
            b.window_start = None;
            let first = std::mem::take(&mut b.first_seen);
            let last = std::mem::take(&mut b.last_seen);
            a.output = format!(
                "Rate limit: {count} more alerts of rule {:?} in container {cid} were suppressed between {first} and {last}; first suppressed: {}",
                a.rule, a.output
            );
            a.output_fields
                .insert("monitor.suppressed_count".to_string(), Value::from(count));
            a.output_fields
                .insert("monitor.first_seen".to_string(), Value::from(first.clone()));
            a.output_fields
                .insert("monitor.last_seen".to_string(), Value::from(last.clone()));
            a.time = last.clone();
            if !a.tags.iter().any(|t| t == "monitor_summary") {
                a.tags.push("monitor_summary".to_string());
            }
            a.suppressed = Some(Suppressed {
                count,
                first_seen: first,
                last_seen: last,
            });
            out.push(a);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The last stage before the sinks

/// Redaction, noise control and the drop alert in front of the sinks: the daemon's alert
/// stage owns one and calls [`Dispatcher::dispatch`] per match and [`Dispatcher::tick`] about
/// once a second. Replay and diff do not use it (they print every match, unredacted).
pub struct Dispatcher {
    redactor: Redactor,
    noise: NoiseControl,
    drops: DropAlerter,
    sinks: crate::sink::Sinks,
    hostname: String,
}

impl Dispatcher {
    /// `drop_alert_interval`: at most one overload alert per interval (Falco: 1 per 10 s).
    pub fn new(
        redactor: Redactor,
        rate_limit: RateLimitConfig,
        drop_alert_interval: Duration,
        sinks: crate::sink::Sinks,
        hostname: String,
    ) -> Dispatcher {
        Dispatcher {
            redactor,
            noise: NoiseControl::new(rate_limit),
            drops: DropAlerter::new(drop_alert_interval),
            sinks,
            hostname,
        }
    }

    /// Redact, count, rate-limit, then queue for every sink. `event_ts_ns` feeds
    /// `monitor_event_to_alert_latency_seconds`. Never blocks.
    pub fn dispatch(&mut self, mut alert: Alert, event_ts_ns: u64, now: Instant) {
        self.redactor.redact(&mut alert);
        if let Some(a) = self.noise.admit(alert, now) {
            metrics::observe_event_to_alert(event_ts_ns);
            self.sinks.send(std::sync::Arc::new(a));
        }
    }

    /// Emit the summaries whose window ended.
    pub fn tick(&mut self, now: Instant) {
        for s in self.noise.due_summaries(now) {
            self.sinks.send(std::sync::Arc::new(s));
        }
    }

    /// Report newly observed drops (deltas by stage); emits the overload alert when due.
    pub fn report_drops(&mut self, new_drops: &BTreeMap<String, u64>, now: Instant) {
        if let Some(a) = self.drops.observe(new_drops, &self.hostname, now) {
            metrics::count_alert(&a.rule, a.priority.as_str(), None, None);
            self.sinks.send(std::sync::Arc::new(a));
        }
    }

    /// Flush pending summaries, then let the sinks deliver what they hold (bounded by `timeout`).
    pub async fn shutdown(mut self, timeout: Duration) {
        for s in self.noise.flush() {
            self.sinks.send(std::sync::Arc::new(s));
        }
        self.sinks.shutdown(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Ancestor, Container, K8s};

    fn event() -> Event {
        let mut ev = Event {
            ts: 1_700_000_000_123_456_789,
            ..Default::default()
        };
        ev.process.pid = 42;
        ev.process.comm = "bash".into();
        ev.process.exepath = "/usr/bin/bash".into();
        ev.process.args = vec!["-c".into(), "curl -H 'Authorization: Bearer abcdefghijkl' x".into()].into();
        ev.process.exec_id = "boot-42-1".into();
        ev.process.ancestors = vec![Ancestor {
            pid: 1,
            comm: "sshpass".into(),
            exe: "sshpass".into(),
            exepath: "/usr/bin/sshpass".into(),
            args: vec!["-p".into(), "hunter2".into(), "ssh".into()],
        }]
        .into();
        ev.container = std::sync::Arc::new(Container {
            id: "0123456789ab".into(),
            name: "web".into(),
            image: "nginx:1".into(),
            runtime: "containerd".into(),
            metadata_complete: false,
            k8s: Some(K8s {
                pod_name: "web-1".into(),
                namespace: "prod".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        ev
    }

    fn alert(rule: &str, output: &str) -> Alert {
        Alert::new(
            rule,
            Priority::Warning,
            &["T1059".into(), "mitre_execution".into()],
            output.into(),
            BTreeMap::new(),
            &event(),
            "node-a",
        )
    }

    #[test]
    fn priority_parse_order_and_spelling() {
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warning);
        assert_eq!("info".parse::<Priority>().unwrap(), Priority::Informational);
        assert_eq!("Emergency".parse::<Priority>().unwrap(), Priority::Emergency);
        assert!("severe".parse::<Priority>().is_err());
        assert!(Priority::Critical > Priority::Warning);
        assert!(Priority::Debug < Priority::Informational);
        assert_eq!(
            serde_json::to_string(&Priority::Informational).unwrap(),
            "\"Informational\""
        );
    }

    #[test]
    fn alert_json_is_falco_shaped() {
        let mut f = BTreeMap::new();
        f.insert("proc.name".to_string(), Value::from("bash"));
        f.insert("proc.pid".to_string(), Value::from(42));
        let a = Alert::new(
            "Shell",
            Priority::Notice,
            &["T1059.004".into(), "TA0002".into(), "shell".into()],
            "out".into(),
            f,
            &event(),
            "node-a",
        );
        let v: Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["rule"], "Shell");
        assert_eq!(v["priority"], "Notice");
        assert_eq!(v["source"], "syscall");
        assert_eq!(v["hostname"], "node-a");
        assert_eq!(v["output_fields"]["proc.pid"], 42);
        assert_eq!(v["tags"], serde_json::json!(["T1059.004", "TA0002", "shell"]));
        assert_eq!(v["mitre"], serde_json::json!(["T1059.004", "TA0002"]));
        assert_eq!(v["k8s"]["namespace"], "prod");
        assert_eq!(v["container"]["id"], "0123456789ab");
        assert_eq!(v["exec_id"], "boot-42-1");
        assert_eq!(v["metadata_incomplete"], true);
        assert_eq!(v["process"]["ancestors"][0]["cmdline"], "sshpass -p hunter2 ssh");
    }

    #[test]
    fn matches_are_written_as_falco_writes_them() {
        let m = crate::rules::Match {
            rule: "Shell".into(),
            priority: Priority::Warning,
            tags: vec!["shell".into()],
            output: "Shell in container (user=root)".into(),
            output_fields: BTreeMap::from([("proc.name".to_string(), Value::from("sh"))]),
        };
        let a = Alert::from_match(m, &event(), "node-a");
        assert_eq!(a.output, "22:13:20.123456789: Warning Shell in container (user=root)");
        assert_eq!(a.output_fields["evt.time"], Value::from(1_700_000_000_123_456_789u64));
        assert_eq!(a.output_fields["proc.name"], "sh");
        assert_eq!(a.time, "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn mitre_extraction() {
        let tags: Vec<String> = ["t1611", "T1059.004", "TA0004", "T12", "TA0004.001", "Txxxx", "T1611"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(mitre_ids(&tags), vec!["T1611", "T1059.004", "TA0004"]);
    }

    fn red(s: &str) -> String {
        Redactor::new(&default_redaction_patterns())
            .unwrap()
            .redact_str(s)
            .into_owned()
    }

    #[test]
    fn redaction_cases() {
        assert_eq!(red("app --password=s3cret --v"), "app --password=[REDACTED] --v");
        assert_eq!(red("app --password s3cret -v"), "app --password [REDACTED] -v");
        assert_eq!(red("sshpass -p hunter2 ssh host"), "sshpass -p [REDACTED] ssh host");
        assert_eq!(red("mysql -u root -pTopSecret db"), "mysql -u root -p[REDACTED] db");
        assert_eq!(red("redis-cli -h r -a pw123 ping"), "redis-cli -h r -a [REDACTED] ping");
        assert_eq!(
            red("curl -H Authorization: Bearer eyJhbGciOi.x.y url"),
            "curl -H Authorization: Bearer [REDACTED] url"
        );
        assert_eq!(red("aws AKIAIOSFODNN7EXAMPLE s"), "aws [REDACTED] s");
        assert_eq!(
            red("export TOKEN_HDR='Bearer 0123456789abcdefXYZ'"),
            "export TOKEN_HDR='Bearer [REDACTED]'"
        );
        assert_eq!(
            red("wget --header=authorization:c2VjcmV0OnB3 u"),
            "wget --header=authorization:[REDACTED] u"
        );
        assert_eq!(red("GET /x?token=abc123&u=1"), "GET /x?token=[REDACTED]&u=1");
        assert_eq!(red("PGPASSWORD=pw psql"), "PGPASSWORD=[REDACTED] psql");
        assert_eq!(
            red("git clone https://bob:pa55@github.com/x"),
            "git clone https://bob:[REDACTED]@github.com/x"
        );
        assert_eq!(
            red("echo -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- done"),
            "echo [REDACTED] done"
        );
        assert_eq!(
            red("echo -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn"),
            "echo [REDACTED]"
        );
        // Nothing secret: unchanged.
        assert_eq!(red("ls -la /etc/passwd"), "ls -la /etc/passwd");
        assert_eq!(red("mysql -u root -p db"), "mysql -u root -p db");
        // Typical rule outputs keep their evidence: paths that merely contain "secret"/"token".
        for s in [
            "Sensitive file opened for reading (user=root command=cat /etc/shadow file=/etc/shadow container_id=abc)",
            "Service account token read (file=/var/run/secrets/kubernetes.io/serviceaccount/token proc=cat)",
            "Shell spawned (proc.cmdline=bash -c ls /secrets parent=runc)",
        ] {
            assert_eq!(red(s), s);
        }
    }

    #[test]
    fn redaction_applies_to_every_text_field() {
        let mut a = alert("R", "cmd=curl -H 'Authorization: Bearer abcdefghijkl' x");
        a.output_fields
            .insert("proc.cmdline".into(), Value::from("mysql -pSecretPw"));
        a.output_fields
            .insert("list".into(), serde_json::json!(["token=zzz", 5]));
        Redactor::new(&default_redaction_patterns()).unwrap().redact(&mut a);
        assert_eq!(a.output, "cmd=curl -H 'Authorization: Bearer [REDACTED]' x");
        assert_eq!(a.output_fields["proc.cmdline"], "mysql -p[REDACTED]");
        assert_eq!(a.output_fields["list"], serde_json::json!(["token=[REDACTED]", 5]));
        assert_eq!(
            a.process.cmdline,
            "bash -c curl -H 'Authorization: Bearer [REDACTED]' x"
        );
        assert_eq!(a.process.ancestors[0].cmdline, "sshpass -p [REDACTED] ssh");
    }

    #[test]
    fn custom_pattern_and_bad_pattern() {
        let r = Redactor::new(&[RedactionPattern {
            name: "ssn".into(),
            regex: r"\d{3}-\d{2}-\d{4}".into(),
        }])
        .unwrap();
        assert_eq!(r.redact_str("id 123-45-6789 x"), "id [REDACTED] x");
        let e = Redactor::new(&[RedactionPattern {
            name: "bad".into(),
            regex: "(".into(),
        }])
        .unwrap_err();
        assert!(
            e.to_string().starts_with("redaction pattern \"bad\" does not compile"),
            "{e}"
        );
    }

    #[test]
    fn rate_limit_burst_then_summary() {
        let cfg = RateLimitConfig {
            burst: 3,
            refill_per_second: 0.0,
            summary_window: Duration::from_secs(60),
            dedup_window: Duration::ZERO,
            ..Default::default()
        };
        let mut nc = NoiseControl::new(cfg);
        let t0 = Instant::now();
        let before = metrics::counter_value("monitor_alerts_suppressed_total", &[("rule", "RL rule")]).unwrap_or(0.0);
        let mut passed = 0;
        for i in 0..10 {
            let mut a = alert("RL rule", &format!("o{i}"));
            a.time = format!("t{i}");
            if nc.admit(a, t0 + Duration::from_millis(i)).is_some() {
                passed += 1;
            }
        }
        assert_eq!(passed, 3);
        // Another container is not affected.
        let mut other = alert("RL rule", "o");
        other.container.id = "ffffffffffff".into();
        assert!(nc.admit(other, t0).is_some());
        assert!(nc.due_summaries(t0 + Duration::from_secs(59)).is_empty());
        let s = nc.due_summaries(t0 + Duration::from_secs(61));
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.rule, "RL rule");
        assert_eq!(
            s.suppressed,
            Some(Suppressed {
                count: 7,
                first_seen: "t3".into(),
                last_seen: "t9".into()
            })
        );
        assert_eq!(s.output_fields["monitor.suppressed_count"], 7);
        assert!(
            s.output
                .starts_with("Rate limit: 7 more alerts of rule \"RL rule\" in container 0123456789ab"),
            "{}",
            s.output
        );
        assert!(s.tags.contains(&"monitor_summary".to_string()));
        let v: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["priority"], "Warning");
        let after = metrics::counter_value("monitor_alerts_suppressed_total", &[("rule", "RL rule")]).unwrap();
        assert_eq!(after - before, 7.0);
        assert!(
            metrics::counter_value("monitor_alerts_total", &[("rule", "RL rule"), ("priority", "Warning")]).unwrap()
                >= 11.0
        );
        // Window reported: nothing more pending.
        assert!(nc.flush().is_empty());
    }

    #[test]
    fn refill_and_dedup() {
        let cfg = RateLimitConfig {
            burst: 1,
            refill_per_second: 1.0,
            dedup_window: Duration::from_secs(10),
            ..Default::default()
        };
        let mut nc = NoiseControl::new(cfg);
        let t0 = Instant::now();
        assert!(nc.admit(alert("D", "same"), t0).is_some());
        // Tokens back after 2 s, but an identical alert is a duplicate for 10 s.
        assert!(nc.admit(alert("D", "same"), t0 + Duration::from_secs(2)).is_none());
        assert!(nc.admit(alert("D", "different"), t0 + Duration::from_secs(3)).is_some());
        assert!(nc.admit(alert("D", "same"), t0 + Duration::from_secs(15)).is_some());
        let s = nc.flush();
        assert_eq!(s[0].suppressed.as_ref().unwrap().count, 1);
    }

    #[test]
    fn key_bound_uses_overflow_bucket() {
        let cfg = RateLimitConfig {
            burst: 1,
            refill_per_second: 0.0,
            dedup_window: Duration::ZERO,
            max_keys: Some(2),
            ..Default::default()
        };
        let mut nc = NoiseControl::new(cfg);
        let t0 = Instant::now();
        for i in 0..5 {
            let mut a = alert("K", "x");
            a.container.id = format!("c{i}");
            let _ = nc.admit(a, t0);
        }
        assert!(nc.buckets.len() <= 3);
    }

    #[test]
    fn drop_alert_is_rate_limited() {
        let mut d = DropAlerter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let m: BTreeMap<String, u64> = [("kernel_ring".to_string(), 5u64)].into();
        let a = d.observe(&m, "n", t0).unwrap();
        assert_eq!(a.rule, DROP_RULE);
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.output_fields["n_drops"], 5);
        assert!(d.observe(&m, "n", t0 + Duration::from_secs(1)).is_none());
        let a = d.observe(&m, "n", t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(a.output_fields["n_drops_kernel_ring"], 10);
        assert!(d.observe(&BTreeMap::new(), "n", t0 + Duration::from_secs(30)).is_none());
    }
}
