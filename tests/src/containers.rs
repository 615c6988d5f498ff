//! Real containers for attribution tests: runc (busybox bundle, optional OCI annotations),
//! podman (image imported from the same rootfs) and containerd + ctr (a private daemon in a
//! temp dir). Every container is removed on drop. No registry is needed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::harness::cgroup2_mount;

/// Image name used for podman and containerd tests.
pub const TEST_IMAGE: &str = "localhost/monitor-test-busybox:latest";

pub fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True (after saying which) when one of `tools` is not installed: the test then skips.
pub fn skip_unless_tools(tools: &[&str]) -> bool {
    match tools.iter().find(|t| !have(t)) {
        Some(missing) => {
            eprintln!("SKIPPED: {missing} is not installed");
            true
        }
        None => false,
    }
}

/// Run a command to completion; its trimmed stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `runc --root ROOT run -d --bundle BUNDLE ID`: start a container detached, its stdio closed.
pub fn runc_run_detached(root: &Path, bundle: &Path, id: &str) -> Result<()> {
    let status = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "-d", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("spawn runc")?;
    if !status.success() {
        bail!("runc run -d failed: {status}");
    }
    Ok(())
}

/// The host pid of a runc container's init, from `runc state`.
pub fn runc_init_pid(root: &Path, id: &str) -> Result<u32> {
    let state = run(Command::new("runc").arg("--root").arg(root).args(["state", id]))?;
    let v: serde_json::Value = serde_json::from_str(&state)?;
    v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .context("no pid in runc state")
}

/// A unique 64-hex container id.
pub fn random_id() -> String {
    let mut buf = [0u8; 32];
    let f = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if f.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        buf[..16].copy_from_slice(&t.to_le_bytes());
        buf[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "monitor-{tag}-{}-{}",
            std::process::id(),
            &random_id()[..8]
        ));
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A busybox root filesystem: /bin/busybox from busybox-static plus applet links.
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let src = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("busybox-static is not installed")?;
    std::fs::copy(src, bin.join("busybox")).context("copy busybox")?;
    for applet in ["sh", "sleep", "cat", "ls", "echo", "true"] {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    Ok(())
}

/// What an event from a process carries: cgroup v2 id and namespace inodes, read from /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcIdentity {
    pub pid: u32,
    pub cgroup_id: u64,
    pub pidns: u64,
    pub mntns: u64,
}

pub fn proc_identity(pid: u32) -> Result<ProcIdentity> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no 0:: line")?
        .trim();
    let dir = cgroup2_mount()?.join(rel.trim_start_matches('/'));
    let cgroup_id = std::fs::metadata(&dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino();
    let ns = |k: &str| std::fs::metadata(format!("/proc/{pid}/ns/{k}")).map(|m| m.ino());
    Ok(ProcIdentity {
        pid,
        cgroup_id,
        pidns: ns("pid")?,
        mntns: ns("mnt")?,
    })
}

/// The event a capture would produce for `pid` (identity fields only).
pub fn event_for(id: &ProcIdentity) -> monitor::event::Event {
    let mut ev = monitor::event::Event {
        schema: monitor::event::SCHEMA_VERSION,
        cgroup_id: id.cgroup_id,
        ..Default::default()
    };
    ev.process.pid = id.pid;
    ev.process.tid = id.pid;
    ev.process.pidns = id.pidns;
    ev.process.mntns = id.mntns;
    ev
}

/// A container run by runc directly, with a private `--root` and a cgroup path of
/// `/<parent>/<id>` (the bare-id pattern containerd and plain runc use).
pub struct RuncContainer {
    pub id: String,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub cgroup_path: String,
    _dir: TempDir,
}

impl RuncContainer {
    /// Start `sleep 1000` in a fresh busybox bundle whose config.json carries `annotations`.
    pub fn start(annotations: &[(&str, &str)]) -> Result<RuncContainer> {
        Self::start_with_root(None, annotations)
    }

    /// Same, with runc's `--root` chosen by the caller (e.g. before an attributor watches it).
    pub fn start_with_root(
        root: Option<&Path>,
        annotations: &[(&str, &str)],
    ) -> Result<RuncContainer> {
        Self::start_custom(root, None, annotations)
    }

    /// With a caller-chosen runc id (any name runc accepts; the cgroup is
    /// `/monitor-test-runc/<id>`).
    pub fn start_custom(
        root: Option<&Path>,
        id: Option<String>,
        annotations: &[(&str, &str)],
    ) -> Result<RuncContainer> {
        let dir = TempDir::new("runc")?;
        let bundle = dir.0.join("bundle");
        let root = root.map_or_else(|| dir.0.join("state"), Path::to_path_buf);
        std::fs::create_dir_all(&root)?;
        busybox_rootfs(&bundle.join("rootfs"))?;
        run(Command::new("runc").arg("spec").current_dir(&bundle))?;
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
        let id = id.unwrap_or_else(random_id);
        let cgroup_path = format!("/monitor-test-runc/{id}");
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!(["/bin/sleep", "1000"]);
        cfg["linux"]["cgroupsPath"] = cgroup_path.clone().into();
        // No network namespace setup is needed; keep the spec's default namespaces.
        let ann: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        cfg["annotations"] = serde_json::Value::Object(ann);
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
        runc_run_detached(&root, &bundle, &id)?;
        Ok(RuncContainer {
            id,
            root,
            bundle,
            cgroup_path,
            _dir: dir,
        })
    }

    pub fn init_pid(&self) -> Result<u32> {
        runc_init_pid(&self.root, &self.id)
    }

    /// Start another process inside the container; returns its host pid.
    pub fn exec_sleep(&self) -> Result<u32> {
        let pidfile = self._dir.0.join(format!("exec-{}.pid", &random_id()[..8]));
        let status = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["exec", "-d", "--pid-file"])
            .arg(&pidfile)
            .args([&self.id, "/bin/sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("runc exec failed: {status}");
        }
        Ok(std::fs::read_to_string(&pidfile)?.trim().parse()?)
    }

    /// Run a command inside the container and wait for it (`runc exec`).
    pub fn exec(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .arg("exec")
            .arg(&self.id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("spawn runc exec")
    }

    /// Kill and delete the container now (drop does it too).
    pub fn remove(&self) -> Result<()> {
        let _ = run(Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["kill", &self.id, "KILL"]));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if run(Command::new("runc")
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "-f", &self.id]))
            .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("runc delete {} did not succeed in 10 s", self.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        remove_parent_cgroups("monitor-test-runc");
        Ok(())
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Remove the (empty) parent cgroup `name` that runtimes created below every cgroup mount (v2
/// and, on hybrid hosts, each v1 hierarchy). A parent still in use is not empty and stays.
pub fn remove_parent_cgroups(name: &str) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if !matches!(post.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        if let Some(mp) = pre.split_whitespace().nth(4) {
            let _ = std::fs::remove_dir(Path::new(mp).join(name));
        }
    }
}

/// Import the busybox rootfs as [`TEST_IMAGE`] into podman's store (once).
pub fn podman_image() -> Result<()> {
    if Command::new("podman")
        .args(["image", "exists", TEST_IMAGE])
        .status()
        .is_ok_and(|s| s.success())
    {
        return Ok(());
    }
    let dir = TempDir::new("rootfs")?;
    busybox_rootfs(&dir.0)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | podman import - {TEST_IMAGE}",
            dir.0.display()
        ))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("podman import failed: {status}");
    }
    Ok(())
}

/// A podman container (cgroupfs manager, runc: crun fails on these hybrid cgroups).
pub struct PodmanContainer {
    pub id: String,
    pub name: String,
}

impl PodmanContainer {
    pub fn start(extra_args: &[&str]) -> Result<PodmanContainer> {
        podman_image()?;
        let name = format!("monitor-test-{}", &random_id()[..12]);
        let mut cmd = Command::new("podman");
        cmd.args([
            "--cgroup-manager=cgroupfs",
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            "runc",
            "--network=none",
        ])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args(extra_args)
        .args([TEST_IMAGE, "/bin/sleep", "1000"]);
        let id = run(&mut cmd)?;
        Ok(PodmanContainer { id, name })
    }

    pub fn init_pid(&self) -> Result<u32> {
        Ok(
            run(Command::new("podman").args(["inspect", "-f", "{{.State.Pid}}", &self.id]))?
                .parse()?,
        )
    }

    pub fn image_digest() -> Result<String> {
        run(Command::new("podman").args(["image", "inspect", "-f", "{{.Digest}}", TEST_IMAGE]))
    }

    pub fn remove(&self) -> Result<()> {
        run(Command::new("podman").args([
            "--cgroup-manager=cgroupfs",
            "rm",
            "-f",
            "-t",
            "0",
            &self.id,
        ]))
        .map(|_| ())
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// A private containerd daemon (root, state and socket in a temp dir; CRI plugin off).
pub struct Containerd {
    pub dir: TempDir,
    pub child: Child,
    pub socket: PathBuf,
}

impl Containerd {
    pub fn start() -> Result<Containerd> {
        let dir = TempDir::new("containerd")?;
        let socket = dir.0.join("containerd.sock");
        let config = dir.0.join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )?;
        let log = std::fs::File::create(dir.0.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.0.join("root"))
            .arg("--state")
            .arg(dir.0.join("state"))
            .arg("--address")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let d = Containerd { dir, child, socket };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.ctr(&["version"]).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer in 60 s (log in {})",
                    d.dir.0.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args))
    }

    /// Where the v2 shims keep their bundles: `<this>/<namespace>/<id>`.
    pub fn task_root(&self) -> PathBuf {
        self.dir.0.join("state/io.containerd.runtime.v2.task")
    }

    /// Import [`TEST_IMAGE`] from podman (`podman save --format oci-archive`) into `namespace`.
    pub fn import_test_image(&self, namespace: &str) -> Result<()> {
        podman_image()?;
        let archive = self.dir.0.join("image.tar");
        run(Command::new("podman")
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg(TEST_IMAGE))?;
        self.ctr(&[
            "-n",
            namespace,
            "images",
            "import",
            "--all-platforms",
            "--base-name",
            "localhost/monitor-test-busybox",
            &archive.to_string_lossy(),
        ])?;
        Ok(())
    }

    /// `ctr run -d` a `sleep 1000` container with OCI annotations; returns its id.
    pub fn run_container(&self, namespace: &str, annotations: &[(&str, &str)]) -> Result<String> {
        let id = random_id();
        let mut args: Vec<String> = vec![
            "-n".into(),
            namespace.into(),
            "run".into(),
            "-d".into(),
            "--net-host".into(),
        ];
        for (k, v) in annotations {
            args.push("--annotation".into());
            args.push(format!("{k}={v}"));
        }
        args.extend([
            TEST_IMAGE.to_string(),
            id.clone(),
            "/bin/sleep".into(),
            "1000".into(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)?;
        Ok(id)
    }

    pub fn task_pid(&self, namespace: &str, id: &str) -> Result<u32> {
        let list = self.ctr(&["-n", namespace, "tasks", "ls"])?;
        for line in list.lines() {
            let mut f = line.split_whitespace();
            if f.next() == Some(id) {
                return Ok(f.next().context("no pid column")?.parse()?);
            }
        }
        bail!("task {id} not listed: {list}")
    }

    pub fn remove_container(&self, namespace: &str, id: &str) -> Result<()> {
        let _ = self.ctr(&["-n", namespace, "tasks", "kill", "-s", "KILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ctr(&["-n", namespace, "tasks", "delete", id]).is_err() {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.ctr(&["-n", namespace, "containers", "delete", id])
            .map(|_| ())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Stop every task we started, then the daemon.
        let nss = self.ctr(&["namespaces", "ls", "-q"]).unwrap_or_default();
        for ns in nss.lines() {
            if let Ok(ids) = self.ctr(&["-n", ns, "containers", "ls", "-q"]) {
                for id in ids.lines() {
                    let _ = self.remove_container(ns, id);
                }
            }
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unmount what the daemon left mounted below its root before the temp dir goes.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.0.display()
            ))
            .status();
        // ctr puts containers in `/<namespace>/<id>`: drop the namespace cgroups it made.
        for ns in nss.lines() {
            remove_parent_cgroups(ns);
        }
    }
}

/// `fd.host_path` attribution gives for `path` (absolute, as the process `id` sees it), and
/// whether it names the very file the process sees: same device and inode as
/// `/proc/<pid>/root/<path>` (the kernel's own view through the process' root). Err when the
/// attribution was not Found.
pub fn host_path_of(
    a: &monitor::container::Attributor,
    id: &ProcIdentity,
    path: &str,
) -> Result<(Option<String>, bool)> {
    let mut ev = event_for(id);
    ev.fd = Some(monitor::event::Fd {
        typ: monitor::event::FdType::File,
        path: Some(path.to_string()),
        path_source: monitor::event::Source::Kernel,
        ..Default::default()
    });
    if a.attribute(&mut ev) != monitor::container::Attribution::Found {
        bail!("pid {} was not attributed to a container", id.pid);
    }
    let host = ev.fd.and_then(|f| f.host_path);
    let seen = std::fs::metadata(format!("/proc/{}/root{path}", id.pid))
        .with_context(|| format!("stat {path} through /proc/{}/root", id.pid))?;
    let same = host
        .as_deref()
        .and_then(|h| std::fs::metadata(h).ok())
        .is_some_and(|m| (m.dev(), m.ino()) == (seen.dev(), seen.ino()));
    Ok((host, same))
}
