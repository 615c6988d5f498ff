//! Path of a (vfsmount, dentry) pair as the task sees it from its own root: the walk d_path
//! does, written backwards into PATHBUF from its middle. Bounded: at most MAX_COMPONENTS names
//! (and mount crossings); a longer path comes out cut at the top with PATH_TRUNCATED.

use aya_ebpf::helpers::generated;

use crate::{PATHBUF, PATHBUF_HALF, WALK, off, task::rk};

const MAX_COMPONENTS: u32 = 64;
/// Names are at most NAME_MAX (255) bytes.
const NAME_MASK: u32 = 0xff;
const POS_MASK: usize = PATHBUF_HALF - 1;

pub struct Walked {
    /// Start of the path in PATHBUF (the path ends at PATHBUF_HALF).
    pub start: usize,
    pub len: usize,
    pub truncated: bool,
}

/// State of one walk, shared with `walk_step`. In a map, not on the stack: the verifier tracks
/// stack values precisely, so a position kept there differs on every pass through the callback
/// and verification never converges; map values are opaque scalars to it.
#[repr(C)]
pub struct WalkCtx {
    vfsmnt: u64,
    dentry: u64,
    mnt: u64,
    /// Root dentry of the current mount, read once per mount rather than once per name.
    mnt_root: u64,
    root_mnt: u64,
    root_dentry: u64,
    pos: u64,
    truncated: u64,
}

/// `dentry.d_parent` followed by `dentry.d_name` (a qstr: hash, len, name pointer), as every
/// kernel since 2.6 lays them out: one read per component instead of three. Each helper call
/// costs ~15 ns here, and they dominate the walk.
#[repr(C)]
#[derive(Clone, Copy)]
struct DentryHead {
    parent: u64,
    hash: u32,
    len: u32,
    name: u64,
}

/// True when this kernel's offsets match `DentryHead` (checked against BTF-derived constants,
/// so the verifier drops the untaken branch).
#[inline(always)]
fn dentry_head_packed() -> bool {
    off!(dentry_d_name) == off!(dentry_d_parent) + 8 && off!(qstr_len) == 4 && off!(qstr_name) == 8
}

#[inline(always)]
fn dentry_head(dentry: u64) -> DentryHead {
    if dentry_head_packed() {
        return rk(dentry + off!(dentry_d_parent));
    }
    DentryHead {
        parent: rk(dentry + off!(dentry_d_parent)),
        hash: 0,
        len: rk(dentry + off!(dentry_d_name) + off!(qstr_len)),
        name: rk(dentry + off!(dentry_d_name) + off!(qstr_name)),
    }
}

/// A `struct path` (vfsmount, dentry) at `addr`, in one read when the layout allows.
#[inline(always)]
fn read_path(addr: u64) -> (u64, u64) {
    if off!(path_dentry) == off!(path_mnt) + 8 {
        let p: [u64; 2] = rk(addr + off!(path_mnt));
        return (p[0], p[1]);
    }
    (rk(addr + off!(path_mnt)), rk(addr + off!(path_dentry)))
}

/// One step of the walk. A bpf_loop callback rather than an inline loop: the verifier checks
/// the callback once, where an unrolled walk with three outcomes per step (name, mount
/// crossing, stop) explodes into millions of states.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = WALK.get_ptr_mut(0) else {
        return 1;
    };
    let c = unsafe { &mut *c };
    let Some(buf) = PATHBUF.get_ptr_mut(0) else {
        return 1;
    };
    let base = unsafe { (*buf).bytes.as_mut_ptr() };
    if c.dentry == c.root_dentry && c.vfsmnt == c.root_mnt {
        c.truncated = 0;
        return 1;
    }
    if c.dentry == c.mnt_root {
        let mnt_parent: u64 = rk(c.mnt + off!(mount_mnt_parent));
        if mnt_parent == c.mnt || mnt_parent == 0 {
            // The global root: the task's root is elsewhere (or we are it).
            c.truncated = 0;
            return 1;
        }
        c.dentry = rk(c.mnt + off!(mount_mnt_mountpoint));
        c.mnt = mnt_parent;
        c.vfsmnt = mnt_parent + off!(mount_mnt);
        c.mnt_root = rk(c.vfsmnt + off!(vfsmount_mnt_root));
        return 0;
    }
    let head = dentry_head(c.dentry);
    let (parent, name) = (head.parent, head.name);
    let len = (head.len & NAME_MASK) as u64;
    // "/" is the name of an anonymous root (d_alloc_anon), as nsfs files have.
    if len == 0 || (len == 1 && rk::<u8>(name) == b'/') {
        // Pseudo filesystems (nsfs, pipefs, sockfs) name their files through d_dname, not
        // d_name: nothing to add; the fd kind says what it is.
        c.truncated = 0;
        return 1;
    }
    let pos = c.pos & (POS_MASK as u64 | PATHBUF_HALF as u64);
    if pos < len + 1 {
        return 1;
    }
    let pos = pos - len;
    unsafe {
        generated::bpf_probe_read_kernel(
            base.add(pos as usize & POS_MASK).cast(),
            (len as u32) & NAME_MASK,
            name as *const _,
        );
    }
    let pos = pos - 1;
    unsafe { *base.add(pos as usize & POS_MASK) = b'/' };
    c.pos = pos;
    if parent == c.dentry || parent == 0 {
        // A root of an internal filesystem (pipe, socket, memfd): its name is the path.
        c.truncated = 0;
        return 1;
    }
    c.dentry = parent;
    0
}

/// Walk from `(vfsmnt, dentry)` up to `(root_mnt, root_dentry)` or the global root.
#[inline(always)]
pub fn walk(vfsmnt: u64, dentry: u64, root_mnt: u64, root_dentry: u64) -> Option<Walked> {
    if dentry == 0 || vfsmnt == 0 {
        return None;
    }
    let c = WALK.get_ptr_mut(0)?;
    let c = unsafe { &mut *c };
    c.vfsmnt = vfsmnt;
    c.dentry = dentry;
    c.mnt = vfsmnt - off!(mount_mnt);
    c.mnt_root = rk(vfsmnt + off!(vfsmount_mnt_root));
    c.root_mnt = root_mnt;
    c.root_dentry = root_dentry;
    c.pos = PATHBUF_HALF as u64;
    c.truncated = 1;
    unsafe {
        generated::bpf_loop(
            MAX_COMPONENTS,
            walk_step as *const () as usize as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let buf = PATHBUF.get_ptr_mut(0)?;
    let base = unsafe { (*buf).bytes.as_mut_ptr() };
    let mut pos = (c.pos as usize) & (POS_MASK | PATHBUF_HALF);
    if pos == PATHBUF_HALF || pos == 0 {
        pos = PATHBUF_HALF - 1;
        unsafe { *base.add(pos & POS_MASK) = b'/' };
    }
    let pos = pos & POS_MASK;
    Some(Walked {
        start: pos,
        len: PATHBUF_HALF - pos,
        truncated: c.truncated != 0,
    })
}

/// Walk a `struct path *` (address of the embedded struct) from the task's root.
#[inline(always)]
pub fn walk_path(path: u64, task: u64) -> Option<Walked> {
    let (mnt, dentry) = read_path(path);
    let fs: u64 = rk(task + off!(task_fs));
    let (root_mnt, root_dentry) = if fs == 0 { (0, 0) } else { read_path(fs + off!(fs_root)) };
    walk(mnt, dentry, root_mnt, root_dentry)
}

pub fn pathbuf_ptr(start: usize) -> *const u8 {
    match PATHBUF.get_ptr(0) {
        Some(b) => unsafe { (*b).bytes.as_ptr().add(start & POS_MASK) },
        None => core::ptr::null(),
    }
}
