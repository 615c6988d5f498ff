//! The daemon's configuration: one YAML file (`/etc/monitor/monitor.yaml` when present),
//! then `MONITOR_*` environment variables, then command-line flags ([`RunOverrides`]), each
//! layer overriding the one before. The result is validated once more after every layer.
//!
//! Errors name the offending key (`sinks[0].url`), the file position when there is one, and for
//! a misspelt key the closest valid one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::alert::{Priority, RateLimitConfig, RedactionPattern, Redactor, default_redaction_patterns};
use crate::http::HttpConfig;
use crate::metrics::LabelOptIns;
use crate::sink::SinkConfig;

/// Read when no path is given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/monitor/monitor.yaml";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rules: RulesConfig,
    pub capture: CaptureConfig,
    pub queues: QueuesConfig,
    /// Where alerts go; stdout when the list is empty.
    pub sinks: Vec<SinkConfig>,
    pub rate_limit: RateLimitConfig,
    pub redaction: RedactionConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub memory: MemoryConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or directories (every `*.yaml`/`*.yml` inside, in name order).
    pub paths: Vec<PathBuf>,
    /// Rules below this priority are not loaded.
    #[serde(deserialize_with = "crate::alert::priority_ci::deserialize")]
    pub min_priority: Priority,
    /// Load only rules with at least one of these tags (all when empty).
    pub enable_tags: Vec<String>,
    pub disable_tags: Vec<String>,
    /// Enable/disable rules by exact name; these win over tags.
    pub enable_rules: Vec<String>,
    pub disable_rules: Vec<String>,
    /// A rules file loaded last, for local exceptions and overrides.
    pub overrides: Option<PathBuf>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: vec![PathBuf::from("/etc/monitor/rules.d")],
            min_priority: Priority::Debug,
            enable_tags: Vec::new(),
            disable_tags: Vec::new(),
            enable_rules: Vec::new(),
            disable_rules: Vec::new(),
            overrides: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Size of each kernel ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: ByteSize,
    /// Event kinds (`execve`, `openat` ...) or families (`process`, `file`, `network`,
    /// `security`, `side_door`) to capture; all when empty.
    pub kinds: Vec<String>,
    /// Drop events from processes outside containers in the kernel.
    pub containers_only: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: ByteSize(8 << 20),
            kinds: Vec::new(),
            containers_only: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// Events queued between the ring-buffer reader, attribution and the rules (each of the
    /// three queues). Unset: derived from `memory.budget_bytes` (see `budget`).
    pub events: Option<usize>,
    /// Each sink's own queue of alerts. Unset: derived from `memory.budget_bytes`.
    pub alerts: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    pub enabled: bool,
    /// Use the built-in patterns (tokens, passwords, keys); see `alert::default_redaction_patterns`.
    pub default_patterns: bool,
    /// Extra patterns; a capture group named `s` limits what is replaced.
    pub patterns: Vec<RedactionPattern>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            enabled: true,
            default_patterns: true,
            patterns: Vec::new(),
        }
    }
}

impl RedactionConfig {
    /// The redactor this configuration describes.
    pub fn redactor(&self) -> Result<Redactor, crate::alert::RedactionError> {
        if !self.enabled {
            return Ok(Redactor::disabled());
        }
        let mut all = if self.default_patterns {
            default_redaction_patterns()
        } else {
            Vec::new()
        };
        all.extend(self.patterns.iter().cloned());
        Redactor::new(&all)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// High-cardinality labels, off by default.
    pub labels: LabelOptIns,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// The daemon's resident memory stays under this: queues and caches are sized from it at
    /// start-up and events are shed above the high-water mark (see `budget`). Set it below the
    /// pod's memory limit, leaving room for the BPF maps the kernel charges to the pod.
    pub budget_bytes: ByteSize,
    /// Fraction of the budget at which bulk events start being shed (0.5 to 0.99).
    pub high_water_ratio: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            budget_bytes: ByteSize(512 << 20),
            high_water_ratio: 0.9,
        }
    }
}

/// A byte count: an integer, or a string with a unit (`8MiB`, `512M`, `1G`, `64KiB`; K/M/G
/// and KiB/MiB/GiB are both powers of 1024, as memory sizes in Kubernetes are read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size (examples: 4096, 8MiB, 1G)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "ki" | "kib" => 1 << 10,
            "m" | "mb" | "mi" | "mib" => 1 << 20,
            "g" | "gb" | "gi" | "gib" => 1 << 30,
            _ => return Err(format!("{s:?} has an unknown unit (use KiB, MiB or GiB)")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a size: an integer or a string such as 8MiB"))?
        {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse into the schema.
    #[error("{}{}: key `{key}`: {message}", path.display(), position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        key: String,
        position: Option<(usize, usize)>,
        message: String,
    },
    /// It parses but a value is not acceptable.
    #[error("invalid config: key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("invalid environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// serde's message for an unknown key is "unknown field `x`, expected one of `a`, `b`":
/// add the closest expected name when it is close enough to be a typo.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_string();
    };
    let Some((got, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    let best = expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(got, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 3))
        .min();
    match best {
        Some((_, e)) => format!("{message}; did you mean `{e}`?"),
        None => message.to_string(),
    }
}

/// yaml_serde prefixes messages with its own rendering of the path (`rules: ...`) and may
/// append " at line L column C"; both are reported apart, so strip them.
fn strip_position(msg: &str) -> &str {
    let mut m = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    };
    if let Some((head, tail)) = m.split_once(": ")
        && !head.is_empty()
        && head.chars().all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c))
    {
        m = tail;
    }
    m
}

impl Config {
    /// Load `path`, or [`DEFAULT_PATH`] when `path` is None and that file exists, or the
    /// defaults. The result is validated.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => {
                let c = Config::default();
                c.validate()?;
                return Ok(c);
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::from_yaml(&text, &path)
    }

    /// Parse YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        // An empty file (or one with only comments) means all defaults.
        let only_comments = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        });
        let cfg = if only_comments {
            Config::default()
        } else {
            let de = yaml_serde::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let position = inner.location().map(|l| (l.line(), l.column()));
                let raw = inner.to_string();
                let message = with_suggestion(strip_position(&raw));
                // Inside tagged enums (sinks) serde buffers the map and the path stops at the
                // item: name the unknown field itself.
                let mut key = if key == "." { String::new() } else { key };
                if let Some(field) = message
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                    && !key.ends_with(field)
                {
                    key = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                ConfigError::Parse {
                    path: origin.to_path_buf(),
                    key: if key.is_empty() { "(top level)".to_string() } else { key },
                    position,
                    message,
                }
            })?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Config {
            rules,
            capture,
            queues,
            sinks,
            rate_limit,
            redaction,
            http,
            metrics: _,
            memory,
        } = self;
        if rules.paths.is_empty() {
            return Err(invalid("rules.paths", "at least one rules file or directory is needed"));
        }
        let rb = capture.ring_buffer_bytes.0;
        if rb < 4096 || !rb.is_power_of_two() {
            return Err(invalid(
                "capture.ring_buffer_bytes",
                format!("{rb} must be a power of two of at least 4096"),
            ));
        }
        for (i, k) in capture.kinds.iter().enumerate() {
            let family = ["process", "file", "network", "security", "side_door"].contains(&k.as_str());
            if !family && crate::event::EventType::from_name(k).is_none() {
                return Err(invalid(
                    format!("capture.kinds[{i}]"),
                    format!(
                        "{k:?} is neither an event type (evt.type name) nor a family (process, file, network, security, side_door)"
                    ),
                ));
            }
        }
        if queues.events == Some(0) {
            return Err(invalid("queues.events", "must be at least 1"));
        }
        if queues.alerts == Some(0) {
            return Err(invalid("queues.alerts", "must be at least 1"));
        }
        for (i, s) in sinks.iter().enumerate() {
            match s {
                SinkConfig::Stdout => {}
                SinkConfig::File { max_bytes, .. } => {
                    if *max_bytes == 0 {
                        return Err(invalid(format!("sinks[{i}].max_bytes"), "must be at least 1"));
                    }
                }
                SinkConfig::Webhook { url, timeout, .. } => {
                    let ok =
                        reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                    if !ok {
                        return Err(invalid(
                            format!("sinks[{i}].url"),
                            format!("{url:?} is not an http:// or https:// URL"),
                        ));
                    }
                    if timeout.is_zero() {
                        return Err(invalid(format!("sinks[{i}].timeout"), "must be more than 0"));
                    }
                }
                SinkConfig::Syslog { socket, udp, .. } => {
                    if socket.is_none() && udp.is_none() {
                        return Err(invalid(
                            format!("sinks[{i}]"),
                            "a syslog sink needs `socket` (e.g. /dev/log) and/or `udp` (host:port)",
                        ));
                    }
                }
            }
        }
        if rate_limit.burst == 0 {
            return Err(invalid("rate_limit.burst", "must be at least 1"));
        }
        if !rate_limit.refill_per_second.is_finite() || rate_limit.refill_per_second < 0.0 {
            return Err(invalid("rate_limit.refill_per_second", "must be a number >= 0"));
        }
        if rate_limit.max_keys == Some(0) {
            return Err(invalid("rate_limit.max_keys", "must be at least 1"));
        }
        if rate_limit.summary_window < Duration::from_secs(1) {
            return Err(invalid("rate_limit.summary_window", "must be at least 1s"));
        }
        for (i, p) in redaction.patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&p.regex) {
                return Err(invalid(format!("redaction.patterns[{i}].regex"), e.to_string()));
            }
        }
        if let Some(a) = &http.basic_auth {
            if a.password.is_some() == a.password_file.is_some() {
                return Err(invalid(
                    "http.basic_auth",
                    "set exactly one of password and password_file",
                ));
            }
            if a.username.is_empty() || a.username.contains(':') {
                return Err(invalid("http.basic_auth.username", "must be non-empty and without ':'"));
            }
        }
        let (lo, hi) = crate::budget::HIGH_WATER_RANGE;
        if !(lo..=hi).contains(&memory.high_water_ratio) {
            return Err(invalid(
                "memory.high_water_ratio",
                format!("{} must be between {lo} and {hi}", memory.high_water_ratio),
            ));
        }
        self.memory_plan()?;
        Ok(())
    }

    /// The sizes the daemon runs with, derived from `memory.budget_bytes` (see `budget`).
    /// Fails, naming the key to change, when the budget cannot hold the configured parts.
    pub fn memory_plan(&self) -> Result<crate::budget::MemoryPlan, ConfigError> {
        let inputs = crate::budget::PlanInputs {
            budget_bytes: self.memory.budget_bytes.0,
            high_water_ratio: self.memory.high_water_ratio,
            ring_bytes: [
                self.capture.ring_buffer_bytes.0,
                u64::from(crate::bpf::CaptureOptions::default().ring_urgent_bytes),
            ],
            sinks: self.effective_sinks().len(),
            events: self.queues.events,
            alerts: self.queues.alerts,
            rate_limit_keys: self.rate_limit.max_keys,
        };
        crate::budget::MemoryPlan::derive(&inputs).map_err(|e| invalid(e.key(), e.to_string()))
    }

    /// The sinks to start: the configured ones, or stdout.
    pub fn effective_sinks(&self) -> Vec<SinkConfig> {
        if self.sinks.is_empty() {
            vec![SinkConfig::Stdout]
        } else {
            self.sinks.clone()
        }
    }

    /// Apply `MONITOR_*` variables from the process environment (see [`ENV_VARS`]).
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env_from(std::env::vars())
    }

    /// Apply `MONITOR_*` variables from `vars`; unknown `MONITOR_*` names are logged and ignored.
    pub fn apply_env_from(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
        for (var, val) in vars {
            if !var.starts_with("MONITOR_") {
                continue;
            }
            let bad = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let boolean = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(bad(format!("{v:?} is not a boolean (true/false)"))),
            };
            let list = |v: &str| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match var.as_str() {
                "MONITOR_RULES_PATHS" => self.rules.paths = list(&val).into_iter().map(PathBuf::from).collect(),
                "MONITOR_RULES_MIN_PRIORITY" => {
                    self.rules.min_priority = val.parse().map_err(|e| bad(format!("{e}")))?
                }
                "MONITOR_RULES_ENABLE_TAGS" => self.rules.enable_tags = list(&val),
                "MONITOR_RULES_DISABLE_TAGS" => self.rules.disable_tags = list(&val),
                "MONITOR_RULES_DISABLE_RULES" => self.rules.disable_rules = list(&val),
                "MONITOR_RULES_OVERRIDES" => self.rules.overrides = Some(PathBuf::from(val.clone())),
                "MONITOR_CAPTURE_CONTAINERS_ONLY" => self.capture.containers_only = boolean(&val)?,
                "MONITOR_CAPTURE_RING_BUFFER_BYTES" => self.capture.ring_buffer_bytes = val.parse().map_err(bad)?,
                "MONITOR_CAPTURE_KINDS" => self.capture.kinds = list(&val),
                "MONITOR_QUEUES_EVENTS" => {
                    self.queues.events = Some(val.trim().parse().map_err(|_| bad(format!("{val:?} is not a count")))?)
                }
                "MONITOR_QUEUES_ALERTS" => {
                    self.queues.alerts = Some(val.trim().parse().map_err(|_| bad(format!("{val:?} is not a count")))?)
                }
                "MONITOR_HTTP_ADDRESS" => {
                    self.http.address = val
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{val:?} is not an address such as 127.0.0.1:9376")))?
                }
                "MONITOR_HTTP_BASIC_AUTH_USERNAME" | "MONITOR_HTTP_BASIC_AUTH_PASSWORD_FILE" => {
                    let a = self
                        .http
                        .basic_auth
                        .get_or_insert_with(|| crate::http::BasicAuthConfig {
                            username: String::new(),
                            password: None,
                            password_file: None,
                        });
                    if var.ends_with("USERNAME") {
                        a.username = val.clone();
                    } else {
                        a.password = None;
                        a.password_file = Some(PathBuf::from(val.clone()));
                    }
                }
                "MONITOR_RATE_LIMIT_ENABLED" => self.rate_limit.enabled = boolean(&val)?,
                "MONITOR_REDACTION_ENABLED" => self.redaction.enabled = boolean(&val)?,
                "MONITOR_MEMORY_BUDGET_BYTES" => self.memory.budget_bytes = val.parse().map_err(bad)?,
                "MONITOR_MEMORY_HIGH_WATER_RATIO" => {
                    self.memory.high_water_ratio = val
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{val:?} is not a number such as 0.9")))?
                }
                "MONITOR_METRICS_LABELS_NAMESPACE" => self.metrics.labels.namespace = boolean(&val)?,
                "MONITOR_METRICS_LABELS_POD" => self.metrics.labels.pod = boolean(&val)?,
                // Read by main.rs / the CLI, not by the config.
                "MONITOR_LOG" | "MONITOR_CONFIG" => {}
                _ => tracing::warn!(var = %var, "Ignoring an unknown MONITOR_* environment variable."),
            }
        }
        self.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: format!("{key} (after MONITOR_* variables)"),
                message,
            },
            other => other,
        })
    }

    /// Apply command-line flags (the last layer) and validate.
    pub fn apply_overrides(&mut self, o: &RunOverrides) -> Result<(), ConfigError> {
        let RunOverrides {
            config: _,
            rules,
            min_priority,
            enable_tags,
            disable_tags,
            disable_rules,
            containers_only,
            http_address,
            output_file,
            no_stdout,
            no_rate_limit,
            no_redaction,
        } = o;
        if !rules.is_empty() {
            self.rules.paths = rules.clone();
        }
        if let Some(p) = min_priority {
            self.rules.min_priority = *p;
        }
        if !enable_tags.is_empty() {
            self.rules.enable_tags = enable_tags.clone();
        }
        self.rules.disable_tags.extend(disable_tags.iter().cloned());
        self.rules.disable_rules.extend(disable_rules.iter().cloned());
        if let Some(c) = containers_only {
            self.capture.containers_only = *c;
        }
        if let Some(a) = http_address {
            self.http.address = *a;
        }
        if let Some(f) = output_file {
            self.sinks.push(SinkConfig::File {
                path: f.clone(),
                max_bytes: 100 << 20,
                keep: 5,
            });
        }
        if *no_stdout {
            self.sinks = self
                .effective_sinks()
                .into_iter()
                .filter(|s| !matches!(s, SinkConfig::Stdout))
                .collect();
            // An empty list means "the default stdout sink": without another sink, every
            // alert would silently go nowhere or back to stdout. Neither is what was asked.
            if self.sinks.is_empty() {
                return Err(invalid(
                    "sinks",
                    "--no-stdout leaves no alert sink; add one (e.g. --output-file)",
                ));
            }
        }
        if *no_rate_limit {
            self.rate_limit.enabled = false;
        }
        if *no_redaction {
            self.redaction.enabled = false;
        }
        self.validate()
    }

    /// File, then environment, then flags: what `monitor run` calls.
    pub fn resolve(o: &RunOverrides) -> Result<Config, ConfigError> {
        let mut c = Config::load(o.config.as_deref())?;
        c.apply_env()?;
        c.apply_overrides(o)?;
        Ok(c)
    }
}

/// Environment variables [`Config::apply_env`] reads (lists are comma-separated).
pub const ENV_VARS: &[&str] = &[
    "MONITOR_RULES_PATHS",
    "MONITOR_RULES_MIN_PRIORITY",
    "MONITOR_RULES_ENABLE_TAGS",
    "MONITOR_RULES_DISABLE_TAGS",
    "MONITOR_RULES_DISABLE_RULES",
    "MONITOR_RULES_OVERRIDES",
    "MONITOR_CAPTURE_CONTAINERS_ONLY",
    "MONITOR_CAPTURE_RING_BUFFER_BYTES",
    "MONITOR_CAPTURE_KINDS",
    "MONITOR_QUEUES_EVENTS",
    "MONITOR_QUEUES_ALERTS",
    "MONITOR_HTTP_ADDRESS",
    "MONITOR_HTTP_BASIC_AUTH_USERNAME",
    "MONITOR_HTTP_BASIC_AUTH_PASSWORD_FILE",
    "MONITOR_RATE_LIMIT_ENABLED",
    "MONITOR_REDACTION_ENABLED",
    "MONITOR_MEMORY_BUDGET_BYTES",
    "MONITOR_MEMORY_HIGH_WATER_RATIO",
    "MONITOR_METRICS_LABELS_NAMESPACE",
    "MONITOR_METRICS_LABELS_POD",
];

/// What `monitor run`'s flags can override; the lead fills it from clap. Empty/None/false
/// leaves the file and environment value alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunOverrides {
    /// `--config PATH` (else [`DEFAULT_PATH`] if present).
    pub config: Option<PathBuf>,
    /// `--rules PATH`, repeatable; replaces `rules.paths`.
    pub rules: Vec<PathBuf>,
    /// `--min-priority NAME`.
    pub min_priority: Option<Priority>,
    /// `--enable-tag TAG`, repeatable; replaces `rules.enable_tags`.
    pub enable_tags: Vec<String>,
    /// `--disable-tag TAG`, repeatable; added to `rules.disable_tags`.
    pub disable_tags: Vec<String>,
    /// `--disable-rule NAME`, repeatable; added to `rules.disable_rules`.
    pub disable_rules: Vec<String>,
    /// `--containers-only`.
    pub containers_only: Option<bool>,
    /// `--http-address ADDR`.
    pub http_address: Option<SocketAddr>,
    /// `--output-file PATH`: adds a file sink (100 MiB, 5 kept).
    pub output_file: Option<PathBuf>,
    /// `--no-stdout`: remove the stdout sink (including the implicit one).
    pub no_stdout: bool,
    /// `--no-rate-limit`.
    pub no_rate_limit: bool,
    /// `--no-redaction`.
    pub no_redaction: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, String> {
        Config::from_yaml(y, Path::new("m.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("# nothing\n\n").unwrap(), Config::default());
        assert_eq!(Config::default().http.address.to_string(), "127.0.0.1:9376");
        assert!(Config::default().redaction.enabled);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
rules:
  paths: [/r]
  min_priority: WARNING
  disable_tags: [network]
capture:
  ring_buffer_bytes: 16MiB
  kinds: [execve, network]
  containers_only: true
queues: { events: 1000, alerts: 10 }
sinks:
  - type: stdout
  - type: file
    path: /var/log/monitor/alerts.json
    max_bytes: 1000
    keep: 2
  - type: webhook
    url: https://hooks.example/x
    timeout: 2s
    headers: { Authorization: "Bearer x" }
  - type: syslog
    socket: /dev/log
    facility: local3
rate_limit: { burst: 5, refill_per_second: 0.5, summary_window: 2m, dedup_window: 0s }
redaction:
  patterns: [{ name: ssn, regex: '\d{3}-\d{2}-\d{4}' }]
http:
  address: 0.0.0.0:9376
  basic_auth: { username: prom, password_file: /etc/monitor/pw }
metrics: { labels: { namespace: true } }
memory: { budget_bytes: 256MiB }
"#,
        )
        .unwrap();
        assert_eq!(c.rules.min_priority, Priority::Warning);
        assert_eq!(c.capture.ring_buffer_bytes, ByteSize(16 << 20));
        assert_eq!(c.sinks.len(), 4);
        assert_eq!(c.rate_limit.summary_window, Duration::from_secs(120));
        assert!(
            matches!(&c.sinks[2], SinkConfig::Webhook { timeout, retries: 3, .. } if *timeout == Duration::from_secs(2))
        );
        assert!(c.metrics.labels.namespace && !c.metrics.labels.pod);
        assert_eq!(c.memory.budget_bytes.0, 256 << 20);
    }

    #[test]
    fn unknown_key_names_path_position_and_suggestion() {
        let e = parse("rules:\n  min_priorty: debug\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml:2:3: key `rules.min_priorty`: unknown field `min_priorty`, expected one of"),
            "{e}"
        );
        assert!(e.ends_with("; did you mean `min_priority`?"), "{e}");
        let e = parse("sinks:\n  - type: webhook\n    urll: http://x\n").unwrap_err();
        assert!(e.contains("key `sinks[0].urll`: unknown field `urll`"), "{e}");
        assert!(e.ends_with("did you mean `url`?"), "{e}");
        let e = parse("sinkz: []\n").unwrap_err();
        assert!(e.starts_with("m.yaml:1:1: key `sinkz`: unknown field `sinkz`"), "{e}");
        assert!(e.ends_with("did you mean `sinks`?"), "{e}");
        let e = parse("sinks:\n  - type: kafka\n").unwrap_err();
        assert_eq!(
            e,
            "m.yaml:2:11: key `sinks[0].type`: unknown variant `kafka`, expected one of `stdout`, `file`, `webhook`, `syslog`"
        );
        let e = parse("sinks:\n  - type: webhok\n").unwrap_err();
        assert!(e.ends_with("did you mean `webhook`?"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = parse("rules:\n  min_priority: severe\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml:2:3: key `rules.min_priority`: unknown priority \"severe\""),
            "{e}"
        );
        let e = parse("queues:\n  events: lots\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml:2:11: key `queues.events`: invalid type: string \"lots\", expected usize"),
            "{e}"
        );
        let e = parse("capture:\n  ring_buffer_bytes: 8 parsecs\n").unwrap_err();
        assert!(
            e.contains("key `capture.ring_buffer_bytes`: \"8 parsecs\" has an unknown unit"),
            "{e}"
        );
        let e = parse("http:\n  address: localhost\n").unwrap_err();
        assert!(e.contains("key `http.address`: invalid socket address syntax"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        assert_eq!(
            parse("capture: { ring_buffer_bytes: 5000 }").unwrap_err(),
            "invalid config: key `capture.ring_buffer_bytes`: 5000 must be a power of two of at least 4096"
        );
        assert_eq!(
            parse("sinks: [{type: webhook, url: 'ftp://x'}]").unwrap_err(),
            "invalid config: key `sinks[0].url`: \"ftp://x\" is not an http:// or https:// URL"
        );
        assert_eq!(
            parse("capture: { kinds: [execve, exec] }").unwrap_err(),
            "invalid config: key `capture.kinds[1]`: \"exec\" is neither an event type (evt.type name) nor a family (process, file, network, security, side_door)"
        );
        let e = parse("redaction: { patterns: [{name: x, regex: '('}] }").unwrap_err();
        assert!(
            e.starts_with("invalid config: key `redaction.patterns[0].regex`: regex parse error"),
            "{e}"
        );
        assert_eq!(
            parse("http: { basic_auth: { username: u } }").unwrap_err(),
            "invalid config: key `http.basic_auth`: set exactly one of password and password_file"
        );
        assert_eq!(
            parse("sinks: [{type: syslog}]").unwrap_err(),
            "invalid config: key `sinks[0]`: a syslog sink needs `socket` (e.g. /dev/log) and/or `udp` (host:port)"
        );
    }

    #[test]
    fn env_then_flags() {
        let mut c = Config::default();
        let env = |k: &str, v: &str| (k.to_string(), v.to_string());
        c.apply_env_from([
            env("MONITOR_RULES_PATHS", "/a, /b"),
            env("MONITOR_RULES_MIN_PRIORITY", "notice"),
            env("MONITOR_CAPTURE_CONTAINERS_ONLY", "true"),
            env("MONITOR_HTTP_ADDRESS", "0.0.0.0:1234"),
            env("MONITOR_CAPTURE_RING_BUFFER_BYTES", "1MiB"),
            env("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.rules.min_priority, Priority::Notice);
        assert!(c.capture.containers_only);
        assert_eq!(c.http.address.port(), 1234);
        let e = c
            .apply_env_from([env("MONITOR_CAPTURE_CONTAINERS_ONLY", "maybe")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid environment variable MONITOR_CAPTURE_CONTAINERS_ONLY: \"maybe\" is not a boolean (true/false)"
        );
        let e = c
            .apply_env_from([env("MONITOR_CAPTURE_RING_BUFFER_BYTES", "3000")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: key `capture.ring_buffer_bytes (after MONITOR_* variables)`: 3000 must be a power of two of at least 4096"
        );
        c.capture.ring_buffer_bytes = ByteSize(1 << 20);

        let o = RunOverrides {
            rules: vec![PathBuf::from("/c")],
            min_priority: Some(Priority::Error),
            http_address: Some("127.0.0.1:1".parse().unwrap()),
            output_file: Some(PathBuf::from("/tmp/a.json")),
            no_stdout: true,
            no_redaction: true,
            ..Default::default()
        };
        let mut alone = c.clone();
        let err = alone
            .apply_overrides(&RunOverrides {
                no_stdout: true,
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid config: key `sinks`: --no-stdout leaves no alert sink; add one (e.g. --output-file)"
        );
        c.apply_overrides(&o).unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("/c")]);
        assert_eq!(c.rules.min_priority, Priority::Error);
        assert_eq!(c.http.address.port(), 1);
        assert_eq!(
            c.sinks,
            vec![SinkConfig::File {
                path: PathBuf::from("/tmp/a.json"),
                max_bytes: 100 << 20,
                keep: 5
            }]
        );
        assert!(!c.redaction.enabled);
        assert_eq!(c.redaction.redactor().unwrap().redact_str("token=x"), "token=x");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = Config::load(Some(Path::new("/nonexistent/m.yaml"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read config file /nonexistent/m.yaml: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn load_reads_a_real_file_and_resolve_layers_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(&p, "rules: { min_priority: error }\nqueues: { alerts: 7 }\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.rules.min_priority, Priority::Error);
        assert_eq!(c.queues.alerts, Some(7));
        let o = RunOverrides {
            config: Some(p.clone()),
            min_priority: Some(Priority::Debug),
            ..Default::default()
        };
        let c = Config::resolve(&o).unwrap();
        assert_eq!(c.rules.min_priority, Priority::Debug);
        assert_eq!(c.queues.alerts, Some(7));
        std::fs::write(&p, "queues: { alerts: 0 }\n").unwrap();
        assert_eq!(
            Config::load(Some(&p)).unwrap_err().to_string(),
            "invalid config: key `queues.alerts`: must be at least 1"
        );
    }

    #[test]
    fn memory_budget_is_planned_and_refused_naming_the_key() {
        let c = Config::default();
        let plan = c.memory_plan().unwrap();
        assert_eq!(plan.budget_bytes, 512 << 20);
        assert_eq!(plan.high_water_bytes, ((512u64 << 20) as f64 * 0.9) as u64);
        let c = parse("memory: { budget_bytes: 256MiB, high_water_ratio: 0.8 }\nqueues: { events: 5000 }").unwrap();
        let plan = c.memory_plan().unwrap();
        assert_eq!(plan.event_queue, 5000);
        assert_eq!(plan.high_water_bytes, ((256u64 << 20) as f64 * 0.8) as u64);
        let e = parse("memory: { budget_bytes: 48MiB }").unwrap_err();
        assert!(
            e.starts_with("invalid config: key `memory.budget_bytes`: 48 MiB cannot hold the fixed parts: baseline"),
            "{e}"
        );
        let e = parse("memory: { budget_bytes: 140MiB }").unwrap_err();
        assert!(e.contains("use at least 154MiB"), "{e}");
        // The same budget fits with small rings.
        parse("memory: { budget_bytes: 140MiB }\ncapture: { ring_buffer_bytes: 1MiB }").unwrap();
        let e = parse("memory: { budget_bytes: 256MiB }\nqueues: { events: 1000000 }").unwrap_err();
        assert!(
            e.starts_with("invalid config: key `queues.events`: 1000000 needs about "),
            "{e}"
        );
        let e = parse("memory: { high_water_ratio: 1.2 }").unwrap_err();
        assert_eq!(
            e,
            "invalid config: key `memory.high_water_ratio`: 1.2 must be between 0.5 and 0.99"
        );
        assert_eq!(
            parse("queues: { events: 0 }").unwrap_err(),
            "invalid config: key `queues.events`: must be at least 1"
        );
        let mut c = Config::default();
        let env = |k: &str, v: &str| (k.to_string(), v.to_string());
        c.apply_env_from([
            env("MONITOR_MEMORY_HIGH_WATER_RATIO", "0.75"),
            env("MONITOR_QUEUES_ALERTS", "9"),
        ])
        .unwrap();
        assert_eq!((c.memory.high_water_ratio, c.queues.alerts), (0.75, Some(9)));
        let e = c
            .apply_env_from([env("MONITOR_MEMORY_BUDGET_BYTES", "40MiB")])
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid config: key `memory.budget_bytes (after MONITOR_* variables)`: 40 MiB cannot hold"
            ),
            "{e}"
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("8MiB".parse::<ByteSize>().unwrap(), ByteSize(8 << 20));
        assert_eq!("1G".parse::<ByteSize>().unwrap(), ByteSize(1 << 30));
        assert!("x".parse::<ByteSize>().is_err());
        assert!("99999999999999G".parse::<ByteSize>().is_err());
    }
}
