//! Ring-buffer record -> owned [`Event`]. Checks version and lengths before reading anything,
//! counts every malformed record (`monitor_decode_errors_total{reason}`), never panics. Strings
//! from the kernel are untrusted bytes: invalid UTF-8, control characters and backslashes come
//! out escaped (`\xNN`, `\\`), and every string is bounded.
//!
//! The decoder fills what the record says; process-table fields (ancestors, exepath of non-exec
//! events) and the procfs fallbacks are added by `bpf` and `proctable`.
//!
//! What each kind fills (beyond the header: pid, tid, ppid, comm, uid/gid/euid/egid, loginuid,
//! cap_effective, pidns, mntns, vpid, vtid, sid, start_ts, exec_id, cgroup_id, ts, ret):
//! - execve/execveat (success, from sched_process_exec): exepath (kernel, mm->exe_file walk),
//!   exe = argv[0], args = argv[1..] (mm->arg_start, 4095 bytes, args_truncated), cwd (kernel),
//!   tty, stdio kinds, is_exe_from_memfd, is_exe_upper_layer, exe_ino_ctime/mtime (the exe
//!   inode's times); args.filename (bprm->filename).
//!   Failed (ret < 0, from sys_exit): args.filename (user) only.
//! - clone/clone3/fork/vfork (in the parent): ret = child tid; args.flags (text), child_tid,
//!   child_pid (tgid; the parent's for CLONE_THREAD).
//! - procexit (when a process ends, from its last thread: process.tid is that thread, not
//!   always the leader): ret = wait status; args.status, code, sig, core, group_dead (1: the
//!   process is gone; 0 only on per-thread exits, which the kernel side does not report yet).
//! - open/openat/openat2/creat: fd.num (ret >= 0), fd.type, fd.path (kernel, from the returned
//!   fd's struct file; on failure the user path joined onto the kernel-resolved dirfd/cwd,
//!   path_source=user), fd.raw_path; args.flags (O_* text), mode, dirfd, resolve (openat2).
//! - unlink*/rename*/mkdir*/rmdir/link*/symlink*/chmod/fchmodat/chown*/truncate/chroot/
//!   pivot_root/umount2: fd.raw_path (user), fd.path (joined onto the kernel dirfd/cwd,
//!   path_source=user), fd.target_path (second path; symlink's raw target); mode/flags/uid/gid.
//! - fchmod/fchown/ftruncate/setns: fd.num, fd.path (kernel), fd.type; mode / nstype.
//! - dup/dup2/dup3: fd.num = new fd, fd.type and path (kernel), args.oldfd, newfd, old_type.
//! - socket/connect/bind/listen/accept/accept4: fd.num, fd.type, fd.net: l4proto, endpoints from
//!   the kernel socket (source=kernel); connect/bind use the caller's sockaddr copied at entry
//!   for the server side (source=user), unix_path for AF_UNIX; socket domain/type/proto.
//! - setuid family: uid/gid args by Falco names; ptrace: request (text), pid; mount: source,
//!   fstype, flags, fd.path = target; unshare: flags (text); memfd_create: name, flags;
//!   bpf: cmd (text); capset: cap_effective/permitted/inheritable as requested (user data).
//! - io_uring_submit: args.opcode, op (name), sqe_flags: one per submitted request, any opcode;
//!   OPENAT/OPENAT2 also flags, mode, dirfd and fd (the path the kernel copied at prep);
//!   UNLINKAT and RENAMEAT flags, dirfd and fd (a rename's new path in fd.target_path).
//! - sendto/sendmsg/sendmmsg (datagram and raw sockets, and any send naming a destination; see
//!   monitor-ebpf's `send_wanted`): fd.num, fd.type, fd.net: l4proto, the socket's local end
//!   (kernel) as client, the destination as server: the caller's sockaddr (sendto's addr,
//!   msg_name; sendmmsg: the first message's) with source=user, else the connected socket's
//!   kernel peer with source=kernel, absent when neither; unix_path for AF_UNIX. args.size
//!   (sendto's len; sendmsg/sendmmsg: the first message's first 8 iovecs), flags (MSG_* text),
//!   iovlen (sendmsg/sendmmsg), vlen (sendmmsg). ret as is (bytes, messages for sendmmsg, -errno).

use std::collections::HashMap;
use std::sync::LazyLock;

use monitor_common::{
    EventHeader, EventType, FdKind, Payload, STR_CAP, STR_SLOTS, STRINGS_OFFSET, WIRE_VERSION,
    exec_args, flags, send_args, slot,
};
use prometheus::{IntCounterVec, Opts};

use crate::event::{Arg, Container, Event, Fd, FdType, NetTuple, Process, SCHEMA_VERSION, Source, Text};

/// Labels: reason in {short, version, length, kind, strings}.
pub static DECODE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_decode_errors_total",
        "Ring-buffer records rejected by the decoder, by reason (short, version, length, kind, strings)",
        &["reason"],
    )
});

/// Labels: type = Falco event type name (bounded by `EventType::ALL`).
pub static EVENTS_DECODED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_capture_events_total",
        "Events decoded from the kernel, by event type",
        &["type"],
    )
});

/// EVENTS_DECODED's series by kind id, resolved once each: counting an event is then an atomic
/// add instead of hashing its label under the vector's lock (measurable at 10^5+ events/s).
/// Filled lazily so that /metrics still lists only the kinds seen.
static DECODED_BY_KIND: LazyLock<Vec<std::sync::OnceLock<prometheus::IntCounter>>> =
    LazyLock::new(|| {
        (0..monitor_common::MAX_KIND_ID)
            .map(|_| std::sync::OnceLock::new())
            .collect()
    });

fn decoded_counter(kind: EventType) -> &'static prometheus::IntCounter {
    match DECODED_BY_KIND.get(kind as usize) {
        Some(c) => c.get_or_init(|| EVENTS_DECODED.with_label_values(&[kind.name()])),
        // Not reachable (kind ids are below MAX_KIND_ID, checked by monitor-common's tests),
        // but a panic here would stop capture.
        None => {
            static SPARE: LazyLock<prometheus::IntCounter> =
                LazyLock::new(|| EVENTS_DECODED.with_label_values(&["unknown"]));
            &SPARE
        }
    }
}

/// A counter vector in the default registry. If another module registered the same name
/// first, this one still counts (unexported) rather than taking the process down.
pub(crate) fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    crate::metrics::register(IntCounterVec::new(Opts::new(name, help), labels))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the fixed header and payload")]
    Short(usize),
    #[error("record has wire version {0}, this build reads {WIRE_VERSION}")]
    Version(u16),
    #[error("record claims {claimed} bytes but {actual} arrived")]
    Length { claimed: u32, actual: usize },
    #[error("record has unknown event kind {0}")]
    Kind(u16),
    #[error("record string lengths overrun the record")]
    Strings,
}

impl DecodeError {
    fn reason(&self) -> &'static str {
        match self {
            DecodeError::Short(_) => "short",
            DecodeError::Version(_) => "version",
            DecodeError::Length { .. } => "length",
            DecodeError::Kind(_) => "kind",
            DecodeError::Strings => "strings",
        }
    }
}

/// Bound on one decoded string, in input bytes (the kernel slot is smaller anyway).
pub const MAX_STR: usize = STR_CAP;
/// Bound on argv entries kept.
pub const MAX_ARGS: usize = 256;

/// Escape untrusted bytes: printable UTF-8 as is, `\` as `\\`, control characters and invalid
/// bytes as `\xNN`; at most `max` input bytes.
pub fn escape_bytes(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    // Paths, comms and most arguments are printable ASCII: one copy, no per-char pushes.
    if b.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'\\')
        && let Ok(s) = std::str::from_utf8(b)
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// A record checked for version, kind and lengths.
pub struct Record<'a> {
    pub header: EventHeader,
    pub payload: Payload,
    pub kind: EventType,
    pub strings: [&'a [u8]; STR_SLOTS],
}

impl Record<'_> {
    pub fn str(&self, slot: usize) -> Option<String> {
        let s = self.strings[slot];
        (!s.is_empty()).then(|| escape_bytes(s, MAX_STR))
    }
}

pub fn parse(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; EventHeader is plain data (repr(C), integers only), read unaligned.
    let header: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if header.version != WIRE_VERSION {
        return Err(DecodeError::Version(header.version));
    }
    if header.len as usize != bytes.len() {
        return Err(DecodeError::Length {
            claimed: header.len,
            actual: bytes.len(),
        });
    }
    if bytes.len() < STRINGS_OFFSET {
        return Err(DecodeError::Short(bytes.len()));
    }
    let kind = EventType::from_id(header.kind).ok_or(DecodeError::Kind(header.kind))?;
    // SAFETY: as above; Payload is integers and byte arrays only.
    let payload: Payload =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(size_of::<EventHeader>()).cast()) };
    let mut strings: [&[u8]; STR_SLOTS] = [&[]; STR_SLOTS];
    let mut at = STRINGS_OFFSET;
    for (i, &len) in payload.str_len.iter().enumerate() {
        let end = at.checked_add(len as usize).ok_or(DecodeError::Strings)?;
        strings[i] = bytes.get(at..end).ok_or(DecodeError::Strings)?;
        at = end;
    }
    Ok(Record {
        header,
        payload,
        kind,
        strings,
    })
}

/// Converts records to events; holds the clock offset and boot id.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Unix epoch ns minus boot-clock ns, measured once at start.
    pub boot_offset_ns: i128,
    pub boot_id: String,
    /// exec ids made so far, by (tgid, start): every event of a process carries one, and
    /// sharing it costs a reference count where formatting it cost an allocation.
    exec_ids: std::cell::RefCell<HashMap<(u32, u64), Text>>,
}

/// exec ids remembered before the cache starts over (a few hundred KB at most).
const EXEC_ID_CACHE: usize = 4096;

impl Decoder {
    pub fn new(boot_offset_ns: i128, boot_id: String) -> Decoder {
        Decoder {
            boot_offset_ns,
            boot_id,
            exec_ids: Default::default(),
        }
    }

    fn exec_id(&self, tgid: u32, start_boot_ns: u64) -> Text {
        let mut ids = self.exec_ids.borrow_mut();
        if let Some(id) = ids.get(&(tgid, start_boot_ns)) {
            return id.clone();
        }
        if ids.len() >= EXEC_ID_CACHE {
            ids.clear();
        }
        let id: Text = format!("{}-{tgid}-{start_boot_ns}", self.boot_id).into();
        ids.insert((tgid, start_boot_ns), id.clone());
        id
    }

    /// From this machine's clocks and /proc/sys/kernel/random/boot_id.
    pub fn from_system() -> Decoder {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown-boot".to_string());
        Decoder::new(boot_offset_ns(), boot_id)
    }

    pub fn boot_to_epoch(&self, boot_ns: u64) -> u64 {
        let v = boot_ns as i128 + self.boot_offset_ns;
        v.clamp(0, u64::MAX as i128) as u64
    }

    /// Decode one record, counting errors and events.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        match parse(bytes) {
            Ok(r) => {
                decoded_counter(r.kind).inc();
                Ok(self.event(&r))
            }
            Err(e) => {
                DECODE_ERRORS.with_label_values(&[e.reason()]).inc();
                Err(e)
            }
        }
    }

    pub fn event(&self, r: &Record<'_>) -> Event {
        let h = &r.header;
        let p = &r.payload;
        let process = Process {
            pid: h.tgid,
            tid: h.tid,
            ppid: h.ppid,
            comm: escape_bytes(cstr(&h.comm), 16).into(),
            uid: h.uid,
            gid: h.gid,
            euid: h.euid,
            egid: h.egid,
            loginuid: (h.loginuid != u32::MAX).then_some(h.loginuid),
            cap_effective: h.cap_effective,
            pidns: h.pidns as u64,
            mntns: h.mntns as u64,
            vpid: h.vpid,
            vtid: h.vtid,
            sid: h.sid,
            start_ts: self.boot_to_epoch(h.start_boot_ns),
            exec_id: self.exec_id(h.tgid, h.start_boot_ns),
            ..Process::default()
        };
        let mut ev = Event {
            schema: SCHEMA_VERSION,
            ts: self.boot_to_epoch(h.ts_boot_ns),
            // Numbered by the reader when forwarded, in kernel-time order (bpf::Reader::drain).
            num: 0,
            kind: r.kind,
            ret: h.ret,
            process,
            fd: None,
            args: Default::default(),
            cgroup_id: h.cgroup_id,
            container: Container::unattributed(),
        };
        let a = p.args;
        let int = |v: u64| Arg::Int(v as i64);
        let int32 = |v: u64| Arg::Int(v as i32 as i64);
        use EventType::*;
        match r.kind {
            Execve | Execveat => fill_exec(&mut ev, r),
            Clone | Clone3 | Fork | Vfork => {
                ev.args.insert(
                    "flags".into(),
                    Arg::Flags {
                        raw: p.aux[1] as i64,
                        text: flag_text(p.aux[1], CLONE_FLAGS),
                    },
                );
                ev.args.insert("child_tid".into(), int(p.aux[0]));
                ev.args.insert("child_pid".into(), int(p.aux[2]));
            }
            ProcExit => {
                let status = p.aux[0] as u32;
                ev.args.insert("status".into(), Arg::Int(status as i64));
                ev.args
                    .insert("code".into(), Arg::Int(((status >> 8) & 0xff) as i64));
                ev.args
                    .insert("sig".into(), Arg::Int((status & 0x7f) as i64));
                ev.args
                    .insert("core".into(), Arg::Int(((status & 0x80) != 0) as i64));
                ev.args.insert(
                    "group_dead".into(),
                    Arg::Int((p.flags & flags::GROUP_DEAD != 0) as i64),
                );
            }
            Open | Openat | Openat2 | Creat => {
                let (flags_v, mode) = match r.kind {
                    Open => (a[1], a[2]),
                    Openat => (a[2], a[3]),
                    Openat2 => (p.aux[0], p.aux[1]),
                    // creat(path, mode) is open(O_CREAT|O_WRONLY|O_TRUNC).
                    _ => (0o1101, a[1]),
                };
                ev.args.insert(
                    "flags".into(),
                    Arg::Flags {
                        raw: flags_v as i64,
                        text: open_flags_text(flags_v),
                    },
                );
                ev.args
                    .insert("mode".into(), Arg::Int((mode & 0o7777) as i64));
                if matches!(r.kind, Openat | Openat2) {
                    ev.args.insert("dirfd".into(), int32(a[0]));
                }
                if r.kind == Openat2 {
                    ev.args.insert("resolve".into(), int(p.aux[2]));
                }
                let mut fd = path_fd(r);
                if h.ret >= 0 {
                    fd.num = Some(h.ret);
                }
                ev.fd = Some(fd);
            }
            Unlink | Unlinkat | Rename | Renameat | Renameat2 | Mkdir | Mkdirat | Rmdir | Link
            | Linkat | Symlink | Symlinkat | Chmod | Fchmodat | Chown | Lchown | Fchownat
            | Truncate | Chroot | Pivotroot | Umount2 => {
                match r.kind {
                    Mkdir | Chmod => {
                        ev.args
                            .insert("mode".into(), Arg::Int((a[1] & 0o7777) as i64));
                    }
                    Mkdirat | Fchmodat => {
                        ev.args
                            .insert("mode".into(), Arg::Int((a[2] & 0o7777) as i64));
                    }
                    Unlinkat | Umount2 => {
                        let i = if r.kind == Umount2 { 1 } else { 2 };
                        ev.args.insert("flags".into(), int(a[i]));
                    }
                    Renameat2 | Linkat => {
                        ev.args.insert("flags".into(), int(a[4]));
                    }
                    Chown | Lchown => {
                        ev.args.insert("uid".into(), int32(a[1]));
                        ev.args.insert("gid".into(), int32(a[2]));
                    }
                    Fchownat => {
                        ev.args.insert("uid".into(), int32(a[2]));
                        ev.args.insert("gid".into(), int32(a[3]));
                    }
                    _ => {}
                }
                ev.fd = Some(path_fd(r));
            }
            Fchmod | Fchown | Ftruncate | Setns => {
                let mut fd = path_fd(r);
                fd.num = Some(a[0] as i32 as i64);
                ev.fd = Some(fd);
                match r.kind {
                    Fchmod => {
                        ev.args
                            .insert("mode".into(), Arg::Int((a[1] & 0o7777) as i64));
                    }
                    Setns => {
                        ev.args.insert(
                            "nstype".into(),
                            Arg::Flags {
                                raw: a[1] as i64,
                                text: flag_text(a[1], CLONE_FLAGS),
                            },
                        );
                    }
                    _ => {}
                }
            }
            Setxattr | Lsetxattr | Fsetxattr | Setxattrat => {
                fill_xattr(&mut ev, p);
                let mut fd = path_fd(r);
                match r.kind {
                    Fsetxattr => fd.num = Some(a[0] as i32 as i64),
                    Setxattrat => {
                        ev.args.insert("dirfd".into(), int32(a[0]));
                    }
                    _ => {}
                }
                ev.fd = Some(fd);
            }
            Dup | Dup2 | Dup3 => {
                ev.args.insert("oldfd".into(), int32(a[0]));
                if r.kind != Dup {
                    ev.args.insert("newfd".into(), int32(a[1]));
                }
                if r.kind == Dup3 {
                    ev.args.insert("flags".into(), int(a[2]));
                }
                ev.args.insert(
                    "old_type".into(),
                    Arg::Str(fd_type_name(FdKind::from_u8(p.aux[0] as u8)).to_string()),
                );
                let mut fd = path_fd(r);
                fd.num = (h.ret >= 0).then_some(h.ret);
                fd.net = net_from_sock(p, None);
                ev.fd = Some(fd);
            }
            Socket => {
                ev.args.insert("domain".into(), int32(a[0]));
                ev.args.insert("type".into(), int32(a[1]));
                ev.args.insert("proto".into(), int32(a[2]));
                ev.fd = Some(sock_fd(p, (h.ret >= 0).then_some(h.ret), None));
            }
            Connect | Bind | Listen | Accept | Accept4 => {
                let num = if matches!(r.kind, Accept | Accept4) {
                    (h.ret >= 0).then_some(h.ret)
                } else {
                    Some(a[0] as i32 as i64)
                };
                if r.kind == Listen {
                    ev.args.insert("backlog".into(), int32(a[1]));
                }
                let user_addr = matches!(r.kind, Connect | Bind).then(|| {
                    sockaddr(&p.sockaddr[..(p.sockaddr_len as usize).min(p.sockaddr.len())])
                });
                ev.fd = Some(sock_fd(p, num, user_addr.flatten().map(|s| (r.kind, s))));
            }
            Setuid | Setgid | Setfsuid | Setfsgid => {
                let n = if matches!(r.kind, Setuid | Setfsuid) {
                    "uid"
                } else {
                    "gid"
                };
                ev.args.insert(n.into(), int32(a[0]));
            }
            Setreuid | Setregid | Setresuid | Setresgid => {
                let (x, names): (_, &[&str]) = match r.kind {
                    Setreuid => ("u", &["ruid", "euid"]),
                    Setregid => ("g", &["rgid", "egid"]),
                    Setresuid => ("u", &["ruid", "euid", "suid"]),
                    _ => ("g", &["rgid", "egid", "sgid"]),
                };
                let _ = x;
                for (i, n) in names.iter().enumerate() {
                    ev.args.insert((*n).into(), int32(a[i]));
                }
            }
            Ptrace => {
                ev.args.insert(
                    "request".into(),
                    Arg::Flags {
                        raw: a[0] as i64,
                        text: ptrace_text(a[0]),
                    },
                );
                ev.args.insert("pid".into(), int32(a[1]));
            }
            Mount => {
                if let Some(s) = r.str(slot::USER1) {
                    ev.args.insert("source".into(), Arg::Str(s));
                }
                if let Some(s) = r.str(slot::KPATH) {
                    ev.args.insert("fstype".into(), Arg::Str(s));
                }
                ev.args.insert("flags".into(), int(a[3]));
                ev.fd = Some(Fd {
                    path: r.str(slot::USER2),
                    raw_path: r.str(slot::USER2),
                    ..Fd::default()
                });
            }
            Unshare => {
                ev.args.insert(
                    "flags".into(),
                    Arg::Flags {
                        raw: a[0] as i64,
                        text: flag_text(a[0], CLONE_FLAGS),
                    },
                );
            }
            MemfdCreate => {
                if let Some(s) = r.str(slot::USER1) {
                    ev.args.insert("name".into(), Arg::Str(s));
                }
                ev.args.insert("flags".into(), int(a[1]));
                ev.fd = Some(Fd {
                    num: (h.ret >= 0).then_some(h.ret),
                    typ: FdType::Memfd,
                    ..Fd::default()
                });
            }
            Bpf => {
                ev.args.insert(
                    "cmd".into(),
                    Arg::Flags {
                        raw: a[0] as i64,
                        text: bpf_cmd_text(a[0]),
                    },
                );
            }
            Capset => {
                ev.args.insert("cap_effective".into(), int(p.aux[0]));
                ev.args.insert("cap_permitted".into(), int(p.aux[1]));
                ev.args.insert("cap_inheritable".into(), int(p.aux[2]));
            }
            InitModule | FinitModule => {}
            IoUringSubmit => {
                ev.args.insert("opcode".into(), int(p.aux[0]));
                ev.args.insert("sqe_flags".into(), int(p.aux[1]));
                if let Some(op) = r.str(slot::OP) {
                    ev.args.insert("op".into(), Arg::Str(op));
                }
                // OPENAT/OPENAT2, UNLINKAT and RENAMEAT with the paths the kernel copied at
                // prep: as the file rules read the syscalls (flags, dirfd, fd.name and, for a
                // rename, fd.target_path); no fd number or result yet.
                if !r.strings[slot::USER1].is_empty() {
                    let open = URING_OPEN_OPS.contains(&p.aux[0]);
                    let op_flags = if open {
                        Arg::Flags {
                            raw: p.aux[2] as i64,
                            text: open_flags_text(p.aux[2]),
                        }
                    } else {
                        int(p.aux[2])
                    };
                    ev.args.insert("flags".into(), op_flags);
                    if open {
                        ev.args.insert("mode".into(), Arg::Int((p.aux[3] & 0o7777) as i64));
                    }
                    ev.args.insert("dirfd".into(), int32(a[0]));
                    ev.fd = Some(path_fd(r));
                }
            }
            SockConnect | SockSendmsg => crate::decode_sockaddr::fill(&mut ev, r),
            CompatSyscall => crate::decode_sockaddr::fill_compat(&mut ev, r),
            Sendto | Sendmsg | Sendmmsg => {
                let (size, flags_v) = match r.kind {
                    Sendto => (a[2], a[3]),
                    Sendmsg => (a[send_args::SIZE], a[2]),
                    _ => (a[send_args::SIZE], a[3]),
                };
                ev.args.insert("size".into(), int(size));
                ev.args.insert(
                    "flags".into(),
                    Arg::Flags {
                        raw: flags_v as u32 as i64,
                        text: flag_text(flags_v, MSG_FLAGS),
                    },
                );
                if r.kind != Sendto {
                    ev.args.insert("iovlen".into(), int(a[send_args::IOVLEN]));
                }
                if r.kind == Sendmmsg {
                    ev.args.insert("vlen".into(), int(a[2] as u32 as u64));
                }
                let user =
                    sockaddr(&p.sockaddr[..(p.sockaddr_len as usize).min(p.sockaddr.len())]);
                ev.fd = Some(send_fd(p, a[0] as i32 as i64, user));
            }
        }
        ev
    }
}

fn fill_exec(ev: &mut Event, r: &Record<'_>) {
    let p = &r.payload;
    let proc_ = &mut ev.process;
    proc_.exepath = r.str(slot::EXE).unwrap_or_default().into();
    // S1 is argv, then (as far as it reaches) the environment; aux[2] and aux[3] say how
    // long each really was. No environment length: the kernel read argv alone.
    let block = r.strings[slot::ARGV];
    let env_len = p.aux[3] as usize;
    let argv_len = if env_len > 0 { (p.aux[2] as usize).min(block.len()) } else { block.len() };
    let (argv, env) = block.split_at(argv_len);
    if env_len > 0 {
        let complete = env.len() >= env_len;
        proc_.env = Some(crate::event::kept_env(&env[..env.len().min(env_len)], complete));
        proc_.env_truncated = !complete;
    }
    let argv = argv.strip_suffix(&[0]).unwrap_or(argv);
    let mut parts = argv.split(|&b| b == 0);
    proc_.exe = parts
        .next()
        .map(|s| escape_bytes(s, MAX_STR))
        .unwrap_or_default()
        .into();
    proc_.args = parts
        .by_ref()
        .take(MAX_ARGS)
        .map(|s| escape_bytes(s, MAX_STR))
        .collect();
    proc_.args_truncated = p.flags & flags::ARGS_TRUNCATED != 0 || parts.next().is_some();
    proc_.cwd = r.str(slot::CWD).unwrap_or_default().into();
    proc_.tty = p.aux[0] as u32;
    for (i, t) in proc_.stdio.iter_mut().enumerate() {
        *t = fd_type(FdKind::from_u8((p.aux[1] >> (i * 8)) as u8));
    }
    proc_.is_exe_from_memfd = proc_.exepath.starts_with("/memfd:");
    proc_.is_exe_upper_layer = p.flags & flags::EXE_UPPER != 0;
    proc_.exe_ino_ctime = p.args[exec_args::EXE_CTIME_NS];
    proc_.exe_ino_mtime = p.args[exec_args::EXE_MTIME_NS];
    if let Some(f) = r.str(slot::FILENAME) {
        ev.args.insert("filename".into(), Arg::Str(f));
    }
}

/// Lexically join `rel` onto the absolute `dir` and resolve `.`/`..` (what the kernel would do
/// without symlinks; a path through a symlink is only exact when it came from the kernel).
pub fn join_path(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let full = if rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    };
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The fd of a path-taking call: kernel path when the kernel resolved one, else the user path
/// joined onto the kernel-resolved directory.
/// IORING_OP_OPENAT and IORING_OP_OPENAT2: submissions that carry a path and open flags
/// (UNLINKAT and RENAMEAT carry paths too, with their own flags).
pub const URING_OPEN_OPS: [u64; 2] = [18, 28];

/// `XATTR_CREATE`/`XATTR_REPLACE` (uapi linux/xattr.h).
const XATTR_FLAGS: &[(u64, &str)] = &[(1, "XATTR_CREATE"), (2, "XATTR_REPLACE")];
/// `VFS_CAP_FLAGS_EFFECTIVE` and the revision bits of `vfs_cap_data.magic_etc`.
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;

/// The setxattr family's entry copy ([`monitor_common::xattr_copy`]): `name`, `size` and
/// `flags`; for `security.capability` also what the value grants, as the kernel will read it
/// at exec: `caps` (the permitted set, named as Falco names capability sets), `caps_effective`
/// (1 when they are raised at exec without the program asking) and, for a namespaced (v3)
/// value, `cap_rootid`. A value too short or of an unknown revision gets no `caps`.
fn fill_xattr(ev: &mut Event, p: &Payload) {
    use monitor_common::xattr_copy::{NAME, NAME_CAP, SIZE_FLAGS, VALUE};
    let copy = &p.sockaddr[..(p.sockaddr_len as usize).min(p.sockaddr.len())];
    if copy.len() < VALUE {
        // The entry hook did not see this call: nothing of its name or value is known.
        return;
    }
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let size = u32_at(copy, SIZE_FLAGS).unwrap_or(0);
    let xflags = u32_at(copy, SIZE_FLAGS + 4).unwrap_or(0);
    let raw_name = &copy[NAME..NAME + NAME_CAP];
    let raw_name = &raw_name[..raw_name.iter().position(|&b| b == 0).unwrap_or(NAME_CAP)];
    let name = escape_bytes(raw_name, NAME_CAP);
    ev.args.insert("size".into(), Arg::Int(size as i64));
    ev.args.insert(
        "flags".into(),
        Arg::Flags {
            raw: xflags as i64,
            text: flag_text(xflags as u64, XATTR_FLAGS),
        },
    );
    let value = &copy[VALUE..];
    if name == "security.capability" {
        // struct vfs_ns_cap_data { __le32 magic_etc; struct { __le32 permitted, inheritable; }
        // data[2]; __le32 rootid; }; revision 1 has data[1] and no rootid.
        let le = |i: usize| value.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let value_len = (size as usize).min(value.len());
        if let Some(magic) = le(0) {
            let rev = magic & VFS_CAP_REVISION_MASK;
            let permitted = match (rev, le(4), le(12)) {
                (VFS_CAP_REVISION_1, Some(lo), _) if value_len >= 12 => Some(lo as u64),
                (_, Some(lo), Some(hi)) if rev != VFS_CAP_REVISION_1 && value_len >= 20 => {
                    Some(lo as u64 | (hi as u64) << 32)
                }
                _ => None,
            };
            if let Some(perm) = permitted.filter(|_| (1..=3).contains(&(rev >> 24))) {
                ev.args.insert(
                    "caps".into(),
                    Arg::Flags {
                        raw: perm as i64,
                        text: crate::rules::fields::render_caps(perm),
                    },
                );
                ev.args.insert(
                    "caps_effective".into(),
                    Arg::Int((magic & VFS_CAP_FLAGS_EFFECTIVE) as i64),
                );
                if rev == VFS_CAP_REVISION_3 && value_len >= 24 {
                    if let Some(rootid) = le(20) {
                        ev.args.insert("cap_rootid".into(), Arg::Int(rootid as i64));
                    }
                }
            }
        }
    }
    ev.args.insert("name".into(), Arg::Str(name));
}

fn path_fd(r: &Record<'_>) -> Fd {
    let p = &r.payload;
    let raw = r.str(slot::USER1);
    let prefix = r.str(slot::PREFIX);
    let mut fd = Fd {
        typ: fd_type(FdKind::from_u8(p.fd_kind)),
        raw_path: raw.clone(),
        path_truncated: p.flags & flags::PATH_TRUNCATED != 0,
        ..Fd::default()
    };
    if p.flags & flags::KPATH_OK != 0 {
        fd.path = r.str(slot::KPATH);
        fd.path_source = Source::Kernel;
    } else if let Some(raw) = &raw {
        fd.path = Some(match (&prefix, raw.starts_with('/')) {
            (Some(dir), false) => join_path(dir, raw),
            _ => join_path("/", raw),
        });
        fd.path_source = Source::User;
    }
    if fd.typ == FdType::None && fd.path.is_some() && p.flags & flags::KPATH_OK == 0 {
        fd.typ = FdType::File;
    }
    if let Some(t) = r.str(slot::USER2) {
        let joined = match (&prefix, t.starts_with('/')) {
            // symlink's target is any string, kept as given.
            _ if matches!(r.kind, EventType::Symlink | EventType::Symlinkat) => t,
            (Some(dir), false) => join_path(dir, &t),
            _ => t,
        };
        fd.target_path = Some(joined);
    }
    if fd.path.as_deref().is_some_and(|s| s.starts_with("/memfd:")) {
        fd.typ = FdType::Memfd;
    }
    fd
}

fn l4(p: &Payload, family: u16) -> String {
    match (family, p.sock.sock_type) {
        (1, _) => "unix",
        (_, 1) => "tcp",
        (_, 2) => "udp",
        (_, 3) => "raw",
        _ => "",
    }
    .to_string()
}

fn ip(family: u16, b: &[u8; 16]) -> Option<String> {
    match family {
        2 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
        10 => Some(std::net::Ipv6Addr::from(*b).to_string()),
        _ => None,
    }
}

/// Endpoints from the kernel's socket (Source::Kernel).
fn net_from_sock(p: &Payload, _num: Option<i64>) -> Option<NetTuple> {
    let s = &p.sock;
    if s.family == 0 {
        return None;
    }
    Some(NetTuple {
        l4proto: l4(p, s.family),
        client_ip: ip(s.family, &s.local_addr),
        client_port: (s.family != 1).then_some(s.local_port),
        server_ip: ip(s.family, &s.remote_addr),
        server_port: (s.family != 1).then_some(s.remote_port),
        unix_path: None,
        source: Source::Kernel,
    })
}

/// A parsed `struct sockaddr`.
#[derive(Clone, Debug, PartialEq)]
pub struct SockAddr {
    pub family: u16,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
}

pub fn sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    match family {
        2 if b.len() >= 8 => Some(SockAddr {
            family,
            port: Some(u16::from_be_bytes([b[2], b[3]])),
            ip: Some(std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string()),
            path: None,
        }),
        10 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            Some(SockAddr {
                family,
                port: Some(u16::from_be_bytes([b[2], b[3]])),
                ip: Some(std::net::Ipv6Addr::from(a).to_string()),
                path: None,
            })
        }
        1 => {
            let p = &b[2..];
            // Abstract sockets start with a NUL; shown with a leading '@' as ss(8) does.
            let path = if p.first() == Some(&0) {
                format!("@{}", escape_bytes(cstr(&p[1..]), 108))
            } else {
                escape_bytes(cstr(p), 108)
            };
            Some(SockAddr {
                family,
                ip: None,
                port: None,
                path: Some(path),
            })
        }
        _ => Some(SockAddr {
            family,
            ip: None,
            port: None,
            path: None,
        }),
    }
}

fn sock_fd(p: &Payload, num: Option<i64>, user: Option<(EventType, SockAddr)>) -> Fd {
    let s = &p.sock;
    let family = if s.family != 0 {
        s.family
    } else {
        user.as_ref().map(|u| u.1.family).unwrap_or(0)
    };
    let mut typ = fd_type(FdKind::from_u8(p.fd_kind));
    if typ == FdType::None {
        typ = match family {
            2 => FdType::Ipv4,
            10 => FdType::Ipv6,
            1 => FdType::Unix,
            _ => FdType::None,
        };
    }
    let mut net = net_from_sock(p, num).unwrap_or_else(|| NetTuple {
        l4proto: l4(p, family),
        ..NetTuple::default()
    });
    match user {
        // connect: the caller's destination is the server side; the socket's own address
        // (filled by the kernel once connected or bound) is the client side.
        Some((EventType::Connect, a)) => {
            net.server_ip = a.ip;
            net.server_port = a.port;
            net.unix_path = a.path;
            net.source = Source::User;
        }
        // bind: the caller's address is ours, the server side.
        Some((_, a)) => {
            net.server_ip = a.ip;
            net.server_port = a.port;
            net.unix_path = a.path;
            net.client_ip = None;
            net.client_port = None;
            net.source = Source::User;
        }
        None => {
            // listen/accept: local is the server, remote the client.
            std::mem::swap(&mut net.client_ip, &mut net.server_ip);
            std::mem::swap(&mut net.client_port, &mut net.server_port);
        }
    }
    Fd {
        num,
        typ,
        net: Some(net),
        ..Fd::default()
    }
}

/// The fd of a send: the kernel socket's local end as the client side; the destination as the
/// server side, from the caller's sockaddr when it named one (source=user, like connect), else
/// the connected socket's kernel peer (source=kernel). An unspecified endpoint (an unbound or
/// unconnected socket: all-zero address, port 0) is left out rather than shown as 0.0.0.0:0.
fn send_fd(p: &Payload, num: i64, user: Option<SockAddr>) -> Fd {
    let s = &p.sock;
    let user = user.filter(|u| u.ip.is_some() || u.path.is_some());
    let family = match (&user, s.family) {
        (_, f) if f != 0 => f,
        (Some(u), _) => u.family,
        _ => 0,
    };
    let mut typ = fd_type(FdKind::from_u8(p.fd_kind));
    if typ == FdType::None {
        typ = match family {
            2 => FdType::Ipv4,
            10 => FdType::Ipv6,
            1 => FdType::Unix,
            _ => FdType::None,
        };
    }
    let specified = |addr: &[u8; 16], port: u16| port != 0 || addr.iter().any(|&b| b != 0);
    let mut net = NetTuple {
        l4proto: l4(p, family),
        source: Source::Kernel,
        ..NetTuple::default()
    };
    if matches!(s.family, 2 | 10) {
        if specified(&s.local_addr, s.local_port) {
            net.client_ip = ip(s.family, &s.local_addr);
            net.client_port = Some(s.local_port);
        }
        if user.is_none() && specified(&s.remote_addr, s.remote_port) {
            net.server_ip = ip(s.family, &s.remote_addr);
            net.server_port = Some(s.remote_port);
        }
    }
    if let Some(u) = user {
        net.server_ip = u.ip;
        net.server_port = u.port;
        net.unix_path = u.path;
        net.source = Source::User;
    }
    Fd {
        num: Some(num),
        typ,
        net: (s.family != 0 || net.server_ip.is_some() || net.unix_path.is_some())
            .then_some(net),
        ..Fd::default()
    }
}

/// MSG_* flags of the send family, by Linux value.
const MSG_FLAGS: &[(u64, &str)] = &[
    (0x1, "MSG_OOB"),
    (0x4, "MSG_DONTROUTE"),
    (0x40, "MSG_DONTWAIT"),
    (0x80, "MSG_EOR"),
    (0x800, "MSG_CONFIRM"),
    (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"),
    (0x20000000, "MSG_FASTOPEN"),
];

pub fn fd_type(k: FdKind) -> FdType {
    match k {
        FdKind::None => FdType::None,
        FdKind::File | FdKind::Char => FdType::File,
        FdKind::Directory => FdType::Directory,
        FdKind::Ipv4 => FdType::Ipv4,
        FdKind::Ipv6 => FdType::Ipv6,
        FdKind::Unix => FdType::Unix,
        FdKind::Pipe => FdType::Pipe,
        FdKind::Tty => FdType::Tty,
        FdKind::Memfd => FdType::Memfd,
        FdKind::Netlink => FdType::Netlink,
        FdKind::OtherSocket | FdKind::Anon | FdKind::Unknown => FdType::Unknown,
    }
}

fn fd_type_name(k: FdKind) -> &'static str {
    match fd_type(k) {
        FdType::None => "none",
        FdType::File => "file",
        FdType::Directory => "directory",
        FdType::Ipv4 => "ipv4",
        FdType::Ipv6 => "ipv6",
        FdType::Unix => "unix",
        FdType::Pipe => "pipe",
        FdType::Memfd => "memfd",
        FdType::Tty => "tty",
        FdType::Netlink => "netlink",
        _ => "unknown",
    }
}

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
    (0x80, "CLONE_NEWTIME"),
];

fn flag_text(v: u64, table: &[(u64, &str)]) -> String {
    let mut out = String::with_capacity(48);
    for (bit, name) in table {
        if v & bit != 0 {
            push_flag(&mut out, name);
        }
    }
    out
}

/// Append `name` to a `|`-joined flag list (built in one buffer: this runs on every open).
fn push_flag(out: &mut String, name: &str) {
    if !out.is_empty() {
        out.push('|');
    }
    out.push_str(name);
}

pub fn open_flags_text(v: u64) -> String {
    let mut out = String::with_capacity(48);
    out.push_str(match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    const T: &[(u64, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o40000, "O_DIRECT"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
        (0o20200000, "O_TMPFILE"),
    ];
    for (bit, n) in T {
        // O_TMPFILE includes O_DIRECTORY's bit: all of its bits, not any.
        let set = if *bit == 0o20200000 { v & bit == *bit } else { v & bit != 0 };
        if set {
            push_flag(&mut out, n);
        }
    }
    out
}

fn ptrace_text(v: u64) -> String {
    match v {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSR",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSR",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        _ => return format!("PTRACE_{v}"),
    }
    .to_string()
}

fn bpf_cmd_text(v: u64) -> String {
    const NAMES: &[&str] = &[
        "BPF_MAP_CREATE",
        "BPF_MAP_LOOKUP_ELEM",
        "BPF_MAP_UPDATE_ELEM",
        "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD",
        "BPF_OBJ_PIN",
        "BPF_OBJ_GET",
        "BPF_PROG_ATTACH",
        "BPF_PROG_DETACH",
        "BPF_PROG_TEST_RUN",
        "BPF_PROG_GET_NEXT_ID",
        "BPF_MAP_GET_NEXT_ID",
        "BPF_PROG_GET_FD_BY_ID",
        "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD",
        "BPF_PROG_QUERY",
        "BPF_RAW_TRACEPOINT_OPEN",
        "BPF_BTF_LOAD",
        "BPF_BTF_GET_FD_BY_ID",
        "BPF_TASK_FD_QUERY",
        "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        "BPF_MAP_FREEZE",
        "BPF_BTF_GET_NEXT_ID",
        "BPF_MAP_LOOKUP_BATCH",
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
        "BPF_MAP_UPDATE_BATCH",
        "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE",
        "BPF_LINK_UPDATE",
        "BPF_LINK_GET_FD_BY_ID",
        "BPF_LINK_GET_NEXT_ID",
        "BPF_ENABLE_STATS",
        "BPF_ITER_CREATE",
        "BPF_LINK_DETACH",
        "BPF_PROG_BIND_MAP",
    ];
    NAMES
        .get(v as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("BPF_{v}"))
}

/// Unix epoch ns minus CLOCK_BOOTTIME ns (the clock `bpf_ktime_get_boot_ns` reads).
pub fn boot_offset_ns() -> i128 {
    fn now(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    }
    // Bracket the realtime read with two boot-clock reads to halve the error.
    let b1 = now(libc::CLOCK_BOOTTIME);
    let r = now(libc::CLOCK_REALTIME);
    let b2 = now(libc::CLOCK_BOOTTIME);
    r - (b1 + b2) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a record the way the kernel does.
    pub fn record(
        kind: EventType,
        ret: i64,
        f: impl FnOnce(&mut Payload),
        strings: [&[u8]; 4],
    ) -> Vec<u8> {
        let mut payload = Payload::default();
        f(&mut payload);
        for (i, s) in strings.iter().enumerate() {
            payload.str_len[i] = s.len() as u16;
        }
        let len = STRINGS_OFFSET + strings.iter().map(|s| s.len()).sum::<usize>();
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"bash");
        let h = EventHeader {
            version: WIRE_VERSION,
            kind: kind as u16,
            len: len as u32,
            ts_boot_ns: 1_000,
            tgid: 42,
            tid: 43,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            euid: 0,
            egid: 0,
            loginuid: u32::MAX,
            cgroup_id: 77,
            pidns: 4026531836,
            mntns: 4026531841,
            cap_effective: 0x1ff,
            start_boot_ns: 500,
            ret,
            comm,
            vtid: 3,
            vpid: 2,
            sid: 40,
            _pad0: 0,
        };
        let mut out = Vec::with_capacity(len);
        // SAFETY: plain data structs viewed as bytes.
        out.extend_from_slice(unsafe {
            std::slice::from_raw_parts(
                (&h as *const EventHeader).cast::<u8>(),
                size_of::<EventHeader>(),
            )
        });
        out.extend_from_slice(unsafe {
            std::slice::from_raw_parts(
                (&payload as *const Payload).cast::<u8>(),
                size_of::<Payload>(),
            )
        });
        for s in strings {
            out.extend_from_slice(s);
        }
        out
    }

    fn dec() -> Decoder {
        Decoder::new(1_000_000, "b00t".into())
    }

    /// A setxattr record with the entry copy as the kernel side lays it out.
    fn xattr_record(kind: EventType, name: &[u8], value: &[u8], size: u32, xflags: u32) -> Vec<u8> {
        use monitor_common::xattr_copy::{NAME, NAME_CAP, SIZE_FLAGS, VALUE, VALUE_CAP};
        record(
            kind,
            0,
            |p| {
                p.sockaddr[SIZE_FLAGS..SIZE_FLAGS + 4].copy_from_slice(&size.to_ne_bytes());
                p.sockaddr[SIZE_FLAGS + 4..SIZE_FLAGS + 8].copy_from_slice(&xflags.to_ne_bytes());
                let n = name.len().min(NAME_CAP);
                p.sockaddr[NAME..NAME + n].copy_from_slice(&name[..n]);
                let v = value.len().min(VALUE_CAP);
                p.sockaddr[VALUE..VALUE + v].copy_from_slice(&value[..v]);
                p.sockaddr_len = (VALUE + v) as u16;
            },
            [b"", b"/usr/bin/python3", b"", b""],
        )
    }

    fn le_words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn xattr_file_capabilities_by_revision() {
        // v2, effective: CAP_SETUID (7) and CAP_NET_RAW (13) in the low word, CAP_BPF (39) high.
        let v2 = le_words(&[0x0200_0001, 1 << 7 | 1 << 13, 0, 1 << 7, 0]);
        let ev = dec()
            .decode(&xattr_record(EventType::Setxattr, b"security.capability", &v2, 20, 0))
            .unwrap();
        assert_eq!(ev.args.get("name"), Some(&Arg::Str("security.capability".into())));
        assert_eq!(
            ev.args.get("caps"),
            Some(&Arg::Flags {
                raw: (1u64 << 7 | 1 << 13 | 1 << 39) as i64,
                text: "CAP_SETUID CAP_NET_RAW CAP_BPF".into()
            })
        );
        assert_eq!(ev.args.get("caps_effective"), Some(&Arg::Int(1)));
        assert_eq!(ev.args.get("size"), Some(&Arg::Int(20)));
        assert!(ev.args.get("cap_rootid").is_none());
        assert_eq!(ev.fd.as_ref().unwrap().raw_path.as_deref(), Some("/usr/bin/python3"));

        // v3 (namespaced): the root uid it applies to.
        let v3 = le_words(&[0x0300_0000, 1 << 21, 0, 0, 0, 100_000]);
        let ev = dec()
            .decode(&xattr_record(EventType::Lsetxattr, b"security.capability", &v3, 24, 2))
            .unwrap();
        assert_eq!(ev.args.get("cap_rootid"), Some(&Arg::Int(100_000)));
        assert_eq!(ev.args.get("caps_effective"), Some(&Arg::Int(0)));
        assert_eq!(
            ev.args.get("flags"),
            Some(&Arg::Flags { raw: 2, text: "XATTR_REPLACE".into() })
        );

        // v1: one 32-bit word per set.
        let v1 = le_words(&[0x0100_0001, 1 << 12, 0]);
        let ev = dec()
            .decode(&xattr_record(EventType::Setxattr, b"security.capability", &v1, 12, 0))
            .unwrap();
        assert_eq!(ev.args.get("caps").map(crate::rules::fields::render_arg).as_deref(), Some("CAP_NET_ADMIN"));
    }

    #[test]
    fn xattr_values_that_do_not_parse_get_no_caps() {
        // Unknown revision, a value shorter than its revision needs, and one cut by its size.
        for (value, size) in [
            (le_words(&[0x0400_0001, 1, 0, 0, 0]), 20),
            (le_words(&[0x0200_0001, 1]), 8),
            (le_words(&[0x0200_0001, 1, 0, 0, 0]), 16),
        ] {
            let ev = dec()
                .decode(&xattr_record(EventType::Fsetxattr, b"security.capability", &value, size, 0))
                .unwrap();
            assert_eq!(ev.args.get("name"), Some(&Arg::Str("security.capability".into())));
            assert!(ev.args.get("caps").is_none(), "{value:?}/{size}: {:?}", ev.args);
        }
        // Other attributes' values are not interpreted; a name filling its slot has no NUL and
        // hostile bytes in it are escaped.
        let mut name = b"user.\\\x1b[31m\xff".to_vec();
        name.resize(monitor_common::xattr_copy::NAME_CAP, b'a');
        let v2 = le_words(&[0x0200_0001, 1, 0, 0, 0]);
        let ev = dec().decode(&xattr_record(EventType::Setxattr, &name, &v2, 20, 0)).unwrap();
        let Some(Arg::Str(got)) = ev.args.get("name") else { panic!("{:?}", ev.args) };
        assert!(got.starts_with(r"user.\\\x1b[31m\xffaaa"), "{got}");
        assert!(!got.contains('\u{1b}'));
        assert!(ev.args.get("caps").is_none());
        // A call the entry hook missed has no copy: no name, nothing guessed.
        let ev = dec()
            .decode(&record(EventType::Setxattr, 0, |_| {}, [b"", b"/f", b"", b""]))
            .unwrap();
        assert!(ev.args.get("name").is_none() && ev.args.get("size").is_none());
    }

    #[test]
    fn exec_round_trip() {
        let bytes = record(
            EventType::Execve,
            0,
            |p| {
                p.aux[0] = 0x8800;
                p.aux[1] = 7 | (6 << 8) | (1 << 16);
                p.args[exec_args::EXE_CTIME_NS] = 1_700_000_000_123_456_789;
                p.args[exec_args::EXE_MTIME_NS] = 1_600_000_000_000_000_001;
                p.flags = flags::KPATH_OK;
            },
            [b"/usr/bin/ls", b"ls\0-la\0/tmp\0", b"/home/u", b"/bin/ls"],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.process.exe_ino_ctime, 1_700_000_000_123_456_789);
        assert_eq!(ev.process.exe_ino_mtime, 1_600_000_000_000_000_001);
        assert_eq!((ev.process.vpid, ev.process.vtid, ev.process.sid), (2, 3, 40));
        // Filled from the process table, never by the decoder.
        assert_eq!((ev.process.pvpid, ev.process.sname.as_str()), (None, ""));
        assert_eq!(ev.kind, EventType::Execve);
        assert_eq!(ev.ts, 1_001_000);
        assert_eq!(ev.process.pid, 42);
        assert_eq!(ev.process.tid, 43);
        assert_eq!(ev.process.comm, "bash");
        assert_eq!(ev.process.exepath, "/usr/bin/ls");
        assert_eq!(ev.process.exe, "ls");
        assert_eq!(*ev.process.args, ["-la", "/tmp"]);
        assert!(!ev.process.args_truncated);
        assert_eq!(ev.process.cwd, "/home/u");
        assert_eq!(ev.process.stdio, [FdType::Tty, FdType::Pipe, FdType::File]);
        assert_eq!(ev.process.loginuid, None);
        assert_eq!(ev.process.exec_id, "b00t-42-500");
        assert_eq!(ev.process.start_ts, 1_000_500);
        assert_eq!(ev.cgroup_id, 77);
        assert_eq!(ev.args.get("filename"), Some(&Arg::Str("/bin/ls".into())));
        assert!(!ev.process.is_exe_from_memfd);
        // JSON round trip through the shared schema.
        let back = Event::from_json_line(&ev.to_json_line()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn memfd_exec_is_flagged() {
        let bytes = record(
            EventType::Execveat,
            0,
            |_| {},
            [b"/memfd:evil (deleted)", b"x\0", b"/", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert!(ev.process.is_exe_from_memfd);
    }

    #[test]
    fn open_prefers_kernel_path_and_keeps_raw() {
        let bytes = record(
            EventType::Openat,
            3,
            |p| {
                p.args = [(-100i64) as u64, 0, 0o2001101, 0o644, 0, 0];
                p.flags = flags::KPATH_OK;
                p.fd_kind = FdKind::File as u8;
            },
            [b"/etc/shadow", b"../../etc/shadow", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        let fd = ev.fd.unwrap();
        assert_eq!(fd.num, Some(3));
        assert_eq!(fd.path.as_deref(), Some("/etc/shadow"));
        assert_eq!(fd.path_source, Source::Kernel);
        assert_eq!(fd.raw_path.as_deref(), Some("../../etc/shadow"));
        assert_eq!(
            ev.args["flags"],
            Arg::Flags {
                raw: 0o2001101,
                text: "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC".into()
            }
        );
        assert_eq!(ev.args["mode"], Arg::Int(0o644));
        assert_eq!(ev.args["dirfd"], Arg::Int(-100));
    }

    #[test]
    fn failed_open_joins_user_path_on_kernel_prefix() {
        let bytes = record(
            EventType::Openat,
            -2,
            |_| {},
            [b"", b"a/../b/./c", b"", b"/work/dir"],
        );
        let ev = dec().decode(&bytes).unwrap();
        let fd = ev.fd.unwrap();
        assert_eq!(fd.num, None);
        assert_eq!(fd.path.as_deref(), Some("/work/dir/b/c"));
        assert_eq!(fd.path_source, Source::User);
        assert_eq!(ev.ret, -2);
    }

    #[test]
    fn connect_ipv4_and_unix() {
        let mut sa = [0u8; 16];
        sa[0..2].copy_from_slice(&2u16.to_ne_bytes());
        sa[2..4].copy_from_slice(&8080u16.to_be_bytes());
        sa[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let bytes = record(
            EventType::Connect,
            -111,
            |p| {
                p.args[0] = 5;
                p.sockaddr[..16].copy_from_slice(&sa);
                p.sockaddr_len = 16;
                p.sock.family = 2;
                p.sock.sock_type = 1;
                p.fd_kind = FdKind::Ipv4 as u8;
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        let fd = ev.fd.unwrap();
        assert_eq!(fd.num, Some(5));
        assert_eq!(fd.typ, FdType::Ipv4);
        let net = fd.net.unwrap();
        assert_eq!(net.l4proto, "tcp");
        assert_eq!(net.server_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(net.server_port, Some(8080));

        let mut un = vec![0u8; 2];
        un[0..2].copy_from_slice(&1u16.to_ne_bytes());
        un.extend_from_slice(b"/run/x.sock\0");
        let n = un.len();
        let bytes = record(
            EventType::Connect,
            0,
            |p| {
                p.sockaddr[..n].copy_from_slice(&un);
                p.sockaddr_len = n as u16;
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        let fd = ev.fd.unwrap();
        assert_eq!(fd.typ, FdType::Unix);
        assert_eq!(fd.net.unwrap().unix_path.as_deref(), Some("/run/x.sock"));
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        let good = record(EventType::Openat, 0, |_| {}, [b"", b"x", b"", b""]);
        let d = dec();
        assert_eq!(d.decode(&good[..10]).unwrap_err(), DecodeError::Short(10));
        let mut v = good.clone();
        v[0] = 99;
        assert_eq!(d.decode(&v).unwrap_err(), DecodeError::Version(99));
        let mut v = good.clone();
        v.push(0);
        assert!(matches!(
            d.decode(&v).unwrap_err(),
            DecodeError::Length { .. }
        ));
        let mut v = good.clone();
        v[2] = 0xff;
        v[3] = 0xff;
        assert_eq!(d.decode(&v).unwrap_err(), DecodeError::Kind(0xffff));
        // A string length that overruns the record.
        let mut v = good.clone();
        let at = size_of::<EventHeader>() + 80;
        v[at..at + 2].copy_from_slice(&5000u16.to_ne_bytes());
        assert_eq!(d.decode(&v).unwrap_err(), DecodeError::Strings);
        // Garbage of every length up to a full record never panics.
        let mut seed = 0x9e3779b97f4a7c15u64;
        for len in 0..1200 {
            let mut g: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if g.len() >= 8 {
                g[0..2].copy_from_slice(&WIRE_VERSION.to_ne_bytes());
                g[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
            }
            let _ = d.decode(&g);
        }
        assert!(DECODE_ERRORS.with_label_values(&["version"]).get() >= 1);
    }

    #[test]
    fn escapes_hostile_strings() {
        assert_eq!(escape_bytes(b"ok/path", 100), "ok/path");
        assert_eq!(escape_bytes(b"a\xffb", 100), "a\\xffb");
        assert_eq!(
            escape_bytes(b"line\nbreak\x1b[31m", 100),
            "line\\x0abreak\\x1b[31m"
        );
        assert_eq!(escape_bytes(b"back\\slash", 100), "back\\\\slash");
        assert_eq!(escape_bytes("é€".as_bytes(), 100), "é€");
        assert_eq!(escape_bytes(b"abcdef", 3), "abc");
        // A C1 control character encoded in UTF-8.
        assert_eq!(escape_bytes("a\u{85}".as_bytes(), 100), "a\\xc2\\x85");
        let bytes = record(
            EventType::Execve,
            0,
            |_| {},
            [b"/tmp/\xfe\n", b"x\0\x07y\0", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.process.exepath, "/tmp/\\xfe\\x0a");
        assert_eq!(*ev.process.args, ["\\x07y"]);
        assert!(ev.to_json_line().is_ascii());
    }

    #[test]
    fn procexit_status() {
        let bytes = record(
            EventType::ProcExit,
            3 << 8,
            |p| p.aux[0] = 3 << 8,
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.args["code"], Arg::Int(3));
        assert_eq!(ev.args["sig"], Arg::Int(0));
        assert_eq!(ev.args["group_dead"], Arg::Int(0));
        let bytes = record(
            EventType::ProcExit,
            0,
            |p| p.flags = flags::GROUP_DEAD,
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!((ev.process.pid, ev.process.tid), (42, 43));
        assert_eq!(ev.args["group_dead"], Arg::Int(1));
        let bytes = record(
            EventType::ProcExit,
            9,
            |p| p.aux[0] = 9,
            [b"", b"", b"", b""],
        );
        assert_eq!(dec().decode(&bytes).unwrap().args["sig"], Arg::Int(9));
    }

    fn sockaddr_in(port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut sa = vec![0u8; 16];
        sa[0..2].copy_from_slice(&2u16.to_ne_bytes());
        sa[2..4].copy_from_slice(&port.to_be_bytes());
        sa[4..8].copy_from_slice(&ip);
        sa
    }

    #[test]
    fn sendto_with_address_is_the_user_destination() {
        let sa = sockaddr_in(9999, [127, 0, 0, 1]);
        let bytes = record(
            EventType::Sendto,
            5,
            |p| {
                p.args = [6, 0x7fff_0000, 5, 0x4040, 0x7fff_1000, 16];
                p.sockaddr[..16].copy_from_slice(&sa);
                p.sockaddr_len = 16;
                p.fd_kind = FdKind::Ipv4 as u8;
                p.sock.family = 2;
                p.sock.sock_type = 2;
                p.sock.local_port = 40000;
                p.sock.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.kind, EventType::Sendto);
        assert_eq!(ev.ret, 5);
        assert_eq!(ev.args["size"], Arg::Int(5));
        assert_eq!(
            ev.args["flags"],
            Arg::Flags {
                raw: 0x4040,
                text: "MSG_DONTWAIT|MSG_NOSIGNAL".into()
            }
        );
        assert!(!ev.args.contains_key("iovlen"));
        let fd = ev.fd.unwrap();
        assert_eq!((fd.num, fd.typ), (Some(6), FdType::Ipv4));
        assert_eq!(
            fd.net.unwrap(),
            NetTuple {
                l4proto: "udp".into(),
                client_ip: Some("127.0.0.1".into()),
                client_port: Some(40000),
                server_ip: Some("127.0.0.1".into()),
                server_port: Some(9999),
                unix_path: None,
                source: Source::User,
            }
        );
    }

    #[test]
    fn send_on_a_connected_socket_is_the_kernel_peer() {
        let bytes = record(
            EventType::Sendto,
            3,
            |p| {
                p.args = [4, 0, 3, 0, 0, 0];
                p.fd_kind = FdKind::Ipv4 as u8;
                p.sock.family = 2;
                p.sock.sock_type = 2;
                p.sock.local_port = 50000;
                p.sock.local_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
                p.sock.remote_port = 53;
                p.sock.remote_addr[..4].copy_from_slice(&[10, 0, 0, 53]);
            },
            [b"", b"", b"", b""],
        );
        let net = dec().decode(&bytes).unwrap().fd.unwrap().net.unwrap();
        assert_eq!(net.server_ip.as_deref(), Some("10.0.0.53"));
        assert_eq!(net.server_port, Some(53));
        assert_eq!(net.client_ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(net.source, Source::Kernel);
    }

    #[test]
    fn failed_send_without_destination_has_no_server_side() {
        // EDESTADDRREQ on an unconnected, unbound UDP socket.
        let bytes = record(
            EventType::Sendto,
            -89,
            |p| {
                p.args = [4, 0, 1, 0, 0, 0];
                p.fd_kind = FdKind::Ipv4 as u8;
                p.sock.family = 2;
                p.sock.sock_type = 2;
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.ret, -89);
        let net = ev.fd.unwrap().net.unwrap();
        assert_eq!(net.l4proto, "udp");
        assert_eq!((net.server_ip, net.server_port), (None, None));
        assert_eq!((net.client_ip, net.client_port), (None, None));
    }

    #[test]
    fn sendmsg_and_sendmmsg_sizes_and_destinations() {
        let mut sa6 = vec![0u8; 28];
        sa6[0..2].copy_from_slice(&10u16.to_ne_bytes());
        sa6[2..4].copy_from_slice(&5353u16.to_be_bytes());
        sa6[23] = 1;
        let bytes = record(
            EventType::Sendmsg,
            12,
            |p| {
                p.args = [7, 0x7fff_0000, 0, 0, 12, 2];
                p.sockaddr[..28].copy_from_slice(&sa6);
                p.sockaddr_len = 28;
                p.fd_kind = FdKind::Ipv6 as u8;
                p.sock.family = 10;
                p.sock.sock_type = 2;
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.args["size"], Arg::Int(12));
        assert_eq!(ev.args["iovlen"], Arg::Int(2));
        let fd = ev.fd.unwrap();
        assert_eq!(fd.typ, FdType::Ipv6);
        let net = fd.net.unwrap();
        assert_eq!(net.server_ip.as_deref(), Some("::1"));
        assert_eq!(net.server_port, Some(5353));
        assert_eq!(net.source, Source::User);

        let sa = sockaddr_in(53, [10, 0, 0, 1]);
        let bytes = record(
            EventType::Sendmmsg,
            3,
            |p| {
                p.args = [5, 0x7fff_0000, 3, 0x40, 40, 1];
                p.sockaddr[..16].copy_from_slice(&sa);
                p.sockaddr_len = 16;
                p.fd_kind = FdKind::Ipv4 as u8;
                p.sock.family = 2;
                p.sock.sock_type = 2;
            },
            [b"", b"", b"", b""],
        );
        let ev = dec().decode(&bytes).unwrap();
        assert_eq!(ev.args["vlen"], Arg::Int(3));
        assert_eq!(ev.args["size"], Arg::Int(40));
        assert_eq!(
            ev.args["flags"],
            Arg::Flags {
                raw: 0x40,
                text: "MSG_DONTWAIT".into()
            }
        );
        let net = ev.fd.unwrap().net.unwrap();
        assert_eq!(net.server_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(net.server_port, Some(53));
    }

    #[test]
    fn unix_datagram_to_a_named_socket() {
        let mut un = vec![0u8; 2];
        un[0..2].copy_from_slice(&1u16.to_ne_bytes());
        un.extend_from_slice(b"/run/systemd/notify\0");
        let n = un.len();
        let bytes = record(
            EventType::Sendmsg,
            7,
            |p| {
                p.args = [3, 0, 0, 0, 7, 1];
                p.sockaddr[..n].copy_from_slice(&un);
                p.sockaddr_len = n as u16;
                p.fd_kind = FdKind::Unix as u8;
                p.sock.family = 1;
                p.sock.sock_type = 2;
            },
            [b"", b"", b"", b""],
        );
        let fd = dec().decode(&bytes).unwrap().fd.unwrap();
        assert_eq!(fd.typ, FdType::Unix);
        let net = fd.net.unwrap();
        assert_eq!(net.l4proto, "unix");
        assert_eq!(net.unix_path.as_deref(), Some("/run/systemd/notify"));
        assert_eq!((net.client_ip, net.server_ip), (None, None));
        assert_eq!(net.source, Source::User);
    }

    #[test]
    fn join_path_is_lexical() {
        assert_eq!(join_path("/a/b", "../../../x"), "/x");
        assert_eq!(join_path("/a", "/abs/./y"), "/abs/y");
        assert_eq!(join_path("/", ""), "/");
    }
}
