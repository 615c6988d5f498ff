//! Record layouts. Payload structs for each family are added next to the header by the capture
//! code; every one follows the same rules (repr(C), no bool, size pinned).

use core::mem::size_of;

/// Bumped whenever any layout in this module changes; the decoder rejects other versions.
pub const WIRE_VERSION: u16 = 1;

/// Length of `comm` as the kernel keeps it (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// Map names shared by both sides.
pub const MAP_EVENTS_BULK: &str = "EVENTS_BULK";
pub const MAP_EVENTS_URGENT: &str = "EVENTS_URGENT";
pub const MAP_KIND_ENABLED: &str = "KIND_ENABLED";
pub const MAP_DROPS: &str = "DROPS";

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
}

const _: () = assert!(size_of::<EventHeader>() == 104);

#[cfg(feature = "user")]
unsafe impl aya::Pod for EventHeader {}
