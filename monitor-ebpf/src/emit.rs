//! Filtering before any work, the record writer, and submission with drop accounting.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, generated},
};
use monitor_common::{
    EventHeader, EventType, Family, Payload, STR_MASK, STRINGS_OFFSET, SockInfo, flags,
};

use crate::{
    DROPS, EVENTS_BULK, EVENTS_URGENT, KIND_ENABLED, Record, SCRATCH, SKIP_CGROUPS, conf, path,
    task,
};

/// True when this event must not be reported: our own process, a disabled kind, or (in
/// containers-only mode) the host mount namespace or a skipped cgroup. Process lifecycle
/// events (fork, exec, exit) always pass the containers-only scope: the process table needs
/// the host side of a container's birth (the runtime's exec on the host marks its setup
/// work as the runtime's); user space drops them after the table has seen them.
#[inline(always)]
pub fn filtered(kind: EventType) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == conf!(self_tgid) {
        return true;
    }
    match KIND_ENABLED.get(kind as u32) {
        Some(v) if *v != 0 => {}
        _ => return true,
    }
    if conf!(containers_only) != 0 && !matches!(kind.family(), Family::Process) {
        if task::mnt_ns_inum(task::current_task_btf()) == conf!(host_mntns) {
            return true;
        }
        let cg = unsafe { bpf_get_current_cgroup_id() };
        if unsafe { SKIP_CGROUPS.get(&cg) }.is_some() {
            return true;
        }
    }
    false
}

/// A record being built in SCRATCH: header, payload, then strings appended slot by slot.
pub struct Writer {
    pub base: *mut u8,
    /// Bytes of strings written so far (each string is masked to STR_MASK, so after four of
    /// them this stays below 4 * STR_CAP; the `& 0x3fff` re-states that bound for the verifier).
    pub off: usize,
    /// Where each slot's string starts, for `first_byte` whatever was written after it.
    start: [usize; 4],
}

impl Writer {
    #[inline(always)]
    pub fn new() -> Option<Writer> {
        let rec: *mut Record = SCRATCH.get_ptr_mut(0)?;
        let base = unsafe { (*rec).bytes.as_mut_ptr() };
        let w = Writer {
            base,
            off: 0,
            start: [0; 4],
        };
        // Field by field: a whole-struct assignment becomes a byte loop the verifier walks.
        // sockaddr is left as is; only its first sockaddr_len bytes are ever read.
        unsafe {
            let p = w.payload();
            (*p).args = [0; 6];
            (*p).aux = [0; 4];
            (*p).str_len = [0; 4];
            (*p).fd_kind = 0;
            (*p).flags = 0;
            (*p).sockaddr_len = 0;
            (*p)._pad = 0;
            (*p).sock = SockInfo::default();
        }
        Some(w)
    }

    #[inline(always)]
    pub fn header(&self) -> &mut EventHeader {
        unsafe { &mut *(self.base as *mut EventHeader) }
    }

    #[inline(always)]
    pub fn payload(&self) -> *mut Payload {
        unsafe { self.base.add(core::mem::size_of::<EventHeader>()) as *mut Payload }
    }

    #[inline(always)]
    fn dst(&self) -> *mut u8 {
        unsafe { self.base.add(STRINGS_OFFSET + (self.off & 0x3fff)) }
    }

    #[inline(always)]
    fn commit(&mut self, slot: usize, len: usize) {
        let len = len & STR_MASK;
        unsafe { (*self.payload()).str_len[slot & 3] = len as u16 };
        self.start[slot & 3] = self.off;
        self.off = (self.off + len) & 0x3fff;
    }

    /// First byte of the string committed to `slot` (0 when empty).
    #[inline(always)]
    pub fn first_byte(&self, slot: usize) -> u8 {
        let len = unsafe { (*self.payload()).str_len[slot & 3] } as usize;
        if len == 0 {
            return 0;
        }
        let at = self.start[slot & 3] & 0x3fff;
        unsafe { *self.base.add(STRINGS_OFFSET + at) }
    }

    /// NUL-terminated string from user memory.
    #[inline(always)]
    pub fn user_str(&mut self, slot: usize, src: u64) {
        self.c_str(slot, src, false);
    }

    /// NUL-terminated string from kernel memory (a `struct filename`'s copy of a path).
    #[inline(always)]
    pub fn kernel_str(&mut self, slot: usize, src: u64) {
        self.c_str(slot, src, true);
    }

    #[inline(always)]
    fn c_str(&mut self, slot: usize, src: u64, kernel: bool) {
        if src == 0 {
            return;
        }
        let (dst, cap) = (self.dst().cast(), STR_MASK as u32 + 1);
        let n = unsafe {
            if kernel {
                generated::bpf_probe_read_kernel_str(dst, cap, src as *const _)
            } else {
                generated::bpf_probe_read_user_str(dst, cap, src as *const _)
            }
        };
        // n counts the terminator; the slot stores the bytes without it.
        if n > 1 {
            self.commit(slot, (n - 1) as usize);
        }
    }

    /// `len` raw bytes from user memory (argv), cut at STR_MASK bytes.
    #[inline(always)]
    pub fn user_bytes(&mut self, slot: usize, src: u64, len: u64) -> bool {
        let cut = len > STR_MASK as u64;
        let n = if cut { STR_MASK as u64 } else { len };
        let n = (n as u32) & (STR_MASK as u32);
        if n == 0 {
            return cut;
        }
        let r = unsafe { generated::bpf_probe_read_user(self.dst().cast(), n, src as *const _) };
        if r == 0 {
            self.commit(slot, n as usize);
        }
        cut
    }

    /// Bytes from a kernel address (tracepoint data, PATHBUF).
    #[inline(always)]
    pub fn kernel_bytes(&mut self, slot: usize, src: *const u8, len: usize) {
        let n = (len & STR_MASK) as u32;
        if n == 0 || src.is_null() {
            return;
        }
        let r = unsafe { generated::bpf_probe_read_kernel(self.dst().cast(), n, src.cast()) };
        if r == 0 {
            self.commit(slot, n as usize);
        }
    }

    /// Kernel-resolved path of a `struct path` (address of the embedded struct).
    #[inline(always)]
    pub fn kernel_path(&mut self, slot: usize, path_addr: u64, task: u64) -> bool {
        match path::walk_path(path_addr, task) {
            Some(w) => {
                self.kernel_bytes(slot, path::pathbuf_ptr(w.start), w.len);
                if w.truncated {
                    unsafe { (*self.payload()).flags |= flags::PATH_TRUNCATED };
                }
                true
            }
            None => false,
        }
    }

    /// Submit to the ring for this kind's family; count a failed reserve.
    #[inline(always)]
    pub fn submit(self, kind: EventType) {
        let len = STRINGS_OFFSET + (self.off & 0x3fff);
        self.header().len = len as u32;
        let urgent = match kind.family() {
            // io_uring can run at file-I/O rates: no wakeups either.
            Family::File | Family::SideDoor => false,
            Family::Network => matches!(kind, EventType::Connect),
            _ => true,
        };
        let data = unsafe { core::slice::from_raw_parts(self.base as *const u8, len) };
        // A wakeup costs ~10 us here (a self-IPI, i.e. a VM exit), more than the rest of the
        // program: fork and exit ride the urgent ring (keeping their order with exec) without
        // one and are read at the next wakeup or drain tick (<= 2 ms); exec, connect and the
        // security calls wake the reader.
        let lifecycle = matches!(
            kind,
            EventType::Clone
                | EventType::Clone3
                | EventType::Fork
                | EventType::Vfork
                | EventType::ProcExit
        );
        let r = if urgent {
            EVENTS_URGENT.output(
                data,
                if lifecycle {
                    BPF_RB_NO_WAKEUP as u64
                } else {
                    0
                },
            )
        } else {
            EVENTS_BULK.output(data, BPF_RB_NO_WAKEUP as u64)
        };
        if r.is_err() {
            if let Some(c) = DROPS.get_ptr_mut(kind as u32) {
                unsafe { *c += 1 };
            }
        }
    }
}
