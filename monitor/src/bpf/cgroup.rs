//! Attach the cgroup sock_addr programs (monitor-ebpf/src/sockaddr.rs) to the cgroup2 root.
//!
//! At the root they run for every socket on the host, containers included, and see the
//! destination the kernel is about to use whatever the entry path (io_uring, 32-bit compat).
//! Multi-attach (see `attach_mode`) so that we never replace or block another agent's programs
//! there (Cilium, systemd's IP accounting); the programs always allow. The links live in the programs and go
//! away with the `Ebpf` (no pinning): a crashed daemon leaves nothing attached.

use std::path::Path;

use aya::Ebpf;
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use monitor_common::EventType;

use super::Coverage;

/// Program name in the object, and the hook it attaches to as coverage names it.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("sock_connect4", "cgroup:connect4"),
    ("sock_connect6", "cgroup:connect6"),
    ("sock_sendmsg4", "cgroup:sendmsg4"),
    ("sock_sendmsg6", "cgroup:sendmsg6"),
];

/// True for programs this module attaches (the tracepoint loop skips them).
pub fn is_cgroup_program(name: &str) -> bool {
    PROGRAMS.iter().any(|(p, _)| *p == name)
}

/// The hooks behind a sock_addr kind, as (category, name) like `hooks_for`; None for others.
pub fn hooks_for(kind: EventType) -> Option<Vec<(&'static str, String)>> {
    match kind {
        EventType::SockConnect => Some(vec![("cgroup", "connect4".into()), ("cgroup", "connect6".into())]),
        EventType::SockSendmsg => Some(vec![("cgroup", "sendmsg4".into()), ("cgroup", "sendmsg6".into())]),
        _ => None,
    }
}

/// Load and attach every sock_addr program to the cgroup2 root; record each hook in
/// `cov.attached` or, with the reason, in `cov.failed`. Never fatal: without them the
/// sock_* kinds are reported uncovered.
pub fn attach(ebpf: &mut Ebpf, cov: &mut Coverage) {
    let root = crate::container::cgroup::find_cgroup2_mount(Path::new("/proc/self/mountinfo")).ok();
    attach_at(ebpf, cov, root.as_deref());
}

fn attach_at(ebpf: &mut Ebpf, cov: &mut Coverage, root: Option<&Path>) {
    let dir = match root {
        None => Err("no cgroup2 mount in /proc/self/mountinfo".to_string()),
        Some(r) => std::fs::File::open(r).map_err(|e| format!("opening {}: {e}", r.display())),
    };
    for (prog_name, hook) in PROGRAMS {
        let r: Result<(), String> = (|| {
            let dir = dir.as_ref().map_err(Clone::clone)?;
            let prog = ebpf
                .program_mut(prog_name)
                .ok_or_else(|| format!("program {prog_name} missing from the object"))?;
            let p: &mut CgroupSockAddr = prog.try_into().map_err(|e| format!("{e:#}"))?;
            p.load().map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach(dir, attach_mode())
                .map_err(|e| format!("attach: {}", chain(&e)))?;
            Ok(())
        })();
        match r {
            Ok(()) => cov.attached.push((*hook).to_string()),
            Err(e) => {
                tracing::warn!(hook = %hook, error = %e, "A cgroup sock_addr program did not attach; its events are not covered.");
                cov.failed.insert((*hook).to_string(), e);
            }
        }
    }
}

/// From 5.7 aya attaches with BPF_LINK_CREATE, whose cgroup links always coexist with other
/// programs (multi-attach) and which rejects any attach flag with EINVAL; before that it uses
/// BPF_PROG_ATTACH, where only ALLOW_MULTI keeps us from replacing another agent's program.
fn attach_mode() -> CgroupAttachMode {
    use aya::util::KernelVersion;
    // The same test aya makes (an unreadable version counts as old there too).
    if KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 7, 0)) {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    }
}

/// An error with its sources (aya's Display leaves out the errno).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attach point comes from the one mountinfo parser (container::cgroup).
    #[test]
    fn finds_the_cgroup2_mount_in_hybrid_and_pure_layouts() {
        use std::path::PathBuf;

        use crate::container::cgroup::parse_cgroup2_mount as cgroup2_mount;
        let hybrid = "25 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let pure = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("garbage\n\n - \n"), None);
        let spaced = "30 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/mnt/my cg")));
    }

    #[test]
    fn every_program_has_a_hook_named_for_its_kind() {
        let mut named: Vec<String> = [EventType::SockConnect, EventType::SockSendmsg]
            .iter()
            .flat_map(|k| hooks_for(*k).expect("sock kind"))
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        named.sort();
        let mut progs: Vec<String> = PROGRAMS.iter().map(|(_, h)| h.to_string()).collect();
        progs.sort();
        assert_eq!(named, progs);
        assert!(hooks_for(EventType::Connect).is_none());
        assert!(is_cgroup_program("sock_sendmsg6"));
        assert!(!is_cgroup_program("sys_enter_connect"));
    }
}
