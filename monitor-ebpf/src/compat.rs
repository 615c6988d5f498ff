//! 32-bit programs. Syscalls made in compat mode (ia32) fire no `syscalls:*` tracepoint, so a
//! 32-bit program's file, process and security calls are invisible to the per-syscall hooks
//! (its connects and sendmsgs are still seen by the cgroup sock_addr hooks). A catch-all
//! `raw_tp/sys_enter` would see them but taxes every syscall on the node (+26 ns each, see
//! PERFORMANCE.md); instead the exec of a program whose address space is 32-bit is reported
//! once, as `compat_syscall`, from a second program on `sched_process_exec`.
//!
//! The test is `mm->task_size <= 4 GiB`: the kernel sizes the address space from the ELF class
//! at exec (IA32_PAGE_OFFSET for ia32 and x32), a field every kernel has in BTF, unlike the
//! TIF_ADDR32/TS_COMPAT bit numbers. Not seen: a 64-bit program issuing `int $0x80` itself.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};
use monitor_common::{EventType, compat_aux};

use crate::{
    emit::{Writer, filtered},
    off,
    task::{self, rk},
};

/// [mm_struct.task_size offset]; written by user space before attach, 0 = unknown (off).
#[map(name = "COMPAT_CONF")]
static COMPAT_CONF: Array<u32> = Array::with_max_entries(1, 0);

const FOUR_GIB: u64 = 1 << 32;

#[tracepoint]
pub fn compat_exec(_ctx: TracePointContext) -> u32 {
    let kind = EventType::CompatSyscall;
    if filtered(kind) {
        return 0;
    }
    let off_task_size = match COMPAT_CONF.get(0) {
        Some(v) if *v != 0 => *v as u64,
        _ => return 0,
    };
    let t = task::current_task();
    let mm: u64 = rk(t + off!(task_mm));
    if mm == 0 {
        return 0;
    }
    let size: u64 = rk(mm + off_task_size);
    if size == 0 || size > FOUR_GIB {
        return 0;
    }
    let Some(w) = Writer::new() else { return 0 };
    task::fill_header(w.header(), kind as u16, 0);
    unsafe {
        let p = w.payload();
        (*p).aux[compat_aux::SOURCE] = compat_aux::SOURCE_EXEC_32BIT;
        (*p).aux[compat_aux::TASK_SIZE] = size;
    }
    w.submit(kind);
    0
}
