//! The owned, typed event: what the decoder produces, what enrichment completes, what the rule
//! engine evaluates, and what `monitor events`, recordings, fixtures and replay read and write
//! as JSON Lines (one schema, versioned by [`SCHEMA_VERSION`]).
//!
//! Provenance matters to a security tool: every path and address says whether it came from the
//! kernel's own objects ([`Source::Kernel`]) or from user memory ([`Source::User`]), because data
//! from inside a container is untrusted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use monitor_common::EventType;

/// The environment variables events keep: the ones that change what code a program loads or
/// runs (the dynamic linker's, interpreters' preload and start-up hooks, shell start-up and
/// history files) and PATH. Nothing else of an environment is stored, matched or printed.
pub const ENV_KEPT: &[&str] = &[
    "LD_PRELOAD",
    "LD_AUDIT",
    "LD_LIBRARY_PATH",
    "GCONV_PATH",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTSIZE",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    // glibc's tunables (CVE-2023-4911 went through them).
    "GLIBC_TUNABLES",
    // Where traffic goes; a password in the URL is redacted (see `kept_env`).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "PATH",
];

/// The [`ENV_KEPT`] entries of a NUL-separated environment block, escaped, in block order.
/// `complete` false: the block was cut, and its last entry (possibly cut mid-way) is dropped.
pub fn kept_env(block: &[u8], complete: bool) -> std::sync::Arc<[String]> {
    let block = block.strip_suffix(&[0]).unwrap_or(block);
    let mut entries: Vec<&[u8]> = block.split(|&b| b == 0).filter(|e| !e.is_empty()).collect();
    if !complete {
        entries.pop();
    }
    entries
        .into_iter()
        .filter(|e| {
            let name = e.split(|&b| b == b'=').next().unwrap_or(e);
            ENV_KEPT.iter().any(|k| k.as_bytes() == name)
        })
        .map(|e| redact_url_password(crate::decode::escape_bytes(e, crate::decode::MAX_STR)))
        .collect()
}

/// `NAME=scheme://user:password@host` -> `NAME=scheme://user:<redacted>@host` (proxy URLs
/// carry credentials); anything else unchanged.
fn redact_url_password(entry: String) -> String {
    let Some(scheme_end) = entry.find("://") else {
        return entry;
    };
    let rest = &entry[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return entry;
    };
    let Some(colon) = rest[..at].find(':') else {
        return entry;
    };
    let start = scheme_end + 3 + colon + 1;
    format!("{}<redacted>{}", &entry[..start], &entry[scheme_end + 3 + at..])
}

/// Capability names by bit number (`CAP_CHOWN` = 0 ...): the meaning of `cap_effective`.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// An immutable string shared by every event that carries it. A process' executable, working
/// directory, ids and arguments are the same on each of its events: the process table hands
/// out a reference count instead of a copy per event (the daemon's per-event allocations were
/// a fifth of its CPU on an open storm). Reads like a `str`; serialises as one.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(std::sync::Arc<str>);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.into())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s.into())
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text(s.as_str().into())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

/// Version of the JSON Lines schema. Readers reject records with another version.
pub const SCHEMA_VERSION: u32 = 1;

/// Container id used for processes outside any container.
pub const HOST_CONTAINER_ID: &str = "host";
/// Container id used when attribution failed after the retry stage.
pub const UNKNOWN_CONTAINER_ID: &str = "unknown";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema: u32,
    /// Nanoseconds since the Unix epoch (kernel boot-time clock plus the boot offset).
    pub ts: u64,
    /// Falco's `evt.num`: this daemon's sequence number, from 1, assigned by the capture
    /// reader in kernel-time order as it forwards events (a gap is an event dropped on the
    /// way to the pipeline). 0 = not numbered (fixtures, recordings made before the field):
    /// Falco's `never_true` macro is `evt.num=0`, so 0 must never read as a number.
    #[serde(default, skip_serializing_if = "is_unnumbered")]
    pub num: u64,
    /// Falco's `evt.type`.
    #[serde(rename = "type", with = "event_type_name")]
    pub kind: EventType,
    /// The syscall's return value as is (fd, 0, -errno ...). For `procexit`, the exit status.
    pub ret: i64,
    pub process: Process,
    /// The file or socket the event acted on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<Fd>,
    /// Syscall-specific arguments, by Falco's argument names (`flags`, `mode`, `request` ...).
    /// The names are the decoder's static strings (no allocation per event); a replayed
    /// recording owns its own.
    #[serde(default, skip_serializing_if = "Args::is_empty")]
    pub args: Args,
    pub cgroup_id: u64,
    #[serde(default)]
    pub container: std::sync::Arc<Container>,
}

/// The acting process (thread group) and its ancestry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// tgid.
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    /// `task->comm`: controlled by the process itself; never trust it alone.
    pub comm: Text,
    /// argv[0] as the process passed it.
    pub exe: Text,
    /// Executable path as the kernel resolved it (from `mm->exe_file`).
    pub exepath: Text,
    /// argv[1..], read from the process' memory after exec, bounded.
    pub args: std::sync::Arc<[String]>,
    /// True when argv was cut at the capture bound.
    pub args_truncated: bool,
    /// The environment variables of [`ENV_KEPT`] the process was exec'd with, `NAME=value`,
    /// read from its memory after exec like argv. None when not captured (a process seen only
    /// through procfs whose environ was unreadable). Every other variable is dropped in the
    /// decoder: tokens and passwords live there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<std::sync::Arc<[String]>>,
    /// True when the environment did not fit the capture bound (argv and environment share
    /// 4095 bytes): a kept variable after the cut is not in `env`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env_truncated: bool,
    pub cwd: Text,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// audit login uid; None when unset.
    pub loginuid: Option<u32>,
    /// Controlling tty device number, 0 when none.
    pub tty: u32,
    pub cap_effective: u64,
    pub pidns: u64,
    pub mntns: u64,
    /// Process start time, ns since the Unix epoch.
    pub start_ts: u64,
    /// Identity that survives pid reuse: `<boot id>-<tgid>-<start boot ns>`.
    pub exec_id: Text,
    /// The executable lives on an overlayfs upper layer (written after the container started).
    pub is_exe_upper_layer: bool,
    /// The executable is a memfd (fileless exec).
    pub is_exe_from_memfd: bool,
    /// The process runs a container runtime's code (runc, crun, conmon, containerd shims):
    /// its last exec was of a runtime binary and happened in the host's mount namespace, and
    /// it has not exec'd since (forks inherit). The runtime's own setup inside a new
    /// container (unshare, setns, mount, setuid) is then not the workload's doing. A process
    /// inside a container cannot forge this: its execs happen in the container's namespace.
    pub is_container_runtime: bool,
    /// What fds 0, 1, 2 were at exec: "file", "pipe", "ipv4", "ipv6", "unix", "tty" ...
    pub stdio: [FdType; 3],
    /// Process and thread id in the process' own pid namespace (Falco's `proc.vpid`,
    /// `thread.vtid`); 0 when not captured.
    #[serde(skip_serializing_if = "is_zero")]
    pub vpid: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub vtid: u32,
    /// The parent's `vpid` (its id in its own pid namespace), from the process table; None
    /// when the parent is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvpid: Option<u32>,
    /// Session id as the host numbers it (the session leader's host pid); 0 when not captured.
    #[serde(skip_serializing_if = "is_zero")]
    pub sid: u32,
    /// `comm` of the session leader (Falco's `proc.sname`), from the process table; empty
    /// when the leader is not known.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub sname: Text,
    /// ctime and mtime of the executable's inode at exec, ns since the Unix epoch (Falco's
    /// `proc.exe_ino.ctime`/`.mtime`); 0 when not captured.
    #[serde(skip_serializing_if = "is_zero")]
    pub exe_ino_ctime: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub exe_ino_mtime: u64,
    /// Parent first, then grandparent ... bounded by the process table's depth limit.
    /// Shared with the process table's cached chain: events of one process point at one copy.
    pub ancestors: std::sync::Arc<[Ancestor]>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    /// argv[0], bounded (Falco's `proc.pexe`, `proc.aexe[N]`): what the process claimed.
    pub exe: String,
    pub exepath: String,
    pub args: Vec<String>,
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Resolved by the kernel from its own objects (fd -> struct file, dentry walk, sockaddr copy).
    Kernel,
    /// Read from the process' memory: what the caller claimed.
    #[default]
    User,
}

/// Falco's `fd.type` values, plus `memfd` and `tty`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdType {
    #[default]
    None,
    File,
    Directory,
    Ipv4,
    Ipv6,
    Unix,
    Pipe,
    Event,
    Signalfd,
    Eventpoll,
    Inotify,
    Timerfd,
    Netlink,
    Memfd,
    Tty,
    Unknown,
}

impl FdType {
    /// Falco's `fd.typechar`.
    pub fn typechar(self) -> char {
        match self {
            FdType::File | FdType::Memfd | FdType::Tty => 'f',
            FdType::Directory => 'd',
            FdType::Ipv4 => '4',
            FdType::Ipv6 => '6',
            FdType::Unix => 'u',
            FdType::Pipe => 'p',
            FdType::Event => 'e',
            FdType::Signalfd => 's',
            FdType::Eventpoll => 'l',
            FdType::Inotify => 'i',
            FdType::Timerfd => 't',
            FdType::Netlink => 'n',
            FdType::None | FdType::Unknown => 'o',
        }
    }
}

/// The file or socket an event acted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fd {
    /// The fd number when the event has one (the result of open, the argument of connect ...).
    pub num: Option<i64>,
    #[serde(rename = "type")]
    pub typ: FdType,
    /// Absolute path as the process sees it (from its own root): Falco's `fd.name` for files.
    pub path: Option<String>,
    /// Where `path` came from: the kernel (fd -> file at sys_exit, or the dentry-walked prefix)
    /// or user memory.
    pub path_source: Source,
    /// The path string exactly as the caller passed it (relative, with `..`).
    pub raw_path: Option<String>,
    /// The same object's path on the host (through the container's root), our own field.
    pub host_path: Option<String>,
    /// Second path of two-path calls: rename's new path, link/symlink's link path.
    pub target_path: Option<String>,
    /// A kernel path walk stopped at its bound (64 components): `path` holds only the last
    /// components, and is not a name the process could have used.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// Socket endpoints. For connect/sendto the destination is the server side.
    pub net: Option<NetTuple>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetTuple {
    /// "tcp", "udp", "raw", "unix" ...
    pub l4proto: String,
    pub client_ip: Option<String>,
    pub client_port: Option<u16>,
    pub server_ip: Option<String>,
    pub server_port: Option<u16>,
    /// Unix socket path, when the peer is a unix socket.
    pub unix_path: Option<String>,
    pub source: Source,
}

/// A syscall's arguments by name, kept sorted by name (the JSON object lists them in that
/// order). Most events have four or fewer: those live inline in the event, where a map cost
/// an allocation per event (a B-tree leaf, ~600 bytes). The decoder's names are static
/// strings; a replayed recording owns its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args(smallvec::SmallVec<[(std::borrow::Cow<'static, str>, Arg); 4]>);

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    pub fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Set `name` to `value`; the previous value, if any.
    pub fn insert(&mut self, name: std::borrow::Cow<'static, str>, value: Arg) -> Option<Arg> {
        match self.0.binary_search_by(|(n, _)| n.as_ref().cmp(name.as_ref())) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arg)> {
        self.0.iter().map(|(n, a)| (n.as_ref(), a))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `args["flags"]`, as on a map: panics when the argument is absent.
impl std::ops::Index<&str> for Args {
    type Output = Arg;
    fn index(&self, name: &str) -> &Arg {
        self.get(name).unwrap_or_else(|| panic!("no argument {name:?}"))
    }
}

impl FromIterator<(std::borrow::Cow<'static, str>, Arg)> for Args {
    fn from_iter<I: IntoIterator<Item = (std::borrow::Cow<'static, str>, Arg)>>(iter: I) -> Args {
        let mut args = Args::new();
        for (k, v) in iter {
            args.insert(k, v);
        }
        args
    }
}

impl Serialize for Args {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Args, D::Error> {
        let map = BTreeMap::<String, Arg>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// A syscall argument: its raw integer and, for flags and enums, Falco's symbolic rendering
/// (`O_WRONLY|O_TRUNC`, `PTRACE_ATTACH`), or a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Flags { raw: i64, text: String },
    Int(i64),
    Str(String),
}

/// Container and Kubernetes context, filled by attribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    /// 12-hex short id as Falco, `host`, or `unknown`.
    pub id: String,
    pub full_id: String,
    pub name: String,
    /// "containerd", "cri-o", "docker", "podman", "runc", "" for host.
    pub runtime: String,
    /// Full image reference.
    pub image: String,
    pub image_repository: String,
    pub image_tag: String,
    pub image_digest: String,
    pub privileged: Option<bool>,
    /// Container start time, ns since the Unix epoch, when known.
    pub start_ts: Option<u64>,
    /// False when some metadata could not be resolved (alerts say so).
    pub metadata_complete: bool,
    /// Outside every container cgroup, yet in a pid or mount namespace other than the host's:
    /// a container that moved itself out of its cgroup must not pass for the host.
    pub foreign_namespace: bool,
    pub k8s: Option<K8s>,
}

impl Default for Container {
    fn default() -> Self {
        Container {
            id: UNKNOWN_CONTAINER_ID.to_string(),
            full_id: String::new(),
            name: String::new(),
            runtime: String::new(),
            image: String::new(),
            image_repository: String::new(),
            image_tag: String::new(),
            image_digest: String::new(),
            privileged: None,
            start_ts: None,
            metadata_complete: false,
            foreign_namespace: false,
            k8s: None,
        }
    }
}

impl Container {
    /// The container of an event not attributed yet (`unknown`), one shared copy: the decoder
    /// gives it to every event, and attribution replaces it.
    pub fn unattributed() -> std::sync::Arc<Container> {
        static UNATTRIBUTED: std::sync::LazyLock<std::sync::Arc<Container>> =
            std::sync::LazyLock::new(Default::default);
        std::sync::Arc::clone(&UNATTRIBUTED)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct K8s {
    pub pod_name: String,
    pub namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    pub labels: BTreeMap<String, String>,
}

fn is_unnumbered(num: &u64) -> bool {
    *num == 0
}

impl Event {
    pub fn to_json_line(&self) -> String {
        // Serialising plain data to a String cannot fail.
        serde_json::to_string(self).expect("event serialises")
    }

    /// Parse one JSON line, checking the schema version.
    pub fn from_json_line(line: &str) -> Result<Event, EventParseError> {
        let ev: Event = serde_json::from_str(line).map_err(EventParseError::Json)?;
        if ev.schema != SCHEMA_VERSION {
            return Err(EventParseError::Schema(ev.schema));
        }
        Ok(ev)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventParseError {
    #[error("invalid event JSON: {0}")]
    Json(serde_json::Error),
    #[error("event schema version {0} is not supported (this build reads {SCHEMA_VERSION})")]
    Schema(u32),
}

mod event_type_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::EventType;

    pub fn serialize<S: Serializer>(kind: &EventType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EventType, D::Error> {
        let name = String::deserialize(d)?;
        EventType::from_name(&name).ok_or_else(|| D::Error::custom(format!("unknown event type {name:?}")))
    }
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kept_environment_variables_survive_escaped_and_redacted() {
        let block = b"AWS_SECRET_ACCESS_KEY=abc\0LD_PRELOAD=/tmp/x.so\0API_TOKEN=t0k\0\
PATH=/usr/bin\0https_proxy=http://bob:hunter2@proxy:3128/\0LD_AUDIT=/a\x1b[0m.so\0\
LD_PRELOADX=/no\0=\0\0";
        let kept = kept_env(block, true);
        assert_eq!(
            *kept,
            [
                "LD_PRELOAD=/tmp/x.so",
                "PATH=/usr/bin",
                "https_proxy=http://bob:<redacted>@proxy:3128/",
                "LD_AUDIT=/a\\x1b[0m.so",
            ]
        );
        // A cut block drops its last, possibly partial, entry.
        assert_eq!(*kept_env(b"PATH=/bin\0LD_PRELOAD=/tm", false), ["PATH=/bin"]);
        assert!(kept_env(b"", true).is_empty());
    }

    #[test]
    fn proxy_urls_keep_everything_but_the_password() {
        for (given, want) in [
            ("HTTP_PROXY=http://proxy:8080", "HTTP_PROXY=http://proxy:8080"),
            ("HTTP_PROXY=http://u@proxy:8080", "HTTP_PROXY=http://u@proxy:8080"),
            ("HTTP_PROXY=http://u:p@ss@proxy", "HTTP_PROXY=http://u:<redacted>@proxy"),
            ("ALL_PROXY=socks5://u:p@h/x@y", "ALL_PROXY=socks5://u:<redacted>@h/x@y"),
        ] {
            assert_eq!(redact_url_password(given.to_string()), want);
        }
    }

    #[test]
    fn the_rules_readme_lists_every_kept_variable() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        for k in ENV_KEPT {
            assert!(readme.contains(&format!("`{k}`")), "rules/README.md does not list {k}");
        }
    }
}
