//! What a chmod *by name* acted on: a directory or a file.
//!
//! `chmod(path)` and `fchmodat(dirfd, path)` carry the caller's path and no inode: no hook on
//! this kernel sits after path resolution (no kprobe, fentry or LSM; see ENVIRONMENT.md), so
//! the decoder calls every target a file. Trees get their directories chmod'ed too (copying
//! modes: `shutil.copytree`, `cp -a`, `install -d -m`), and rules tell the two apart by
//! `fd.typechar`. The reader types the target in user space, as the event reaches it, from
//! the best evidence at hand, in this order:
//!
//! 1. what the path names *now*, through `/proc/<pid>/root<path>`: a directory or not;
//! 2. when the path is gone (a temporary tree removed within milliseconds, before the reader
//!    got there): the event stream itself proved a directory exists there, because it saw a
//!    successful `mkdir`/`mkdirat` of that path in that scope and nothing since that may have
//!    removed or replaced it ([`DirMemory`]);
//! 3. otherwise the decoder's `file` stays.
//!
//! Both only ever turn `file` into `directory`, so both are built to err towards `file`: a
//! wrong `file` costs a false alert, a wrong `directory` hides one.
//!
//! **Scope.** A path means something only in its mount namespace; entries are keyed by the
//! mount namespace inode *and* the cgroup2 id of the process that made them, because nsfs
//! inode numbers are recycled as soon as a namespace dies while cgroup2 ids are 64-bit and
//! allocated cyclically (a new container never inherits a dead one's entries). A process that
//! joined the namespace from another cgroup (`nsenter`) simply does not share the entries.
//!
//! **Forgetting.** Only events that *succeeded* count. An entry goes on `rmdir`,
//! `unlinkat(AT_REMOVEDIR)` or `rename` of its path or of a parent (the whole prefix is
//! dropped; a renamed directory keeps its entry under the new name, its children do not), and
//! when the stream shows a non-directory at the path (`unlink`, `open(O_CREAT)`, `link`,
//! `symlink`). Paths are compared as strings (lexically normalised by the decoder), so a
//! removal through another name (a symlinked parent) would not match. That is why the whole
//! scope is forgotten whenever a directory may have gone under a name we cannot match: an
//! `rmdir` of a path we never saw created, a `rename` whose source we did not know and whose
//! target is a directory now (or already gone), a `RENAME_EXCHANGE`, any `mount`, `umount`,
//! `chroot` or `pivot_root` (they change what names mean), and an `io_uring` submission of a
//! path operation (unlinkat, renameat, openat, mkdirat, linkat, symlinkat: the ring bypasses
//! the syscall tracepoints, so the path is never seen). A scope where a 32-bit program ran
//! (`compat_syscall`: its syscalls bypass the tracepoints for good) is forgotten and never
//! remembered again. The capture enables [`FEED`] in the kernel whenever chmod is captured,
//! so these events are seen even when the rules do not ask for them.
//!
//! **Bounds.** At most `capacity` entries (oldest creation evicted first, counted) and paths
//! of at most [`MAX_PATH`] bytes; escaped paths (non-printable bytes, backslashes) are never
//! remembered. Forgetting errs the safe way: a forgotten directory is typed `file`.
//!
//! **Evasion and residual risk.** To have a file typed `directory`, an attacker needs a
//! remembered directory path, must remove that directory in a way the stream does not show,
//! put a file there, chmod it, and delete the file again before the reader stats it: step 1
//! wins whenever the path still exists, and the reader looks about 10 ms after the kernel
//! wrote the event. Removals the stream does show, under any name, forget the directory or the
//! whole scope (above). What is left unseen: an io_uring path operation whose submit event was
//! lost (a full ring: counted in `monitor_capture_kernel_dropped_events_total`) or not
//! captured; a kernel whose io_uring tracepoint is missing; a path walk cut at 64 components
//! (the event does not say so, and a deeper tree could then alias a shallow path). And what is
//! won is narrow: no `File made executable` alert for a file that is already gone under that
//! name; running it needs another name (a rename or link, which the stream shows) or an exec
//! the drift rules judge on its own.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use crate::decode::counter_vec;
use crate::event::{Event, EventType, FdType, Source};

/// Longest path remembered. Directory paths in real trees are far shorter; a longer one is
/// simply not remembered (its chmod stays `file`), which bounds memory to
/// `capacity * MAX_PATH` twice over (the path is held by both indexes).
pub const MAX_PATH: usize = 1024;
/// Default number of directories remembered: a large build's tree, at a few MB worst case.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Scopes where a 32-bit program ran, remembered to never remember there again. Beyond this
/// many the memory turns itself off for good (an attacker can only buy false alerts with it).
const TAINT_CAPACITY: usize = 4096;

/// The kinds the memory must see to stay sound; enabled in the kernel when chmod is captured.
pub const FEED: &[EventType] = &[
    EventType::Mkdir,
    EventType::Mkdirat,
    EventType::Rmdir,
    EventType::Unlink,
    EventType::Unlinkat,
    EventType::Rename,
    EventType::Renameat,
    EventType::Renameat2,
    EventType::Mount,
    EventType::Umount2,
    EventType::Chroot,
    EventType::Pivotroot,
    EventType::IoUringSubmit,
    EventType::CompatSyscall,
];

const AT_REMOVEDIR: i64 = 0x200;
const RENAME_EXCHANGE: i64 = 2;
const O_CREAT: i64 = 0o100;
/// io_uring opcodes that act on a path (include/uapi/linux/io_uring.h): OPENAT 18,
/// OPENAT2 28, RENAMEAT 35, UNLINKAT 36, MKDIRAT 37, SYMLINKAT 38, LINKAT 39.
const URING_PATH_OPS: &[i64] = &[18, 28, 35, 36, 37, 38, 39];

/// Labels: evidence in {stat, stream}.
static TYPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_capture_chmod_dir_typed_total",
        "Chmods by name whose target was typed a directory, by evidence: stat of the path, or the stream's own mkdir",
        &["evidence"],
    )
});
/// Labels: reason in {rmdir_unknown, rename_unknown, rename_exchange, mount, io_uring, compat, truncated_path}.
static FORGOTTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "monitor_capture_dir_memory_scopes_forgotten_total",
        "Times every remembered directory of a scope was forgotten because one may have gone unseen, by reason",
        &["reason"],
    )
});
static EVICTED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::register(IntCounter::new(
        "monitor_capture_dir_memory_evicted_total",
        "Remembered directories evicted (oldest first) to stay within the capacity",
    ))
});
static ENTRIES: LazyLock<IntGauge> = LazyLock::new(|| {
    crate::metrics::register(IntGauge::new(
        "monitor_capture_dir_memory_entries",
        "Directories the capture remembers from the stream's own mkdir events",
    ))
});

/// Where a path means one thing: mount namespace inode and cgroup2 id (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub mntns: u64,
    pub cgroup: u64,
}

impl Scope {
    pub fn of(ev: &Event) -> Scope {
        Scope {
            mntns: ev.process.mntns,
            cgroup: ev.cgroup_id,
        }
    }
}

type Key = (Scope, Box<str>);

/// Directories the event stream proved exist, by scope and absolute path; bounded.
#[derive(Debug)]
pub struct DirMemory {
    capacity: usize,
    /// (scope, path) -> creation stamp. Ordered, so that a prefix is one range.
    by_path: BTreeMap<Key, u64>,
    /// Creation stamp -> (scope, path): eviction order, oldest first.
    by_age: BTreeMap<u64, Key>,
    next_stamp: u64,
    tainted: HashSet<Scope>,
    /// Too many tainted scopes: the memory no longer answers (see TAINT_CAPACITY).
    disabled: bool,
}

impl DirMemory {
    pub fn new(capacity: usize) -> DirMemory {
        DirMemory {
            capacity: capacity.max(1),
            by_path: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
            tainted: HashSet::new(),
            disabled: false,
        }
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The reader's hook, for every decoded event in kernel-time order: type a chmod by name
    /// (from what it names now, else from the memory), then learn from the event.
    pub fn complete(&mut self, ev: &mut Event) {
        self.type_chmod_target(ev);
        self.observe(ev);
    }

    /// Whether the stream saw `path` created as a directory in `scope` and nothing since that
    /// may have removed it.
    pub fn remembers(&self, scope: Scope, path: &str) -> bool {
        !self.disabled && !self.tainted.contains(&scope) && self.by_path.contains_key(&(scope, Box::from(path)))
    }

    /// A successful chmod by name of something the decoder called a file: a directory when
    /// the path names one now, or, when the path is gone, when the memory says so.
    pub fn type_chmod_target(&self, ev: &mut Event) {
        if !matches!(ev.kind, EventType::Chmod | EventType::Fchmodat) || ev.ret != 0 {
            return;
        }
        let pid = ev.process.pid;
        let scope = Scope::of(ev);
        let Some(fd) = ev.fd.as_mut() else { return };
        if fd.path_source != Source::User || fd.typ != FdType::File {
            return;
        }
        // Escaped (hostile) paths are not the bytes on disk: leave them.
        let Some(path) = fd.path.as_deref().filter(|p| usable(p)) else {
            return;
        };
        match std::fs::metadata(format!("/proc/{pid}/root{path}")) {
            Ok(m) => {
                if m.is_dir() {
                    fd.typ = FdType::Directory;
                    TYPED.with_label_values(&["stat"]).inc();
                }
            }
            Err(_) => {
                if self.remembers(scope, path) {
                    fd.typ = FdType::Directory;
                    TYPED.with_label_values(&["stream"]).inc();
                }
            }
        }
    }

    /// Learn from one event (see the module doc for what counts).
    pub fn observe(&mut self, ev: &Event) {
        use EventType::*;
        let scope = Scope::of(ev);
        // io_uring and compat events are not syscall results: whatever their ret, they count.
        match ev.kind {
            CompatSyscall => {
                self.forget_scope(scope, "compat");
                if self.tainted.len() < TAINT_CAPACITY || self.tainted.contains(&scope) {
                    self.tainted.insert(scope);
                } else if !self.disabled {
                    tracing::warn!(
                        scopes = TAINT_CAPACITY,
                        "Too many scopes ran 32-bit programs; chmod targets are no longer typed from the event stream."
                    );
                    self.disabled = true;
                    self.clear();
                }
                return;
            }
            IoUringSubmit => {
                if URING_PATH_OPS.contains(&int_arg(ev, "opcode").unwrap_or(-1)) {
                    self.forget_scope(scope, "io_uring");
                }
                return;
            }
            _ if ev.ret < 0 => return,
            Mount | Umount2 | Chroot | Pivotroot => {
                self.forget_scope(scope, "mount");
                return;
            }
            _ => {}
        }
        // Only successful syscalls: a failed one changed nothing.
        if ev.ret != 0 && !matches!(ev.kind, Open | Openat | Openat2 | Creat) {
            return;
        }
        let Some(fd) = ev.fd.as_ref() else { return };
        if fd.path_truncated {
            // Only the path's last components: it could name any directory of that tail.
            self.forget_scope(scope, "truncated_path");
            return;
        }
        let path = fd.path.as_deref();
        let target = fd.target_path.as_deref();
        match ev.kind {
            Mkdir | Mkdirat => {
                if let Some(p) = path.filter(|p| usable(p))
                    && !self.disabled
                    && !self.tainted.contains(&scope)
                {
                    self.remember(scope, p);
                }
            }
            Rmdir => self.removed_dir(scope, path),
            Unlinkat if int_arg(ev, "flags").is_some_and(|f| f & AT_REMOVEDIR != 0) => self.removed_dir(scope, path),
            Unlink | Unlinkat => self.not_a_dir(scope, path),
            Rename | Renameat | Renameat2 => {
                if ev.kind == Renameat2 && int_arg(ev, "flags").is_some_and(|f| f & RENAME_EXCHANGE != 0) {
                    self.forget_scope(scope, "rename_exchange");
                    return;
                }
                self.renamed(scope, ev.process.pid, path, target);
            }
            Open | Openat | Openat2 | Creat => {
                if ev.ret >= 0 && int_arg(ev, "flags").is_some_and(|f| f & O_CREAT != 0) {
                    self.not_a_dir(scope, path);
                }
            }
            Link | Linkat | Symlink | Symlinkat => {
                // Which slot holds the new name differs between the two calls; a non-directory
                // now sits at one of them, and forgetting an exact entry is always safe.
                self.not_a_dir(scope, path);
                self.not_a_dir(scope, target);
            }
            _ => {}
        }
    }

    fn removed_dir(&mut self, scope: Scope, path: Option<&str>) {
        match path.filter(|p| usable(p)) {
            Some(p) if self.by_path.contains_key(&(scope, Box::from(p))) => self.forget_prefix(scope, p),
            // Never seen created: maybe another name of a remembered one.
            _ => self.forget_scope(scope, "rmdir_unknown"),
        }
    }

    fn renamed(&mut self, scope: Scope, pid: u32, from: Option<&str>, to: Option<&str>) {
        let (Some(from), Some(to)) = (from.filter(|p| usable(p)), to.filter(|p| usable(p))) else {
            self.forget_scope(scope, "rename_unknown");
            return;
        };
        let was_dir = self.by_path.contains_key(&(scope, Box::from(from)));
        self.forget_prefix(scope, from);
        self.forget_prefix(scope, to);
        if was_dir {
            self.remember(scope, to);
            return;
        }
        // An unknown name moved. If what it moved is a directory (or cannot be looked at any
        // more), it may have been a remembered directory under another name. Nothing to lose
        // when the scope remembers nothing: spare the reader the stat (renames can be many).
        if !self.has_scope(scope) {
            return;
        }
        let now_file = std::fs::metadata(format!("/proc/{pid}/root{to}")).is_ok_and(|m| !m.is_dir());
        if !now_file {
            self.forget_scope(scope, "rename_unknown");
        }
    }

    fn not_a_dir(&mut self, scope: Scope, path: Option<&str>) {
        if let Some(p) = path
            && let Some(stamp) = self.by_path.remove(&(scope, Box::from(p)))
        {
            self.by_age.remove(&stamp);
            ENTRIES.set(self.by_path.len() as i64);
        }
    }

    fn remember(&mut self, scope: Scope, path: &str) {
        let key: Key = (scope, Box::from(path));
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(old) = self.by_path.insert(key.clone(), stamp) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(stamp, key);
        while self.by_path.len() > self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.by_path.remove(&oldest);
            EVICTED.inc();
        }
        ENTRIES.set(self.by_path.len() as i64);
    }

    /// Forget `path` and everything below it.
    fn forget_prefix(&mut self, scope: Scope, path: &str) {
        self.not_a_dir(scope, Some(path));
        let below = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        // Every string starting with `below` sorts contiguously from `below` itself.
        let doomed: Vec<Key> = self
            .by_path
            .range((Bound::Included((scope, Box::from(below.as_str()))), Bound::Unbounded))
            .take_while(|((s, p), _)| *s == scope && p.starts_with(&below))
            .map(|(k, _)| k.clone())
            .collect();
        self.drop_keys(doomed);
    }

    fn has_scope(&self, scope: Scope) -> bool {
        self.by_path
            .range((Bound::Included((scope, Box::from(""))), Bound::Unbounded))
            .next()
            .is_some_and(|((s, _), _)| *s == scope)
    }

    fn forget_scope(&mut self, scope: Scope, reason: &'static str) {
        let doomed: Vec<Key> = self
            .by_path
            .range((Bound::Included((scope, Box::from(""))), Bound::Unbounded))
            .take_while(|((s, _), _)| *s == scope)
            .map(|(k, _)| k.clone())
            .collect();
        if !doomed.is_empty() {
            FORGOTTEN.with_label_values(&[reason]).inc();
        }
        self.drop_keys(doomed);
    }

    fn drop_keys(&mut self, keys: Vec<Key>) {
        if keys.is_empty() {
            return;
        }
        for k in keys {
            if let Some(stamp) = self.by_path.remove(&k) {
                self.by_age.remove(&stamp);
            }
        }
        ENTRIES.set(self.by_path.len() as i64);
    }

    fn clear(&mut self) {
        self.by_path.clear();
        self.by_age.clear();
        ENTRIES.set(0);
    }
}

/// An absolute path whose text is the bytes on disk (the decoder escapes anything else with a
/// backslash) and short enough to keep.
fn usable(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\\') && p.len() <= MAX_PATH
}

fn int_arg(ev: &Event, name: &str) -> Option<i64> {
    use crate::event::Arg;
    match ev.args.get(name)? {
        Arg::Int(v) | Arg::Flags { raw: v, .. } => Some(*v),
        Arg::Str(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::event::{Arg, Fd};

    const NS: u64 = 4026532177;
    const CG: u64 = 9001;
    /// A path no test process can stat: the memory alone decides.
    const GONE: &str = "/monitor-dirs-test-gone";

    fn ev(kind: EventType, ret: i64, path: &str) -> Event {
        let mut e = Event {
            kind,
            ret,
            fd: Some(Fd {
                typ: FdType::File,
                path: Some(path.to_string()),
                raw_path: Some(path.to_string()),
                path_source: Source::User,
                ..Fd::default()
            }),
            cgroup_id: CG,
            ..Event::default()
        };
        e.process.pid = std::process::id();
        e.process.mntns = NS;
        e
    }

    fn with_arg(mut e: Event, name: &'static str, v: i64) -> Event {
        e.args.insert(name.into(), Arg::Int(v));
        e
    }

    fn rename(from: &str, to: &str) -> Event {
        let mut e = ev(EventType::Renameat2, 0, from);
        e.fd.as_mut().unwrap().target_path = Some(to.to_string());
        with_arg(e, "flags", 0)
    }

    /// Feed `events` in order, then return the type the memory gives a chmod of `path`.
    fn typed_after(m: &mut DirMemory, events: Vec<Event>, path: &str) -> FdType {
        for mut e in events {
            m.complete(&mut e);
        }
        let mut chmod = with_arg(ev(EventType::Fchmodat, 0, path), "mode", 0o700);
        m.complete(&mut chmod);
        chmod.fd.unwrap().typ
    }

    fn d(p: &str) -> String {
        format!("{GONE}{p}")
    }

    #[test]
    fn a_chmod_by_name_is_typed_from_what_the_path_names_now() {
        let dir = std::env::temp_dir().join(format!("monitor-chmod-type-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        let m = DirMemory::new(8);
        let chmod = |path: &Path, ret: i64| {
            let mut e = ev(EventType::Fchmodat, ret, &path.to_string_lossy());
            m.type_chmod_target(&mut e);
            e.fd.unwrap().typ
        };
        assert_eq!(chmod(&dir, 0), FdType::Directory);
        assert_eq!(chmod(&file, 0), FdType::File);
        assert_eq!(chmod(&dir, -1), FdType::File, "a failed chmod names no object");
        assert_eq!(
            chmod(&dir.join("gone"), 0),
            FdType::File,
            "a vanished path keeps the decoder's type"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stat_wins_over_the_memory() {
        // The stream saw a directory made at a path that holds a file now (removed unseen):
        // what the path names now decides.
        let dir = std::env::temp_dir().join(format!("monitor-chmod-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("was-a-dir");
        std::fs::write(&file, "x").unwrap();
        let f = file.to_string_lossy().into_owned();
        let mut m = DirMemory::new(8);
        m.remember(Scope { mntns: NS, cgroup: CG }, &f);
        assert_eq!(typed_after(&mut m, vec![], &f), FdType::File);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_cut_at_the_walk_bound_forgets_the_scope() {
        let mut m = DirMemory::new(8);
        m.complete(&mut ev(EventType::Mkdir, 0, &d("/keep")));
        assert_eq!(m.len(), 1);
        // An rmdir whose path is only the tail of a deeper one could have removed anything.
        let mut cut = ev(EventType::Rmdir, 0, &d("/a/b"));
        cut.fd.as_mut().unwrap().path_truncated = true;
        m.complete(&mut cut);
        assert!(m.is_empty());
        assert_eq!(typed_after(&mut m, vec![], &d("/keep")), FdType::File);
    }

    #[test]
    fn a_directory_made_then_chmoded_then_removed_is_a_directory() {
        // shutil.copytree: mkdir, chmod(dir) copying the mode, rmtree; the reader sees the
        // chmod after the tree is gone.
        let mut m = DirMemory::new(8);
        let t = typed_after(
            &mut m,
            vec![with_arg(ev(EventType::Mkdir, 0, &d("/copy")), "mode", 0o777)],
            &d("/copy"),
        );
        assert_eq!(t, FdType::Directory);
        let mut rm = ev(EventType::Rmdir, 0, &d("/copy"));
        m.complete(&mut rm);
        assert!(m.is_empty());
        assert_eq!(typed_after(&mut m, vec![], &d("/copy")), FdType::File);
    }

    #[test]
    fn only_successful_creation_counts_and_removal_forgets() {
        let mut m = DirMemory::new(8);
        assert_eq!(
            typed_after(&mut m, vec![ev(EventType::Mkdir, -17, &d("/x"))], &d("/x")),
            FdType::File,
            "EEXIST"
        );
        let made = || ev(EventType::Mkdirat, 0, &d("/x"));
        assert_eq!(
            typed_after(&mut m, vec![made(), ev(EventType::Rmdir, 0, &d("/x"))], &d("/x")),
            FdType::File
        );
        let rm_at = with_arg(ev(EventType::Unlinkat, 0, &d("/x")), "flags", AT_REMOVEDIR);
        assert_eq!(typed_after(&mut m, vec![made(), rm_at], &d("/x")), FdType::File);
        let failed_rm = ev(EventType::Rmdir, -39, &d("/x"));
        assert_eq!(
            typed_after(&mut m, vec![made(), failed_rm], &d("/x")),
            FdType::Directory,
            "ENOTEMPTY"
        );
        let unlink = with_arg(ev(EventType::Unlinkat, 0, &d("/x")), "flags", 0);
        assert_eq!(
            typed_after(&mut m, vec![unlink], &d("/x")),
            FdType::File,
            "a file was unlinked there"
        );
        let creat = with_arg(ev(EventType::Openat, 3, &d("/x")), "flags", O_CREAT | 1);
        assert_eq!(
            typed_after(&mut m, vec![made(), creat], &d("/x")),
            FdType::File,
            "a file was created there"
        );
    }

    #[test]
    fn removing_or_renaming_a_parent_forgets_the_subtree() {
        let mut m = DirMemory::new(16);
        let made = |p: &str| ev(EventType::Mkdir, 0, &d(p));
        for mut e in [made("/a"), made("/a/b"), made("/a/b/c"), made("/a-copy"), made("/ab")] {
            m.complete(&mut e);
        }
        let mut mv = rename(&d("/a"), &d("/z"));
        m.complete(&mut mv);
        let s = Scope { mntns: NS, cgroup: CG };
        assert!(!m.remembers(s, &d("/a")) && !m.remembers(s, &d("/a/b")) && !m.remembers(s, &d("/a/b/c")));
        assert!(m.remembers(s, &d("/z")), "the renamed directory itself is still one");
        assert!(!m.remembers(s, &d("/z/b")), "its children are not carried over");
        assert!(
            m.remembers(s, &d("/a-copy")) && m.remembers(s, &d("/ab")),
            "siblings sharing a prefix stay"
        );
        // A rename onto a remembered path replaces whatever was there.
        let mut onto = rename(&d("/elsewhere-file"), &d("/ab"));
        m.complete(&mut onto);
        assert!(!m.remembers(s, &d("/ab")));
    }

    #[test]
    fn a_removal_under_a_name_never_seen_forgets_the_scope() {
        let mut m = DirMemory::new(16);
        let s = Scope { mntns: NS, cgroup: CG };
        let made = |p: &str| ev(EventType::Mkdir, 0, &d(p));
        // rmdir through a symlinked parent names no remembered path: it may be one of them.
        assert_eq!(
            typed_after(
                &mut m,
                vec![made("/real/d"), ev(EventType::Rmdir, 0, "/alias/d")],
                &d("/real/d")
            ),
            FdType::File
        );
        // So does a rename of an unknown name whose result is a directory or gone.
        assert_eq!(
            typed_after(
                &mut m,
                vec![made("/real/d"), rename("/alias/d", &d("/moved"))],
                &d("/real/d")
            ),
            FdType::File
        );
        // An exchange, a mount and a ring path operation do too.
        let xchg = with_arg(rename(&d("/p"), &d("/q")), "flags", RENAME_EXCHANGE);
        assert_eq!(
            typed_after(&mut m, vec![made("/real/d"), xchg], &d("/real/d")),
            FdType::File
        );
        assert_eq!(
            typed_after(
                &mut m,
                vec![made("/real/d"), ev(EventType::Mount, 0, "/mnt")],
                &d("/real/d")
            ),
            FdType::File
        );
        let uring = with_arg(ev(EventType::IoUringSubmit, 0, ""), "opcode", 36);
        assert_eq!(
            typed_after(&mut m, vec![made("/real/d"), uring], &d("/real/d")),
            FdType::File
        );
        let uring_read = with_arg(ev(EventType::IoUringSubmit, 0, ""), "opcode", 22);
        assert_eq!(
            typed_after(&mut m, vec![made("/real/d"), uring_read], &d("/real/d")),
            FdType::Directory
        );
        assert!(m.remembers(s, &d("/real/d")));
    }

    #[test]
    fn a_scope_that_ran_a_32_bit_program_is_never_remembered_again() {
        let mut m = DirMemory::new(16);
        let made = || ev(EventType::Mkdir, 0, &d("/d"));
        assert_eq!(
            typed_after(&mut m, vec![made(), ev(EventType::CompatSyscall, 0, "")], &d("/d")),
            FdType::File
        );
        assert_eq!(typed_after(&mut m, vec![made()], &d("/d")), FdType::File);
        assert!(m.is_empty());
    }

    #[test]
    fn mount_namespaces_and_cgroups_do_not_share_entries() {
        let mut m = DirMemory::new(16);
        let mut mk = ev(EventType::Mkdir, 0, &d("/shared-name"));
        m.complete(&mut mk);
        let mut other_ns = with_arg(ev(EventType::Fchmodat, 0, &d("/shared-name")), "mode", 0o700);
        other_ns.process.mntns = NS + 1;
        m.complete(&mut other_ns);
        assert_eq!(other_ns.fd.unwrap().typ, FdType::File);
        let mut other_cg = with_arg(ev(EventType::Chmod, 0, &d("/shared-name")), "mode", 0o700);
        other_cg.cgroup_id = CG + 1;
        m.complete(&mut other_cg);
        assert_eq!(other_cg.fd.unwrap().typ, FdType::File);
        // A removal in another scope does not touch this one.
        let mut rm = ev(EventType::Rmdir, 0, &d("/shared-name"));
        rm.process.mntns = NS + 1;
        m.complete(&mut rm);
        assert_eq!(typed_after(&mut m, vec![], &d("/shared-name")), FdType::Directory);
    }

    #[test]
    fn the_oldest_directory_is_evicted_at_capacity() {
        let mut m = DirMemory::new(3);
        let s = Scope { mntns: NS, cgroup: CG };
        for p in ["/1", "/2", "/3"] {
            m.complete(&mut ev(EventType::Mkdir, 0, &d(p)));
        }
        // Made again: it is now the newest.
        m.complete(&mut ev(EventType::Mkdir, 0, &d("/1")));
        m.complete(&mut ev(EventType::Mkdir, 0, &d("/4")));
        assert_eq!(m.len(), 3);
        assert!(!m.remembers(s, &d("/2")), "the oldest goes first");
        for p in ["/1", "/3", "/4"] {
            assert!(m.remembers(s, &d(p)), "{p}");
        }
    }

    #[test]
    fn escaped_or_long_paths_are_not_remembered() {
        let mut m = DirMemory::new(8);
        m.complete(&mut ev(EventType::Mkdir, 0, &d("/evil\\x0a")));
        m.complete(&mut ev(EventType::Mkdir, 0, &d(&format!("/{}", "a".repeat(MAX_PATH)))));
        m.complete(&mut ev(EventType::Mkdir, 0, "relative"));
        assert!(m.is_empty());
    }
}
