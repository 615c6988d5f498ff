//! The typed field schema: Falco field names mapped onto [`Event`], and value extraction.
//!
//! Every field has a type ([`Ty`]) so that literals are parsed once at compile time, an
//! argument shape ([`ArgKind`]), and a support level. Fields Falco defines but the monitor's
//! events never carry are *known but unsupported*: using one is a diagnostic
//! ([`super::diag::Code::UnsupportedField`]) and every comparison on it is false, as in Falco
//! when a field cannot be extracted. A name Falco does not define either is an error.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::LazyLock;

use crate::event::{Arg, Event, FdType, HOST_CONTAINER_ID, Source};
use monitor_common::EventType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Str,
    Int,
    Bool,
    /// An IP address; literals may be an address or a CIDR network.
    Ip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None,
    /// `[N]`, optional: without it the field is every ancestor (multi-valued).
    OptIndex,
    /// `[N]` required.
    Index,
    /// `[key]` or `.key` required.
    Key,
}

/// Field identifiers. Values with an argument carry it in [`FieldRef::arg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    EvtType,
    EvtDir,
    EvtRes,
    EvtRawRes,
    EvtFailed,
    EvtTime,
    EvtTimeS,
    EvtTimeIso,
    EvtDatetime,
    EvtRawTime,
    EvtHostname,
    EvtSource,
    EvtArgs,
    EvtArg,
    EvtRawArg,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    ProcName,
    ProcExe,
    ProcExePath,
    ProcCmdline,
    ProcArgs,
    ProcPid,
    ProcPpid,
    ProcTid,
    ProcPname,
    ProcPcmdline,
    ProcPexePath,
    ProcAname,
    ProcApid,
    ProcAexePath,
    ProcCwd,
    ProcTty,
    ProcDuration,
    ProcStartTs,
    ProcIsExeUpperLayer,
    ProcIsExeFromMemfd,
    ProcIsContainerRuntime,
    ProcExecId,
    ProcStdinType,
    ProcStdoutType,
    ProcStderrType,
    ProcArgsTruncated,
    ThreadCapEffective,
    UserUid,
    UserRuid,
    UserName,
    UserLoginUid,
    GroupGid,
    FdNum,
    FdType,
    FdTypeChar,
    FdName,
    FdNameRaw,
    FdDirectory,
    FdFilename,
    FdPathSource,
    FdHostPath,
    FdTargetPath,
    FdSip,
    FdSport,
    FdCip,
    FdCport,
    FdLip,
    FdLport,
    FdRip,
    FdRport,
    FdIp,
    FdPort,
    FdNet,
    FdSnet,
    FdCnet,
    FdLnet,
    FdRnet,
    FdL4Proto,
    FdSockFamily,
    FdNetSource,
    ContainerId,
    ContainerFullId,
    ContainerName,
    ContainerImage,
    ContainerImageRepo,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerPrivileged,
    ContainerForeignNamespace,
    ContainerType,
    ContainerStartTs,
    ContainerMetadataComplete,
    K8sPodName,
    K8sNsName,
    K8sPodUid,
    K8sContainerName,
    K8sPodLabels,
    K8sPodLabel,
}

pub struct Spec {
    pub name: &'static str,
    pub id: Id,
    pub ty: Ty,
    pub arg: ArgKind,
    /// Relative extraction cost, used to order `and`/`or` operands cheapest first.
    pub cost: u8,
    pub doc: &'static str,
}

impl Spec {
    /// A monitor extension Falco does not define (its doc ends with `(own)`): rule files
    /// meant for Falco must not use it ([`super::load_falco_only`]).
    pub fn is_own(&self) -> bool {
        self.doc.ends_with("(own)")
    }
}

macro_rules! spec {
    ($name:literal, $id:ident, $ty:ident, $arg:ident, $cost:literal, $doc:literal) => {
        Spec {
            name: $name,
            id: Id::$id,
            ty: Ty::$ty,
            arg: ArgKind::$arg,
            cost: $cost,
            doc: $doc,
        }
    };
}

/// Supported fields. `rules/README.md` documents the same table.
pub static FIELDS: &[Spec] = &[
    spec!(
        "evt.type",
        EvtType,
        Str,
        None,
        0,
        "syscall name (execve, openat ...), `procexit`"
    ),
    spec!(
        "evt.dir",
        EvtDir,
        Str,
        None,
        0,
        "always `<`: every event is a syscall exit"
    ),
    spec!(
        "evt.res",
        EvtRes,
        Str,
        None,
        1,
        "`SUCCESS` or the errno name (`ENOENT`)"
    ),
    spec!("evt.rawres", EvtRawRes, Int, None, 1, "return value as is"),
    spec!("evt.failed", EvtFailed, Bool, None, 1, "return value < 0"),
    spec!("evt.time", EvtTime, Str, None, 3, "HH:MM:SS.nnnnnnnnn UTC"),
    spec!("evt.time.s", EvtTimeS, Str, None, 3, "HH:MM:SS UTC"),
    spec!(
        "evt.time.iso8601",
        EvtTimeIso,
        Str,
        None,
        3,
        "RFC 3339 with ns, UTC"
    ),
    spec!(
        "evt.datetime",
        EvtDatetime,
        Str,
        None,
        3,
        "YYYY-MM-DD HH:MM:SS.nnnnnnnnn UTC"
    ),
    spec!(
        "evt.rawtime",
        EvtRawTime,
        Int,
        None,
        1,
        "ns since the epoch"
    ),
    spec!(
        "evt.hostname",
        EvtHostname,
        Str,
        None,
        1,
        "this host's name"
    ),
    spec!("evt.source", EvtSource, Str, None, 0, "always `syscall`"),
    spec!(
        "evt.args",
        EvtArgs,
        Str,
        None,
        4,
        "all arguments, `name=value` separated by spaces"
    ),
    spec!(
        "evt.arg",
        EvtArg,
        Str,
        Key,
        2,
        "argument by name, rendered (`evt.arg.flags` = `O_WRONLY|O_TRUNC`)"
    ),
    spec!(
        "evt.rawarg",
        EvtRawArg,
        Int,
        Key,
        2,
        "argument by name, raw integer"
    ),
    spec!(
        "evt.is_open_read",
        EvtIsOpenRead,
        Bool,
        None,
        1,
        "open-family call with O_RDONLY or O_RDWR"
    ),
    spec!(
        "evt.is_open_write",
        EvtIsOpenWrite,
        Bool,
        None,
        1,
        "open-family call with O_WRONLY or O_RDWR, or creat"
    ),
    spec!(
        "evt.is_open_exec",
        EvtIsOpenExec,
        Bool,
        None,
        1,
        "open-family call creating a file with an execute bit"
    ),
    spec!(
        "proc.name",
        ProcName,
        Str,
        None,
        1,
        "task comm (set by the process itself)"
    ),
    spec!("proc.exe", ProcExe, Str, None, 1, "argv[0]"),
    spec!(
        "proc.exepath",
        ProcExePath,
        Str,
        None,
        1,
        "executable path resolved by the kernel"
    ),
    spec!(
        "proc.cmdline",
        ProcCmdline,
        Str,
        None,
        4,
        "proc.name and the arguments"
    ),
    spec!(
        "proc.args",
        ProcArgs,
        Str,
        None,
        3,
        "argv[1..] joined by spaces"
    ),
    spec!("proc.pid", ProcPid, Int, None, 1, "tgid"),
    spec!("proc.ppid", ProcPpid, Int, None, 1, "parent tgid"),
    spec!("thread.tid", ProcTid, Int, None, 1, "thread id"),
    spec!("proc.pname", ProcPname, Str, None, 1, "parent's comm"),
    spec!(
        "proc.pcmdline",
        ProcPcmdline,
        Str,
        None,
        4,
        "parent's name and arguments"
    ),
    spec!(
        "proc.pexepath",
        ProcPexePath,
        Str,
        None,
        1,
        "parent's executable path"
    ),
    spec!(
        "proc.aname",
        ProcAname,
        Str,
        OptIndex,
        2,
        "ancestor comm: [0] self, [1] parent ...; without index any ancestor"
    ),
    spec!(
        "proc.apid",
        ProcApid,
        Int,
        OptIndex,
        2,
        "ancestor pid, as proc.aname"
    ),
    spec!(
        "proc.aexepath",
        ProcAexePath,
        Str,
        OptIndex,
        2,
        "ancestor executable path, as proc.aname"
    ),
    spec!(
        "proc.cwd",
        ProcCwd,
        Str,
        None,
        1,
        "working directory at exec"
    ),
    spec!(
        "proc.tty",
        ProcTty,
        Int,
        None,
        1,
        "controlling tty device number, 0 when none"
    ),
    spec!(
        "proc.duration",
        ProcDuration,
        Int,
        None,
        1,
        "ns since the process started"
    ),
    spec!(
        "proc.start_ts",
        ProcStartTs,
        Int,
        None,
        1,
        "process start, ns since the epoch (own)"
    ),
    spec!(
        "proc.is_exe_upper_layer",
        ProcIsExeUpperLayer,
        Bool,
        None,
        1,
        "executable on an overlayfs upper layer"
    ),
    spec!(
        "proc.is_exe_from_memfd",
        ProcIsExeFromMemfd,
        Bool,
        None,
        1,
        "executable is a memfd"
    ),
    spec!(
        "proc.is_container_runtime",
        ProcIsContainerRuntime,
        Bool,
        None,
        1,
        "the process runs a container runtime binary exec'd in the host mount namespace (runc, crun, conmon, shims; forks inherit): the runtime's own container setup, unforgeable from inside a container (own)"
    ),
    spec!(
        "proc.exec_id",
        ProcExecId,
        Str,
        None,
        1,
        "pid-reuse-proof process identity (own)"
    ),
    spec!(
        "proc.stdin_type",
        ProcStdinType,
        Str,
        None,
        1,
        "fd 0 type at exec: file, pipe, ipv4, ipv6, unix, tty ... (own)"
    ),
    spec!(
        "proc.stdout_type",
        ProcStdoutType,
        Str,
        None,
        1,
        "fd 1 type at exec (own)"
    ),
    spec!(
        "proc.stderr_type",
        ProcStderrType,
        Str,
        None,
        1,
        "fd 2 type at exec (own)"
    ),
    spec!(
        "proc.args_truncated",
        ProcArgsTruncated,
        Bool,
        None,
        1,
        "argv was cut at the capture bound (own)"
    ),
    spec!(
        "thread.cap_effective",
        ThreadCapEffective,
        Str,
        None,
        3,
        "effective capabilities, `CAP_X CAP_Y`"
    ),
    spec!("user.uid", UserUid, Int, None, 1, "effective uid"),
    spec!("user.ruid", UserRuid, Int, None, 1, "real uid (own)"),
    spec!(
        "user.name",
        UserName,
        Str,
        None,
        2,
        "name of user.uid: root, or the host's /etc/passwd for host processes"
    ),
    spec!(
        "user.loginuid",
        UserLoginUid,
        Int,
        None,
        1,
        "audit login uid, -1 when unset"
    ),
    spec!("group.gid", GroupGid, Int, None, 1, "effective gid"),
    spec!("fd.num", FdNum, Int, None, 1, "fd number"),
    spec!(
        "fd.type",
        FdType,
        Str,
        None,
        1,
        "file, directory, ipv4, ipv6, unix, pipe, memfd ..."
    ),
    spec!(
        "fd.typechar",
        FdTypeChar,
        Str,
        None,
        1,
        "f, d, 4, 6, u, p ..."
    ),
    spec!(
        "fd.name",
        FdName,
        Str,
        None,
        1,
        "file path (kernel-resolved when fd.path_source=kernel), socket tuple, unix path"
    ),
    spec!(
        "fd.nameraw",
        FdNameRaw,
        Str,
        None,
        1,
        "path exactly as the caller passed it"
    ),
    spec!(
        "fd.directory",
        FdDirectory,
        Str,
        None,
        2,
        "directory of fd.name"
    ),
    spec!(
        "fd.filename",
        FdFilename,
        Str,
        None,
        2,
        "last component of fd.name"
    ),
    spec!(
        "fd.path_source",
        FdPathSource,
        Str,
        None,
        1,
        "`kernel` or `user` (own)"
    ),
    spec!(
        "fd.host_path",
        FdHostPath,
        Str,
        None,
        1,
        "the same object's path on the host (own)"
    ),
    spec!(
        "fd.target_path",
        FdTargetPath,
        Str,
        None,
        1,
        "second path of rename/link/symlink (own)"
    ),
    spec!("fd.sip", FdSip, Ip, None, 1, "server IP"),
    spec!("fd.sport", FdSport, Int, None, 1, "server port"),
    spec!("fd.cip", FdCip, Ip, None, 1, "client IP"),
    spec!("fd.cport", FdCport, Int, None, 1, "client port"),
    spec!("fd.lip", FdLip, Ip, None, 1, "local IP"),
    spec!("fd.lport", FdLport, Int, None, 1, "local port"),
    spec!("fd.rip", FdRip, Ip, None, 1, "remote IP"),
    spec!("fd.rport", FdRport, Int, None, 1, "remote port"),
    spec!(
        "fd.ip",
        FdIp,
        Ip,
        None,
        1,
        "client or server IP (matches either)"
    ),
    spec!(
        "fd.port",
        FdPort,
        Int,
        None,
        1,
        "client or server port (matches either)"
    ),
    spec!(
        "fd.net",
        FdNet,
        Ip,
        None,
        1,
        "client or server IP, compared with CIDR networks"
    ),
    spec!(
        "fd.snet",
        FdSnet,
        Ip,
        None,
        1,
        "server IP, compared with CIDR networks"
    ),
    spec!(
        "fd.cnet",
        FdCnet,
        Ip,
        None,
        1,
        "client IP, compared with CIDR networks"
    ),
    spec!(
        "fd.lnet",
        FdLnet,
        Ip,
        None,
        1,
        "local IP, compared with CIDR networks"
    ),
    spec!(
        "fd.rnet",
        FdRnet,
        Ip,
        None,
        1,
        "remote IP, compared with CIDR networks"
    ),
    spec!(
        "fd.l4proto",
        FdL4Proto,
        Str,
        None,
        1,
        "tcp, udp, raw, unix ..."
    ),
    spec!("fd.sockfamily", FdSockFamily, Str, None, 1, "ip or unix"),
    spec!(
        "fd.net_source",
        FdNetSource,
        Str,
        None,
        1,
        "`kernel` or `user`: who supplied the address (own)"
    ),
    spec!(
        "container.id",
        ContainerId,
        Str,
        None,
        1,
        "12-hex id, `host`, or `unknown`"
    ),
    spec!(
        "container.full_id",
        ContainerFullId,
        Str,
        None,
        1,
        "full id"
    ),
    spec!(
        "container.name",
        ContainerName,
        Str,
        None,
        1,
        "container name"
    ),
    spec!(
        "container.image",
        ContainerImage,
        Str,
        None,
        1,
        "full image reference"
    ),
    spec!(
        "container.image.repository",
        ContainerImageRepo,
        Str,
        None,
        1,
        "image repository"
    ),
    spec!(
        "container.image.tag",
        ContainerImageTag,
        Str,
        None,
        1,
        "image tag"
    ),
    spec!(
        "container.image.digest",
        ContainerImageDigest,
        Str,
        None,
        1,
        "image digest"
    ),
    spec!(
        "container.privileged",
        ContainerPrivileged,
        Bool,
        None,
        1,
        "privileged container (absent when unknown)"
    ),
    spec!(
        "container.foreign_namespace",
        ContainerForeignNamespace,
        Bool,
        None,
        1,
        "outside every container cgroup, yet in a pid or mount namespace other than the host's: a container that left its cgroup must not pass for the host (own)"
    ),
    spec!(
        "container.type",
        ContainerType,
        Str,
        None,
        1,
        "runtime: containerd, cri-o, docker, podman, runc"
    ),
    spec!(
        "container.start_ts",
        ContainerStartTs,
        Int,
        None,
        1,
        "container start, ns since the epoch"
    ),
    spec!(
        "container.metadata_complete",
        ContainerMetadataComplete,
        Bool,
        None,
        1,
        "all metadata resolved (own)"
    ),
    spec!("k8s.pod.name", K8sPodName, Str, None, 1, "pod name"),
    spec!("k8s.ns.name", K8sNsName, Str, None, 1, "namespace"),
    spec!("k8s.pod.uid", K8sPodUid, Str, None, 1, "pod uid"),
    spec!(
        "k8s.container.name",
        K8sContainerName,
        Str,
        None,
        1,
        "container name in the pod spec (own)"
    ),
    spec!("k8s.pod.labels", K8sPodLabels, Str, None, 3, "`k:v, k:v`"),
    spec!("k8s.pod.label", K8sPodLabel, Str, Key, 2, "one pod label"),
];

/// Falco fields the monitor's events do not carry, with the reason reported to the user.
pub static UNSUPPORTED: &[(&str, &str)] = &[
    ("evt.num", "events carry no sequence number"),
    ("evt.cpu", "events carry no CPU number"),
    ("evt.buffer", "I/O buffers are not captured"),
    ("evt.latency", "only the exit of a syscall is captured"),
    ("evt.info", "no rendered summary is kept"),
    ("evt.abspath", "use fd.name"),
    ("evt.is_io_read", "read/write syscalls are not captured"),
    ("evt.is_io_write", "read/write syscalls are not captured"),
    (
        "proc.pexe",
        "the parent's argv[0] is not kept in the ancestry",
    ),
    (
        "proc.aexe",
        "ancestors' argv[0] is not kept in the ancestry",
    ),
    ("proc.env", "the environment is not captured"),
    ("proc.aenv", "the environment is not captured"),
    ("proc.sname", "session leaders are not tracked"),
    ("proc.sid", "session ids are not tracked"),
    ("proc.is_sid_leader", "session ids are not tracked"),
    ("proc.vpgid", "process groups are not tracked"),
    ("proc.vpgid.name", "process groups are not tracked"),
    ("proc.vpgid.exe", "process groups are not tracked"),
    ("proc.vpgid.exepath", "process groups are not tracked"),
    ("proc.is_vpgid_leader", "process groups are not tracked"),
    ("proc.vpid", "pid-namespace pids are not captured"),
    ("proc.pvpid", "pid-namespace pids are not captured"),
    ("thread.vtid", "pid-namespace tids are not captured"),
    ("proc.ppid.duration", "the parent's start time is not kept"),
    ("proc.pid.ts", "use proc.start_ts"),
    ("proc.exe_ino", "executable inode is not captured"),
    (
        "proc.exe_ino.ctime",
        "executable inode times are not captured",
    ),
    (
        "proc.exe_ino.mtime",
        "executable inode times are not captured",
    ),
    (
        "proc.exe_ino.ctime_duration_proc_start",
        "executable inode times are not captured",
    ),
    (
        "proc.exe_ino.ctime_duration_pidns_start",
        "executable inode times are not captured",
    ),
    (
        "proc.pidns_init_start_ts",
        "pid namespace start is not captured",
    ),
    ("proc.is_container_healthcheck", "probes are not identified"),
    (
        "proc.is_container_liveness_probe",
        "probes are not identified",
    ),
    (
        "proc.is_container_readiness_probe",
        "probes are not identified",
    ),
    ("proc.fdopencount", "open fd counts are not tracked"),
    ("proc.nthreads", "thread counts are not tracked"),
    (
        "thread.cap_permitted",
        "only the effective capability set is captured",
    ),
    (
        "thread.cap_inheritable",
        "only the effective capability set is captured",
    ),
    ("user.loginname", "login names are not resolved"),
    ("user.homedir", "passwd entries are not resolved"),
    ("user.shell", "passwd entries are not resolved"),
    ("group.name", "group names are not resolved"),
    ("fd.connected", "socket state is not tracked"),
    ("fd.name_changed", "socket state is not tracked"),
    ("fd.sip.name", "DNS names of addresses are not resolved"),
    ("fd.cip.name", "DNS names of addresses are not resolved"),
    ("fd.rip.name", "DNS names of addresses are not resolved"),
    ("fd.lip.name", "DNS names of addresses are not resolved"),
    ("fd.types", "the process' fd table is not tracked"),
    ("fd.ino", "file inodes are not captured"),
    ("fd.dev", "file devices are not captured"),
    ("fd.uid", "file owners are not captured"),
    (
        "fd.is_upper_layer",
        "the file's overlay layer is not captured",
    ),
    ("fd.cproto", "port-to-protocol names are not resolved"),
    ("fd.sproto", "port-to-protocol names are not resolved"),
    ("fd.lproto", "port-to-protocol names are not resolved"),
    ("fd.rproto", "port-to-protocol names are not resolved"),
    ("container.mounts", "container mounts are not tracked"),
    ("container.mount", "container mounts are not tracked"),
    ("container.mount.dest", "container mounts are not tracked"),
    ("container.mount.source", "container mounts are not tracked"),
    ("container.mount.mode", "container mounts are not tracked"),
    ("container.healthcheck", "probes are not tracked"),
    ("container.liveness_probe", "probes are not tracked"),
    ("container.readiness_probe", "probes are not tracked"),
    ("container.ip", "container IPs are not tracked"),
    ("container.cni.json", "CNI results are not tracked"),
    ("container.duration", "use container.start_ts"),
    ("container.host_pid", "host-namespace flags are not tracked"),
    (
        "container.host_network",
        "host-namespace flags are not tracked",
    ),
    ("container.host_ipc", "host-namespace flags are not tracked"),
    ("k8s.ns.labels", "namespace labels are not tracked"),
    ("k8s.ns.label", "namespace labels are not tracked"),
    ("k8s.deployment.name", "workload owners are not tracked"),
    ("k8s.rs.name", "workload owners are not tracked"),
    ("k8s.rc.name", "workload owners are not tracked"),
    ("k8s.svc.name", "services are not tracked"),
    ("fs.path.name", "use fd.name"),
    ("fs.path.source", "use fd.name"),
    ("fs.path.target", "use fd.target_path"),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> =
    LazyLock::new(|| FIELDS.iter().map(|s| (s.name, s)).collect());

/// A field argument, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FArg {
    None,
    Index(usize),
    Key(String),
}

/// A field as used in a condition or output: the spec, its argument and transformers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub id: Id,
    pub arg: FArg,
    pub transformers: Vec<Transformer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
}

impl Transformer {
    pub fn from_name(s: &str) -> Option<Transformer> {
        Some(match s {
            "tolower" => Transformer::ToLower,
            "toupper" => Transformer::ToUpper,
            "b64" => Transformer::B64,
            "basename" => Transformer::Basename,
            "len" => Transformer::Len,
            _ => return None,
        })
    }
}

pub enum Lookup {
    Found { spec: &'static Spec, arg: FArg },
    Unsupported(&'static str),
    Unknown,
    BadArg(String),
}

/// Resolve `name` (and its `[arg]`) against the schema.
pub fn lookup(name: &str, arg: Option<&str>) -> Lookup {
    // `evt.arg.flags`, `evt.rawarg.res`, `k8s.pod.label.app`: argument after the dot.
    for (prefix, base) in [
        ("evt.arg.", "evt.arg"),
        ("evt.rawarg.", "evt.rawarg"),
        ("k8s.pod.label.", "k8s.pod.label"),
    ] {
        if let Some(key) = name.strip_prefix(prefix) {
            if arg.is_some() {
                return Lookup::BadArg(format!(
                    "`{name}` already names its argument; `[...]` is not allowed"
                ));
            }
            return Lookup::Found {
                spec: BY_NAME[base],
                arg: FArg::Key(key.to_string()),
            };
        }
    }
    let Some(spec) = BY_NAME.get(name) else {
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            return Lookup::Unsupported(why);
        }
        return Lookup::Unknown;
    };
    let farg = match (spec.arg, arg) {
        (ArgKind::None, None) => FArg::None,
        (ArgKind::None, Some(_)) => return Lookup::BadArg(format!("`{name}` takes no argument")),
        (ArgKind::OptIndex, None) => FArg::None,
        (ArgKind::Index | ArgKind::OptIndex, Some(a)) => match a.trim().parse::<usize>() {
            Ok(n) if n < 64 => FArg::Index(n),
            _ => {
                return Lookup::BadArg(format!(
                    "`{name}[{a}]`: the argument must be an integer below 64"
                ));
            }
        },
        (ArgKind::Index, None) => {
            return Lookup::BadArg(format!("`{name}` needs an index argument `[N]`"));
        }
        (ArgKind::Key, Some(a)) => {
            if spec.id == Id::EvtArg && a.trim().parse::<usize>().is_ok() {
                return Lookup::Unsupported(
                    "positional `evt.arg[N]`: events keep arguments by name; use evt.arg.<name>",
                );
            }
            FArg::Key(a.trim().to_string())
        }
        (ArgKind::Key, None) => {
            return Lookup::BadArg(format!(
                "`{name}` needs an argument (`{name}.<name>` or `{name}[<name>]`)"
            ));
        }
    };
    Lookup::Found { spec, arg: farg }
}

pub fn spec_of(id: Id) -> &'static Spec {
    // Every Id has exactly one entry in FIELDS (checked by a unit test).
    FIELDS.iter().find(|s| s.id == id).unwrap_or(&FIELDS[0])
}

/// An extracted value. Multi-valued fields (`proc.aname` without index, `fd.ip` ...) give
/// `Many`; a comparison matches when any element matches.
#[derive(Clone, Debug, PartialEq)]
pub enum V<'a> {
    Absent,
    S(Cow<'a, str>),
    I(i64),
    B(bool),
    Ip(std::net::IpAddr),
    Many(Vec<V<'a>>),
}

impl V<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            V::Absent => serde_json::Value::Null,
            V::S(s) => serde_json::Value::String(s.to_string()),
            V::I(i) => serde_json::Value::from(*i),
            V::B(b) => serde_json::Value::Bool(*b),
            V::Ip(ip) => serde_json::Value::String(ip.to_string()),
            V::Many(v) => serde_json::Value::Array(v.iter().map(V::to_json).collect()),
        }
    }

    pub fn render(&self) -> Option<String> {
        match self {
            V::Absent => None,
            V::S(s) => Some(s.to_string()),
            V::I(i) => Some(i.to_string()),
            V::B(b) => Some(b.to_string()),
            V::Ip(ip) => Some(ip.to_string()),
            V::Many(v) => Some(v.iter().filter_map(V::render).collect::<Vec<_>>().join(",")),
        }
    }
}

/// Per-event lazily computed strings, shared by every rule evaluated on the event.
pub struct Ctx<'a> {
    pub ev: &'a Event,
    cmdline: OnceCell<String>,
    args: OnceCell<String>,
    caps: OnceCell<String>,
    sock_name: OnceCell<Option<String>>,
    /// Per-event results of macros (0 unknown, 1 false, 2 true), indexed by macro id: a macro
    /// shared by many rules is evaluated once per event.
    pub memo: std::cell::RefCell<Vec<u8>>,
}

impl<'a> Ctx<'a> {
    pub fn new(ev: &'a Event) -> Self {
        Ctx::with_memo(ev, 0)
    }

    pub fn with_memo(ev: &'a Event, macros: usize) -> Self {
        Ctx {
            ev,
            cmdline: OnceCell::new(),
            args: OnceCell::new(),
            caps: OnceCell::new(),
            sock_name: OnceCell::new(),
            memo: std::cell::RefCell::new(vec![0; macros]),
        }
    }

    fn args(&self) -> &str {
        self.args.get_or_init(|| self.ev.process.args.join(" "))
    }
}

fn opt_s(s: &Option<String>) -> V<'_> {
    match s {
        Some(s) => V::S(Cow::Borrowed(s)),
        None => V::Absent,
    }
}

fn nonempty(s: &str) -> V<'_> {
    if s.is_empty() {
        V::Absent
    } else {
        V::S(Cow::Borrowed(s))
    }
}

fn ip(s: &Option<String>) -> V<'static> {
    match s.as_deref().map(str::parse::<std::net::IpAddr>) {
        Some(Ok(ip)) => V::Ip(ip),
        _ => V::Absent,
    }
}

fn port(p: Option<u16>) -> V<'static> {
    p.map_or(V::Absent, |p| V::I(i64::from(p)))
}

pub fn fdtype_name(t: FdType) -> &'static str {
    match t {
        FdType::None => "none",
        FdType::File => "file",
        FdType::Directory => "directory",
        FdType::Ipv4 => "ipv4",
        FdType::Ipv6 => "ipv6",
        FdType::Unix => "unix",
        FdType::Pipe => "pipe",
        FdType::Event => "event",
        FdType::Signalfd => "signalfd",
        FdType::Eventpoll => "eventpoll",
        FdType::Inotify => "inotify",
        FdType::Timerfd => "timerfd",
        FdType::Netlink => "netlink",
        FdType::Memfd => "memfd",
        FdType::Tty => "tty",
        FdType::Unknown => "unknown",
    }
}

fn is_open_kind(k: EventType) -> bool {
    matches!(
        k,
        EventType::Open | EventType::Openat | EventType::Openat2 | EventType::Creat
    )
}

fn raw_arg(ev: &Event, name: &str) -> Option<i64> {
    match ev.args.get(name)? {
        Arg::Flags { raw, .. } | Arg::Int(raw) => Some(*raw),
        Arg::Str(s) => s.parse().ok(),
    }
}

/// Is the fd's local end the server end (accept, listen, bind)?
fn local_is_server(k: EventType) -> bool {
    matches!(
        k,
        EventType::Accept | EventType::Accept4 | EventType::Listen | EventType::Bind
    )
}

/// uid -> name from the host's /etc/passwd, read once. Only used for host processes: a
/// container has its own passwd database.
static HOST_USERS: LazyLock<HashMap<u32, String>> = LazyLock::new(|| {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let uid = it.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
});

fn user_name(ev: &Event) -> V<'static> {
    let uid = ev.process.euid;
    if uid == 0 {
        return V::S(Cow::Borrowed("root"));
    }
    if ev.container.id == HOST_CONTAINER_ID
        && let Some(n) = HOST_USERS.get(&uid)
    {
        return V::S(Cow::Owned(n.clone()));
    }
    V::Absent
}

/// Extract a field (before transformers).
pub fn extract<'a>(f: &FieldRef, cx: &'a Ctx<'a>) -> V<'a> {
    let v = extract_raw(f, cx);
    if f.transformers.is_empty() {
        v
    } else {
        transform(v, &f.transformers)
    }
}

fn transform<'a>(mut v: V<'a>, ts: &[Transformer]) -> V<'a> {
    for t in ts {
        v = match v {
            V::Many(items) => V::Many(items.into_iter().map(|x| transform(x, &[*t])).collect()),
            V::S(s) => match t {
                Transformer::ToLower => V::S(Cow::Owned(s.to_lowercase())),
                Transformer::ToUpper => V::S(Cow::Owned(s.to_uppercase())),
                Transformer::B64 => match b64_decode(&s) {
                    Some(d) => V::S(Cow::Owned(d)),
                    None => V::Absent,
                },
                Transformer::Basename => V::S(match s {
                    Cow::Borrowed(b) => Cow::Borrowed(b.rsplit('/').next().unwrap_or("")),
                    Cow::Owned(o) => Cow::Owned(o.rsplit('/').next().unwrap_or("").to_string()),
                }),
                Transformer::Len => V::I(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)),
            },
            other => other,
        };
    }
    v
}

fn b64_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn ancestor_at(ev: &Event, n: usize) -> Option<(&str, u32, &str)> {
    let p = &ev.process;
    if n == 0 {
        Some((&p.comm, p.pid, &p.exepath))
    } else {
        p.ancestors
            .get(n - 1)
            .map(|a| (a.comm.as_str(), a.pid, a.exepath.as_str()))
    }
}

fn extract_raw<'a>(f: &FieldRef, cx: &'a Ctx<'a>) -> V<'a> {
    let ev = cx.ev;
    let p = &ev.process;
    let fd = ev.fd.as_ref();
    let net = fd.and_then(|f| f.net.as_ref());
    match f.id {
        Id::EvtType => V::S(Cow::Borrowed(ev.kind.name())),
        Id::EvtDir => V::S(Cow::Borrowed("<")),
        Id::EvtRes => {
            if ev.ret >= 0 {
                V::S(Cow::Borrowed("SUCCESS"))
            } else {
                match errno_name(-ev.ret) {
                    Some(n) => V::S(Cow::Borrowed(n)),
                    None => V::S(Cow::Owned(ev.ret.to_string())),
                }
            }
        }
        Id::EvtRawRes => V::I(ev.ret),
        Id::EvtFailed => V::B(ev.ret < 0),
        Id::EvtTime => V::S(Cow::Owned(crate::time::clock(ev.ts, true))),
        Id::EvtTimeS => V::S(Cow::Owned(crate::time::clock(ev.ts, false))),
        Id::EvtTimeIso => V::S(Cow::Owned(crate::time::rfc3339(ev.ts))),
        Id::EvtDatetime => V::S(Cow::Owned(
            crate::time::rfc3339(ev.ts)
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string(),
        )),
        Id::EvtRawTime => V::I(i64::try_from(ev.ts).unwrap_or(i64::MAX)),
        Id::EvtHostname => V::S(Cow::Borrowed(crate::alert::hostname())),
        Id::EvtSource => V::S(Cow::Borrowed("syscall")),
        Id::EvtArgs => V::S(Cow::Owned(
            ev.args
                .iter()
                .map(|(k, a)| format!("{k}={}", render_arg(a)))
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Id::EvtArg => {
            let FArg::Key(k) = &f.arg else {
                return V::Absent;
            };
            match ev.args.get(k.as_str()) {
                Some(Arg::Flags { text, .. }) => V::S(Cow::Borrowed(text)),
                Some(Arg::Str(s)) => V::S(Cow::Borrowed(s)),
                Some(Arg::Int(i)) => V::S(Cow::Owned(
                    int_arg_text(ev.kind, k, *i).unwrap_or_else(|| i.to_string()),
                )),
                None => arg_fallback(ev, k),
            }
        }
        Id::EvtRawArg => {
            let FArg::Key(k) = &f.arg else {
                return V::Absent;
            };
            raw_arg(ev, k).map_or(V::Absent, V::I)
        }
        Id::EvtIsOpenRead | Id::EvtIsOpenWrite | Id::EvtIsOpenExec => {
            if !is_open_kind(ev.kind) {
                return V::B(false);
            }
            if ev.kind == EventType::Creat {
                let exec = raw_arg(ev, "mode").is_some_and(|m| m & 0o111 != 0);
                return V::B(match f.id {
                    Id::EvtIsOpenRead => false,
                    Id::EvtIsOpenWrite => true,
                    _ => exec,
                });
            }
            let Some(flags) = raw_arg(ev, "flags") else {
                return V::Absent;
            };
            let acc = flags & 3;
            V::B(match f.id {
                Id::EvtIsOpenRead => acc == 0 || acc == 2,
                Id::EvtIsOpenWrite => acc == 1 || acc == 2,
                _ => flags & 0o100 != 0 && raw_arg(ev, "mode").is_some_and(|m| m & 0o111 != 0),
            })
        }
        Id::ProcName => V::S(Cow::Borrowed(&p.comm)),
        Id::ProcExe => V::S(Cow::Borrowed(&p.exe)),
        Id::ProcExePath => nonempty(&p.exepath),
        Id::ProcCmdline => V::S(Cow::Borrowed(cx.cmdline.get_or_init(|| {
            let a = cx.args();
            if a.is_empty() {
                p.comm.clone()
            } else {
                format!("{} {a}", p.comm)
            }
        }))),
        Id::ProcArgs => match f.arg {
            FArg::Key(_) => V::Many(
                p.args
                    .iter()
                    .map(|a| V::S(Cow::Borrowed(a.as_str())))
                    .collect(),
            ),
            _ => V::S(Cow::Borrowed(cx.args())),
        },
        Id::ProcPid => V::I(i64::from(p.pid)),
        Id::ProcPpid => V::I(i64::from(p.ppid)),
        Id::ProcTid => V::I(i64::from(p.tid)),
        Id::ProcPname => p
            .ancestors
            .first()
            .map_or(V::Absent, |a| V::S(Cow::Borrowed(&a.comm))),
        Id::ProcPcmdline => p.ancestors.first().map_or(V::Absent, |a| {
            if a.args.is_empty() {
                V::S(Cow::Borrowed(&a.comm))
            } else {
                V::S(Cow::Owned(format!("{} {}", a.comm, a.args.join(" "))))
            }
        }),
        Id::ProcPexePath => p
            .ancestors
            .first()
            .map_or(V::Absent, |a| nonempty(&a.exepath)),
        Id::ProcAname | Id::ProcApid | Id::ProcAexePath => {
            let pick = |(comm, pid, exe): (&'a str, u32, &'a str)| match f.id {
                Id::ProcAname => V::S(Cow::Borrowed(comm)),
                Id::ProcApid => V::I(i64::from(pid)),
                _ => nonempty(exe),
            };
            match f.arg {
                FArg::Index(n) => ancestor_at(ev, n).map_or(V::Absent, pick),
                // Without index: every ancestor, not the process itself (as Falco).
                _ => V::Many(
                    (1..=p.ancestors.len())
                        .filter_map(|n| ancestor_at(ev, n))
                        .map(pick)
                        .collect(),
                ),
            }
        }
        Id::ProcCwd => nonempty(&p.cwd),
        Id::ProcTty => V::I(i64::from(p.tty)),
        Id::ProcDuration => {
            if p.start_ts == 0 {
                V::Absent
            } else {
                V::I(i64::try_from(ev.ts.saturating_sub(p.start_ts)).unwrap_or(i64::MAX))
            }
        }
        Id::ProcStartTs => V::I(i64::try_from(p.start_ts).unwrap_or(i64::MAX)),
        Id::ProcIsExeUpperLayer => V::B(p.is_exe_upper_layer),
        Id::ProcIsExeFromMemfd => V::B(p.is_exe_from_memfd),
        Id::ProcIsContainerRuntime => V::B(p.is_container_runtime),
        Id::ProcExecId => nonempty(&p.exec_id),
        Id::ProcStdinType => V::S(Cow::Borrowed(fdtype_name(p.stdio[0]))),
        Id::ProcStdoutType => V::S(Cow::Borrowed(fdtype_name(p.stdio[1]))),
        Id::ProcStderrType => V::S(Cow::Borrowed(fdtype_name(p.stdio[2]))),
        Id::ProcArgsTruncated => V::B(p.args_truncated),
        Id::ThreadCapEffective => V::S(Cow::Borrowed(
            cx.caps.get_or_init(|| render_caps(p.cap_effective)),
        )),
        Id::UserUid => V::I(i64::from(p.euid)),
        Id::UserRuid => V::I(i64::from(p.uid)),
        Id::UserName => user_name(ev),
        Id::UserLoginUid => V::I(p.loginuid.map_or(-1, i64::from)),
        Id::GroupGid => V::I(i64::from(p.egid)),
        Id::FdNum => fd.and_then(|f| f.num).map_or(V::Absent, V::I),
        Id::FdType => fd.map_or(V::Absent, |f| {
            if f.typ == FdType::None {
                V::Absent
            } else {
                V::S(Cow::Borrowed(fdtype_name(f.typ)))
            }
        }),
        Id::FdTypeChar => fd.map_or(V::Absent, |f| {
            if f.typ == FdType::None {
                V::Absent
            } else {
                let c = f.typ.typechar();
                let s: &'static str = match c {
                    'f' => "f",
                    'd' => "d",
                    '4' => "4",
                    '6' => "6",
                    'u' => "u",
                    'p' => "p",
                    'e' => "e",
                    's' => "s",
                    'l' => "l",
                    'i' => "i",
                    't' => "t",
                    'n' => "n",
                    _ => "o",
                };
                V::S(Cow::Borrowed(s))
            }
        }),
        Id::FdName => fd_name(cx),
        Id::FdNameRaw => fd.map_or(V::Absent, |f| opt_s(&f.raw_path)),
        Id::FdDirectory => match fd_name(cx) {
            V::S(s) if s.starts_with('/') => {
                let dir = match s.rfind('/') {
                    Some(0) => "/".to_string(),
                    Some(i) => s[..i].to_string(),
                    None => return V::Absent,
                };
                V::S(Cow::Owned(dir))
            }
            _ => V::Absent,
        },
        Id::FdFilename => match fd_name(cx) {
            V::S(s) if s.starts_with('/') => {
                V::S(Cow::Owned(s.rsplit('/').next().unwrap_or("").to_string()))
            }
            _ => V::Absent,
        },
        Id::FdPathSource => fd.filter(|f| f.path.is_some()).map_or(V::Absent, |f| {
            V::S(Cow::Borrowed(source_name(f.path_source)))
        }),
        Id::FdHostPath => fd.map_or(V::Absent, |f| opt_s(&f.host_path)),
        Id::FdTargetPath => fd.map_or(V::Absent, |f| opt_s(&f.target_path)),
        Id::FdSip | Id::FdSnet => net.map_or(V::Absent, |n| ip(&n.server_ip)),
        Id::FdCip | Id::FdCnet => net.map_or(V::Absent, |n| ip(&n.client_ip)),
        Id::FdSport => net.map_or(V::Absent, |n| port(n.server_port)),
        Id::FdCport => net.map_or(V::Absent, |n| port(n.client_port)),
        Id::FdLip | Id::FdLnet => net.map_or(V::Absent, |n| {
            ip(if local_is_server(ev.kind) {
                &n.server_ip
            } else {
                &n.client_ip
            })
        }),
        Id::FdRip | Id::FdRnet => net.map_or(V::Absent, |n| {
            ip(if local_is_server(ev.kind) {
                &n.client_ip
            } else {
                &n.server_ip
            })
        }),
        Id::FdLport => net.map_or(V::Absent, |n| {
            port(if local_is_server(ev.kind) {
                n.server_port
            } else {
                n.client_port
            })
        }),
        Id::FdRport => net.map_or(V::Absent, |n| {
            port(if local_is_server(ev.kind) {
                n.client_port
            } else {
                n.server_port
            })
        }),
        Id::FdIp | Id::FdNet => net.map_or(V::Absent, |n| {
            V::Many(vec![ip(&n.client_ip), ip(&n.server_ip)])
        }),
        Id::FdPort => net.map_or(V::Absent, |n| {
            V::Many(vec![port(n.client_port), port(n.server_port)])
        }),
        Id::FdL4Proto => net.map_or(V::Absent, |n| nonempty(&n.l4proto)),
        Id::FdSockFamily => fd.map_or(V::Absent, |f| match f.typ {
            FdType::Ipv4 | FdType::Ipv6 => V::S(Cow::Borrowed("ip")),
            FdType::Unix => V::S(Cow::Borrowed("unix")),
            _ => V::Absent,
        }),
        Id::FdNetSource => net.map_or(V::Absent, |n| V::S(Cow::Borrowed(source_name(n.source)))),
        Id::ContainerId => V::S(Cow::Borrowed(&ev.container.id)),
        Id::ContainerFullId => nonempty(&ev.container.full_id),
        Id::ContainerName => nonempty(&ev.container.name),
        Id::ContainerImage => nonempty(&ev.container.image),
        Id::ContainerImageRepo => nonempty(&ev.container.image_repository),
        Id::ContainerImageTag => nonempty(&ev.container.image_tag),
        Id::ContainerImageDigest => nonempty(&ev.container.image_digest),
        Id::ContainerPrivileged => ev.container.privileged.map_or(V::Absent, V::B),
        Id::ContainerForeignNamespace => V::B(ev.container.foreign_namespace),
        Id::ContainerType => nonempty(&ev.container.runtime),
        Id::ContainerStartTs => ev
            .container
            .start_ts
            .map_or(V::Absent, |t| V::I(i64::try_from(t).unwrap_or(i64::MAX))),
        Id::ContainerMetadataComplete => V::B(ev.container.metadata_complete),
        Id::K8sPodName
        | Id::K8sNsName
        | Id::K8sPodUid
        | Id::K8sContainerName
        | Id::K8sPodLabels
        | Id::K8sPodLabel => {
            let Some(k) = ev.container.k8s.as_ref() else {
                return V::Absent;
            };
            match f.id {
                Id::K8sPodName => nonempty(&k.pod_name),
                Id::K8sNsName => nonempty(&k.namespace),
                Id::K8sPodUid => nonempty(&k.pod_uid),
                Id::K8sContainerName => nonempty(&k.container_name),
                Id::K8sPodLabels => V::S(Cow::Owned(
                    k.labels
                        .iter()
                        .map(|(a, b)| format!("{a}:{b}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
                _ => match &f.arg {
                    FArg::Key(key) => k
                        .labels
                        .get(key)
                        .map_or(V::Absent, |v| V::S(Cow::Borrowed(v))),
                    _ => V::Absent,
                },
            }
        }
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Kernel => "kernel",
        Source::User => "user",
    }
}

/// Falco names path arguments per syscall (`name`, `pathname`, `oldpath`, `target` ...). Our
/// events keep the paths in `fd`; map the usual argument names onto them when the decoder
/// did not also put them in `args`.
fn arg_fallback<'a>(ev: &'a Event, key: &str) -> V<'a> {
    let Some(fd) = ev.fd.as_ref() else {
        return V::Absent;
    };
    match key {
        "name" | "path" | "pathname" | "filename" | "oldpath" | "target" | "dirfd" => {
            opt_s(if fd.raw_path.is_some() {
                &fd.raw_path
            } else {
                &fd.path
            })
        }
        "newpath" | "linkpath" => opt_s(&fd.target_path),
        "fd" | "res_or_fd" => fd
            .num
            .map_or(V::Absent, |n| V::S(Cow::Owned(n.to_string()))),
        _ => V::Absent,
    }
}

fn fd_name<'a>(cx: &'a Ctx<'_>) -> V<'a> {
    let Some(fd) = cx.ev.fd.as_ref() else {
        return V::Absent;
    };
    if let Some(p) = &fd.path {
        return V::S(Cow::Borrowed(p));
    }
    let name = cx.sock_name.get_or_init(|| {
        let n = fd.net.as_ref()?;
        if let Some(u) = &n.unix_path {
            return Some(u.clone());
        }
        let ep = |ip: &Option<String>, port: Option<u16>| {
            let ip = ip.as_deref().unwrap_or("0.0.0.0");
            let port = port.unwrap_or(0);
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        Some(format!(
            "{}->{}",
            ep(&n.client_ip, n.client_port),
            ep(&n.server_ip, n.server_port)
        ))
    });
    name.as_deref()
        .map_or(V::Absent, |s| V::S(Cow::Borrowed(s)))
}

/// Falco renders some integer arguments as flag names: chmod's `mode` (`S_ISUID|S_IRUSR|...`)
/// and socket's `domain` (`AF_INET`). Decoders that pass the raw number get the same text, so
/// rules written against Falco's rendering (`evt.arg.mode contains S_ISUID`) still match.
pub fn int_arg_text(kind: EventType, key: &str, v: i64) -> Option<String> {
    match (kind, key) {
        (EventType::Chmod | EventType::Fchmod | EventType::Fchmodat, "mode") => Some(mode_text(v)),
        (EventType::Socket, "domain") => family_name(v).map(str::to_string),
        _ => None,
    }
}

/// `S_ISUID|S_ISGID|S_ISVTX|S_IRUSR|S_IWUSR|S_IXUSR|...` for the bits set, one name per bit
/// (so `contains S_IXUSR` works whatever the other bits); `0` when none is.
pub fn mode_text(mode: i64) -> String {
    const BITS: [(i64, &str); 12] = [
        (0o4000, "S_ISUID"),
        (0o2000, "S_ISGID"),
        (0o1000, "S_ISVTX"),
        (0o400, "S_IRUSR"),
        (0o200, "S_IWUSR"),
        (0o100, "S_IXUSR"),
        (0o40, "S_IRGRP"),
        (0o20, "S_IWGRP"),
        (0o10, "S_IXGRP"),
        (0o4, "S_IROTH"),
        (0o2, "S_IWOTH"),
        (0o1, "S_IXOTH"),
    ];
    let names: Vec<&str> = BITS
        .iter()
        .filter(|(b, _)| mode & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

fn family_name(v: i64) -> Option<&'static str> {
    Some(match v {
        0 => "AF_UNSPEC",
        1 => "AF_UNIX",
        2 => "AF_INET",
        10 => "AF_INET6",
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        40 => "AF_VSOCK",
        44 => "AF_XDP",
        _ => return None,
    })
}

pub fn render_arg(a: &Arg) -> String {
    match a {
        Arg::Flags { text, .. } => text.clone(),
        Arg::Int(i) => i.to_string(),
        Arg::Str(s) => s.clone(),
    }
}

/// Falco's rendering of a capability set: names separated by spaces.
pub fn render_caps(mask: u64) -> String {
    crate::event::CAPABILITY_NAMES.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// errno names as Falco renders `evt.res`.
pub fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        88 => "ENOTSOCK",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        106 => "EISCONN",
        107 => "ENOTCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_one_spec() {
        let mut seen = std::collections::HashSet::new();
        for s in FIELDS {
            assert!(seen.insert(s.id), "{:?} twice", s.id);
            assert!(
                !UNSUPPORTED.iter().any(|(n, _)| *n == s.name),
                "{} both supported and not",
                s.name
            );
        }
    }

    #[test]
    fn caps_render_like_falco() {
        assert_eq!(
            render_caps((1 << 21) | (1 << 16)),
            "CAP_SYS_MODULE CAP_SYS_ADMIN"
        );
    }

    #[test]
    fn b64_decodes() {
        assert_eq!(b64_decode("aGVsbG8=").as_deref(), Some("hello"));
    }

    #[test]
    fn integer_mode_and_domain_render_as_falco_flag_names() {
        assert_eq!(
            mode_text(0o4755),
            "S_ISUID|S_IRUSR|S_IWUSR|S_IXUSR|S_IRGRP|S_IXGRP|S_IROTH|S_IXOTH"
        );
        assert_eq!(mode_text(0o100), "S_IXUSR");
        assert_eq!(mode_text(0), "0");
        assert_eq!(
            int_arg_text(EventType::Fchmodat, "mode", 0o2000).as_deref(),
            Some("S_ISGID")
        );
        assert_eq!(
            int_arg_text(EventType::Socket, "domain", 17).as_deref(),
            Some("AF_PACKET")
        );
        assert_eq!(int_arg_text(EventType::Socket, "domain", 99), None);
        // Other events keep the number (open's mode is compared numerically by rules).
        assert_eq!(int_arg_text(EventType::Openat, "mode", 0o644), None);
    }
}
