//! Process table: what we know about each live process (exe path, argv, cwd, parent), seeded
//! from procfs at start and kept current by exec/fork/exit events. It fills
//! `process.ancestors` (parent first) for every event, and exepath/exe/args/cwd for events
//! that are not execs (those carry their own). Bounded: beyond `capacity` entries the least
//! recently touched tenth is evicted (`monitor_proctable_evictions_total`).
//!
//! The ancestor chain is shared, not rebuilt: each entry caches its last chain as an
//! `Arc<[Ancestor]>` together with the (pid, version) of every link it was built from. Every
//! change an ancestor can show (exec, fork-insert, exit, eviction, reparenting) gives that
//! entry a new version, so the next event re-walks the links (hash lookups, no allocation),
//! sees the mismatch and rebuilds; otherwise it takes a reference to the cached chain. The
//! chain therefore always equals what a fresh walk would give, while a burst of events from one
//! process (an open storm) costs one refcount increment instead of cloning every ancestor's
//! strings into every event.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use prometheus::{IntCounter, IntGauge, register_int_counter, register_int_gauge};

use crate::decode::escape_bytes;
use crate::event::{Ancestor, Event, EventType, Text};

static EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "monitor_proctable_evictions_total",
        "Process-table entries evicted because the table was full"
    )
    .expect("metric registers once")
});
static ENTRIES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "monitor_proctable_entries",
        "Processes in the process table"
    )
    .expect("metric registers once")
});

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub comm: Text,
    pub exe: Text,
    pub exepath: Text,
    pub args: Arc<[String]>,
    /// See `Process::env` and `Process::env_truncated`.
    pub env: Option<Arc<[String]>>,
    pub env_truncated: bool,
    pub cwd: Text,
    /// See `Process::is_container_runtime`.
    pub is_container_runtime: bool,
    /// Id in its own pid namespace (kept for its children's `pvpid`), 0 until seen.
    pub vpid: u32,
    /// Session id (host numbering), 0 until seen: finds the session's eldest known member
    /// when its leader is gone.
    pub sid: u32,
    /// Executable inode times at exec (see `Process::exe_ino_ctime`), 0 when unknown.
    pub exe_ino_ctime: u64,
    pub exe_ino_mtime: u64,
    /// Last touch, for eviction.
    seq: u64,
    /// Changes whenever a field an ancestor chain shows changes (see the module doc).
    version: u64,
    /// This process' last ancestor chain and what it was built from.
    chain: Option<CachedChain>,
}

#[derive(Clone, Debug, PartialEq)]
struct CachedChain {
    ancestors: Arc<[Ancestor]>,
    /// (pid, version) of each link in walk order; version 0 = the pid was not in the table.
    links: Vec<(u32, u64)>,
}

/// Executables of container runtimes and their helpers, by file name, plus runc's re-exec of
/// itself from a sealed memfd (runc >= 1.0 runs as `/memfd:runc_cloned:/proc/self/exe`).
const RUNTIME_BINARIES: &[&str] = &[
    "runc",
    "crun",
    "youki",
    "runsc",
    "conmon",
    "containerd-shim",
    "containerd-shim-runc-v1",
    "containerd-shim-runc-v2",
    "docker-init",
];

/// Whether `exepath` (kernel-resolved) is a container runtime binary.
pub fn is_runtime_binary(exepath: &str) -> bool {
    if exepath.starts_with("/memfd:runc_cloned:") {
        return true;
    }
    let name = exepath.rsplit('/').next().unwrap_or("");
    RUNTIME_BINARIES.contains(&name)
}

/// Pid keys hash with FxHash (a multiply) instead of SipHash: every event looks up its process
/// and each ancestor link; pids are assigned by the kernel, so there is no key an attacker
/// could choose to collide them beyond what pid reuse already allows.
type PidMap<V> = HashMap<u32, V, rustc_hash::FxBuildHasher>;

pub struct ProcTable {
    map: PidMap<ProcEntry>,
    capacity: usize,
    depth: usize,
    seq: u64,
    /// Source of entry versions (never 0, which marks an absent link).
    version: u64,
    /// The host's mount namespace inode: runtime binaries count only when exec'd there.
    host_mntns: u64,
}

pub const DEFAULT_CAPACITY: usize = 65536;
pub const DEFAULT_DEPTH: usize = 8;

impl ProcTable {
    pub fn new(capacity: usize, depth: usize) -> ProcTable {
        ProcTable {
            map: PidMap::default(),
            capacity: capacity.max(16),
            depth,
            seq: 0,
            version: 0,
            host_mntns: 0,
        }
    }

    /// The host's mount namespace (inode number); see `Process::is_container_runtime`.
    pub fn set_host_mntns(&mut self, mntns: u64) {
        self.host_mntns = mntns;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.map.get(&pid)
    }

    /// Seed from `<proc>/<pid>/{stat,exe,cmdline,cwd}`; unreadable entries are skipped.
    pub fn seed_from_procfs(&mut self, proc_root: &Path) {
        let Ok(dir) = std::fs::read_dir(proc_root) else {
            return;
        };
        for d in dir.flatten() {
            let Some(pid) = d.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(mut e) = read_proc_entry(proc_root, pid) {
                e.is_container_runtime = is_runtime_binary(&e.exepath)
                    && self.host_mntns != 0
                    && mntns_of(proc_root, pid) == Some(self.host_mntns);
                self.insert(e);
            }
        }
    }

    pub fn insert(&mut self, mut e: ProcEntry) {
        if !self.map.contains_key(&e.pid) && self.map.len() >= self.capacity {
            self.evict();
        }
        self.seq += 1;
        e.seq = self.seq;
        self.version += 1;
        e.version = self.version;
        // A forked child starts from a copy of its parent: the parent's chain is not its own.
        e.chain = None;
        self.map.insert(e.pid, e);
        ENTRIES.set(self.map.len() as i64);
    }

    fn evict(&mut self) {
        let n = (self.capacity / 10).max(1);
        let mut seqs: Vec<(u64, u32)> = self.map.values().map(|e| (e.seq, e.pid)).collect();
        seqs.sort_unstable();
        for (_, pid) in seqs.into_iter().take(n) {
            self.map.remove(&pid);
            EVICTIONS.inc();
        }
    }

    /// Update from an event, then fill its process fields from the table.
    pub fn observe(&mut self, ev: &mut Event) {
        let pid = ev.process.pid;
        match ev.kind {
            EventType::Execve | EventType::Execveat if ev.ret == 0 => {
                // exec keeps the cwd; an event that could not read it inherits the known one.
                if ev.process.cwd.is_empty()
                    && let Some(old) = self.map.get(&pid)
                {
                    ev.process.cwd = old.cwd.clone();
                }
                self.insert(ProcEntry {
                    pid,
                    ppid: ev.process.ppid,
                    comm: ev.process.comm.clone(),
                    exe: ev.process.exe.clone(),
                    exepath: ev.process.exepath.clone(),
                    args: ev.process.args.clone(),
                    env: ev.process.env.clone(),
                    env_truncated: ev.process.env_truncated,
                    cwd: ev.process.cwd.clone(),
                    vpid: ev.process.vpid,
                    sid: ev.process.sid,
                    exe_ino_ctime: ev.process.exe_ino_ctime,
                    exe_ino_mtime: ev.process.exe_ino_mtime,
                    // runc 1.1 re-executes a private copy of itself through an fd
                    // (execveat AT_EMPTY_PATH on an unlinked file: exepath "/"): a runtime
                    // process doing that on the host stays the runtime.
                    is_container_runtime: ev.process.mntns == self.host_mntns
                        && (is_runtime_binary(&ev.process.exepath)
                            || (ev.kind == EventType::Execveat
                                && self.map.get(&pid).is_some_and(|e| e.is_container_runtime))),
                    ..ProcEntry::default()
                });
            }
            EventType::Clone | EventType::Clone3 | EventType::Fork | EventType::Vfork
                if ev.ret > 0 =>
            {
                let child = match ev.args.get("child_pid") {
                    Some(crate::event::Arg::Int(v)) => *v as u32,
                    _ => ev.ret as u32,
                };
                if child != pid && !self.map.contains_key(&child) {
                    let mut e = self.map.get(&pid).cloned().unwrap_or_else(|| ProcEntry {
                        comm: ev.process.comm.clone(),
                        ..ProcEntry::default()
                    });
                    e.pid = child;
                    e.ppid = pid;
                    // The child's own events tell its vpid.
                    e.vpid = 0;
                    self.insert(e);
                }
            }
            _ => {}
        }
        self.fill(ev);
        if ev.kind == EventType::ProcExit {
            self.map.remove(&pid);
            ENTRIES.set(self.map.len() as i64);
        }
    }

    /// Fill exepath/exe/args/cwd (non-exec events) and the ancestor chain.
    pub fn fill(&mut self, ev: &mut Event) {
        let pid = ev.process.pid;
        // A failed exec leaves the old image: fill it like any other event.
        let is_exec = matches!(ev.kind, EventType::Execve | EventType::Execveat) && ev.ret == 0;
        if let Some(e) = self.map.get_mut(&pid) {
            self.seq += 1;
            e.seq = self.seq;
            ev.process.is_container_runtime = e.is_container_runtime;
            // The kernel's real_parent is current: a process whose parent died was reparented.
            if ev.process.ppid != 0 && e.ppid != ev.process.ppid {
                e.ppid = ev.process.ppid;
                self.version += 1;
                e.version = self.version;
            }
            if ev.process.vpid != 0 {
                e.vpid = ev.process.vpid;
            }
            if ev.process.sid != 0 {
                e.sid = ev.process.sid;
            }
            if !is_exec {
                let p = &mut ev.process;
                if p.exe_ino_ctime == 0 && p.exe_ino_mtime == 0 {
                    p.exe_ino_ctime = e.exe_ino_ctime;
                    p.exe_ino_mtime = e.exe_ino_mtime;
                }
                if p.exepath.is_empty() {
                    p.exepath.clone_from(&e.exepath);
                }
                if p.exe.is_empty() {
                    p.exe.clone_from(&e.exe);
                    p.args.clone_from(&e.args);
                }
                if p.env.is_none() {
                    p.env.clone_from(&e.env);
                    p.env_truncated = e.env_truncated;
                }
                if p.cwd.is_empty() {
                    p.cwd.clone_from(&e.cwd);
                }
            }
        }
        let ppid = ev.process.ppid;
        ev.process.pvpid = self
            .map
            .get(&ppid)
            .map(|e| e.vpid)
            .filter(|&v| v != 0);
        let sid = ev.process.sid;
        if sid != 0 && ev.process.sname.is_empty() {
            if sid == pid {
                ev.process.sname.clone_from(&ev.process.comm);
            } else if let Some(leader) = self.map.get(&sid) {
                ev.process.sname.clone_from(&leader.comm);
            } else if let Some(eldest) = self.eldest_in_session(ppid, sid) {
                // As Falco: with the leader gone, the eldest ancestor in the same session.
                ev.process.sname = eldest;
            }
        }
        if let Some(c) = self.map.get(&pid).and_then(|e| e.chain.as_ref())
            && self.links_match(pid, ppid, &c.links)
        {
            ev.process.ancestors = c.ancestors.clone();
            return;
        }
        let chain = self.build_chain(pid, ppid);
        ev.process.ancestors = chain.ancestors.clone();
        if let Some(e) = self.map.get_mut(&pid) {
            e.chain = Some(chain);
        }
    }

    /// comm of the last of `ppid`'s ancestors (itself included) that are in session `sid`,
    /// walking up while they are; None when `ppid` is not in it.
    fn eldest_in_session(&self, ppid: u32, sid: u32) -> Option<Text> {
        let mut found = None;
        let mut cur = ppid;
        for _ in 0..self.depth {
            match self.map.get(&cur) {
                Some(e) if e.sid == sid && cur != 0 => {
                    found = Some(e);
                    cur = e.ppid;
                }
                _ => break,
            }
        }
        found.map(|e| e.comm.clone())
    }

    /// The next link of a walk from `pid`: None when the walk stops before it.
    #[inline]
    fn next_link(&self, pid: u32, cur: u32, links: &[(u32, u64)]) -> Option<(u32, u64)> {
        if links.len() >= self.depth
            || cur == 0
            || cur == pid
            || links.iter().any(|&(p, _)| p == cur)
            || links.last().is_some_and(|&(_, v)| v == 0)
        {
            return None;
        }
        Some((cur, self.map.get(&cur).map_or(0, |e| e.version)))
    }

    /// Whether a fresh walk from `ppid` would visit exactly `links` (same pids, same versions).
    fn links_match(&self, pid: u32, ppid: u32, links: &[(u32, u64)]) -> bool {
        let mut cur = ppid;
        for (i, &want) in links.iter().enumerate() {
            if self.next_link(pid, cur, &links[..i]) != Some(want) {
                return false;
            }
            cur = self.map.get(&want.0).map_or(0, |e| e.ppid);
        }
        self.next_link(pid, cur, links).is_none()
    }

    /// Walk the parents from `ppid`, parent first; an unknown pid ends the chain as a pid-only
    /// entry.
    fn build_chain(&self, pid: u32, ppid: u32) -> CachedChain {
        let mut out = Vec::new();
        let mut links = Vec::new();
        let mut cur = ppid;
        while let Some(link) = self.next_link(pid, cur, &links) {
            links.push(link);
            match self.map.get(&cur) {
                Some(e) => {
                    out.push(Ancestor {
                        pid: e.pid,
                        comm: e.comm.to_string(),
                        exe: bounded_exe(&e.exe),
                        exepath: e.exepath.to_string(),
                        args: bounded_args(&e.args),
                    });
                    cur = e.ppid;
                }
                None => out.push(Ancestor {
                    pid: cur,
                    ..Ancestor::default()
                }),
            }
        }
        CachedChain {
            ancestors: out.into(),
            links,
        }
    }
}

/// Bytes of argv kept per ancestor: every event carries its ancestors, and one long command
/// line (an init passing its environment as JSON, say) would otherwise dominate every record.
pub const ANCESTOR_ARGS_BYTES: usize = 512;

fn bounded_args(args: &[String]) -> Vec<String> {
    let mut left = ANCESTOR_ARGS_BYTES;
    let mut out = Vec::new();
    for a in args {
        if left == 0 {
            break;
        }
        if a.len() <= left {
            out.push(a.clone());
            left -= a.len();
        } else {
            let mut cut = left;
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(format!("{}...", &a[..cut]));
            left = 0;
        }
    }
    out
}

/// Bytes of argv[0] kept per ancestor, for the same reason as [`ANCESTOR_ARGS_BYTES`]: the
/// process chooses it. A cut one ends in `...`: a suffix test on it (`proc.pexe endswith
/// java`, which the stable rules use to grant exceptions) never passes.
pub const ANCESTOR_EXE_BYTES: usize = 256;

fn bounded_exe(exe: &str) -> String {
    if exe.len() <= ANCESTOR_EXE_BYTES {
        return exe.to_string();
    }
    let mut cut = ANCESTOR_EXE_BYTES;
    while !exe.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &exe[..cut])
}

/// Read one process from procfs.
pub fn read_proc_entry(proc_root: &Path, pid: u32) -> Option<ProcEntry> {
    let base = proc_root.join(pid.to_string());
    let stat = std::fs::read(base.join("stat")).ok()?;
    // comm is in parentheses and may itself contain ') ': split at the last one.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let open = stat.iter().position(|&b| b == b'(')?;
    let comm = escape_bytes(stat.get(open + 1..close)?, 16);
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
    let sid: u32 = rest.split_whitespace().nth(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let exepath = std::fs::read_link(base.join("exe"))
        .map(|p| escape_bytes(p.as_os_str().as_encoded_bytes(), 4096))
        .unwrap_or_default();
    let cwd = std::fs::read_link(base.join("cwd"))
        .map(|p| escape_bytes(p.as_os_str().as_encoded_bytes(), 4096))
        .unwrap_or_default();
    let cmdline = std::fs::read(base.join("cmdline")).unwrap_or_default();
    let cmdline = cmdline.strip_suffix(&[0]).unwrap_or(&cmdline);
    let mut parts = cmdline.split(|&b| b == 0).map(|s| escape_bytes(s, 4096));
    let exe = if cmdline.is_empty() {
        String::new()
    } else {
        parts.next().unwrap_or_default()
    };
    let args = parts.take(crate::decode::MAX_ARGS).collect();
    // The environment as exec'd (procfs shows the same memory the kernel side reads, whole);
    // unreadable (a kernel thread, a process gone mid-read) is None.
    let env = std::fs::read(base.join("environ"))
        .ok()
        .map(|b| crate::event::kept_env(&b, true));
    // Following the exe link stats the executable itself.
    let (exe_ino_ctime, exe_ino_mtime) = std::fs::metadata(base.join("exe"))
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (epoch_ns(m.ctime(), m.ctime_nsec()), epoch_ns(m.mtime(), m.mtime_nsec()))
        })
        .unwrap_or((0, 0));
    Some(ProcEntry {
        vpid: ns_pid(&base).unwrap_or(0),
        sid,
        exe_ino_ctime,
        exe_ino_mtime,
        pid,
        ppid,
        comm: comm.into(),
        exe: exe.into(),
        exepath: exepath.into(),
        args,
        env,
        cwd: cwd.into(),
        ..ProcEntry::default()
    })
}

fn epoch_ns(sec: i64, nsec: i64) -> u64 {
    if sec <= 0 {
        return 0;
    }
    (sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.clamp(0, 999_999_999) as u64)
}

/// The pid in the process' own pid namespace: the last `NSpid:` column of `status`.
fn ns_pid(base: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(base.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Inode number of a process' mount namespace, from its `ns/mnt` link (`mnt:[4026531840]`).
fn mntns_of(proc_root: &Path, pid: u32) -> Option<u64> {
    crate::nsfs::ns_inode(proc_root, &pid.to_string(), "mnt").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Arg, Process};

    fn ev(kind: EventType, pid: u32, ppid: u32, ret: i64) -> Event {
        Event {
            kind,
            ret,
            process: Process {
                pid,
                ppid,
                ..Process::default()
            },
            ..Event::default()
        }
    }

    #[test]
    fn container_runtime_flag_follows_exec_namespace_and_forks() {
        const HOST: u64 = 4026531840;
        const CONTAINER: u64 = 4026532999;
        let mut t = ProcTable::new(100, 8);
        t.set_host_mntns(HOST);
        let exec = |t: &mut ProcTable, pid: u32, exepath: &str, mntns: u64| {
            let mut e = ev(EventType::Execve, pid, 1, 0);
            e.process.exepath = exepath.into();
            e.process.mntns = mntns;
            t.observe(&mut e);
            e.process.is_container_runtime
        };
        // `runc init`, exec'd on the host: the runtime.
        assert!(exec(&mut t, 20, "/usr/sbin/runc", HOST));
        // Its clone (runc:[2:INIT]) setting up the container is still the runtime...
        let mut f = ev(EventType::Clone, 20, 1, 21);
        f.args.insert("child_pid".into(), Arg::Int(21));
        t.observe(&mut f);
        let mut setns = ev(EventType::Setns, 21, 20, 0);
        setns.process.mntns = CONTAINER;
        t.observe(&mut setns);
        assert!(setns.process.is_container_runtime);
        // ...until it execs the workload inside the container.
        assert!(!exec(&mut t, 21, "/bin/sh", CONTAINER));
        let mut mount = ev(EventType::Mount, 21, 20, 0);
        t.observe(&mut mount);
        assert!(!mount.process.is_container_runtime);
        // A binary named runc exec'd inside a container is not the runtime.
        assert!(!exec(&mut t, 30, "/usr/sbin/runc", CONTAINER));
        assert!(!exec(&mut t, 31, "/memfd:runc_cloned:/proc/self/exe (deleted)", CONTAINER));
        assert!(exec(&mut t, 32, "/memfd:runc_cloned:/proc/self/exe (deleted)", HOST));
        assert!(!exec(&mut t, 33, "/usr/bin/bash", HOST));
        // runc's re-exec of its private copy through an fd keeps the mark; the same from a
        // process that is not the runtime does not grant it.
        let mut reexec = ev(EventType::Execveat, 32, 1, 0);
        reexec.process.exepath = "/".into();
        reexec.process.mntns = HOST;
        t.observe(&mut reexec);
        assert!(reexec.process.is_container_runtime);
        let mut other = ev(EventType::Execveat, 33, 1, 0);
        other.process.exepath = "/".into();
        other.process.mntns = HOST;
        t.observe(&mut other);
        assert!(!other.process.is_container_runtime);
    }

    #[test]
    fn fork_exec_exit_chain() {
        let mut t = ProcTable::new(100, 8);
        t.insert(ProcEntry {
            pid: 1,
            ppid: 0,
            comm: "init".into(),
            exepath: "/sbin/init".into(),
            ..Default::default()
        });
        t.insert(ProcEntry {
            pid: 10,
            ppid: 1,
            comm: "bash".into(),
            exepath: "/bin/bash".into(),
            cwd: "/root".into(),
            ..Default::default()
        });
        // bash forks 11
        let mut f = ev(EventType::Clone, 10, 1, 11);
        f.args.insert("child_pid".into(), Arg::Int(11));
        t.observe(&mut f);
        assert_eq!(
            f.process
                .ancestors
                .iter()
                .map(|a| a.pid)
                .collect::<Vec<_>>(),
            vec![1]
        );
        // 11 execs ls
        let mut e = ev(EventType::Execve, 11, 10, 0);
        e.process.exepath = "/bin/ls".into();
        e.process.exe = "ls".into();
        e.process.args = vec!["-l".into()].into();
        e.process.comm = "ls".into();
        t.observe(&mut e);
        assert_eq!(e.process.ancestors.len(), 2);
        assert_eq!(e.process.ancestors[0].exepath, "/bin/bash");
        assert_eq!(e.process.ancestors[1].comm, "init");
        // a later open by 11 gets exepath/args/cwd from the table
        let mut o = ev(EventType::Openat, 11, 10, 3);
        t.observe(&mut o);
        assert_eq!(o.process.exepath, "/bin/ls");
        assert_eq!(*o.process.args, ["-l"]);
        assert_eq!(o.process.cwd, "/root");
        // exit removes it
        let mut x = ev(EventType::ProcExit, 11, 10, 0);
        t.observe(&mut x);
        assert!(t.get(11).is_none());
    }

    /// A table 1 (init) <- 10 (bash) <- 11 (sh) <- 12 (worker).
    fn chain_table() -> ProcTable {
        let mut t = ProcTable::new(100, 8);
        for (pid, ppid, comm) in [(1, 0, "init"), (10, 1, "bash"), (11, 10, "sh"), (12, 11, "worker")] {
            t.insert(ProcEntry {
                pid,
                ppid,
                comm: comm.into(),
                exepath: format!("/bin/{comm}").into(),
                ..Default::default()
            });
        }
        t
    }

    fn chain_of(t: &mut ProcTable, pid: u32, ppid: u32) -> Arc<[Ancestor]> {
        let mut o = ev(EventType::Openat, pid, ppid, 3);
        t.observe(&mut o);
        o.process.ancestors
    }

    fn comms(a: &[Ancestor]) -> Vec<(u32, &str)> {
        a.iter().map(|a| (a.pid, a.comm.as_str())).collect()
    }

    #[test]
    fn events_of_one_process_share_its_chain() {
        let mut t = chain_table();
        let a = chain_of(&mut t, 12, 11);
        let b = chain_of(&mut t, 12, 11);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(comms(&a), vec![(11, "sh"), (10, "bash"), (1, "init")]);
        // Another process' events, or an unrelated exec, do not disturb it.
        chain_of(&mut t, 11, 10);
        let mut x = ev(EventType::Execve, 500, 1, 0);
        x.process.comm = "other".into();
        t.observe(&mut x);
        assert!(Arc::ptr_eq(&a, &chain_of(&mut t, 12, 11)));
    }

    #[test]
    fn cached_chain_follows_ancestor_exec_exit_and_reparenting() {
        let mut t = chain_table();
        let first = chain_of(&mut t, 12, 11);
        // The grandparent execs: the grandchild's next event shows the new image.
        let mut x = ev(EventType::Execve, 10, 1, 0);
        x.process.comm = "python3".into();
        x.process.exepath = "/usr/bin/python3".into();
        t.observe(&mut x);
        let c = chain_of(&mut t, 12, 11);
        assert!(!Arc::ptr_eq(&first, &c));
        assert_eq!(comms(&c), vec![(11, "sh"), (10, "python3"), (1, "init")]);
        assert_eq!(c[1].exepath, "/usr/bin/python3");
        // The grandparent exits: the chain ends at its pid, as for any unknown pid.
        let mut x = ev(EventType::ProcExit, 10, 1, 0);
        t.observe(&mut x);
        assert_eq!(comms(&chain_of(&mut t, 12, 11)), vec![(11, "sh"), (10, "")]);
        // The parent is reparented to init (the kernel's ppid on its own event).
        chain_of(&mut t, 11, 1);
        assert_eq!(comms(&chain_of(&mut t, 12, 11)), vec![(11, "sh"), (1, "init")]);
        // The worker itself is reparented: its own ppid changes the chain.
        let mut x = ev(EventType::ProcExit, 11, 1, 0);
        t.observe(&mut x);
        assert_eq!(comms(&chain_of(&mut t, 12, 1)), vec![(1, "init")]);
        // A pid that was unknown (the chain's pid-only end) appearing fills it in.
        let mut t = chain_table();
        t.map.remove(&1);
        assert_eq!(comms(&chain_of(&mut t, 12, 11)), vec![(11, "sh"), (10, "bash"), (1, "")]);
        t.insert(ProcEntry {
            pid: 1,
            comm: "systemd".into(),
            ..Default::default()
        });
        assert_eq!(
            comms(&chain_of(&mut t, 12, 11)),
            vec![(11, "sh"), (10, "bash"), (1, "systemd")]
        );
    }

    #[test]
    fn forked_child_builds_its_own_chain() {
        let mut t = chain_table();
        chain_of(&mut t, 12, 11);
        let mut f = ev(EventType::Clone, 12, 11, 13);
        f.args.insert("child_pid".into(), Arg::Int(13));
        t.observe(&mut f);
        assert_eq!(
            comms(&chain_of(&mut t, 13, 12)),
            vec![(12, "worker"), (11, "sh"), (10, "bash"), (1, "init")]
        );
    }

    #[test]
    fn unknown_parent_and_loops_are_bounded() {
        let mut t = ProcTable::new(100, 3);
        t.insert(ProcEntry {
            pid: 5,
            ppid: 6,
            ..Default::default()
        });
        t.insert(ProcEntry {
            pid: 6,
            ppid: 5,
            ..Default::default()
        });
        let mut e = ev(EventType::Openat, 7, 5, 0);
        t.fill(&mut e);
        assert_eq!(
            e.process
                .ancestors
                .iter()
                .map(|a| a.pid)
                .collect::<Vec<_>>(),
            vec![5, 6]
        );
        let mut e = ev(EventType::Openat, 8, 999, 0);
        t.fill(&mut e);
        assert_eq!(e.process.ancestors.len(), 1);
        assert_eq!(e.process.ancestors[0].pid, 999);
    }

    #[test]
    fn ancestors_carry_argv0_from_exec_fork_and_procfs() {
        let mut t = ProcTable::new(100, 8);
        t.insert(ProcEntry {
            pid: 1,
            comm: "init".into(),
            exe: "/sbin/init".into(),
            ..Default::default()
        });
        // 10 execs java through a launcher that sets argv[0] to a full path.
        let mut x = ev(EventType::Execve, 10, 1, 0);
        x.process.comm = "java".into();
        x.process.exe = "/usr/lib/jvm/bin/java".into();
        x.process.exepath = "/usr/lib/jvm/java-17/bin/java".into();
        t.observe(&mut x);
        // Its fork inherits the image, then execs a shell: parent argv[0] is java's, and the
        // grandparent's is init's.
        let mut f = ev(EventType::Clone, 10, 1, 11);
        f.args.insert("child_pid".into(), Arg::Int(11));
        t.observe(&mut f);
        let mut sh = ev(EventType::Execve, 11, 10, 0);
        sh.process.comm = "sh".into();
        sh.process.exe = "sh".into();
        t.observe(&mut sh);
        let exes: Vec<&str> = sh.process.ancestors.iter().map(|a| a.exe.as_str()).collect();
        assert_eq!(exes, ["/usr/lib/jvm/bin/java", "/sbin/init"]);
        // The clone is java's own event: its parent is init.
        assert_eq!(f.process.ancestors[0].exe, "/sbin/init");
        // An ancestor's later exec changes the argv[0] its descendants see.
        let mut x = ev(EventType::Execve, 10, 1, 0);
        x.process.exe = "python3".into();
        t.observe(&mut x);
        assert_eq!(chain_of(&mut t, 11, 10)[0].exe, "python3");
        // An unknown parent has no argv[0].
        assert_eq!(chain_of(&mut t, 12, 999)[0].exe, "");
        // procfs seeding reads argv[0] from cmdline.
        let mut t = ProcTable::new(100_000, 8);
        t.seed_from_procfs(Path::new("/proc"));
        let me = t.get(std::process::id()).expect("own process seeded");
        let argv0 = std::env::args().next().unwrap_or_default();
        assert_eq!(me.exe, argv0);
    }

    #[test]
    fn ancestor_argv0_is_bounded_and_a_cut_one_fails_suffix_tests() {
        let mut t = ProcTable::new(100, 8);
        let long = format!("{}java", "x".repeat(ANCESTOR_EXE_BYTES));
        t.insert(ProcEntry {
            pid: 10,
            exe: long.into(),
            ..Default::default()
        });
        let a = chain_of(&mut t, 11, 10);
        assert_eq!(a[0].exe.len(), ANCESTOR_EXE_BYTES + 3);
        assert!(a[0].exe.ends_with("x..."));
        assert_eq!(bounded_exe("java"), "java");
        // A multi-byte character at the bound is not split.
        let wide = "é".repeat(ANCESTOR_EXE_BYTES);
        let cut = bounded_exe(&wide);
        assert!(cut.ends_with("é...") && cut.len() <= ANCESTOR_EXE_BYTES + 3);
    }

    #[test]
    fn ancestor_args_are_bounded() {
        let long = "é".repeat(400);
        let b = bounded_args(&["a".into(), long.clone(), "z".into()]);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], "a");
        assert!(b[1].ends_with("...") && b[1].len() <= ANCESTOR_ARGS_BYTES + 3);
        assert_eq!(bounded_args(&["x".into(), "y".into()]), vec!["x", "y"]);
    }

    #[test]
    fn reparenting_follows_the_kernel() {
        let mut t = ProcTable::new(100, 8);
        t.insert(ProcEntry {
            pid: 1,
            comm: "init".into(),
            ..Default::default()
        });
        t.insert(ProcEntry {
            pid: 20,
            ppid: 10,
            comm: "orphan".into(),
            ..Default::default()
        });
        t.insert(ProcEntry {
            pid: 21,
            ppid: 20,
            ..Default::default()
        });
        // 20's parent died; its next event says ppid 1.
        let mut e = ev(EventType::Openat, 20, 1, 0);
        t.fill(&mut e);
        let mut e = ev(EventType::Openat, 21, 20, 0);
        t.fill(&mut e);
        assert_eq!(
            e.process
                .ancestors
                .iter()
                .map(|a| a.pid)
                .collect::<Vec<_>>(),
            vec![20, 1]
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let mut t = ProcTable::new(20, 8);
        for pid in 1..100 {
            t.insert(ProcEntry {
                pid,
                ..Default::default()
            });
        }
        assert!(t.len() <= 20);
        assert!(t.get(99).is_some());
        assert!(t.get(1).is_none());
    }

    #[test]
    fn seeds_from_this_procfs() {
        let mut t = ProcTable::new(100_000, 8);
        t.seed_from_procfs(Path::new("/proc"));
        let me = t.get(std::process::id()).expect("own process seeded");
        assert!(!me.exepath.is_empty());
        assert!(me.ppid > 0);
        // The test runs in some pid namespace: NSpid's last column is a positive pid there.
        assert!(me.vpid > 0);
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(me.exe_ino_mtime, epoch_ns(exe.mtime(), exe.mtime_nsec()));
        assert!(me.exe_ino_ctime > 0);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let session: u32 = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(3).unwrap().parse().unwrap();
        assert_eq!(me.sid, session);
    }

    #[test]
    fn session_leader_name_parent_vpid_and_exe_times() {
        let mut t = ProcTable::new(100, 8);
        // A shell (host pid 100, pid 1 in its container) leads session 100 and execs ls.
        let mut sh = ev(EventType::Execve, 100, 50, 0);
        sh.process.comm = "sh".into();
        sh.process.vpid = 1;
        sh.process.sid = 100;
        sh.process.exe_ino_ctime = 7_000;
        sh.process.exe_ino_mtime = 6_000;
        t.observe(&mut sh);
        assert_eq!(sh.process.sname, "sh", "a session leader names itself");
        assert_eq!(sh.process.pvpid, None, "parent 50 is unknown");
        let mut fork = ev(EventType::Clone, 100, 50, 101);
        fork.process.vpid = 1;
        fork.process.sid = 100;
        t.observe(&mut fork);
        let child = t.get(101).unwrap();
        assert_eq!(child.vpid, 0, "the child's vpid is not its parent's");
        assert_eq!((child.exe_ino_ctime, child.exe_ino_mtime), (7_000, 6_000));
        // The child's open: times inherited through fork, pvpid = the shell's vpid.
        let mut open = ev(EventType::Openat, 101, 100, 3);
        open.process.comm = "sh".into();
        open.process.vpid = 2;
        open.process.sid = 100;
        t.observe(&mut open);
        assert_eq!(open.process.pvpid, Some(1));
        assert_eq!(open.process.sname, "sh");
        assert_eq!((open.process.exe_ino_ctime, open.process.exe_ino_mtime), (7_000, 6_000));
        assert_eq!(t.get(101).unwrap().vpid, 2);
        // It execs ls: new times, same session, comm of the leader not its own.
        let mut ls = ev(EventType::Execve, 101, 100, 0);
        ls.process.comm = "ls".into();
        ls.process.vpid = 2;
        ls.process.sid = 100;
        ls.process.exe_ino_ctime = 9_000;
        ls.process.exe_ino_mtime = 8_000;
        t.observe(&mut ls);
        assert_eq!(ls.process.sname, "sh");
        assert_eq!((ls.process.exe_ino_ctime, ls.process.exe_ino_mtime), (9_000, 8_000));
        // A grandchild of ls sees ls's vpid as its pvpid.
        let mut gc = ev(EventType::Openat, 102, 101, 3);
        gc.process.sid = 100;
        t.observe(&mut gc);
        assert_eq!(gc.process.pvpid, Some(2));
        // A session whose leader and ancestors are unknown has no name (never a guess).
        let mut stray = ev(EventType::Openat, 300, 1, 3);
        stray.process.sid = 299;
        t.observe(&mut stray);
        assert_eq!(stray.process.sname, "");
        // The leader exits: the eldest ancestor still in the session names it (ls here, the
        // shell's child; the shell's parent 50 is not in the session).
        let mut bye = ev(EventType::ProcExit, 100, 50, 0);
        bye.process.sid = 100;
        t.observe(&mut bye);
        let mut late = ev(EventType::Openat, 102, 101, 3);
        late.process.sid = 100;
        t.observe(&mut late);
        assert_eq!(late.process.sname, "ls");
    }
}
