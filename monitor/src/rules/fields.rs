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
    /// `[key]` optional: without it the field is the whole (`proc.env`).
    OptKey,
}

/// Field identifiers. Values with an argument carry it in [`FieldRef::arg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    EvtType,
    EvtNum,
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
    ProcPexe,
    ProcAname,
    ProcApid,
    ProcAexePath,
    ProcAexe,
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
    ProcEnv,
    ProcEnvTruncated,
    ProcVpid,
    ProcPvpid,
    ThreadVtid,
    ProcSname,
    ProcIsSidLeader,
    ProcExeInoCtime,
    ProcExeInoMtime,
    ProcExeInoCtimeDurationProcStart,
    ThreadCapEffective,
    UserUid,
    UserRuid,
    UserName,
    UserLoginUid,
    UserLoginName,
    GroupGid,
    GroupName,
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
    FdConnected,
    FdNameChanged,
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
        "evt.num",
        EvtNum,
        Int,
        None,
        1,
        "this daemon's event number, from 1, in kernel-time order; a gap is an event dropped before the rules; absent on events not numbered (fixtures, older recordings)"
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
        "proc.pexe",
        ProcPexe,
        Str,
        None,
        1,
        "parent's argv[0] (kept up to 256 bytes; a longer one ends in `...`)"
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
        "proc.aexe",
        ProcAexe,
        Str,
        OptIndex,
        2,
        "ancestor argv[0], as proc.aname ([0] is proc.exe)"
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
        "proc.env",
        ProcEnv,
        Str,
        OptKey,
        2,
        "environment at exec, `NAME=value` separated by spaces; `[NAME]` one variable's value. Only the variables that change what code runs are kept (list below)"
    ),
    spec!(
        "proc.env_truncated",
        ProcEnvTruncated,
        Bool,
        None,
        1,
        "the environment did not fit the capture bound: a variable after the cut is not in proc.env (own)"
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
        "proc.vpid",
        ProcVpid,
        Int,
        None,
        1,
        "pid in the process' own pid namespace (1 for a container's init)"
    ),
    spec!(
        "proc.pvpid",
        ProcPvpid,
        Int,
        None,
        1,
        "the parent's proc.vpid (process table; absent when the parent is unknown)"
    ),
    spec!(
        "thread.vtid",
        ThreadVtid,
        Int,
        None,
        1,
        "tid in the thread's own pid namespace"
    ),
    spec!(
        "proc.sname",
        ProcSname,
        Str,
        None,
        1,
        "comm of the session leader (process table; absent when the leader is unknown)"
    ),
    spec!(
        "proc.is_sid_leader",
        ProcIsSidLeader,
        Bool,
        None,
        1,
        "the process leads its session"
    ),
    spec!(
        "proc.exe_ino.ctime",
        ProcExeInoCtime,
        Int,
        None,
        1,
        "ctime of the executable's inode at exec, ns since the epoch"
    ),
    spec!(
        "proc.exe_ino.mtime",
        ProcExeInoMtime,
        Int,
        None,
        1,
        "mtime of the executable's inode at exec, ns since the epoch"
    ),
    spec!(
        "proc.exe_ino.ctime_duration_proc_start",
        ProcExeInoCtimeDurationProcStart,
        Int,
        None,
        1,
        "ns from the executable inode's ctime to the process' start"
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
    spec!(
        "user.loginname",
        UserLoginName,
        Str,
        None,
        2,
        "name of user.loginuid, as user.name; absent when the loginuid is unset"
    ),
    spec!("group.gid", GroupGid, Int, None, 1, "effective gid"),
    spec!(
        "group.name",
        GroupName,
        Str,
        None,
        2,
        "name of group.gid: root, or the host's /etc/group for host processes"
    ),
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
        "fd.connected",
        FdConnected,
        Bool,
        None,
        1,
        "IP sockets: the socket has a peer. True after connect (success or EINPROGRESS, as Falco), for accepted fds and for a send the kernel shows a peer for (a successful TCP send); false for socket/bind/listen and for a non-TCP send that names its destination: the event keeps the named address, not the kernel's peer, so such a send on a connected UDP socket reads false. Absent on other events"
    ),
    spec!(
        "fd.name_changed",
        FdNameChanged,
        Bool,
        None,
        1,
        "IP sockets: the call set the socket's tuple: connect (success or EINPROGRESS), a non-TCP send naming its destination (Falco's `outbound` UDP branch), a TCP Fast Open send. Falco compares with the fd's previous name; events keep no per-fd state, so every send naming a destination counts, a repeat to the same address included. False on other socket events"
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
    ("evt.cpu", "events carry no CPU number"),
    ("evt.buffer", "I/O buffers are not captured"),
    ("evt.latency", "only the exit of a syscall is captured"),
    ("evt.info", "no rendered summary is kept"),
    ("evt.abspath", "use fd.name"),
    ("evt.is_io_read", "read/write syscalls are not captured"),
    ("evt.is_io_write", "read/write syscalls are not captured"),
    (
        "proc.aenv",
        "ancestors' environments are not kept (proc.env is the process' own)",
    ),
    (
        "proc.sid",
        "session ids are captured as the host numbers them, not in the process' own pid namespace",
    ),
    ("proc.vpgid", "process groups are not tracked"),
    ("proc.vpgid.name", "process groups are not tracked"),
    ("proc.vpgid.exe", "process groups are not tracked"),
    ("proc.vpgid.exepath", "process groups are not tracked"),
    ("proc.is_vpgid_leader", "process groups are not tracked"),

    ("proc.ppid.duration", "the parent's start time is not kept"),
    ("proc.pid.ts", "use proc.start_ts"),
    (
        "proc.exe_ino",
        "the executable's inode number is not captured (only its times)",
    ),
    (
        "proc.exe_ino.ctime_duration_pidns_start",
        "pid namespace start is not captured",
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
    ("user.homedir", "passwd entries are not resolved"),
    ("user.shell", "passwd entries are not resolved"),
    (
        "fd.sip.name",
        "DNS names of addresses are not resolved (no DNS answers are captured; compare fd.sip with addresses instead)",
    ),
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
        (ArgKind::OptIndex | ArgKind::OptKey, None) => FArg::None,
        (ArgKind::OptKey, Some(a)) => {
            let key = a.trim();
            if spec.id == Id::ProcEnv && !crate::event::ENV_KEPT.contains(&key) {
                return Lookup::Unsupported(
                    "only the environment variables that change what code runs are kept (the list is in rules/README.md); the rest, secrets included, are dropped at capture",
                );
            }
            FArg::Key(key.to_string())
        }
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
                    "positional `evt.arg[N]`: events keep arguments by name, not in Falco's per-event parameter order; use evt.arg.<name> (names in rules/README.md)",
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

/// 0 is "not captured" for ids and times that are never 0 on a live process.
fn nonzero(v: i64) -> V<'static> {
    if v == 0 { V::Absent } else { V::I(v) }
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

/// An open: the open family, or an io_uring OPENAT/OPENAT2 submission (which carries the
/// same flags and path).
fn is_open(ev: &Event) -> bool {
    match ev.kind {
        EventType::Open | EventType::Openat | EventType::Openat2 | EventType::Creat => true,
        EventType::IoUringSubmit => raw_arg(ev, "opcode")
            .is_some_and(|o| crate::decode::URING_OPEN_OPS.contains(&(o as u64))),
        _ => false,
    }
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
static HOST_USERS: LazyLock<HashMap<u32, String>> =
    LazyLock::new(|| id_names(&std::fs::read_to_string("/etc/passwd").unwrap_or_default()));

/// gid -> name from the host's /etc/group, read once; host processes only, as HOST_USERS.
static HOST_GROUPS: LazyLock<HashMap<u32, String>> =
    LazyLock::new(|| id_names(&std::fs::read_to_string("/etc/group").unwrap_or_default()));

/// `name:password:id:...` lines (passwd and group share the first three columns) -> id -> name.
/// Malformed lines are skipped; the first entry for an id wins, as getpwuid(3) would.
fn id_names(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for l in text.lines() {
        let mut it = l.split(':');
        let (Some(name), Some(id)) = (it.next(), it.nth(1)) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>()
            && !name.is_empty()
        {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// Name of a uid or gid: `root` for 0 (in every container too), the host's database for host
/// processes, otherwise absent: a container's own /etc/passwd is not read.
fn id_name(id: u32, ev: &Event, host: &'static HashMap<u32, String>) -> V<'static> {
    if id == 0 {
        return V::S(Cow::Borrowed("root"));
    }
    if ev.container.id == HOST_CONTAINER_ID
        && let Some(n) = host.get(&id)
    {
        return V::S(Cow::Borrowed(n.as_str()));
    }
    V::Absent
}

/// Does the event carry a value for the field (before transformers)? For a multi-valued field,
/// at least one element. The field-coverage test asks this of live events.
pub fn is_filled(f: &FieldRef, ev: &Event) -> bool {
    let cx = Ctx::new(ev);
    match extract_raw(f, &cx) {
        V::Absent => false,
        V::Many(items) => items.iter().any(|x| !matches!(x, V::Absent)),
        _ => true,
    }
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

/// (comm, pid, exepath, argv[0]) of the process (0) or its n-th ancestor.
fn ancestor_at(ev: &Event, n: usize) -> Option<(&str, u32, &str, &str)> {
    let p = &ev.process;
    if n == 0 {
        Some((&p.comm, p.pid, &p.exepath, &p.exe))
    } else {
        p.ancestors
            .get(n - 1)
            .map(|a| (a.comm.as_str(), a.pid, a.exepath.as_str(), a.exe.as_str()))
    }
}

fn extract_raw<'a>(f: &FieldRef, cx: &'a Ctx<'a>) -> V<'a> {
    let ev = cx.ev;
    let p = &ev.process;
    let fd = ev.fd.as_ref();
    let net = fd.and_then(|f| f.net.as_ref());
    match f.id {
        Id::EvtType => V::S(Cow::Borrowed(ev.kind.name())),
        Id::EvtNum => match ev.num {
            0 => V::Absent,
            n => V::I(i64::try_from(n).unwrap_or(i64::MAX)),
        },
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
            if !is_open(ev) {
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
                p.comm.to_string()
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
        Id::ProcPexe => p.ancestors.first().map_or(V::Absent, |a| nonempty(&a.exe)),
        Id::ProcAname | Id::ProcApid | Id::ProcAexePath | Id::ProcAexe => {
            let pick = |(comm, pid, exepath, exe): (&'a str, u32, &'a str, &'a str)| match f.id {
                Id::ProcAname => V::S(Cow::Borrowed(comm)),
                Id::ProcApid => V::I(i64::from(pid)),
                Id::ProcAexePath => nonempty(exepath),
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
        Id::ProcEnv => {
            let Some(env) = p.env.as_deref() else {
                return V::Absent;
            };
            match &f.arg {
                FArg::Key(k) => env
                    .iter()
                    .find_map(|e| e.strip_prefix(k.as_str())?.strip_prefix('='))
                    .map_or(V::Absent, |v| V::S(Cow::Borrowed(v))),
                _ => V::S(Cow::Owned(env.join(" "))),
            }
        }
        Id::ProcEnvTruncated => V::B(p.env_truncated),
        Id::ProcVpid => nonzero(i64::from(p.vpid)),
        Id::ProcPvpid => p.pvpid.map_or(V::Absent, |v| V::I(i64::from(v))),
        Id::ThreadVtid => nonzero(i64::from(p.vtid)),
        Id::ProcSname => nonempty(&p.sname),
        Id::ProcIsSidLeader => {
            if p.sid == 0 {
                V::Absent
            } else {
                V::B(p.sid == p.pid)
            }
        }
        Id::ProcExeInoCtime => nonzero(i64::try_from(p.exe_ino_ctime).unwrap_or(i64::MAX)),
        Id::ProcExeInoMtime => nonzero(i64::try_from(p.exe_ino_mtime).unwrap_or(i64::MAX)),
        Id::ProcExeInoCtimeDurationProcStart => {
            if p.exe_ino_ctime == 0 || p.start_ts == 0 {
                V::Absent
            } else {
                // Negative when the inode changed after the process started (Falco's too).
                V::I((i128::from(p.start_ts) - i128::from(p.exe_ino_ctime)) as i64)
            }
        }
        Id::ThreadCapEffective => V::S(Cow::Borrowed(
            cx.caps.get_or_init(|| render_caps(p.cap_effective)),
        )),
        Id::UserUid => V::I(i64::from(p.euid)),
        Id::UserRuid => V::I(i64::from(p.uid)),
        Id::UserName => id_name(p.euid, ev, &HOST_USERS),
        Id::UserLoginUid => V::I(p.loginuid.map_or(-1, i64::from)),
        Id::UserLoginName => p
            .loginuid
            .map_or(V::Absent, |uid| id_name(uid, ev, &HOST_USERS)),
        Id::GroupGid => V::I(i64::from(p.egid)),
        Id::GroupName => id_name(p.egid, ev, &HOST_GROUPS),
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
        Id::FdConnected => socket_state(ev).map_or(V::Absent, |s| s.connected.map_or(V::Absent, V::B)),
        Id::FdNameChanged => socket_state(ev).map_or(V::Absent, |s| V::B(s.name_changed)),
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

/// What one event shows of its IP socket's state: Falco's `fd.connected` (None when the event
/// cannot tell) and `fd.name_changed`. Falco keeps a table of every fd and compares each
/// event's tuple with the fd's previous one; events here carry no per-fd state, so both are
/// read from the event alone (see the fields' docs for where that differs).
struct SocketState {
    connected: Option<bool>,
    name_changed: bool,
}

const EINPROGRESS: i64 = 115;
const MSG_FASTOPEN: i64 = 0x2000_0000;

fn socket_state(ev: &Event) -> Option<SocketState> {
    let fd = ev.fd.as_ref()?;
    let net = fd.net.as_ref()?;
    // Falco defines both for TCP/UDP (and raw) sockets; unix sockets have no tuple to change.
    if !matches!(fd.typ, FdType::Ipv4 | FdType::Ipv6) {
        return None;
    }
    let state = |connected, name_changed| {
        Some(SocketState {
            connected,
            name_changed,
        })
    };
    match ev.kind {
        // As Falco without connection tracking: in progress counts as connected.
        EventType::Connect => {
            let set = ev.ret == 0 || ev.ret == -EINPROGRESS;
            state(Some(set), set)
        }
        EventType::Accept | EventType::Accept4 => state(Some(ev.ret >= 0), false),
        EventType::Socket | EventType::Bind | EventType::Listen => state(Some(false), false),
        EventType::Sendto | EventType::Sendmsg | EventType::Sendmmsg => {
            let named = net.source == Source::User;
            if net.l4proto == "tcp" {
                // A TCP send only succeeds on an established connection, and the kernel
                // ignores a destination given with it, except for a Fast Open send, which
                // connects to it.
                let fastopen = raw_arg(ev, "flags").is_some_and(|f| f & MSG_FASTOPEN != 0);
                state(Some(ev.ret >= 0), named && fastopen && ev.ret >= 0)
            } else if named {
                state(Some(false), true)
            } else {
                // No destination named: the send went to the socket's kernel peer, if any.
                let peer = net.server_ip.is_some() || net.server_port.is_some();
                state(Some(peer), false)
            }
        }
        // The cgroup sendmsg hook runs for a UDP send that names its destination.
        EventType::SockSendmsg => state(Some(false), true),
        _ => state(None, false),
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
    // mount(2): Falco's exit event names its arguments dev, dir and type; the decoder keeps
    // them as source, the fd path and fstype. Without these aliases the shipped mount rule's
    // output rendered <NA> for all three (seen while listing fields for the coverage test).
    if ev.kind == EventType::Mount {
        let alias = match key {
            "dev" => Some("source"),
            "type" => Some("fstype"),
            _ => None,
        };
        if let Some(a) = alias {
            return match ev.args.get(a) {
                Some(Arg::Str(s)) => V::S(Cow::Borrowed(s)),
                Some(other) => V::S(Cow::Owned(render_arg(other))),
                None => V::Absent,
            };
        }
        if key == "dir" {
            return ev.fd.as_ref().map_or(V::Absent, |f| {
                opt_s(if f.path.is_some() {
                    &f.path
                } else {
                    &f.raw_path
                })
            });
        }
    }
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
    crate::event::CAPABILITY_NAMES
        .iter()
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

/// The field reference of `rules/README.md`, generated from [`FIELDS`]: one table row per
/// field, in schema order. A unit test keeps the README equal to it (and rewrites it when
/// `MONITOR_BLESS_README=1`).
pub fn readme_field_table() -> String {
    let mut out = String::from("| field | type | argument | meaning |\n|-------|------|----------|---------|\n");
    for f in FIELDS {
        let ty = match f.ty {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
            Ty::Ip => "IP/CIDR",
        };
        let arg = match f.arg {
            ArgKind::None => "",
            ArgKind::OptIndex => "`[N]` optional",
            ArgKind::Index => "`[N]`",
            ArgKind::Key => "`.name` / `[name]`",
            ArgKind::OptKey => "`[name]` optional",
        };
        out.push_str(&format!("| `{}` | {ty} | {arg} | {} |\n", f.name, f.doc));
    }
    out
}

/// The README's list of known Falco fields the events do not carry, from [`UNSUPPORTED`].
pub fn readme_unsupported_list() -> String {
    let names: Vec<String> = UNSUPPORTED.iter().map(|(n, _)| format!("`{n}`")).collect();
    format!("{}.\n", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replace the paragraph of `text` that starts at `start` (or right after it, when
    /// `keep_start`) and ends at the next blank line with `block`; None when `start` is missing.
    fn replace_paragraph(text: &str, start: &str, keep_start: bool, block: &str) -> Option<String> {
        let mut at = text.find(start)?;
        if keep_start {
            at += start.len();
        }
        let end = text[at..].find("\n\n").map_or(text.len(), |e| at + e + 1);
        Some(format!("{}{block}{}", &text[..at], &text[end..]))
    }

    #[test]
    fn readme_field_reference_is_generated_from_the_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/README.md");
        let readme = std::fs::read_to_string(&path).expect("rules/README.md readable");
        let table = readme_field_table();
        let list = readme_unsupported_list();
        let want = replace_paragraph(&readme, "| field | type | argument | meaning |\n", false, &table)
            .and_then(|r| {
                replace_paragraph(
                    &r,
                    "Known Falco fields the events do not carry (R0202 warning, comparisons false):\n\n",
                    true,
                    &list,
                )
            })
            .expect("the README has the field table and the unsupported list");
        if want != readme && std::env::var_os("MONITOR_BLESS_README").is_some() {
            std::fs::write(&path, &want).expect("rules/README.md writable");
            return;
        }
        assert!(
            want == readme,
            "rules/README.md's field reference differs from the schema; regenerate it with \
             MONITOR_BLESS_README=1 cargo test -p monitor --lib readme_field_reference"
        );
    }

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
    fn mount_arguments_answer_to_falco_names() {
        let mut ev = Event {
            kind: EventType::Mount,
            fd: Some(crate::event::Fd {
                path: Some("/mnt".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        ev.args.insert("source".into(), Arg::Str("/dev/vda".into()));
        ev.args.insert("fstype".into(), Arg::Str("ext4".into()));
        let cx = Ctx::new(&ev);
        let get = |k: &str| {
            extract(
                &FieldRef {
                    id: Id::EvtArg,
                    arg: FArg::Key(k.into()),
                    transformers: Vec::new(),
                },
                &cx,
            )
            .render()
        };
        assert_eq!(get("dev").as_deref(), Some("/dev/vda"));
        assert_eq!(get("dir").as_deref(), Some("/mnt"));
        assert_eq!(get("type").as_deref(), Some("ext4"));
        assert_eq!(get("source").as_deref(), Some("/dev/vda"));
        // Only mount has these aliases.
        ev.kind = EventType::Openat;
        let cx = Ctx::new(&ev);
        let f = FieldRef {
            id: Id::EvtArg,
            arg: FArg::Key("type".into()),
            transformers: Vec::new(),
        };
        assert_eq!(extract(&f, &cx), V::Absent);
    }

    fn field(name: &str, arg: Option<&str>) -> FieldRef {
        match lookup(name, arg) {
            Lookup::Found { spec, arg } => FieldRef {
                id: spec.id,
                arg,
                transformers: Vec::new(),
            },
            _ => panic!("{name} is not a supported field"),
        }
    }

    fn owned(v: V<'_>) -> V<'static> {
        match v {
            V::S(s) => V::S(Cow::Owned(s.into_owned())),
            V::Many(items) => V::Many(items.into_iter().map(owned).collect()),
            V::I(i) => V::I(i),
            V::B(b) => V::B(b),
            V::Ip(ip) => V::Ip(ip),
            V::Absent => V::Absent,
        }
    }

    fn get(ev: &Event, name: &str, arg: Option<&str>) -> V<'static> {
        owned(extract(&field(name, arg), &Ctx::new(ev)))
    }

    fn s(v: &str) -> V<'static> {
        V::S(Cow::Owned(v.to_string()))
    }

    #[test]
    fn evt_num_is_the_capture_number_and_zero_never_reads_as_one() {
        let mut ev = Event::default();
        assert_eq!(get(&ev, "evt.num", None), V::Absent);
        ev.num = 42;
        assert_eq!(get(&ev, "evt.num", None), V::I(42));
        // Falco's never_true macro stays false on numbered and unnumbered events alike.
        let text = "- macro: never_true\n  condition: (evt.num=0)\n- rule: r\n  desc: d\n  condition: evt.type = openat and not never_true\n  output: o\n  priority: WARNING\n- rule: never\n  desc: d\n  condition: evt.type = openat and never_true\n  output: o\n  priority: WARNING\n";
        let (set, diags) = crate::rules::load_str("t.yaml", text, &crate::rules::LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        for num in [0, 1, 42] {
            let ev = Event {
                kind: EventType::Openat,
                num,
                ..Event::default()
            };
            let fired: Vec<String> = set.evaluate(&ev).into_iter().map(|m| m.rule.to_string()).collect();
            assert_eq!(fired, ["r"], "evt.num {num}");
        }
    }

    #[test]
    fn pexe_and_aexe_are_the_ancestors_argv0() {
        let mut ev = Event::default();
        ev.process.exe = "sh".into();
        assert_eq!(get(&ev, "proc.pexe", None), V::Absent);
        ev.process.ancestors = vec![
            crate::event::Ancestor {
                pid: 10,
                comm: "java".into(),
                exe: "/usr/lib/jvm/bin/java".into(),
                ..Default::default()
            },
            // Unknown argv[0] (an ancestor only known by pid) is absent, not "".
            crate::event::Ancestor {
                pid: 5,
                ..Default::default()
            },
            crate::event::Ancestor {
                pid: 1,
                comm: "init".into(),
                exe: "/sbin/init".into(),
                ..Default::default()
            },
        ]
        .into();
        assert_eq!(get(&ev, "proc.pexe", None), s("/usr/lib/jvm/bin/java"));
        assert_eq!(get(&ev, "proc.aexe", Some("0")), s("sh"));
        assert_eq!(get(&ev, "proc.aexe", Some("1")), s("/usr/lib/jvm/bin/java"));
        assert_eq!(get(&ev, "proc.aexe", Some("2")), V::Absent);
        assert_eq!(get(&ev, "proc.aexe", Some("3")), s("/sbin/init"));
        assert_eq!(get(&ev, "proc.aexe", Some("4")), V::Absent);
        assert_eq!(
            get(&ev, "proc.aexe", None),
            V::Many(vec![s("/usr/lib/jvm/bin/java"), V::Absent, s("/sbin/init")])
        );
        // The stable Java macros match on it.
        let text = "- rule: r\n  desc: d\n  condition: evt.type = openat and proc.pexe endswith java and proc.aexe[3] = /sbin/init\n  output: o\n  priority: WARNING\n";
        let (set, diags) = crate::rules::load_str("t.yaml", text, &crate::rules::LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        ev.kind = EventType::Openat;
        assert_eq!(set.evaluate(&ev).len(), 1);
    }

    #[test]
    fn passwd_and_group_lines_map_ids_to_names() {
        let m = id_names(
            "root:x:0:0:root:/root:/bin/sh\n# comment\n\nbad\n:x:7:\nwww:x:33:33::/:/bin/false\nalias:x:33:\nadm:x:4:syslog,me\nneg:x:-1:\n",
        );
        let mut v: Vec<(u32, &str)> = m.iter().map(|(k, v)| (*k, v.as_str())).collect();
        v.sort();
        assert_eq!(v, [(0, "root"), (4, "adm"), (33, "www")]);
    }

    #[test]
    fn login_and_group_names_resolve_as_user_name() {
        let mut ev = Event::default();
        std::sync::Arc::make_mut(&mut ev.container).id = "0123456789ab".into();
        // Unset loginuid: no name (user.loginuid reads -1).
        assert_eq!(get(&ev, "user.loginuid", None), V::I(-1));
        assert_eq!(get(&ev, "user.loginname", None), V::Absent);
        ev.process.loginuid = Some(0);
        assert_eq!(get(&ev, "user.loginname", None), s("root"));
        assert_eq!(get(&ev, "group.name", None), s("root"));
        // A container's own databases are not read: other ids have no name there.
        ev.process.loginuid = Some(1000);
        ev.process.egid = 1000;
        assert_eq!(get(&ev, "user.loginname", None), V::Absent);
        assert_eq!(get(&ev, "group.name", None), V::Absent);
        // Host processes: the host's /etc/passwd and /etc/group. The loginuid, not the euid,
        // names the login user; the egid, not the gid, names the group.
        std::sync::Arc::make_mut(&mut ev.container).id = HOST_CONTAINER_ID.into();
        ev.process.euid = 0;
        ev.process.gid = 0;
        let user = HOST_USERS.iter().find(|(id, _)| **id != 0);
        let group = HOST_GROUPS.iter().find(|(id, _)| **id != 0);
        if let (Some((uid, uname)), Some((gid, gname))) = (user, group) {
            ev.process.loginuid = Some(*uid);
            ev.process.egid = *gid;
            assert_eq!(get(&ev, "user.loginname", None), s(uname));
            assert_eq!(get(&ev, "user.name", None), s("root"));
            assert_eq!(get(&ev, "group.name", None), s(gname));
        }
    }

    /// fd.connected and fd.name_changed of one socket event.
    fn sock(kind: EventType, ret: i64, l4: &str, named: bool, peer: bool) -> (V<'static>, V<'static>) {
        let mut ev = Event {
            kind,
            ret,
            fd: Some(crate::event::Fd {
                typ: FdType::Ipv4,
                net: Some(crate::event::NetTuple {
                    l4proto: l4.into(),
                    client_ip: Some("10.0.0.2".into()),
                    client_port: Some(40000),
                    server_ip: (named || peer).then(|| "10.0.0.53".into()),
                    server_port: (named || peer).then_some(53),
                    source: if named { Source::User } else { Source::Kernel },
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Event::default()
        };
        ev.args.insert(
            "flags".into(),
            Arg::Flags {
                raw: 0,
                text: String::new(),
            },
        );
        (get(&ev, "fd.connected", None), get(&ev, "fd.name_changed", None))
    }

    #[test]
    fn socket_connected_and_name_changed_follow_the_call() {
        use EventType::*;
        let b = V::B;
        // connect: as Falco without connection tracking, EINPROGRESS counts.
        assert_eq!(sock(Connect, 0, "tcp", true, false), (b(true), b(true)));
        assert_eq!(sock(Connect, -115, "tcp", true, false), (b(true), b(true)));
        assert_eq!(sock(Connect, -111, "tcp", true, false), (b(false), b(false)));
        assert_eq!(sock(Accept4, 5, "tcp", false, true), (b(true), b(false)));
        assert_eq!(sock(Socket, 3, "udp", false, false), (b(false), b(false)));
        assert_eq!(sock(Bind, 0, "udp", true, false), (b(false), b(false)));
        // The `outbound` UDP branch: a datagram naming its destination.
        assert_eq!(sock(Sendto, 12, "udp", true, false), (b(false), b(true)));
        assert_eq!(sock(Sendmsg, 12, "raw", true, false), (b(false), b(true)));
        assert_eq!(sock(SockSendmsg, 0, "udp", true, false), (b(false), b(true)));
        // A datagram to the connected peer, and one with neither (EDESTADDRREQ).
        assert_eq!(sock(Sendto, 12, "udp", false, true), (b(true), b(false)));
        assert_eq!(sock(Sendmmsg, -89, "udp", false, false), (b(false), b(false)));
        // TCP: a send that succeeded was on a connection; a destination given is ignored.
        assert_eq!(sock(Sendto, 12, "tcp", true, false), (b(true), b(false)));
        assert_eq!(sock(Sendto, -32, "tcp", false, false), (b(false), b(false)));
        // Other calls on a socket: connection state unknown, the tuple unchanged.
        assert_eq!(sock(Dup2, 1, "tcp", false, true), (V::Absent, b(false)));
    }

    #[test]
    fn socket_state_needs_an_ip_socket() {
        let mut ev = Event {
            kind: EventType::Sendto,
            ret: 5,
            fd: Some(crate::event::Fd {
                typ: FdType::Unix,
                net: Some(crate::event::NetTuple {
                    l4proto: "unix".into(),
                    unix_path: Some("/run/x.sock".into()),
                    source: Source::User,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Event::default()
        };
        assert_eq!(get(&ev, "fd.connected", None), V::Absent);
        assert_eq!(get(&ev, "fd.name_changed", None), V::Absent);
        ev.kind = EventType::Openat;
        ev.fd = Some(crate::event::Fd {
            typ: FdType::File,
            path: Some("/etc/passwd".into()),
            ..Default::default()
        });
        assert_eq!(get(&ev, "fd.connected", None), V::Absent);
        ev.fd = None;
        assert_eq!(get(&ev, "fd.name_changed", None), V::Absent);
    }

    #[test]
    fn tcp_fast_open_send_names_its_peer() {
        let mut ev = Event {
            kind: EventType::Sendto,
            ret: 100,
            fd: Some(crate::event::Fd {
                typ: FdType::Ipv6,
                net: Some(crate::event::NetTuple {
                    l4proto: "tcp".into(),
                    server_ip: Some("2001:db8::1".into()),
                    server_port: Some(443),
                    source: Source::User,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Event::default()
        };
        ev.args.insert(
            "flags".into(),
            Arg::Flags {
                raw: MSG_FASTOPEN,
                text: "MSG_FASTOPEN".into(),
            },
        );
        assert_eq!(get(&ev, "fd.connected", None), V::B(true));
        assert_eq!(get(&ev, "fd.name_changed", None), V::B(true));
    }

    #[test]
    fn namespace_ids_session_and_exe_inode_times() {
        let get = |ev: &Event, name: &str| {
            let Lookup::Found { spec, arg } = lookup(name, None) else {
                panic!("{name} is not a supported field");
            };
            let f = FieldRef {
                id: spec.id,
                arg,
                transformers: Vec::new(),
            };
            extract(&f, &Ctx::new(ev)).render()
        };
        let mut ev = Event::default();
        // Nothing captured (a replayed record from before the capture, say): absent, so that
        // `not proc.vpid=1` is never true by default.
        for name in [
            "proc.vpid",
            "proc.pvpid",
            "thread.vtid",
            "proc.sname",
            "proc.is_sid_leader",
            "proc.exe_ino.ctime",
            "proc.exe_ino.mtime",
            "proc.exe_ino.ctime_duration_proc_start",
        ] {
            assert_eq!(get(&ev, name), None, "{name}");
        }
        let p = &mut ev.process;
        (p.pid, p.tid, p.vpid, p.vtid, p.pvpid) = (4000, 4001, 1, 7, Some(0));
        (p.sid, p.sname) = (4000, "sh".into());
        (p.start_ts, p.exe_ino_ctime, p.exe_ino_mtime) = (5_000, 3_000, 2_000);
        assert_eq!(get(&ev, "proc.vpid"), Some("1".into()));
        assert_eq!(get(&ev, "thread.vtid"), Some("7".into()));
        // The parent of a container's init can be pid 0 in its namespace: a value, not absent.
        assert_eq!(get(&ev, "proc.pvpid"), Some("0".into()));
        assert_eq!(get(&ev, "proc.sname"), Some("sh".into()));
        assert_eq!(get(&ev, "proc.is_sid_leader"), Some("true".into()));
        assert_eq!(get(&ev, "proc.exe_ino.ctime"), Some("3000".into()));
        assert_eq!(get(&ev, "proc.exe_ino.mtime"), Some("2000".into()));
        assert_eq!(get(&ev, "proc.exe_ino.ctime_duration_proc_start"), Some("2000".into()));
        // An inode changed after the process started: negative, as Falco's.
        ev.process.exe_ino_ctime = 9_000;
        assert_eq!(get(&ev, "proc.exe_ino.ctime_duration_proc_start"), Some("-4000".into()));
        ev.process.sid = 3999;
        assert_eq!(get(&ev, "proc.is_sid_leader"), Some("false".into()));
        // Still not carried: the session id in the process' own namespace.
        assert!(matches!(lookup("proc.sid", None), Lookup::Unsupported(_)));
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
