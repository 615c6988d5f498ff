//! Process lifecycle from the scheduler tracepoints: exec (after the new image is in place),
//! fork/clone (in the parent) and exit.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{EventType, STR_MASK, exec_args, flags, slot};

use crate::{
    PENDING,
    emit::{Writer, filtered},
    off,
    task::{self, rk},
};

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x10000;

fn pending_kind(tid: u32) -> Option<(EventType, [u64; 6])> {
    let p = unsafe { PENDING.get(&tid) }?;
    EventType::from_id(p.kind).map(|k| (k, p.args))
}

#[repr(C)]
struct StdioCtx {
    task: u64,
    kinds: u64,
}

/// Classify fd `index` (0..3) into `kinds`. A bpf_loop callback so that the verifier checks the
/// classification once instead of once per combination of three fds.
#[inline(never)]
extern "C" fn stdio_step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let c = unsafe { &mut *(ctx as *mut StdioCtx) };
    let k = task::file_kind(task::fd_file(c.task, (index & 3) as i64)) as u64;
    c.kinds |= k << ((index & 3) * 8);
    0
}

/// sched:sched_process_exec(filename, pid, old_pid), kernel >= 3.4. Fires in the new image,
/// so mm->exe_file, argv and the credentials are the new ones.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let kind = match pending_kind(tid) {
        Some((k @ (EventType::Execve | EventType::Execveat), _)) => k,
        _ => EventType::Execve,
    };
    if filtered(kind) {
        return 0;
    }
    let Some(mut w) = Writer::new() else { return 0 };
    task::fill_header(w.header(), kind as u16, 0);
    let t = task::current_task();
    let mm: u64 = rk(t + off!(task_mm));
    let exe: u64 = rk(mm + off!(mm_exe_file));
    if exe != 0 && w.kernel_path(slot::EXE, exe + off!(file_f_path), t) {
        unsafe { (*w.payload()).flags |= flags::KPATH_OK };
    }
    let exe_inode: u64 = if exe != 0 {
        rk(exe + off!(file_f_inode))
    } else {
        0
    };
    if task::on_overlay_upper(exe_inode) {
        unsafe { (*w.payload()).flags |= flags::EXE_UPPER };
    }
    let (ctime, mtime) = task::inode_times_ns(exe_inode);
    unsafe {
        (*w.payload()).args[exec_args::EXE_CTIME_NS] = ctime;
        (*w.payload()).args[exec_args::EXE_MTIME_NS] = mtime;
    }
    let arg_start: u64 = rk(mm + off!(mm_arg_start));
    let arg_end: u64 = rk(mm + off!(mm_arg_end));
    let argv_len = arg_end.saturating_sub(arg_start);
    // The environment follows argv (the exec just laid both out): read them in one go, so the
    // decoder can keep the variables that change what code runs (LD_PRELOAD ...). A layout
    // that is not back to back (never at exec) gets argv alone.
    let env_start: u64 = rk(mm + off!(mm_env_start));
    let env_end: u64 = rk(mm + off!(mm_env_end));
    let env_len = if env_start == arg_end { env_end.saturating_sub(env_start) } else { 0 };
    w.user_bytes(slot::ARGV, arg_start, argv_len + env_len);
    if argv_len > STR_MASK as u64 {
        unsafe { (*w.payload()).flags |= flags::ARGS_TRUNCATED };
    }
    let fs: u64 = rk(t + off!(task_fs));
    if fs != 0 {
        w.kernel_path(slot::CWD, fs + off!(fs_pwd), t);
    }
    // __data_loc char[] filename at offset 8: low 16 bits offset, high 16 bits length.
    let loc: u32 = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
    let (at, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    if len > 1 {
        let src = unsafe { (ctx.as_ptr() as *const u8).add(at) };
        w.kernel_bytes(slot::FILENAME, src, len - 1);
    }
    let mut sc = StdioCtx { task: t, kinds: 0 };
    unsafe {
        generated::bpf_loop(
            3,
            stdio_step as *const () as usize as *mut core::ffi::c_void,
            (&raw mut sc).cast(),
            0,
        );
    }
    let stdio = sc.kinds;
    unsafe {
        (*w.payload()).aux[0] = task::tty_nr(t);
        (*w.payload()).aux[1] = stdio;
        (*w.payload()).aux[2] = argv_len;
        (*w.payload()).aux[3] = env_len;
    }
    w.submit(kind);
    0
}

/// sched:sched_process_fork(parent_comm, parent_pid, child_comm, child_pid), runs in the
/// parent; the kind comes from the syscall the parent entered (clone/clone3/fork/vfork).
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let (kind, args) = match pending_kind(tid) {
        Some((
            k @ (EventType::Clone | EventType::Clone3 | EventType::Fork | EventType::Vfork),
            a,
        )) => (k, a),
        _ => (EventType::Clone, [0; 6]),
    };
    if filtered(kind) {
        return 0;
    }
    let child: i32 = unsafe { ctx.read_at::<i32>(off!(tp_fork_child_pid) as usize) }.unwrap_or(0);
    let clone_flags = match kind {
        EventType::Clone => args[0],
        // struct clone_args starts with the u64 flags.
        EventType::Clone3 => unsafe { bpf_probe_read_user(args[0] as *const u64) }.unwrap_or(0),
        EventType::Vfork => CLONE_VM | CLONE_VFORK,
        _ => 0,
    };
    let Some(w) = Writer::new() else { return 0 };
    task::fill_header(w.header(), kind as u16, child as i64);
    let child_tgid = if clone_flags & CLONE_THREAD != 0 {
        pid_tgid >> 32
    } else {
        child as u64
    };
    unsafe {
        (*w.payload()).args = args;
        (*w.payload()).aux[0] = child as u64;
        (*w.payload()).aux[1] = clone_flags;
        (*w.payload()).aux[2] = child_tgid;
    }
    w.submit(kind);
    0
}

/// Report every thread's exit (Falco's procexit is per thread), not only the process' last.
/// Off because user space is not ready for it: the process table (monitor/src/proctable.rs)
/// takes any procexit for the end of its process and drops the entry, so a Go runtime's or a
/// thread pool's thread exits would strip ancestry and exepath from the process' later events
/// (the live rules test then raises alerts on benign work). Turn on once the table removes
/// entries only on `args.group_dead == 1`.
const REPORT_THREAD_EXITS: bool = false;

/// sched:sched_process_exit(comm, pid, prio[, group_dead]), kernel >= 2.6.32 (group_dead
/// only on recent kernels; 6.18 has it). A procexit when a process ends: at the exit of its
/// last thread, which is not always the leader (a leader that called pthread_exit waits for
/// the others as a zombie), so the header names that thread (tid) and the process (tgid), and
/// ret is `task->exit_code` as wait(2) sees it (the group's status for exit_group). GROUP_DEAD
/// is set on it; thread exits (see `REPORT_THREAD_EXITS`) would come without. Without the
/// group_dead field (older kernels) the leader's exit stands for the process'.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if filtered(EventType::ProcExit) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let group_dead = match off!(tp_exit_group_dead) {
        0 => (pid_tgid >> 32) as u32 == pid_tgid as u32,
        at => unsafe { ctx.read_at::<u8>(at as usize) }.unwrap_or(0) != 0,
    };
    if !group_dead && !REPORT_THREAD_EXITS {
        return 0;
    }
    let t = task::current_task();
    let code: i32 = rk(t + off!(task_exit_code));
    let Some(w) = Writer::new() else { return 0 };
    task::fill_header(w.header(), EventType::ProcExit as u16, code as i64);
    unsafe {
        (*w.payload()).aux[0] = code as u32 as u64;
        if group_dead {
            (*w.payload()).flags |= flags::GROUP_DEAD;
        }
    }
    w.submit(EventType::ProcExit);
    0
}

const IORING_OP_OPENAT: u8 = 18;
const IORING_OP_OPENAT2: u8 = 28;
const IORING_OP_RENAMEAT: u8 = 35;
const IORING_OP_UNLINKAT: u8 = 36;

/// io_uring:io_uring_submit_req(ctx, req, user_data, opcode, flags, sq_thread, op_str), kernel
/// >= 5.5 (op_str >= 6.1). Submissions through a ring never pass the syscall tracepoints; this
/// reports each one with its opcode, in the submitting task (the SQPOLL thread belongs to the
/// ring owner's thread group).
#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    if off!(tp_uring_opcode) == 0 || filtered(EventType::IoUringSubmit) {
        return 0;
    }
    let Some(mut w) = Writer::new() else { return 0 };
    task::fill_header(w.header(), EventType::IoUringSubmit as u16, 0);
    let opcode: u8 = unsafe { ctx.read_at::<u8>(off!(tp_uring_opcode) as usize) }.unwrap_or(0);
    let req_flags: u64 = unsafe { ctx.read_at::<u64>(off!(tp_uring_flags) as usize) }.unwrap_or(0);
    unsafe {
        (*w.payload()).aux[0] = opcode as u64;
        (*w.payload()).aux[1] = req_flags;
    }
    if off!(tp_uring_op_str) != 0 {
        let loc: u32 = unsafe { ctx.read_at::<u32>(off!(tp_uring_op_str) as usize) }.unwrap_or(0);
        let (at, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
        if len > 1 {
            let src = unsafe { (ctx.as_ptr() as *const u8).add(at) };
            w.kernel_bytes(slot::OP, src, len - 1);
        }
    }
    // The submit tracepoint follows the request's prep, which copied the paths into the
    // kernel (getname): report those copies, the dirfd and the flags, so the file rules see
    // opens, removals and renames made through a ring. The operation itself runs later, maybe
    // in a worker. The request's op struct lives in io_kiocb.cmd.
    if off!(tp_uring_req) == 0 {
        w.submit(EventType::IoUringSubmit);
        return 0;
    }
    let req: u64 = unsafe { ctx.read_at::<u64>(off!(tp_uring_req) as usize) }.unwrap_or(0);
    let cmd = req + off!(kiocb_cmd);
    let t = task::current_task();
    let (dfd, path, path2, op_flags, mode) = match opcode {
        IORING_OP_OPENAT | IORING_OP_OPENAT2 if off!(uring_open_filename) != 0 => {
            // struct open_how { __u64 flags; __u64 mode; __u64 resolve; }
            let how: [u64; 2] = rk(cmd + off!(uring_open_how));
            (rk::<i32>(cmd + off!(uring_open_dfd)), rk::<u64>(cmd + off!(uring_open_filename)), 0, how[0], how[1])
        }
        IORING_OP_UNLINKAT if off!(uring_unlink_filename) != 0 => (
            rk::<i32>(cmd + off!(uring_unlink_dfd)),
            rk::<u64>(cmd + off!(uring_unlink_filename)),
            0,
            rk::<i32>(cmd + off!(uring_unlink_flags)) as u32 as u64,
            0,
        ),
        IORING_OP_RENAMEAT if off!(uring_rename_oldpath) != 0 => (
            rk::<i32>(cmd + off!(uring_rename_old_dfd)),
            rk::<u64>(cmd + off!(uring_rename_oldpath)),
            rk::<u64>(cmd + off!(uring_rename_newpath)),
            rk::<i32>(cmd + off!(uring_rename_flags)) as u32 as u64,
            0,
        ),
        _ => (0, 0, 0, 0, 0),
    };
    if path != 0 {
        unsafe {
            (*w.payload()).args[0] = dfd as i64 as u64;
            (*w.payload()).aux[2] = op_flags;
            (*w.payload()).aux[3] = mode;
        }
        // Strings go out in slot order: USER1, USER2, then the PREFIX a relative USER1 needs.
        w.kernel_str(slot::USER1, rk(path + off!(filename_name)));
        let relative = w.first_byte(slot::USER1) != b'/';
        if path2 != 0 {
            w.kernel_str(slot::USER2, rk(path2 + off!(filename_name)));
        }
        if relative {
            crate::syscalls::prefix(&mut w, t, dfd as i64);
        }
    }
    w.submit(EventType::IoUringSubmit);
    0
}
