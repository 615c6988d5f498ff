//! The monitor's kernel programs. One module per family; emit/filter helpers in their own modules.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::{map, tracepoint},
    maps::RingBuf,
    programs::TracePointContext,
};
use monitor_common::{EventHeader, EventType, WIRE_VERSION};

#[map(name = "EVENTS_URGENT")]
static EVENTS_URGENT: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// sched:sched_process_exec (kernel >= 3.4).
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let Some(mut slot) = EVENTS_URGENT.reserve::<EventHeader>(0) else { return 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    let hdr = EventHeader {
        version: WIRE_VERSION,
        kind: EventType::Execve as u16,
        len: core::mem::size_of::<EventHeader>() as u32,
        ts_boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ..EventHeader::default()
    };
    slot.write(hdr);
    slot.submit(0);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
