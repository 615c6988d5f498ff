//! Attach the 32-bit exec detector (monitor-ebpf/src/compat.rs): a second program on
//! `sched:sched_process_exec`, attached after the tracepoint loop so that it runs after the exec
//! program and its event sorts after the exec it is about (same tid, later timestamp).

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::TracePoint;
use monitor_common::EventType;

use super::Coverage;
use super::btf::Btf;

pub const PROGRAM: &str = "compat_exec";
/// The hook as coverage names it (category `compat`: it is not the tracepoint loop's own).
pub const HOOK: &str = "compat:sched_process_exec";
const MAP_CONF: &str = "COMPAT_CONF";

/// Shown in doctor's notes: what `compat_syscall` covers and what it does not.
pub const NOTE: &str = "32-bit compat syscalls fire no syscall tracepoint: compat_syscall reports the exec of a program with a 32-bit address space (once per exec, not per call); a 64-bit program issuing int 0x80 itself is not reported, though its connects and sendmsgs are (sock_connect, sock_sendmsg)";

pub fn is_compat_program(name: &str) -> bool {
    name == PROGRAM
}

pub fn hooks_for(kind: EventType) -> Option<Vec<(&'static str, String)>> {
    (kind == EventType::CompatSyscall).then(|| vec![("compat", "sched_process_exec".to_string())])
}

/// Give the program its BTF offset, load and attach it; record the hook in `cov`. Never fatal.
pub fn attach(ebpf: &mut Ebpf, btf: &Btf, cov: &mut Coverage) {
    let r: Result<(), String> = (|| {
        let off = btf
            .offset("mm_struct.task_size")
            .map_err(|e| format!("mm_struct.task_size not in BTF: {e}"))?;
        let map = ebpf
            .map_mut(MAP_CONF)
            .ok_or("COMPAT_CONF map missing from the object")?;
        let mut conf: Array<_, u32> = Array::try_from(map).map_err(|e| e.to_string())?;
        conf.set(0, &off, 0).map_err(|e| format!("writing COMPAT_CONF: {e}"))?;
        let prog = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| format!("program {PROGRAM} missing from the object"))?;
        let tp: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
        tp.load().map_err(|e| format!("load: {}", super::cgroup::chain(&e)))?;
        tp.attach("sched", "sched_process_exec")
            .map_err(|e| format!("attach: {}", super::cgroup::chain(&e)))?;
        Ok(())
    })();
    match r {
        Ok(()) => cov.attached.push(HOOK.to_string()),
        Err(e) => {
            tracing::warn!(hook = HOOK, error = %e, "The 32-bit exec detector did not attach; compat_syscall is not covered.");
            cov.failed.insert(HOOK.to_string(), e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_its_hook() {
        assert_eq!(
            hooks_for(EventType::CompatSyscall)
                .unwrap()
                .iter()
                .map(|(c, n)| format!("{c}:{n}"))
                .collect::<Vec<_>>(),
            vec![HOOK.to_string()]
        );
        assert!(hooks_for(EventType::SockConnect).is_none());
        assert!(is_compat_program("compat_exec"));
    }
}
