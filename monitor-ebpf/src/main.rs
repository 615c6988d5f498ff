//! The monitor's kernel programs. Maps and globals here; the emit/filter/read helpers in `emit`
//! and `task`, the dentry walk in `path`, hooks in `process` (sched tracepoints) and `syscalls`
//! (per-syscall enter/exit pairs).
#![no_std]
#![no_main]
// off!/conf! wrap their reads in unsafe and are used inside unsafe blocks too.
#![allow(unused_unsafe)]

mod compat;
mod emit;
mod path;
mod process;
mod sockaddr;
mod syscalls;
mod task;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{Config, MAX_KIND_ID, MAX_RECORD, Offsets, SOCKADDR_CAP, STR_CAP};

/// Exec, fork, exit, connect and security events: submitted with a wakeup each.
#[map(name = "EVENTS_URGENT")]
static EVENTS_URGENT: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// File and the remaining socket events: submitted without wakeups, drained on a timer.
#[map(name = "EVENTS_BULK")]
static EVENTS_BULK: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// 1 = report this kind; written by user space.
#[map(name = "KIND_ENABLED")]
static KIND_ENABLED: Array<u8> = Array::with_max_entries(MAX_KIND_ID, 0);

/// Failed ring reserves, per CPU, by kind.
#[map(name = "DROPS")]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_KIND_ID, 0);

/// cgroup ids never reported when `containers_only` is on.
#[map(name = "SKIP_CGROUPS")]
static SKIP_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// What sys_enter saw, keyed by thread id, until the matching sys_exit. LRU so that a missed
/// exit (a thread killed inside the call) cannot leak entries.
#[map(name = "PENDING")]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU build area for one record (too large for the 512-byte stack).
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Record> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU area for the dentry walk, which writes a path backwards from the middle.
#[map(name = "PATHBUF")]
static PATHBUF: PerCpuArray<PathBuf> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "WALK")]
static WALK: PerCpuArray<path::WalkCtx> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "PENDING_SCRATCH")]
static PENDING_SCRATCH: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    pub kind: u16,
    pub sockaddr_len: u16,
    pub _pad: u32,
    pub args: [u64; 6],
    pub sockaddr: [u8; SOCKADDR_CAP],
}

/// One record plus slack: string writes are bounded by masks, not exact sums, so the verifier
/// needs room for `max offset + max length`.
#[repr(C)]
pub struct Record {
    pub bytes: [u8; MAX_RECORD + STR_CAP],
}

pub const PATHBUF_HALF: usize = 4096;
#[repr(C)]
pub struct PathBuf {
    pub bytes: [u8; PATHBUF_HALF + 512],
}

/// Kernel struct offsets; user space overrides this at load time (BTF).
#[unsafe(no_mangle)]
static OFFSETS: Offsets = unsafe { core::mem::zeroed() };

#[unsafe(no_mangle)]
static CONFIG: Config = unsafe { core::mem::zeroed() };

/// Read one field of a read-only global without letting the compiler fold the zero it was
/// initialised with.
macro_rules! off {
    ($f:ident) => {
        unsafe { core::ptr::read_volatile(&raw const crate::OFFSETS.$f) as u64 }
    };
}
pub(crate) use off;

macro_rules! conf {
    ($f:ident) => {
        unsafe { core::ptr::read_volatile(&raw const crate::CONFIG.$f) }
    };
}
pub(crate) use conf;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
