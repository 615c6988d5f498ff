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

#[inline(always)]
pub fn mnt_ns_inum(task: u64) -> u32 {
    let nsproxy: u64 = rk(task + off!(task_nsproxy));
    if nsproxy == 0 {
        return 0;
    }
    let mnt_ns: u64 = rk(nsproxy + off!(nsproxy_mnt_ns));
    rk(mnt_ns + off!(mnt_namespace_inum))
}

#[inline(always)]
pub fn pid_ns_inum(task: u64) -> u32 {
    let pid: u64 = rk(task + off!(task_thread_pid));
    if pid == 0 {
        return 0;
    }
    let level: u32 = rk(pid + off!(pid_level));
    // Nesting depth is at most 32 (MAX_PID_NS_LEVEL).
    let level = (level & 31) as u64;
    let ns: u64 = rk(pid + off!(pid_numbers) + level * off!(upid_size) + off!(upid_ns));
    rk(ns + off!(pid_namespace_inum))
}

/// Fill every header field from the current task.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: u16, ret: i64) {
    let task = current_task();
    let pid_tgid = bpf_get_current_pid_tgid();
    h.version = WIRE_VERSION;
    h.kind = kind;
    h.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    let parent: u64 = rk(task + off!(task_real_parent));
    h.ppid = rk(parent + off!(task_tgid));
    let cred: u64 = rk(task + off!(task_cred));
    h.uid = rk(cred + off!(cred_uid));
    h.gid = rk(cred + off!(cred_gid));
    h.euid = rk(cred + off!(cred_euid));
    h.egid = rk(cred + off!(cred_egid));
    h.cap_effective = rk(cred + off!(cred_cap_effective));
    h.loginuid = rk(task + off!(task_loginuid));
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.pidns = pid_ns_inum(task);
    h.mntns = mnt_ns_inum(task);
    let leader: u64 = rk(task + off!(task_group_leader));
    h.start_boot_ns = rk(leader + off!(task_start_boottime));
    h.ret = ret;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// `struct file *` behind `fd` in `task`'s table, 0 when out of range or closed.
#[inline(always)]
pub fn fd_file(task: u64, fd: i64) -> u64 {
    if fd < 0 {
        return 0;
    }
    let files: u64 = rk(task + off!(task_files));
    let fdt: u64 = rk(files + off!(files_fdt));
    let max: u32 = rk(fdt + off!(fdt_max_fds));
    if fd as u64 >= max as u64 {
        return 0;
    }
    let arr: u64 = rk(fdt + off!(fdt_fd));
    rk(arr + (fd as u64) * 8)
}

const S_IFMT: u16 = 0o170000;

#[inline(always)]
pub fn file_sock(file: u64) -> u64 {
    let sock: u64 = rk(file + off!(file_private_data));
    rk(sock + off!(socket_sk))
}

/// Classify the object behind a `struct file *`.
#[inline(always)]
pub fn file_kind(file: u64) -> u8 {
    if file == 0 {
        return FdKind::None as u8;
    }
    let inode: u64 = rk(file + off!(file_f_inode));
    let mode: u16 = rk(inode + off!(inode_i_mode));
    let k = match mode & S_IFMT {
        0o140000 => {
            let sk = file_sock(file);
            let family: u16 = rk(sk + off!(sk_family));
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

/// Socket endpoints from `struct sock_common`.
#[inline(always)]
pub fn sock_info(file: u64, out: &mut SockInfo) {
    if file == 0 {
        return;
    }
    let inode: u64 = rk(file + off!(file_f_inode));
    let mode: u16 = rk(inode + off!(inode_i_mode));
    if mode & S_IFMT != 0o140000 {
        return;
    }
    let sock: u64 = rk(file + off!(file_private_data));
    let sk: u64 = rk(sock + off!(socket_sk));
    out.family = rk(sk + off!(sk_family));
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
