//! Event kinds. The id is part of the wire format (fixed, grouped by family with gaps, never
//! reused); the name is Falco's `evt.type` (the syscall name, `procexit` for process exit).

macro_rules! event_types {
    ($( $variant:ident = $id:literal => $name:literal, $family:ident; )*) => {
        /// The kind of a captured event, as carried in [`crate::EventHeader::kind`].
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { #[default] $( $variant = $id, )* }

        impl EventType {
            /// Every kind, in id order.
            pub const ALL: &'static [EventType] = &[$( EventType::$variant, )*];

            /// Falco's name for this kind (`evt.type`).
            pub const fn name(self) -> &'static str {
                match self { $( EventType::$variant => $name, )* }
            }

            /// The family, used for per-family enable switches and documentation.
            pub const fn family(self) -> Family {
                match self { $( EventType::$variant => Family::$family, )* }
            }

            pub const fn from_id(id: u16) -> Option<EventType> {
                match id { $( $id => Some(EventType::$variant), )* _ => None }
            }

            pub fn from_name(name: &str) -> Option<EventType> {
                match name { $( $name => Some(EventType::$variant), )* _ => None }
            }
        }
    };
}

/// Families group kinds for documentation, enable switches and metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Process,
    File,
    Network,
    Security,
    SideDoor,
}

impl Family {
    pub const fn name(self) -> &'static str {
        match self {
            Family::Process => "process",
            Family::File => "file",
            Family::Network => "network",
            Family::Security => "security",
            Family::SideDoor => "side_door",
        }
    }
}

/// Upper bound (exclusive) of kind ids: sizes the per-kind enable and drop-counter maps.
pub const MAX_KIND_ID: u32 = 512;

event_types! {
    // process: 1..=49
    Clone = 1 => "clone", Process;
    Clone3 = 2 => "clone3", Process;
    Fork = 3 => "fork", Process;
    Vfork = 4 => "vfork", Process;
    Execve = 10 => "execve", Process;
    Execveat = 11 => "execveat", Process;
    ProcExit = 20 => "procexit", Process;

    // file: 50..=149
    Open = 50 => "open", File;
    Openat = 51 => "openat", File;
    Openat2 = 52 => "openat2", File;
    Creat = 53 => "creat", File;
    Unlink = 60 => "unlink", File;
    Unlinkat = 61 => "unlinkat", File;
    Rename = 62 => "rename", File;
    Renameat = 63 => "renameat", File;
    Renameat2 = 64 => "renameat2", File;
    Mkdir = 65 => "mkdir", File;
    Mkdirat = 66 => "mkdirat", File;
    Rmdir = 67 => "rmdir", File;
    Link = 68 => "link", File;
    Linkat = 69 => "linkat", File;
    Symlink = 70 => "symlink", File;
    Symlinkat = 71 => "symlinkat", File;
    Chmod = 80 => "chmod", File;
    Fchmod = 81 => "fchmod", File;
    Fchmodat = 82 => "fchmodat", File;
    Chown = 83 => "chown", File;
    Lchown = 84 => "lchown", File;
    Fchown = 85 => "fchown", File;
    Fchownat = 86 => "fchownat", File;
    Truncate = 87 => "truncate", File;
    Ftruncate = 88 => "ftruncate", File;
    // Extended attributes: `security.capability` holds a file's capabilities (setcap).
    Setxattr = 89 => "setxattr", File;
    Lsetxattr = 90 => "lsetxattr", File;
    Fsetxattr = 91 => "fsetxattr", File;
    Setxattrat = 92 => "setxattrat", File;
    Dup = 100 => "dup", File;
    Dup2 = 101 => "dup2", File;
    Dup3 = 102 => "dup3", File;

    // network: 150..=249
    Socket = 150 => "socket", Network;
    Connect = 151 => "connect", Network;
    Accept = 152 => "accept", Network;
    Accept4 = 153 => "accept4", Network;
    Bind = 154 => "bind", Network;
    Listen = 155 => "listen", Network;
    Sendto = 156 => "sendto", Network;
    Sendmsg = 157 => "sendmsg", Network;
    Sendmmsg = 158 => "sendmmsg", Network;

    // security-sensitive: 250..=349
    Setuid = 250 => "setuid", Security;
    Setgid = 251 => "setgid", Security;
    Setreuid = 252 => "setreuid", Security;
    Setregid = 253 => "setregid", Security;
    Setresuid = 254 => "setresuid", Security;
    Setresgid = 255 => "setresgid", Security;
    Setfsuid = 256 => "setfsuid", Security;
    Setfsgid = 257 => "setfsgid", Security;
    Capset = 260 => "capset", Security;
    Ptrace = 261 => "ptrace", Security;
    Mount = 262 => "mount", Security;
    Umount2 = 263 => "umount2", Security;
    Unshare = 264 => "unshare", Security;
    Setns = 265 => "setns", Security;
    InitModule = 266 => "init_module", Security;
    FinitModule = 267 => "finit_module", Security;
    MemfdCreate = 268 => "memfd_create", Security;
    Bpf = 269 => "bpf", Security;
    Chroot = 270 => "chroot", Security;
    Pivotroot = 271 => "pivot_root", Security;

    // side doors: 350..=399
    IoUringSubmit = 350 => "io_uring_submit", SideDoor;
    // SockConnect: a connect seen by the cgroup sock_addr hook (any entry path, io_uring and compat).
    SockConnect = 351 => "sock_connect", SideDoor;
    SockSendmsg = 352 => "sock_sendmsg", SideDoor;
    // CompatSyscall: a 32-bit compat syscall, reported by number (its arguments use the ia32 ABI).
    CompatSyscall = 353 => "compat_syscall", SideDoor;
}
