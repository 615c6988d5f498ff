//! cgroup sock_addr hooks (`cgroup/connect4|6`, `cgroup/sendmsg4|6`), attached to the cgroup2
//! root: they see the destination the kernel itself is about to use, whatever the entry path
//! (connect(2), sendto/sendmsg, io_uring's IORING_OP_CONNECT/SENDMSG, 32-bit compat calls),
//! which the syscall tracepoints cannot.
//!
//! A connect(2) that the syscall tracepoints already report (the `connect` kind is on, and the
//! sockaddr its sys_enter copied names the same destination the kernel is using) is not
//! reported again here: `sock_connect` is what the syscall path did not show. So io_uring and
//! compat connects, TCP Fast Open sendto, and a connect whose sockaddr was swapped after the
//! tracepoint copied it (a TOCTOU race) all appear, and rules written as
//! `evt.type in (connect, sock_connect)` see each connect once. Sends follow the same rule: a
//! datagram whose sendto/sendmsg/sendmmsg event names this destination is not reported again
//! as `sock_sendmsg` (nor counted in its repeats), so `evt.type in (sendto, sendmsg, sendmmsg,
//! sock_sendmsg)` sees each destination through one path. The hook only runs for sends that
//! name a destination (an unconnected UDP socket); connected sends never reach it.
//!
//! They never deny: every path returns 1 (allow). They run in the calling task's context, so
//! the header is filled exactly as for the tracepoint programs (the verifier gives this program
//! type the current-task helpers and, with CAP_PERFMON, bpf_probe_read_kernel).

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, bpf_sock_addr},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::{cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::SockAddrContext,
};
use monitor_common::{EventHeader, EventType, FdKind, Payload, STRINGS_OFFSET, SockInfo, sockaddr_aux};

use crate::{DROPS, EVENTS_URGENT, PENDING, emit::filtered, task};

const ALLOW: i32 = 1;

/// A record without strings: exactly `STRINGS_OFFSET` bytes.
#[repr(C)]
struct SockRecord {
    header: EventHeader,
    payload: Payload,
}

const _: () = assert!(core::mem::size_of::<SockRecord>() == STRINGS_OFFSET);
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    emit(&ctx, EventType::SockConnect, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    emit(&ctx, EventType::SockConnect, AF_INET6);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    emit(&ctx, EventType::SockSendmsg, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    emit(&ctx, EventType::SockSendmsg, AF_INET6);
    ALLOW
}

/// Context fields are read with plain 4-byte loads: the verifier only allows the address
/// fields of the hook's own family (user_ip6 in a connect4 program is rejected), hence the
/// family is a constant per program rather than read from the context.
#[inline(always)]
fn emit(ctx: &SockAddrContext, kind: EventType, family: u16) {
    if filtered(kind) {
        return;
    }
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    let mut addr = [0u8; 16];
    let (port, sock_type, protocol) = unsafe {
        if family == AF_INET {
            // Network order in memory: the u32's bytes are the address bytes in order.
            let a = core::ptr::read_volatile(&raw const (*sa).user_ip4);
            addr[..4].copy_from_slice(&a.to_ne_bytes());
        } else {
            let a0 = core::ptr::read_volatile(&raw const (*sa).user_ip6[0]);
            let a1 = core::ptr::read_volatile(&raw const (*sa).user_ip6[1]);
            let a2 = core::ptr::read_volatile(&raw const (*sa).user_ip6[2]);
            let a3 = core::ptr::read_volatile(&raw const (*sa).user_ip6[3]);
            addr[0..4].copy_from_slice(&a0.to_ne_bytes());
            addr[4..8].copy_from_slice(&a1.to_ne_bytes());
            addr[8..12].copy_from_slice(&a2.to_ne_bytes());
            addr[12..16].copy_from_slice(&a3.to_ne_bytes());
        }
        // user_port holds the port in network byte order in its low 16 bits.
        let port = u16::from_be(core::ptr::read_volatile(&raw const (*sa).user_port) as u16);
        (
            port,
            core::ptr::read_volatile(&raw const (*sa).type_) as u16,
            core::ptr::read_volatile(&raw const (*sa).protocol) as u64,
        )
    };
    if reported_by_syscall(kind, family, port, &addr) {
        return;
    }
    let repeats = if matches!(kind, EventType::SockSendmsg) {
        match sendmsg_window(family, port, &addr) {
            Some(n) => n,
            None => return,
        }
    } else {
        0
    };
    // Built in place in the ring rather than in the shared per-CPU SCRATCH: these programs
    // run with preemption enabled, so a tracepoint program on this CPU could reuse SCRATCH
    // half-way through our record.
    let Some(mut entry) = EVENTS_URGENT.reserve::<SockRecord>(0) else {
        if let Some(c) = DROPS.get_ptr_mut(kind as u32) {
            unsafe { *c += 1 };
        }
        return;
    };
    let rec = entry.as_mut_ptr();
    unsafe {
        let h = &mut (*rec).header;
        task::fill_header(h, kind as u16, 0);
        h.len = STRINGS_OFFSET as u32;
        // Field by field, as Writer::new does; sockaddr stays as is (sockaddr_len is 0).
        let p = &mut (*rec).payload;
        p.args = [0; 6];
        p.aux = [0; 4];
        p.str_len = [0; 4];
        p.flags = 0;
        p.sockaddr_len = 0;
        p._pad = 0;
        p.sock = SockInfo {
            family,
            sock_type,
            local_port: 0,
            remote_port: port,
            local_addr: [0; 16],
            remote_addr: addr,
        };
        p.fd_kind = if family == AF_INET { FdKind::Ipv4 } else { FdKind::Ipv6 } as u8;
        p.aux[sockaddr_aux::PROTOCOL] = protocol;
        p.aux[sockaddr_aux::REPEATS] = repeats;
    }
    // connect wakes the reader (alerts on it are time-critical and it is rare); sendmsg can run
    // at datagram rates (a DNS server replies with sendto), so it rides without a wakeup and
    // is read at the next wakeup or drain tick (<= 2 ms), like fork and exit. The urgent ring
    // either way, so that both stay ordered with the exec before them.
    let flags = if matches!(kind, EventType::SockConnect) {
        0
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    entry.submit(flags);
}

/// Datagrams from one process to one destination, reported at most once per window.
#[repr(C)]
#[derive(Clone, Copy)]
struct SendKey {
    tgid: u32,
    family: u16,
    port: u16,
    addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SendSeen {
    reported_ns: u64,
    /// Sends left out since then (approximate: not atomic across CPUs).
    suppressed: u64,
}

/// LRU: an evicted destination is simply reported again.
#[map(name = "SENDMSG_SEEN")]
static SENDMSG_SEEN: LruHashMap<SendKey, SendSeen> = LruHashMap::with_max_entries(16384, 0);

const SENDMSG_WINDOW_NS: u64 = 1_000_000_000;

/// A UDP server answers every query with a sendto: one event per datagram would flood the
/// ring. Each (process, destination) is reported once per second; the report carries how many
/// sends were left out since the previous one. None = leave this one out.
#[inline(always)]
fn sendmsg_window(family: u16, port: u16, addr: &[u8; 16]) -> Option<u64> {
    let key = SendKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        family,
        port,
        addr: *addr,
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(v) = SENDMSG_SEEN.get_ptr_mut(&key) {
        unsafe {
            if now.wrapping_sub((*v).reported_ns) < SENDMSG_WINDOW_NS {
                (*v).suppressed += 1;
                return None;
            }
            let n = (*v).suppressed;
            (*v).reported_ns = now;
            (*v).suppressed = 0;
            return Some(n);
        }
    }
    let _ = SENDMSG_SEEN.insert(
        &key,
        &SendSeen {
            reported_ns: now,
            suppressed: 0,
        },
        0,
    );
    Some(0)
}

/// True when this thread is inside a syscall of the matching kind (connect(2) for
/// sock_connect; sendto, sendmsg or sendmmsg for sock_sendmsg) whose sys_enter (kind enabled,
/// not filtered, the send selected) saved a sockaddr with this family, port and address: its
/// event will carry the same destination, with the result. Any difference (or no such entry)
/// means the syscall path does not show this destination: io_uring, compat, a swapped
/// sockaddr, or sendmmsg's messages after the first.
#[inline(always)]
fn reported_by_syscall(kind: EventType, family: u16, port: u16, addr: &[u8; 16]) -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(p) = (unsafe { PENDING.get(&tid) }) else {
        return false;
    };
    let same_path = match kind {
        EventType::SockConnect => p.kind == EventType::Connect as u16,
        EventType::SockSendmsg => {
            p.kind == EventType::Sendto as u16
                || p.kind == EventType::Sendmsg as u16
                || p.kind == EventType::Sendmmsg as u16
        }
        _ => false,
    };
    if !same_path {
        return false;
    }
    // An IPv4-mapped destination is always reported here: the connect event shows the
    // ::ffff:a.b.c.d spelling, which rules naming the IPv4 address do not match, while this
    // event shows a.b.c.d.
    if family == AF_INET6 && addr[..10] == [0u8; 10] && addr[10] == 0xff && addr[11] == 0xff {
        return false;
    }
    let sa = &p.sockaddr;
    let need = if family == AF_INET { 8 } else { 24 };
    if (p.sockaddr_len as usize) < need
        || u16::from_ne_bytes([sa[0], sa[1]]) != family
        || u16::from_be_bytes([sa[2], sa[3]]) != port
    {
        return false;
    }
    if family == AF_INET {
        sa[4..8] == addr[..4]
    } else {
        sa[8..24] == addr[..]
    }
}
