//! Per-syscall tracepoint pairs (syscalls:sys_enter_X / sys_exit_X, kernel >= 2.6.37 with
//! FTRACE_SYSCALLS). Entry saves the arguments (and the sockaddr of connect, bind and the
//! sends, which the caller could change later) in PENDING; exit builds the record, resolving paths from the kernel's own
//! objects where it can: the returned or passed fd's struct file, the dirfd or cwd a relative
//! user path is resolved against.
//!
//! Per-syscall hooks rather than a raw_syscalls catch-all: the catch-all taxes every syscall on
//! the node (see PERFORMANCE.md).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{EventType, SOCKADDR_CAP, flags, send_args, slot};

use crate::{
    PENDING, PENDING_SCRATCH, Pending,
    emit::{Writer, filtered},
    off,
    task::{self, rk},
};

const AT_FDCWD: i64 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;

#[inline(always)]
fn enter(ctx: &TracePointContext, kind: EventType) {
    use EventType::*;
    if filtered(kind) {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(p) = PENDING_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let mut args: [u64; 6] = unsafe { ctx.read_at::<[u64; 6]>(16) }.unwrap_or([0; 6]);
    // Where the caller's sockaddr is, and its length: copied now, as the caller could change
    // it while the call runs.
    let (sa_ptr, sa_len) = match kind {
        Connect | Bind => (args[1], args[2]),
        Sendto => (args[4], args[5]),
        Sendmsg | Sendmmsg => {
            // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov;
            // size_t msg_iovlen; ... }; sendmmsg's first struct mmsghdr starts with one.
            let hdr: [u64; 4] =
                unsafe { bpf_probe_read_user(args[1] as *const [u64; 4]) }.unwrap_or([0; 4]);
            args[send_args::SIZE] = iov_size(hdr[2], hdr[3]);
            args[send_args::IOVLEN] = hdr[3];
            (hdr[0], hdr[1] as u32 as u64)
        }
        _ => (0, 0),
    };
    if matches!(kind, Sendto | Sendmsg | Sendmmsg)
        && !send_wanted(args[0] as i32 as i64, sa_ptr != 0 && sa_len != 0)
    {
        return;
    }
    unsafe {
        (*p).kind = kind as u16;
        (*p).args = args;
        (*p).sockaddr_len = 0;
        if sa_ptr != 0 {
            let n = if sa_len > (SOCKADDR_CAP as u64 - 1) {
                SOCKADDR_CAP as u64 - 1
            } else {
                sa_len
            };
            let n = (n as u32) & (SOCKADDR_CAP as u32 - 1);
            if n > 0
                && generated::bpf_probe_read_user(
                    (*p).sockaddr.as_mut_ptr().cast(),
                    n,
                    sa_ptr as *const _,
                ) == 0
            {
                (*p).sockaddr_len = n as u16;
            }
        }
        if matches!(kind, Setxattr | Lsetxattr | Fsetxattr | Setxattrat) {
            xattr_entry_copy(&mut *p, kind, &args);
        }
        let _ = PENDING.insert(&tid, &*p, 0);
    }
}

/// The setxattr family's value size, flags, name and first value bytes, copied at entry
/// (layout in `monitor_common::xattr_copy`): the kernel reads the same user memory right
/// after this hook, so a thread rewriting the name once the call is under way (to hide a
/// `security.capability` write) does not change what is reported.
#[inline(always)]
unsafe fn xattr_entry_copy(p: &mut Pending, kind: EventType, args: &[u64; 6]) {
    use monitor_common::xattr_copy::{NAME, NAME_CAP, SIZE_FLAGS, VALUE, VALUE_CAP};
    let (name, value, size, xflags) = if kind == EventType::Setxattrat {
        // setxattrat(dfd, path, at_flags, name, struct xattr_args *uargs, usize), with
        // struct xattr_args { __aligned_u64 value; __u32 size; __u32 flags; }.
        let xa: [u64; 2] =
            unsafe { bpf_probe_read_user(args[4] as *const [u64; 2]) }.unwrap_or([0; 2]);
        (args[3], xa[0], xa[1] as u32, (xa[1] >> 32) as u32)
    } else {
        // setxattr(path, name, value, size, flags); fsetxattr takes an fd first.
        (args[1], args[2], args[3] as u32, args[4] as u32)
    };
    let base = p.sockaddr.as_mut_ptr();
    unsafe {
        base.add(SIZE_FLAGS).cast::<u32>().write_unaligned(size);
        base.add(SIZE_FLAGS + 4).cast::<u32>().write_unaligned(xflags);
        generated::bpf_probe_read_user_str(base.add(NAME).cast(), NAME_CAP as u32, name as *const _);
    }
    let n = if size > VALUE_CAP as u32 { VALUE_CAP as u32 } else { size };
    // The mask bounds the copy for the verifier (VALUE + 63 < SOCKADDR_CAP).
    let n = n & 63;
    let copied = n > 0
        && value != 0
        && unsafe { generated::bpf_probe_read_user(base.add(VALUE).cast(), n, value as *const _) } == 0;
    p.sockaddr_len = VALUE as u16 + if copied { n as u16 } else { 0 };
}

const AF_UNIX: u16 = 1;
const AF_NETLINK: u16 = 16;
const SOCK_STREAM: u16 = 1;

/// Which sends are reported (decided at entry, before anything is saved). send(2) is
/// sendto(2) without an address, so every TCP write through send() would pass here: a stream
/// socket's destination was reported at connect/accept, and one event per TCP send would cost
/// more than the send itself. Reported:
/// - datagram, raw and seqpacket sockets of every family but netlink and unix: UDP, ICMP, raw
///   IP, AF_PACKET (each datagram can go somewhere new);
/// - any send that names a destination (TCP Fast Open, unix datagrams to a named socket);
/// - sends on an fd that is not a socket (they fail; the failure is the news).
///
/// Left out: sends without an address on connected unix sockets (logging, D-Bus: their peer
/// was reported at connect) and netlink (the kernel's configuration channel, used by every
/// network tool and resolver; `socket(AF_NETLINK)` is reported).
#[inline(always)]
fn send_wanted(fd: i64, has_addr: bool) -> bool {
    let (family, ty) = task::sock_family_type(task::fd_file(task::current_task(), fd));
    match family {
        AF_NETLINK => false,
        AF_UNIX => has_addr,
        0 => true,
        _ => has_addr || ty != SOCK_STREAM,
    }
}

/// Bytes in the first `send_args::MAX_IOV` iovecs of `iov[..n]` (struct iovec { void *base;
/// size_t len; }). A constant-bound loop: the verifier walks it once per iteration.
#[inline(always)]
fn iov_size(iov: u64, n: u64) -> u64 {
    let mut total = 0u64;
    let mut i = 0u64;
    while i < send_args::MAX_IOV {
        if i >= n {
            break;
        }
        let len: u64 = unsafe { bpf_probe_read_user((iov + i * 16 + 8) as *const u64) }.unwrap_or(0);
        total = total.wrapping_add(len);
        i += 1;
    }
    total
}

/// Which arguments are the user path, its dirfd, and the second path.
#[inline(always)]
fn path_args(kind: EventType) -> (Option<usize>, Option<usize>, Option<usize>) {
    use EventType::*;
    match kind {
        Open | Creat | Unlink | Mkdir | Rmdir | Chmod | Chown | Lchown | Truncate | Chroot
        | Umount2 | MemfdCreate | Setxattr | Lsetxattr => (Some(0), None, None),
        Openat | Openat2 | Unlinkat | Mkdirat | Fchmodat | Fchownat | Setxattrat => {
            (Some(1), Some(0), None)
        }
        Rename | Link | Pivotroot => (Some(0), None, Some(1)),
        Renameat | Renameat2 | Linkat => (Some(1), Some(0), Some(3)),
        // symlink(target, linkpath): the created path is linkpath; target is any string.
        Symlink => (Some(1), None, Some(0)),
        Symlinkat => (Some(2), Some(1), Some(0)),
        _ => (None, None, None),
    }
}

/// The kernel-resolved directory a relative user path is taken from: the cwd for AT_FDCWD,
/// else the dirfd's file.
#[inline(always)]
pub(crate) fn prefix(w: &mut Writer, t: u64, dfd: i64) {
    if dfd == AT_FDCWD {
        let fs: u64 = rk(t + off!(task_fs));
        if fs != 0 {
            w.kernel_path(slot::PREFIX, fs + off!(fs_pwd), t);
        }
    } else {
        let f = task::fd_file(t, dfd);
        if f != 0 {
            w.kernel_path(slot::PREFIX, f + off!(file_f_path), t);
        }
    }
}

/// Kernel path and kind of the object behind `fd`.
#[inline(always)]
fn fd_object(w: &mut Writer, t: u64, fd: i64) {
    let f = task::fd_file(t, fd);
    if f == 0 {
        return;
    }
    unsafe { (*w.payload()).fd_kind = task::file_kind_and_sock(f, &mut (*w.payload()).sock) };
    if w.kernel_path(slot::KPATH, f + off!(file_f_path), t) {
        unsafe { (*w.payload()).flags |= flags::KPATH_OK };
    }
}

#[inline(always)]
fn exit(ctx: &TracePointContext, kind: EventType) {
    use EventType::*;
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(p) = PENDING.get_ptr(&tid) else {
        return;
    };
    if matches!(kind, Clone | Clone3 | Fork | Vfork) {
        // Reported from sched_process_fork; the entry only named the syscall.
        let _ = PENDING.remove(&tid);
        return;
    }
    if matches!(kind, Execve | Execveat) {
        // Successful execs are reported from sched_process_exec; a failed one only here,
        // with the file that was asked for (the process keeps its old image).
        let ret: i64 = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
        let args = unsafe { (*p).args };
        let _ = PENDING.remove(&tid);
        if ret >= 0 {
            return;
        }
        let Some(mut w) = Writer::new() else { return };
        task::fill_header(w.header(), kind as u16, ret);
        unsafe { (*w.payload()).args = args };
        w.user_str(
            slot::FILENAME,
            if kind == Execve { args[0] } else { args[1] },
        );
        w.submit(kind);
        return;
    }
    let Some(mut w) = Writer::new() else { return };
    let args = unsafe { (*p).args };
    if unsafe { (*p).kind } != kind as u16 {
        let _ = PENDING.remove(&tid);
        return;
    }
    unsafe {
        let n = (*p).sockaddr_len as u32 & (SOCKADDR_CAP as u32 - 1);
        if n > 0 {
            generated::bpf_probe_read_kernel(
                (*w.payload()).sockaddr.as_mut_ptr().cast(),
                n,
                (*p).sockaddr.as_ptr().cast(),
            );
            (*w.payload()).sockaddr_len = n as u16;
        }
    }
    let _ = PENDING.remove(&tid);
    let ret: i64 = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0);
    task::fill_header(w.header(), kind as u16, ret);
    unsafe { (*w.payload()).args = args };
    let t = task::current_task();
    match kind {
        Open | Openat | Openat2 | Creat => {
            if ret >= 0 {
                fd_object(&mut w, t, ret);
            }
            let (p1, dfd) = if matches!(kind, Open | Creat) {
                (args[0], AT_FDCWD)
            } else {
                (args[1], args[0] as i32 as i64)
            };
            w.user_str(slot::USER1, p1);
            if ret < 0 && w.first_byte(slot::USER1) != b'/' {
                prefix(&mut w, t, dfd);
            }
            if kind == Openat2 {
                let how: [u64; 3] =
                    unsafe { bpf_probe_read_user(args[2] as *const [u64; 3]) }.unwrap_or([0; 3]);
                unsafe {
                    (*w.payload()).aux[0] = how[0];
                    (*w.payload()).aux[1] = how[1];
                    (*w.payload()).aux[2] = how[2];
                }
            }
        }
        Fchmod | Fchown | Ftruncate | Setns | Fsetxattr => {
            fd_object(&mut w, t, args[0] as i32 as i64)
        }
        // setxattrat(dfd, "", AT_EMPTY_PATH, ...) acts on dfd itself.
        Setxattrat
            if args[2] & AT_EMPTY_PATH != 0
                && unsafe { bpf_probe_read_user(args[1] as *const u8) }.unwrap_or(1) == 0 =>
        {
            fd_object(&mut w, t, args[0] as i32 as i64)
        }
        Capset => {
            // struct __user_cap_data_struct[2] { effective, permitted, inheritable } (v2/v3).
            let d: [u32; 6] =
                unsafe { bpf_probe_read_user(args[1] as *const [u32; 6]) }.unwrap_or([0; 6]);
            unsafe {
                (*w.payload()).aux[0] = d[0] as u64 | (d[3] as u64) << 32;
                (*w.payload()).aux[1] = d[1] as u64 | (d[4] as u64) << 32;
                (*w.payload()).aux[2] = d[2] as u64 | (d[5] as u64) << 32;
            }
        }
        Dup | Dup2 | Dup3 => {
            if ret >= 0 {
                fd_object(&mut w, t, ret);
            }
            unsafe {
                (*w.payload()).aux[0] =
                    task::file_kind(task::fd_file(t, args[0] as i32 as i64)) as u64
            };
        }
        Socket | Accept | Accept4 => {
            if ret >= 0 {
                let f = task::fd_file(t, ret);
                unsafe {
                    (*w.payload()).fd_kind = task::file_kind_and_sock(f, &mut (*w.payload()).sock);
                }
            }
        }
        Connect | Bind | Listen | Sendto | Sendmsg | Sendmmsg => {
            let f = task::fd_file(t, args[0] as i32 as i64);
            unsafe {
                (*w.payload()).fd_kind = task::file_kind_and_sock(f, &mut (*w.payload()).sock);
            }
        }
        Mount => {
            w.user_str(slot::KPATH, args[2]);
            w.user_str(slot::USER1, args[0]);
            w.user_str(slot::USER2, args[1]);
        }
        _ => {
            let (p1, dfd, p2) = path_args(kind);
            if let Some(i) = p1 {
                w.user_str(slot::USER1, args[i & 7]);
            }
            // Strings go out in slot order: USER1, USER2, then the PREFIX a relative USER1
            // needs.
            let relative =
                p1.is_some() && kind != MemfdCreate && w.first_byte(slot::USER1) != b'/';
            if let Some(i) = p2 {
                w.user_str(slot::USER2, args[i & 7]);
            }
            if relative {
                let d = match dfd {
                    Some(i) => args[i & 7] as i32 as i64,
                    None => AT_FDCWD,
                };
                prefix(&mut w, t, d);
            }
        }
    }
    w.submit(kind);
}

macro_rules! hooks {
    ($( $kind:ident : $enter:ident, $exit:ident; )*) => { $(
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            enter(&ctx, EventType::$kind);
            0
        }
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit(&ctx, EventType::$kind);
            0
        }
    )* };
}

hooks! {
    Execve: sys_enter_execve, sys_exit_execve;
    Execveat: sys_enter_execveat, sys_exit_execveat;
    Clone: sys_enter_clone, sys_exit_clone;
    Clone3: sys_enter_clone3, sys_exit_clone3;
    Fork: sys_enter_fork, sys_exit_fork;
    Vfork: sys_enter_vfork, sys_exit_vfork;
    Open: sys_enter_open, sys_exit_open;
    Openat: sys_enter_openat, sys_exit_openat;
    Openat2: sys_enter_openat2, sys_exit_openat2;
    Creat: sys_enter_creat, sys_exit_creat;
    Unlink: sys_enter_unlink, sys_exit_unlink;
    Unlinkat: sys_enter_unlinkat, sys_exit_unlinkat;
    Rename: sys_enter_rename, sys_exit_rename;
    Renameat: sys_enter_renameat, sys_exit_renameat;
    Renameat2: sys_enter_renameat2, sys_exit_renameat2;
    Mkdir: sys_enter_mkdir, sys_exit_mkdir;
    Mkdirat: sys_enter_mkdirat, sys_exit_mkdirat;
    Rmdir: sys_enter_rmdir, sys_exit_rmdir;
    Link: sys_enter_link, sys_exit_link;
    Linkat: sys_enter_linkat, sys_exit_linkat;
    Symlink: sys_enter_symlink, sys_exit_symlink;
    Symlinkat: sys_enter_symlinkat, sys_exit_symlinkat;
    Chmod: sys_enter_chmod, sys_exit_chmod;
    Fchmod: sys_enter_fchmod, sys_exit_fchmod;
    Fchmodat: sys_enter_fchmodat, sys_exit_fchmodat;
    Chown: sys_enter_chown, sys_exit_chown;
    Lchown: sys_enter_lchown, sys_exit_lchown;
    Fchown: sys_enter_fchown, sys_exit_fchown;
    Fchownat: sys_enter_fchownat, sys_exit_fchownat;
    Truncate: sys_enter_truncate, sys_exit_truncate;
    Ftruncate: sys_enter_ftruncate, sys_exit_ftruncate;
    Setxattr: sys_enter_setxattr, sys_exit_setxattr;
    Lsetxattr: sys_enter_lsetxattr, sys_exit_lsetxattr;
    Fsetxattr: sys_enter_fsetxattr, sys_exit_fsetxattr;
    Setxattrat: sys_enter_setxattrat, sys_exit_setxattrat;
    Dup: sys_enter_dup, sys_exit_dup;
    Dup2: sys_enter_dup2, sys_exit_dup2;
    Dup3: sys_enter_dup3, sys_exit_dup3;
    Socket: sys_enter_socket, sys_exit_socket;
    Connect: sys_enter_connect, sys_exit_connect;
    Accept: sys_enter_accept, sys_exit_accept;
    Accept4: sys_enter_accept4, sys_exit_accept4;
    Bind: sys_enter_bind, sys_exit_bind;
    Listen: sys_enter_listen, sys_exit_listen;
    Sendto: sys_enter_sendto, sys_exit_sendto;
    Sendmsg: sys_enter_sendmsg, sys_exit_sendmsg;
    Sendmmsg: sys_enter_sendmmsg, sys_exit_sendmmsg;
    Setuid: sys_enter_setuid, sys_exit_setuid;
    Setgid: sys_enter_setgid, sys_exit_setgid;
    Setreuid: sys_enter_setreuid, sys_exit_setreuid;
    Setregid: sys_enter_setregid, sys_exit_setregid;
    Setresuid: sys_enter_setresuid, sys_exit_setresuid;
    Setresgid: sys_enter_setresgid, sys_exit_setresgid;
    Setfsuid: sys_enter_setfsuid, sys_exit_setfsuid;
    Setfsgid: sys_enter_setfsgid, sys_exit_setfsgid;
    Capset: sys_enter_capset, sys_exit_capset;
    Ptrace: sys_enter_ptrace, sys_exit_ptrace;
    Mount: sys_enter_mount, sys_exit_mount;
    // umount2's tracepoints are named after the kernel's sys_umount.
    Umount2: sys_enter_umount, sys_exit_umount;
    Unshare: sys_enter_unshare, sys_exit_unshare;
    Setns: sys_enter_setns, sys_exit_setns;
    MemfdCreate: sys_enter_memfd_create, sys_exit_memfd_create;
    Bpf: sys_enter_bpf, sys_exit_bpf;
    Chroot: sys_enter_chroot, sys_exit_chroot;
    Pivotroot: sys_enter_pivot_root, sys_exit_pivot_root;
    InitModule: sys_enter_init_module, sys_exit_init_module;
    FinitModule: sys_enter_finit_module, sys_exit_finit_module;
}
