//! Reads from kernel objects through BTF offsets (see `Offsets`). Every read is a
//! `bpf_probe_read_kernel` that yields zero on failure: a missing field degrades one value,
//! never the event.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_task, bpf_ktime_get_boot_ns, generated,
};
use monitor_common::{EventHeader, FdKind, SockInfo, WIRE_VERSION};

use crate::off;

#[inline(always)]
pub fn rk<T: Copy>(addr: u64) -> T {
    let mut v = core::mem::MaybeUninit::<T>::zeroed();
    if addr != 0 {
        unsafe {
            generated::bpf_probe_read_kernel(
                v.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
                addr as *const _,
            );
        }
    }
    // Zero-initialised above; a failed read leaves it zero.
    unsafe { v.assume_init() }
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// A field of a kernel object reached from `bpf_get_current_task_btf`: a plain load the
/// verifier checks against BTF and the JIT guards with an exception-table entry (a fault reads
/// zero), about 1 ns where a `bpf_probe_read_kernel` call costs ~15. Only for pointers that
/// came from BTF (the current task and pointers loaded from it), at constant offsets.
#[inline(always)]
fn ld<T: Copy>(obj: *const u8, offset: u64) -> T {
    unsafe { core::ptr::read_volatile(obj.add(offset as usize) as *const T) }
}

#[inline(always)]
pub fn current_task_btf() -> *const u8 {
    unsafe { generated::bpf_get_current_task_btf() as *const u8 }
}

/// Mount namespace inode number of a task reached through BTF.
#[inline(always)]
pub fn mnt_ns_inum(task: *const u8) -> u32 {
    let nsproxy: *const u8 = ld(task, off!(task_nsproxy));
    if nsproxy.is_null() {
        // An exiting task has dropped its namespaces.
        return 0;
    }
    let mnt_ns: *const u8 = ld(nsproxy, off!(nsproxy_mnt_ns));
    ld(mnt_ns, off!(mnt_namespace_inum))
}

/// PIDTYPE_SID in `enum pid_type` (stable since signal_struct gained `pids`, 4.19).
const PIDTYPE_SID: u64 = 3;

/// Session id in the initial pid namespace: signal->pids[PIDTYPE_SID]->numbers[0].nr, all
/// constant offsets, so three BTF loads.
#[inline(always)]
fn session_id(task: *const u8) -> u32 {
    if off!(signal_pids) == 0 {
        return 0;
    }
    let signal: *const u8 = ld(task, off!(task_signal));
    if signal.is_null() {
        return 0;
    }
    let spid: *const u8 = ld(signal, off!(signal_pids) + PIDTYPE_SID * 8);
    if spid.is_null() {
        return 0;
    }
    ld(spid, off!(pid_numbers) + off!(upid_nr))
}

/// Times of an inode (ctime, mtime) in ns since the Unix epoch; 0 each when unreadable or
/// before 1970.
#[inline(always)]
pub fn inode_times_ns(inode: u64) -> (u64, u64) {
    if inode == 0 || off!(inode_ctime_sec) == 0 || off!(inode_mtime_sec) == 0 {
        return (0, 0);
    }
    let t = |sec_off: u64, nsec_off: u64| -> u64 {
        let sec: i64 = rk(inode + sec_off);
        let nsec: u32 = rk(inode + nsec_off);
        // Bounded so the product fits a u64 (a checked multiply would need __multi3, which
        // BPF has not); 9e9 s is the year 2255.
        if sec <= 0 || sec > 9_000_000_000 {
            0
        } else {
            // Multigrain timestamps (6.13+) keep I_CTIME_QUERIED in bit 31 of i_ctime_nsec;
            // a real nanosecond count never reaches bit 30.
            let nsec = (nsec & 0x3fff_ffff) % 1_000_000_000;
            (sec as u64) * 1_000_000_000 + nsec as u64
        }
    };
    (
        t(off!(inode_ctime_sec), off!(inode_ctime_nsec)),
        t(off!(inode_mtime_sec), off!(inode_mtime_nsec)),
    )
}

/// Fill every header field from the current task.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: u16, ret: i64) {
    let task = current_task_btf();
    let pid_tgid = bpf_get_current_pid_tgid();
    h.version = WIRE_VERSION;
    h.kind = kind;
    h.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    let parent: *const u8 = ld(task, off!(task_real_parent));
    h.ppid = ld(parent, off!(task_tgid));
    let cred: *const u8 = ld(task, off!(task_cred));
    h.uid = ld(cred, off!(cred_uid));
    h.gid = ld(cred, off!(cred_gid));
    h.euid = ld(cred, off!(cred_euid));
    h.egid = ld(cred, off!(cred_egid));
    h.cap_effective = ld(cred, off!(cred_cap_effective));
    h.loginuid = ld(task, off!(task_loginuid));
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let leader: *const u8 = ld(task, off!(task_group_leader));
    let pid: *const u8 = ld(task, off!(task_thread_pid));
    if pid.is_null() {
        h.pidns = 0;
        h.vtid = 0;
        h.vpid = 0;
    } else {
        // numbers[level] is a variable index, which BTF loads cannot take.
        let level: u32 = ld(pid, off!(pid_level));
        let at = off!(pid_numbers) + ((level & 31) as u64) * off!(upid_size);
        // struct upid { int nr; struct pid_namespace *ns; }: one read for both.
        let (nr, ns) = if off!(upid_nr) == 0 && off!(upid_ns) == 8 {
            let u: [u64; 2] = rk(pid as u64 + at);
            (u[0] as u32, u[1])
        } else {
            let nr: u32 = rk(pid as u64 + at + off!(upid_nr));
            (nr, rk(pid as u64 + at + off!(upid_ns)))
        };
        h.pidns = rk(ns + off!(pid_namespace_inum));
        h.vtid = nr;
        // The threads of a group share one pid namespace, so the leader's number sits at the
        // same level; most events come from the leader itself and need no second read.
        h.vpid = if h.tgid == h.tid {
            nr
        } else {
            let lpid: *const u8 = ld(leader, off!(task_thread_pid));
            if lpid.is_null() {
                0
            } else {
                rk(lpid as u64 + at + off!(upid_nr))
            }
        };
    }
    h.sid = session_id(task);
    h.mntns = mnt_ns_inum(task);
    h.start_boot_ns = ld(leader, off!(task_start_boottime));
    h.ret = ret;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h._pad0 = 0;
}

/// `struct file *` behind `fd` in `task`'s table, 0 when out of range or closed.
#[inline(always)]
pub fn fd_file(task: u64, fd: i64) -> u64 {
    if fd < 0 {
        return 0;
    }
    let files: u64 = rk(task + off!(task_files));
    let fdt: u64 = rk(files + off!(files_fdt));
    // struct fdtable starts { unsigned int max_fds; struct file **fd; }: one read for both.
    let (max, arr) = if off!(fdt_max_fds) == 0 && off!(fdt_fd) == 8 {
        let head: [u64; 2] = rk(fdt);
        (head[0] as u32, head[1])
    } else {
        let max: u32 = rk(fdt + off!(fdt_max_fds));
        (max, rk(fdt + off!(fdt_fd)))
    };
    if fd as u64 >= max as u64 {
        return 0;
    }
    rk(arr + (fd as u64) * 8)
}

const S_IFMT: u16 = 0o170000;

/// Classify the object behind a `struct file *`.
#[inline(always)]
pub fn file_kind(file: u64) -> u8 {
    classify(file, None)
}

/// Classify the object behind a `struct file *` and, for a socket, fill its endpoints: the
/// inode, mode and socket are read once for both.
#[inline(always)]
pub fn file_kind_and_sock(file: u64, out: &mut SockInfo) -> u8 {
    classify(file, Some(out))
}

#[inline(always)]
fn classify(file: u64, sock_out: Option<&mut SockInfo>) -> u8 {
    if file == 0 {
        return FdKind::None as u8;
    }
    let inode: u64 = rk(file + off!(file_f_inode));
    let mode: u16 = rk(inode + off!(inode_i_mode));
    let k = match mode & S_IFMT {
        0o140000 => {
            let sock: u64 = rk(file + off!(file_private_data));
            let sk: u64 = rk(sock + off!(socket_sk));
            let family: u16 = rk(sk + off!(sk_family));
            if let Some(out) = sock_out {
                sock_endpoints(sock, sk, family, out);
            }
            match family {
                1 => FdKind::Unix,
                2 => FdKind::Ipv4,
                10 => FdKind::Ipv6,
                16 => FdKind::Netlink,
                _ => FdKind::OtherSocket,
            }
        }
        0o010000 => FdKind::Pipe,
        0o040000 => FdKind::Directory,
        0o020000 => {
            let rdev: u32 = rk(inode + off!(inode_i_rdev));
            let major = rdev >> 20;
            // Consoles, ttys and pseudo-terminal slaves.
            if major == 4 || major == 5 || (136..=143).contains(&major) {
                FdKind::Tty
            } else {
                FdKind::Char
            }
        }
        0o100000 => FdKind::File,
        0 => FdKind::Anon,
        _ => FdKind::Unknown,
    };
    k as u8
}

/// (AF_* family, SOCK_* type) of the socket behind a `struct file *`; (0, 0) when it is not
/// a socket.
#[inline(always)]
pub fn sock_family_type(file: u64) -> (u16, u16) {
    if file == 0 {
        return (0, 0);
    }
    let inode: u64 = rk(file + off!(file_f_inode));
    let mode: u16 = rk(inode + off!(inode_i_mode));
    if mode & S_IFMT != 0o140000 {
        return (0, 0);
    }
    let sock: u64 = rk(file + off!(file_private_data));
    let sk: u64 = rk(sock + off!(socket_sk));
    (rk(sk + off!(sk_family)), rk(sock + off!(socket_type)))
}

/// Socket endpoints from `struct sock_common`.
#[inline(always)]
fn sock_endpoints(sock: u64, sk: u64, family: u16, out: &mut SockInfo) {
    out.family = family;
    out.sock_type = rk(sock + off!(socket_type));
    out.local_port = rk(sk + off!(sk_num));
    let dport: u16 = rk(sk + off!(sk_dport));
    out.remote_port = u16::from_be(dport);
    if out.family == 10 {
        out.local_addr = rk(sk + off!(sk_v6_rcv_saddr));
        out.remote_addr = rk(sk + off!(sk_v6_daddr));
    } else if out.family == 2 {
        let l: [u8; 4] = rk(sk + off!(sk_rcv_saddr));
        let r: [u8; 4] = rk(sk + off!(sk_daddr));
        out.local_addr[..4].copy_from_slice(&l);
        out.remote_addr[..4].copy_from_slice(&r);
    }
}

/// Controlling tty as /proc/<pid>/stat encodes it (new_encode_dev), 0 when none.
#[inline(always)]
pub fn tty_nr(task: u64) -> u64 {
    let signal: u64 = rk(task + off!(task_signal));
    let tty: u64 = rk(signal + off!(signal_tty));
    if tty == 0 {
        return 0;
    }
    let index: i32 = rk(tty + off!(tty_index));
    let driver: u64 = rk(tty + off!(tty_driver));
    let major: i32 = rk(driver + off!(driver_major));
    let minor_start: i32 = rk(driver + off!(driver_minor_start));
    let minor = (minor_start + index) as u64;
    let major = major as u64;
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// The inode belongs to overlayfs and has an upper dentry: it was written (created or copied
/// up) in the container's writable layer rather than shipped in the image.
#[inline(always)]
pub fn on_overlay_upper(inode: u64) -> bool {
    if inode == 0 || off!(ovl_present) == 0 {
        return false;
    }
    let sb: u64 = rk(inode + off!(inode_i_sb));
    let magic: u64 = rk(sb + off!(sb_s_magic));
    if magic != OVERLAYFS_SUPER_MAGIC {
        return false;
    }
    let ovl = inode - off!(ovl_inode_vfs_inode);
    let upper: u64 = rk(ovl + off!(ovl_inode_upperdentry));
    upper != 0
}
