//! Record layouts. Every record is `EventHeader | Payload | strings`, where the strings are the
//! byte runs whose lengths are in `Payload::str_len` (S0..S3, in order, no terminators).
//! What each string and each `aux` slot means depends on the kind; `Slot` names them.

use core::mem::size_of;

/// Bumped whenever any layout in this module changes; the decoder rejects other versions.
pub const WIRE_VERSION: u16 = 3;

/// Length of `comm` as the kernel keeps it (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// Map names shared by both sides.
pub const MAP_EVENTS_BULK: &str = "EVENTS_BULK";
pub const MAP_EVENTS_URGENT: &str = "EVENTS_URGENT";
pub const MAP_KIND_ENABLED: &str = "KIND_ENABLED";
pub const MAP_DROPS: &str = "DROPS";
pub const MAP_SKIP_CGROUPS: &str = "SKIP_CGROUPS";
/// Read-only globals set at load time.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// Capacity of one string slot, terminator included (the kernel side masks lengths with
/// `STR_MASK`, which is what lets the verifier bound every copy).
pub const STR_CAP: usize = 4096;
pub const STR_MASK: usize = STR_CAP - 1;
pub const STR_SLOTS: usize = 4;
/// Bytes reserved for a copied `struct sockaddr` (sockaddr_un is 110).
pub const SOCKADDR_CAP: usize = 128;

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// [`WIRE_VERSION`] of the program that wrote the record.
    pub version: u16,
    /// [`crate::EventType`] id.
    pub kind: u16,
    /// Length of the whole record, header included.
    pub len: u32,
    /// `bpf_ktime_get_boot_ns()` at syscall exit.
    pub ts_boot_ns: u64,
    /// Thread-group id (user-space "pid") and thread id.
    pub tgid: u32,
    pub tid: u32,
    /// tgid of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// audit login uid, `u32::MAX` when unset.
    pub loginuid: u32,
    /// cgroup v2 id (`bpf_get_current_cgroup_id`): inode of the cgroup's directory.
    pub cgroup_id: u64,
    /// Inode numbers of the pid and mount namespaces.
    pub pidns: u32,
    pub mntns: u32,
    /// Effective capability set of the acting thread.
    pub cap_effective: u64,
    /// Task start time (boot ns); with boot id and tgid it forms the exec id.
    pub start_boot_ns: u64,
    /// Syscall return value, as is.
    pub ret: i64,
    pub comm: [u8; COMM_LEN],
    /// Thread id and thread-group id in the task's own pid namespace (Falco's `thread.vtid`,
    /// `proc.vpid`); 0 when the kernel objects could not be read.
    pub vtid: u32,
    pub vpid: u32,
    /// Session id as the initial pid namespace numbers it (the host pid of the session
    /// leader, so user space can look the leader up), 0 when unknown.
    pub sid: u32,
    pub _pad0: u32,
}

const _: () = assert!(size_of::<EventHeader>() == 120);

/// What the kernel knew about a socket (from `struct sock_common`), network byte order for
/// addresses, host order for ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockInfo {
    /// AF_* family, 0 when the fd was not a socket.
    pub family: u16,
    /// SOCK_STREAM, SOCK_DGRAM ...
    pub sock_type: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

const _: () = assert!(size_of::<SockInfo>() == 40);

/// Fixed part after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Payload {
    /// The syscall's arguments as captured at entry.
    pub args: [u64; 6],
    /// Kind-specific numbers, see [`aux`].
    pub aux: [u64; 4],
    /// Lengths of the strings that follow this struct, in slot order.
    pub str_len: [u16; STR_SLOTS],
    /// [`FdKind`] of the object the event acted on (open's result, connect's socket ...).
    pub fd_kind: u8,
    /// [`flags`] bits.
    pub flags: u8,
    pub sockaddr_len: u16,
    pub _pad: u32,
    pub sock: SockInfo,
    /// The caller's `struct sockaddr`, copied at syscall entry (connect, bind; sendto's
    /// `addr`, sendmsg's `msg_name`, sendmmsg's first `msg_name`). The setxattr family uses
    /// the same entry copy for its name and value (layout in [`xattr_copy`]).
    pub sockaddr: [u8; SOCKADDR_CAP],
}

const _: () = assert!(size_of::<Payload>() == 48 + 32 + 8 + 8 + 40 + SOCKADDR_CAP);

impl Default for Payload {
    fn default() -> Self {
        Payload {
            args: [0; 6],
            aux: [0; 4],
            str_len: [0; STR_SLOTS],
            fd_kind: 0,
            flags: 0,
            sockaddr_len: 0,
            _pad: 0,
            sock: SockInfo::default(),
            sockaddr: [0; SOCKADDR_CAP],
        }
    }
}

/// Offset of the first string byte in a record.
pub const STRINGS_OFFSET: usize = size_of::<EventHeader>() + size_of::<Payload>();
/// Largest record the kernel writes.
pub const MAX_RECORD: usize = STRINGS_OFFSET + STR_SLOTS * STR_CAP;

/// String slots. Their meaning per kind:
/// - exec: S0 exe path (kernel, mm->exe_file), S1 argv (NUL-separated, from mm->arg_start),
///   S2 cwd (kernel), S3 the filename passed to exec (bprm->filename).
/// - path-taking syscalls: S0 path of the result/fd argument resolved by the kernel (open's
///   returned fd, fchmod's fd, dup's new fd, setns' fd), S1 first user path, S2 second user
///   path (rename/link new path, symlink target, mount target), S3 the kernel-resolved
///   directory the first user path is relative to (dirfd or cwd; only when S1 is relative).
/// - mount: S0 fstype (user), S1 source, S2 target.
pub mod slot {
    pub const KPATH: usize = 0;
    /// io_uring_submit: the opcode's name.
    pub const OP: usize = 0;
    pub const EXE: usize = 0;
    pub const USER1: usize = 1;
    pub const ARGV: usize = 1;
    pub const USER2: usize = 2;
    pub const CWD: usize = 2;
    pub const PREFIX: usize = 3;
    pub const FILENAME: usize = 3;
}

/// `aux` slots per kind.
/// - exec: aux[0] tty (new_encode_dev), aux[1] stdio fd kinds (3 bytes), aux[2] argv full length,
///   aux[3] environment full length (0 when not read); the executable inode's times in `args`
///   (see [`exec_args`]). S1 holds argv and then, as far as the slot reaches, the environment
///   (the kernel lays them out back to back at exec; one read takes both).
/// - clone family: aux[0] child tid, aux[1] clone flags (clone3: read from clone_args),
///   aux[2] child tgid (0 when unknown).
/// - procexit (at the process' last thread's exit, with `flags::GROUP_DEAD`; per-thread exits,
///   when enabled, come without it): aux[0] task exit_code (status as wait(2) reports it).
/// - openat2: aux[0] open_how.flags, aux[1] open_how.mode, aux[2] open_how.resolve.
/// - dup family: aux[0] FdKind of oldfd.
/// - capset: aux[0..3] requested effective, permitted, inheritable sets.
/// - io_uring_submit: aux[0] opcode, aux[1] request flags; S0 the opcode's name. OPENAT and
///   OPENAT2 also: args[0] dirfd, aux[2] open flags, aux[3] mode, S1 the path (the kernel's
///   copy, taken at prep), S3 the dirfd or cwd when the path is relative. UNLINKAT: args[0]
///   dirfd, aux[2] its flags, S1, S3. RENAMEAT: args[0] the old path's dirfd, aux[2] its
///   flags, S1 the old path, S2 the new one, S3.
/// - sendto/sendmsg/sendmmsg: see [`send_args`]; `sock` is the fd's socket at exit (local end,
///   and the kernel's peer when connected), `sockaddr` the caller's destination when given.
pub mod aux {}

/// `args` slots of a successful exec (sched_process_exec has no syscall arguments to carry):
/// the times of `mm->exe_file->f_inode` in ns since the Unix epoch (0 when unreadable).
pub mod exec_args {
    pub const EXE_CTIME_NS: usize = 0;
    pub const EXE_MTIME_NS: usize = 1;
}

/// The setxattr family's entry copy, in `Payload::sockaddr` (`sockaddr_len` = [`VALUE`] +
/// the value bytes copied). Copied at entry, before the kernel reads the same user memory:
/// the name and value are what the call was given, not what the caller wrote there after.
pub mod xattr_copy {
    /// The value's size and the XATTR_CREATE/XATTR_REPLACE flags, two native-endian u32s
    /// (setxattrat passes them inside `struct xattr_args`, the others as arguments).
    pub const SIZE_FLAGS: usize = 0;
    /// The attribute name, NUL-terminated when shorter than [`NAME_CAP`].
    pub const NAME: usize = 8;
    pub const NAME_CAP: usize = 56;
    /// The value's first bytes (a `struct vfs_cap_data` is 12 to 24 bytes).
    pub const VALUE: usize = NAME + NAME_CAP;
    pub const VALUE_CAP: usize = 32;
    const _: () = assert!(VALUE + VALUE_CAP <= super::SOCKADDR_CAP);
}

/// `args` slots of sendmsg and sendmmsg that the kernel side fills itself (the syscalls take
/// 3 and 4 arguments; the message header they point at is user memory, read once at entry).
pub mod send_args {
    /// Bytes in the (first) message's iovecs: the sum over the first [`MAX_IOV`] iovecs.
    pub const SIZE: usize = 4;
    /// `msg_iovlen` of the (first) message; above [`MAX_IOV`] the size is a lower bound.
    pub const IOVLEN: usize = 5;
    /// iovecs summed into [`SIZE`] (a bounded loop; datagrams rarely carry more).
    pub const MAX_IOV: u64 = 8;
}

/// Payload flag bits.
pub mod flags {
    /// argv was longer than the slot (the environment after it is then not read at all).
    pub const ARGS_TRUNCATED: u8 = 1 << 0;
    /// S0 came from the kernel's own objects.
    pub const KPATH_OK: u8 = 1 << 1;
    /// A path walk hit its component bound before the root.
    pub const PATH_TRUNCATED: u8 = 1 << 2;
    /// The exec'd file's inode lives on an overlayfs upper layer.
    pub const EXE_UPPER: u8 = 1 << 3;
    /// procexit: the exiting thread was the process' last (the process is gone).
    pub const GROUP_DEAD: u8 = 1 << 4;
}

/// Object behind an fd, as the kernel classifies it (inode mode, socket family, fs magic).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    None = 0,
    File = 1,
    Directory = 2,
    Ipv4 = 3,
    Ipv6 = 4,
    Unix = 5,
    Pipe = 6,
    Tty = 7,
    Memfd = 8,
    Netlink = 9,
    OtherSocket = 10,
    Char = 11,
    Anon = 12,
    Unknown = 15,
}

impl FdKind {
    pub const fn from_u8(v: u8) -> FdKind {
        match v {
            1 => FdKind::File,
            2 => FdKind::Directory,
            3 => FdKind::Ipv4,
            4 => FdKind::Ipv6,
            5 => FdKind::Unix,
            6 => FdKind::Pipe,
            7 => FdKind::Tty,
            8 => FdKind::Memfd,
            9 => FdKind::Netlink,
            10 => FdKind::OtherSocket,
            11 => FdKind::Char,
            12 => FdKind::Anon,
            0 => FdKind::None,
            _ => FdKind::Unknown,
        }
    }
}

/// Kernel struct member offsets (bytes), read from /sys/kernel/btf/vmlinux at load time and
/// passed to the programs as a read-only global, so one object runs on any kernel layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_cred: u32,
    pub task_start_boottime: u32,
    pub task_loginuid: u32,
    pub task_nsproxy: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_group_leader: u32,
    pub task_thread_pid: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub cred_cap_effective: u32,
    pub nsproxy_mnt_ns: u32,
    pub mnt_namespace_inum: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_ns: u32,
    pub pid_namespace_inum: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub file_private_data: u32,
    pub inode_i_mode: u32,
    pub inode_i_rdev: u32,
    pub inode_i_sb: u32,
    pub sb_s_magic: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_inode: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub mount_mnt: u32,
    pub vfsmount_mnt_root: u32,
    pub vfsmount_mnt_sb: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub signal_tty: u32,
    pub tty_index: u32,
    pub tty_driver: u32,
    pub driver_major: u32,
    pub driver_minor_start: u32,
    /// Offset of `child_pid` in the sched_process_fork tracepoint record (from tracefs format).
    pub tp_fork_child_pid: u32,
    /// Non-zero when overlayfs' `struct ovl_inode` is in the kernel's BTF (built in); then the
    /// two offsets below locate the upper dentry of an overlay inode.
    pub ovl_present: u32,
    pub ovl_inode_vfs_inode: u32,
    pub ovl_inode_upperdentry: u32,
    /// io_uring:io_uring_submit_req field offsets (from tracefs format); 0 when absent.
    pub tp_uring_opcode: u32,
    pub tp_uring_flags: u32,
    pub tp_uring_op_str: u32,
    pub tp_uring_req: u32,
    /// An OPENAT/OPENAT2 request after its prep (which the submit tracepoint follows): its
    /// `struct io_open` lives in `io_kiocb.cmd`; `filename` is the kernel's copy of the path
    /// (`struct filename.name`). 0 for `uring_open_filename`: not in this kernel's BTF.
    pub kiocb_cmd: u32,
    pub uring_open_dfd: u32,
    pub uring_open_filename: u32,
    pub uring_open_how: u32,
    pub filename_name: u32,
    /// UNLINKAT's `struct io_unlink` and RENAMEAT's `struct io_rename`, likewise (0 for the
    /// filename offsets: not in BTF).
    pub uring_unlink_dfd: u32,
    pub uring_unlink_flags: u32,
    pub uring_unlink_filename: u32,
    pub uring_rename_old_dfd: u32,
    pub uring_rename_oldpath: u32,
    pub uring_rename_newpath: u32,
    pub uring_rename_flags: u32,
    /// Offset of `group_dead` in the sched_process_exit record (from tracefs format; recent
    /// kernels only); 0 when absent: the thread-group leader's exit then stands for the process'.
    pub tp_exit_group_dead: u32,
    /// `upid.nr`; `signal_struct.pids` (0 when the kernel predates it: then no session id).
    pub upid_nr: u32,
    pub signal_pids: u32,
    /// Executable inode times: seconds (time64_t) and nanoseconds (read as u32) of ctime and
    /// mtime, wherever this kernel keeps them (6.11+: `i_ctime_sec`/`i_ctime_nsec`; 6.6-6.10:
    /// `__i_ctime` timespec64; older: `i_ctime`). 0 for the seconds offset: not found.
    pub inode_ctime_sec: u32,
    pub inode_ctime_nsec: u32,
    pub inode_mtime_sec: u32,
    pub inode_mtime_nsec: u32,
}

/// Run-time switches, a read-only global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// The daemon's own tgid: never reported.
    pub self_tgid: u32,
    /// Non-zero: drop events from the host mount namespace and from SKIP_CGROUPS.
    pub containers_only: u32,
    /// Mount namespace inode of pid 1 (the host's).
    pub host_mntns: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::Payload {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::Config {}
}

/// `aux` slots of the cgroup sock_addr events (`sock_connect`, `sock_sendmsg`). The destination
/// is in `Payload::sock` (family, sock_type, remote_addr, remote_port: as the kernel saw it,
/// whatever the entry path) and `fd_kind` is Ipv4/Ipv6.
pub mod sockaddr_aux {
    /// IPPROTO_* of the socket (6 tcp, 17 udp, 0 when the kernel did not set it).
    pub const PROTOCOL: usize = 0;
    /// sock_sendmsg only: sends from this process to this destination left out since the
    /// previous report (each pair is reported at most once a second).
    pub const REPEATS: usize = 1;
}

/// `aux` slots of `compat_syscall`.
pub mod compat_aux {
    /// How it was seen: [`SOURCE_EXEC_32BIT`] (the only source in this build).
    pub const SOURCE: usize = 0;
    /// The process' `mm->task_size` (its address-space limit) after exec.
    pub const TASK_SIZE: usize = 1;
    /// A program with a 32-bit address space (ia32 or x32) was exec'd: from now on it makes
    /// compat syscalls, which the syscall tracepoints do not see.
    pub const SOURCE_EXEC_32BIT: u64 = 1;
}
