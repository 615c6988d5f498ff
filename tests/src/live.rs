//! Live detection helpers: runc containers shaped for rule triggers (extra capabilities, a
//! writable root, every busybox applet, files placed from the host side), and a table of what
//! fired.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::containers::{
    TempDir, busybox_rootfs, random_id, remove_parent_cgroups, run, runc_init_pid, runc_run_detached,
};

/// The runc state root the daemon watches.
pub const RUNC_ROOT: &str = "/run/runc";

/// How a test container deviates from `runc spec`'s defaults.
#[derive(Default)]
pub struct Shape {
    /// Capabilities added to every set (`CAP_SYS_ADMIN` ...).
    pub extra_caps: Vec<&'static str>,
    /// Paths removed from the spec's `readonlyPaths` (e.g. `/proc/sys`).
    pub writable_paths: Vec<&'static str>,
    /// Read-only bind mounts `(host source, container destination)`.
    pub ro_binds: Vec<(PathBuf, &'static str)>,
    /// Working directory of the container's process and of `exec`.
    pub cwd: Option<&'static str>,
    /// Root filesystem as an overlay (the prepared tree is the lower layer, writes land in an
    /// upper layer), as image-based runtimes mount it: makes drift detectable.
    pub overlay: bool,
    /// Drop `noexec` from /dev/shm (runc's default spec, like Docker, mounts it noexec).
    pub exec_shm: bool,
    /// Device cgroup rules appended to `linux.resources.devices` (`{"allow": true, ...}`).
    pub devices: Vec<serde_json::Value>,
}

pub struct LiveContainer {
    pub id: String,
    pub rootfs: PathBuf,
    /// The overlay mount to undo on drop.
    overlay: Option<PathBuf>,
    dir: TempDir,
}

impl LiveContainer {
    /// Start `sleep 1000` in a busybox bundle with every applet linked, CRI annotations naming
    /// `pod`/`image`, after `prepare` has filled the rootfs from the host side.
    pub fn start(
        pod: &str,
        image: &str,
        shape: &Shape,
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<LiveContainer> {
        let dir = TempDir::new("live")?;
        let bundle = dir.0.join("bundle");
        let rootfs = bundle.join("rootfs");
        let tree = if shape.overlay {
            dir.0.join("lower")
        } else {
            rootfs.clone()
        };
        busybox_rootfs(&tree)?;
        link_all_applets(&tree)?;
        prepare(&tree)?;
        let mut overlay = None;
        if shape.overlay {
            let (upper, work) = (dir.0.join("upper"), dir.0.join("work"));
            for d in [&rootfs, &upper, &work] {
                std::fs::create_dir_all(d)?;
            }
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                tree.display(),
                upper.display(),
                work.display()
            );
            let st = Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&rootfs)
                .status()?;
            if !st.success() {
                bail!("mount overlay rootfs: {st}");
            }
            overlay = Some(rootfs.clone());
        }
        run(Command::new("runc").arg("spec").current_dir(&bundle))?;
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
        let id = random_id();
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!(["/bin/sleep", "1000"]);
        if let Some(cwd) = shape.cwd {
            cfg["process"]["cwd"] = cwd.into();
        }
        cfg["root"]["readonly"] = false.into();
        // busybox first: the host's /usr may be bound in for a compiler.
        cfg["process"]["env"] =
            serde_json::json!(["PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"]);
        if !shape.devices.is_empty() {
            let devs = cfg["linux"]["resources"]["devices"]
                .as_array_mut()
                .context("devices")?;
            devs.extend(shape.devices.iter().cloned());
        }
        cfg["linux"]["cgroupsPath"] = format!("/monitor-test-live/{id}").into();
        for set in ["bounding", "effective", "permitted"] {
            let caps = cfg["process"]["capabilities"][set]
                .as_array_mut()
                .context("caps")?;
            for c in &shape.extra_caps {
                caps.push((*c).into());
            }
        }
        if let Some(ro) = cfg["linux"]["readonlyPaths"].as_array_mut() {
            ro.retain(|p| !shape.writable_paths.iter().any(|w| p == w));
        }
        let mounts = cfg["mounts"].as_array_mut().context("mounts")?;
        if shape.exec_shm {
            for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/shm") {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "noexec");
                }
            }
        }
        for (src, dst) in &shape.ro_binds {
            mounts.push(serde_json::json!({
                "destination": dst, "type": "bind", "source": src,
                "options": ["rbind", "ro", "nosuid", "nodev"],
            }));
        }
        cfg["annotations"] = serde_json::json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.sandbox-namespace": "live",
            "io.kubernetes.cri.sandbox-uid": "6d0c1f4e-0000-4000-8000-00000000live",
            "io.kubernetes.cri.container-name": "main",
            "io.kubernetes.cri.image-name": image,
        });
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
        runc_run_detached(Path::new(RUNC_ROOT), &bundle, &id)?;
        let c = LiveContainer {
            id,
            rootfs,
            overlay,
            dir,
        };
        // A pod sandbox brings loopback up before the workload starts; do it from the host
        // (a host process, so nothing is attributed to the container).
        let pid = c.init_pid()?;
        let st = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ])
            .status()?;
        if !st.success() {
            bail!("lo up in the container's netns: {st}");
        }
        Ok(c)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub fn init_pid(&self) -> Result<u32> {
        runc_init_pid(Path::new(RUNC_ROOT), &self.id)
    }

    /// `runc exec <id> sh -c <script>`, waited for; its exit status is returned, not judged
    /// (an attempt refused with EPERM is still an attempt the rules may see).
    pub fn sh(&self, script: &str) -> Result<std::process::Output> {
        self.exec(&["sh", "-c", script])
    }

    pub fn exec(&self, args: &[&str]) -> Result<std::process::Output> {
        // A bound for a hung command, not a duration the command is expected to take.
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "runc", "--root", RUNC_ROOT, "exec", &self.id])
            .args(args)
            .stdin(Stdio::null());
        cmd.output().context("runc exec")
    }

    /// `runc exec -t` under a host pseudo-terminal (python3's pty module), so the container's
    /// process gets a terminal of its own as `kubectl exec -it` gives it.
    pub fn exec_with_tty(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new("timeout");
        cmd.args([
            "120",
            "python3",
            "-c",
            "import pty, sys; pty.spawn(sys.argv[1:])",
        ])
        .args(["runc", "--root", RUNC_ROOT, "exec", "-t", &self.id])
        .args(args)
        .stdin(Stdio::null());
        cmd.output().context("runc exec -t under a pty")
    }

    pub fn temp_dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for LiveContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["--root", RUNC_ROOT, "kill", &self.id, "KILL"])
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = Command::new("runc")
                .args(["--root", RUNC_ROOT, "delete", "-f", &self.id])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        remove_parent_cgroups("monitor-test-live");
        if let Some(m) = &self.overlay {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// Symlink every applet of the rootfs' busybox into /bin (as a distribution image would).
pub fn link_all_applets(rootfs: &Path) -> Result<()> {
    let out = Command::new(rootfs.join("bin/busybox"))
        .arg("--list")
        .output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet.is_empty() || applet.contains('/') || applet == "busybox" {
            continue;
        }
        let link = rootfs.join("bin").join(applet);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    Ok(())
}

/// A shell function for `sh -c` scripts in a container: `listening PORT_HEX` returns once a
/// TCP socket listens on that port (as /proc/net/tcp{,6} spell it, e.g. `1F90` for 8080), or
/// after 60 s. A background `nc -l` is not listening yet when the next command runs, and a
/// fixed sleep is not enough on a loaded machine.
pub const LISTENING_SH: &str = "listening() { i=0; until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q \":$1 [0-9A-F]*:0000 0A \" || [ $i -ge 600 ]; do i=$((i+1)); sleep 0.1; done; }; ";

/// Write `text` at `rel` below `rootfs`, creating parents.
pub fn put(rootfs: &Path, rel: &str, text: &str) -> Result<()> {
    let p = rootfs.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().context("parent")?)?;
    std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
}

/// One row of the final table.
pub struct Row {
    pub rule: String,
    pub verdict: Verdict,
}

pub enum Verdict {
    Fired(String),
    Missed(String),
    NotFireable(&'static str),
}

pub fn print_table(rows: &[Row]) {
    eprintln!("\n{:<58} | result", "rule");
    eprintln!("{:-<58}-+-------", "");
    for r in rows {
        let v = match &r.verdict {
            Verdict::Fired(how) => format!("fired ({how})"),
            Verdict::Missed(how) => format!("MISSED ({how})"),
            Verdict::NotFireable(why) => format!("not fireable here: {why}"),
        };
        eprintln!("{:<58} | {v}", r.rule);
    }
}

/// Triggers for behaviours busybox has no applet for, compiled `-static` with the host's gcc and
/// placed in a container's rootfs (`rules_live` and `field_coverage` share it).
pub const HELPER_C: &str = r#"/* Triggers for behaviours busybox has no applet for; compiled -static by the tests and run
 * inside a test container.
 * Usage: helper memfd | ptrace | bpf | ids | dupsock PORT | setcap PATH | rawsock
 *              | uring open|unlink PATH | uring rename OLD NEW */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/io_uring.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "memfd")) {
        /* Fileless execution: copy busybox into an anonymous memory file and exec it. */
        int src = open("/bin/busybox", O_RDONLY);
        int mfd = memfd_create("payload", MFD_CLOEXEC);
        if (src < 0 || mfd < 0) { perror("open/memfd_create"); return 1; }
        char buf[65536];
        ssize_t n;
        while ((n = read(src, buf, sizeof buf)) > 0)
            if (write(mfd, buf, n) != n) return 1;
        char *args[] = {"true", NULL};
        fexecve(mfd, args, environ);
        perror("fexecve");
        return 1;
    }
    if (!strcmp(argv[1], "ptrace")) {
        pid_t child = fork();
        if (child == 0) { pause(); _exit(0); }
        usleep(100000);
        long r = ptrace(PTRACE_ATTACH, child, 0, 0);
        if (r == 0) { waitpid(child, NULL, 0); ptrace(PTRACE_DETACH, child, 0, 0); }
        else perror("ptrace");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return r == 0 ? 0 : 1;
    }
    if (!strcmp(argv[1], "bpf")) {
        /* BPF_MAP_CREATE of a one-entry array map. */
        unsigned int attr[32] = {0};
        attr[0] = 2; /* BPF_MAP_TYPE_ARRAY */
        attr[1] = 4; attr[2] = 4; attr[3] = 1;
        long fd = syscall(SYS_bpf, 0, attr, sizeof attr);
        if (fd < 0) perror("bpf");
        return fd < 0 ? 1 : 0;
    }
    if (!strcmp(argv[1], "ids")) {
        /* Every uid-changing call, as root to root: they succeed and change nothing. */
        setresuid(0, 0, 0);
        setreuid(0, 0);
        setfsuid(0);
        setuid(0);
        return 0;
    }
    if (!strcmp(argv[1], "dupsock") && argc > 2) {
        /* A shell-style redirection of a connected socket onto stdout (dup2 of a socket). */
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(atoi(argv[2]));
        sa.sin_addr.s_addr = htonl(0x7f000001);
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) return 1;
        dup2(s, 1);
        dup(s);
        dup3(s, 5, 0);
        return 0;
    }
    if (!strcmp(argv[1], "setcap") && argc > 2) {
        /* What `setcap cap_setuid+ep PATH` writes: a v2 struct vfs_cap_data (little-endian
         * words: magic_etc with the effective bit, then permitted/inheritable low and high). */
        unsigned int cap[5] = {0x02000000u | 1u, 1u << 7 /* CAP_SETUID */, 0, 0, 0};
        if (setxattr(argv[2], "security.capability", cap, sizeof cap, 0) < 0) {
            perror("setxattr");
            return 1;
        }
        return 0;
    }
    if (!strcmp(argv[1], "uring") && argc > 3) {
        /* One IORING_OP_OPENAT (read-only), UNLINKAT or RENAMEAT through a raw ring (no
         * liburing): the file operation runs without its syscall. */
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        int fd = syscall(__NR_io_uring_setup, 4, &p);
        if (fd < 0) { perror("io_uring_setup"); return 1; }
        char *sq = mmap(0, p.sq_off.array + p.sq_entries * sizeof(unsigned),
                        PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
        struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe),
                                         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                                         IORING_OFF_SQES);
        if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
        unsigned tail = *(unsigned *)(sq + p.sq_off.tail);
        unsigned idx = tail & *(unsigned *)(sq + p.sq_off.ring_mask);
        struct io_uring_sqe *e = &sqes[idx];
        memset(e, 0, sizeof *e);
        e->fd = AT_FDCWD;
        e->addr = (unsigned long)argv[3];
        if (!strcmp(argv[2], "open")) {
            e->opcode = IORING_OP_OPENAT;
            e->open_flags = O_RDONLY;
        } else if (!strcmp(argv[2], "unlink")) {
            e->opcode = IORING_OP_UNLINKAT;
        } else if (!strcmp(argv[2], "rename") && argc > 4) {
            e->opcode = IORING_OP_RENAMEAT;
            e->len = (unsigned)AT_FDCWD;
            e->addr2 = (unsigned long)argv[4];
        } else {
            return 2;
        }
        ((unsigned *)(sq + p.sq_off.array))[idx] = idx;
        __atomic_store_n((unsigned *)(sq + p.sq_off.tail), tail + 1, __ATOMIC_RELEASE);
        if (syscall(__NR_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
            perror("io_uring_enter");
            return 1;
        }
        return 0;
    }
    if (!strcmp(argv[1], "rawsock")) {
        /* A raw IP socket without CAP_NET_RAW: drop to nobody first, so that it is refused
         * whatever capabilities the container has. Succeeds when the kernel says EPERM. */
        if (setgid(65534) < 0 || setuid(65534) < 0) { perror("setuid"); return 1; }
        int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        if (s >= 0) { fprintf(stderr, "raw socket allowed without CAP_NET_RAW\n"); return 1; }
        perror("socket");
        return 0;
    }
    return 2;
}
"#;

/// Compile [`HELPER_C`] into `out`; `Err` names why it cannot be built (no gcc, no static libc).
pub fn build_helper(out: &Path) -> Result<()> {
    compile_c(out, HELPER_C, &["-static", "-O1"])
}

/// Compile the C program `src_text` with the host's gcc and `flags` into `out` (the source
/// is written beside it); `Err` carries gcc's own message.
pub fn compile_c(out: &Path, src_text: &str, flags: &[&str]) -> Result<()> {
    let src = out.with_extension("c");
    std::fs::write(&src, src_text)?;
    let o = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .output()
        .context("run gcc")?;
    if !o.status.success() {
        bail!("gcc {} failed: {}", flags.join(" "), String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}
