//! The DaemonSet's security posture, run for real under podman without a registry or a
//! cluster: the pod spec in deploy/kubernetes/daemonset.yaml is parsed and translated into
//! `podman run` flags ([`Posture`]), the image is built from deploy/Containerfile.local on a
//! base imported from a directory ([`Images`]), and [`MonitorContainer`] runs, probes and
//! stops it. Every field of the container's `securityContext` and every volume type must be
//! translated or the translation fails: a manifest change is never silently ignored.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use yaml_serde::Value;

use crate::containers::{TempDir, busybox_rootfs, random_id, run};
use crate::harness::{TestCgroup, monitor_bin, workspace_root};

/// Global podman flags for this machine: crun fails on the hybrid cgroups here.
pub const PODMAN_GLOBAL: &[&str] = &["--cgroup-manager=cgroupfs"];

/// Where a volume comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    HostPath {
        path: PathBuf,
        create: bool,
    },
    /// A key of the ConfigMap in deploy/kubernetes/configmap.yaml.
    ConfigMap {
        name: String,
        key: String,
    },
    /// `emptyDir` with `medium: Memory`: a tmpfs.
    MemoryTmpfs {
        size_bytes: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub volume: String,
    pub source: Source,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seccomp {
    RuntimeDefault,
    Unconfined,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    Literal(String),
    /// `valueFrom.fieldRef.fieldPath: spec.nodeName`.
    NodeName,
}

/// What the DaemonSet's pod spec asks of the runtime, for its single container.
#[derive(Clone, Debug, PartialEq)]
pub struct Posture {
    pub capabilities: Vec<String>,
    pub host_pid: bool,
    pub host_network: bool,
    pub run_as_user: Option<u64>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    pub apparmor_unconfined: bool,
    pub mounts: Vec<Mount>,
    pub env: Vec<(String, EnvValue)>,
    pub args: Vec<String>,
    pub container_port: u16,
    pub memory_limit_bytes: Option<u64>,
    pub grace_seconds: u64,
}

/// Kubernetes quantity (`16Mi`, `768Mi`, `1G`, `100`) in bytes.
pub fn quantity_bytes(q: &str) -> Result<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("quantity {q:?}"))?;
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => bail!("quantity {q:?}: unit {unit:?} not handled"),
    };
    Ok(n * mult)
}

fn str_of<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    v.as_str().with_context(|| format!("{what} is not a string: {v:?}"))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn only_known(v: &Value, what: &str, known: &[&str]) -> Result<()> {
    for k in keys(v) {
        if !known.contains(&k.as_str()) {
            bail!("{what}.{k} is not translated to podman; teach tests/src/deploy.rs about it");
        }
    }
    Ok(())
}

impl Posture {
    /// Parse the DaemonSet manifest (a single document).
    pub fn from_daemonset(text: &str) -> Result<Posture> {
        let ds: Value = yaml_serde::from_str(text).context("daemonset.yaml is not YAML")?;
        if ds["kind"] != "DaemonSet" {
            bail!("not a DaemonSet: {:?}", ds["kind"]);
        }
        let spec = &ds["spec"]["template"]["spec"];
        let containers = spec["containers"].as_sequence().context("no containers")?;
        if containers.len() != 1 || spec.get("initContainers").is_some() {
            bail!("expected exactly one container and no init containers");
        }
        let c = &containers[0];
        let sc = &c["securityContext"];
        only_known(
            sc,
            "securityContext",
            &[
                "privileged",
                "runAsUser",
                "runAsNonRoot",
                "readOnlyRootFilesystem",
                "allowPrivilegeEscalation",
                "capabilities",
                "seccompProfile",
                "appArmorProfile",
            ],
        )?;
        if sc["privileged"] == true {
            bail!("privileged: true is not the posture this test proves");
        }
        if spec.get("securityContext").is_some() {
            only_known(&spec["securityContext"], "pod securityContext", &[])?;
        }
        only_known(&sc["capabilities"], "capabilities", &["drop", "add"])?;
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_sequence()
            .context("capabilities.drop")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if drop != ["ALL"] {
            bail!("capabilities.drop must be [ALL], is {drop:?}");
        }
        let capabilities = sc["capabilities"]["add"]
            .as_sequence()
            .map(|s| s.iter().map(|v| str_of(v, "capability").map(str::to_string)).collect())
            .transpose()?
            .unwrap_or_default();
        let seccomp = match sc["seccompProfile"]["type"].as_str() {
            None | Some("RuntimeDefault") => Seccomp::RuntimeDefault,
            Some("Unconfined") => Seccomp::Unconfined,
            Some(other) => bail!("seccompProfile {other} is not translated"),
        };
        let apparmor_unconfined = match sc["appArmorProfile"]["type"].as_str() {
            None | Some("RuntimeDefault") => false,
            Some("Unconfined") => true,
            Some(other) => bail!("appArmorProfile {other} is not translated"),
        };

        let volumes = spec["volumes"].as_sequence().cloned().unwrap_or_default();
        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_sequence().cloned().unwrap_or_default() {
            only_known(&m, "volumeMount", &["name", "mountPath", "subPath", "readOnly"])?;
            let name = str_of(&m["name"], "volumeMount.name")?.to_string();
            let v = volumes
                .iter()
                .find(|v| v["name"] == name.as_str())
                .with_context(|| format!("volume {name} is mounted but not declared"))?;
            let source = if let Some(hp) = v.get("hostPath") {
                let create = match hp["type"].as_str() {
                    None | Some("Directory") => false,
                    Some("DirectoryOrCreate") => true,
                    Some(t) => bail!("hostPath type {t} is not translated"),
                };
                if m.get("subPath").is_some() {
                    bail!("subPath on a hostPath is not translated");
                }
                Source::HostPath {
                    path: PathBuf::from(str_of(&hp["path"], "hostPath.path")?),
                    create,
                }
            } else if let Some(cm) = v.get("configMap") {
                Source::ConfigMap {
                    name: str_of(&cm["name"], "configMap.name")?.to_string(),
                    key: str_of(&m["subPath"], "subPath of a configMap mount")?.to_string(),
                }
            } else if let Some(ed) = v.get("emptyDir") {
                if ed["medium"] != "Memory" {
                    bail!("emptyDir {name}: only medium Memory is translated");
                }
                let size_bytes = ed["sizeLimit"].as_str().map(quantity_bytes).transpose()?;
                Source::MemoryTmpfs { size_bytes }
            } else {
                bail!("volume {name}: type not translated: {:?}", keys(v));
            };
            mounts.push(Mount {
                volume: name,
                source,
                target: PathBuf::from(str_of(&m["mountPath"], "mountPath")?),
                read_only: m["readOnly"] == true,
            });
        }

        let mut env = Vec::new();
        for e in c["env"].as_sequence().cloned().unwrap_or_default() {
            let name = str_of(&e["name"], "env.name")?.to_string();
            let value = if let Some(v) = e["value"].as_str() {
                EnvValue::Literal(v.to_string())
            } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
                EnvValue::NodeName
            } else {
                bail!("env {name}: only literal values and spec.nodeName are translated");
            };
            env.push((name, value));
        }
        let args = c["args"]
            .as_sequence()
            .map(|s| s.iter().map(|v| str_of(v, "arg").map(str::to_string)).collect())
            .transpose()?
            .unwrap_or_default();
        let container_port = c["ports"][0]["containerPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .context("ports[0].containerPort")?;
        let memory_limit_bytes = c["resources"]["limits"]["memory"]
            .as_str()
            .map(quantity_bytes)
            .transpose()?;
        Ok(Posture {
            capabilities,
            host_pid: spec["hostPID"] == true,
            host_network: spec["hostNetwork"] == true,
            run_as_user: sc["runAsUser"].as_u64(),
            read_only_root: sc["readOnlyRootFilesystem"] == true,
            no_new_privileges: sc["allowPrivilegeEscalation"] == false,
            seccomp,
            apparmor_unconfined,
            mounts,
            env,
            args,
            container_port,
            memory_limit_bytes,
            grace_seconds: spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
        })
    }

    /// The CapEff bit mask the container must end up with.
    pub fn capability_mask(&self) -> Result<u64> {
        let mut mask = 0u64;
        for c in &self.capabilities {
            mask |= 1u64 << capability_bit(c)?;
        }
        Ok(mask)
    }
}

/// Linux capability numbers (include/uapi/linux/capability.h) for the names a manifest may add.
pub fn capability_bit(name: &str) -> Result<u32> {
    Ok(match name.trim_start_matches("CAP_") {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "DAC_READ_SEARCH" => 2,
        "FOWNER" => 3,
        "KILL" => 5,
        "SETGID" => 6,
        "SETUID" => 7,
        "NET_BIND_SERVICE" => 10,
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "IPC_LOCK" => 14,
        "SYS_CHROOT" => 18,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "SYSLOG" => 34,
        "PERFMON" => 38,
        "BPF" => 39,
        other => bail!("capability {other} has no known bit here"),
    })
}

/// Parse `CapEff`, `NoNewPrivs` and `Seccomp` from /proc/<pid>/status.
pub fn proc_security(pid: u32) -> Result<(u64, u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .with_context(|| format!("{name} missing in /proc/{pid}/status"))
    };
    Ok((
        u64::from_str_radix(field("CapEff:")?, 16)?,
        field("NoNewPrivs:")?.parse()?,
        field("Seccomp:")?.parse()?,
    ))
}

pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(PODMAN_GLOBAL);
    c
}

/// `tar -C dir -c . | podman import - name`.
fn import_dir(dir: &Path, name: &str) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn tar")?;
    let out = podman()
        .args(["import", "-", name])
        .stdin(tar.stdout.take().context("tar stdout")?)
        .output()
        .context("spawn podman import")?;
    let tar_status = tar.wait()?;
    if !out.status.success() || !tar_status.success() {
        bail!(
            "podman import {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The shared libraries `ldd` lists for `bin` (absolute paths, the loader included).
pub fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let text = run(Command::new("ldd").arg(bin))?;
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("ldd {} listed no libraries:\n{text}", bin.display());
    }
    Ok(libs)
}

/// Names an image to test instead of building deploy/Containerfile.local, e.g. the production
/// image `deploy/build-image.sh` builds from deploy/Containerfile.
pub const IMAGE_ENV: &str = "MONITOR_DEPLOY_IMAGE";

/// The images one test run needs; the ones built here are removed on drop.
pub struct Images {
    pub base: String,
    pub monitor: String,
    /// busybox with an /etc/shadow, for a container that trips the shadow rule.
    pub trigger: String,
    /// False when `monitor` came from [`IMAGE_ENV`] (not ours to remove).
    built_monitor: bool,
    _dir: TempDir,
}

impl Images {
    pub fn build() -> Result<Images> {
        let tag = format!("{}-{}", std::process::id(), &random_id()[..6]);
        let dir = TempDir::new("deploy-image")?;
        let given = std::env::var(IMAGE_ENV).ok().filter(|s| !s.is_empty());
        let mut images = Images {
            base: format!("localhost/monitor-deploy-base-{tag}:latest"),
            monitor: format!("localhost/monitor-deploy-{tag}:latest"),
            trigger: format!("localhost/monitor-deploy-trigger-{tag}:latest"),
            built_monitor: given.is_none(),
            _dir: dir,
        };
        let root = images._dir.0.clone();
        let root = &root;
        if let Some(image) = given {
            run(podman().args(["image", "exists", &image]))
                .with_context(|| format!("{IMAGE_ENV}={image}: no such local image"))?;
            images.monitor = image;
            let bb = root.join("busybox");
            busybox_rootfs(&bb)?;
            std::fs::write(bb.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
            import_dir(&bb, &images.trigger)?;
            return Ok(images);
        }

        // Base: only the glibc libraries the binary links against (the distroless cc image's
        // role in the production Containerfile).
        let rootfs = root.join("rootfs");
        let bin = monitor_bin();
        for lib in shared_libraries(&bin)? {
            let dst = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
            std::fs::create_dir_all(dst.parent().context("lib parent")?)?;
            std::fs::copy(&lib, &dst).with_context(|| format!("copy {}", lib.display()))?;
        }
        for d in ["tmp", "etc", "proc", "sys", "dev", "run"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        import_dir(&rootfs, &images.base)?;

        // Build context for deploy/Containerfile.local.
        let ctx = root.join("context");
        std::fs::create_dir_all(ctx.join("rules"))?;
        // Debug info is most of the debug binary's size; the image does not need it.
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(ctx.join("monitor"))
            .arg(&bin)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(&bin, ctx.join("monitor")).context("copy the monitor binary")?;
        }
        let ws = workspace_root();
        std::fs::copy(ws.join("deploy/monitor.yaml"), ctx.join("monitor.yaml"))?;
        for e in std::fs::read_dir(ws.join("rules"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                std::fs::copy(&p, ctx.join("rules").join(p.file_name().context("name")?))?;
            }
        }
        run(podman()
            .args(["build", "--quiet", "-f"])
            .arg(ws.join("deploy/Containerfile.local"))
            .arg("--build-arg")
            .arg(format!("BASE={}", images.base))
            .args(["-t", &images.monitor])
            .arg(&ctx))
        .context("podman build -f deploy/Containerfile.local")?;

        let bb = root.join("busybox");
        busybox_rootfs(&bb)?;
        std::fs::write(bb.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
        import_dir(&bb, &images.trigger)?;
        Ok(images)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let mut mine = vec![&self.base, &self.trigger];
        if self.built_monitor {
            mine.push(&self.monitor);
        }
        for i in mine {
            let _ = podman()
                .args(["rmi", "-f", i])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// This machine's limit for the container: podman's defaults (nofile 1048576) need
/// CAP_SYS_RESOURCE, which this host does not have; kubelet nodes take the runtime's.
fn host_rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(resource, &mut r) };
    r.rlim_cur.min(r.rlim_max)
}

/// `podman run` arguments for `posture`. `files` holds the ConfigMap keys written out.
pub fn podman_run_args(
    posture: &Posture,
    name: &str,
    image: &str,
    host_port: u16,
    node_name: &str,
    files: &Path,
) -> Result<Vec<String>> {
    let mut a: Vec<String> = ["run", "-d", "--runtime", "runc"].map(String::from).to_vec();
    a.extend(["--name".into(), name.into()]);
    let nofile = host_rlimit(libc::RLIMIT_NOFILE);
    a.push(format!("--ulimit=nofile={nofile}:{nofile}"));
    // conmon runs with a lower nproc limit than this shell and runc may not raise it; with no
    // user namespace every root process on the host counts against it, hence not 1024.
    a.push("--ulimit=nproc=4096:4096".into());
    a.push("--cap-drop=all".into());
    if !posture.capabilities.is_empty() {
        a.push(format!("--cap-add={}", posture.capabilities.join(",")));
    }
    if posture.host_pid {
        a.push("--pid=host".into());
    }
    if posture.host_network {
        a.push("--network=host".into());
    } else {
        // The pod's own network namespace: the kubelet probes the pod IP; here the port is
        // published on loopback instead.
        a.push(format!("--publish=127.0.0.1:{host_port}:{}", posture.container_port));
    }
    if let Some(u) = posture.run_as_user {
        a.push(format!("--user={u}"));
    }
    if posture.read_only_root {
        // Kubernetes adds no tmpfs of its own; podman's default --read-only-tmpfs would.
        a.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if posture.no_new_privileges {
        a.push("--security-opt=no-new-privileges".into());
    }
    match posture.seccomp {
        // podman's default profile, the same containers-common profile CRI-O uses.
        Seccomp::RuntimeDefault => {}
        Seccomp::Unconfined => a.push("--security-opt=seccomp=unconfined".into()),
    }
    if posture.apparmor_unconfined {
        a.push("--security-opt=apparmor=unconfined".into());
    }
    if let Some(m) = posture.memory_limit_bytes {
        a.push(format!("--memory={m}"));
    }
    for m in &posture.mounts {
        let ro = if m.read_only { "ro" } else { "rw" };
        match &m.source {
            Source::HostPath { path, create } => {
                if *create {
                    std::fs::create_dir_all(path)?;
                }
                a.push(format!("--volume={}:{}:{ro}", path.display(), m.target.display()));
            }
            Source::ConfigMap { name, key } => {
                let f = files.join(format!("{name}-{key}"));
                a.push(format!("--volume={}:{}:{ro}", f.display(), m.target.display()));
            }
            Source::MemoryTmpfs { size_bytes } => {
                let size = size_bytes.map(|s| format!(",size={s}")).unwrap_or_default();
                let mode = if m.read_only { "ro" } else { "rw" };
                a.push(format!("--tmpfs={}:{mode}{size}", m.target.display()));
            }
        }
    }
    for (k, v) in &posture.env {
        let v = match v {
            EnvValue::Literal(s) => s.as_str(),
            EnvValue::NodeName => node_name,
        };
        a.push(format!("--env={k}={v}"));
    }
    a.push(image.into());
    a.extend(posture.args.iter().cloned());
    Ok(a)
}

/// Write each ConfigMap key the posture mounts from deploy/kubernetes/configmap.yaml.
pub fn write_configmap_files(posture: &Posture, configmap_yaml: &str, dir: &Path) -> Result<()> {
    let cm: Value = yaml_serde::from_str(configmap_yaml)?;
    for m in &posture.mounts {
        if let Source::ConfigMap { name, key } = &m.source {
            if cm["metadata"]["name"] != name.as_str() {
                bail!("ConfigMap {name} is not the one in configmap.yaml");
            }
            let text = str_of(&cm["data"][key.as_str()], "configmap data")?;
            std::fs::write(dir.join(format!("{name}-{key}")), text)?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One run of the monitor image under a posture; force-removed on drop.
pub struct MonitorContainer {
    pub name: String,
    pub port: u16,
    pub node_name: String,
    _files: TempDir,
}

impl MonitorContainer {
    pub fn start(posture: &Posture, image: &str, configmap_yaml: &str) -> Result<MonitorContainer> {
        let files = TempDir::new("deploy-files")?;
        write_configmap_files(posture, configmap_yaml, &files.0)?;
        let name = format!("monitor-deploy-{}", &random_id()[..12]);
        let node_name = format!("node-{}", &random_id()[..8]);
        let port = free_port()?;
        let args = podman_run_args(posture, &name, image, port, &node_name, &files.0)?;
        let c = MonitorContainer {
            name,
            port,
            node_name,
            _files: files,
        };
        run(podman().args(&args)).context("podman run")?;
        Ok(c)
    }

    fn inspect(&self, fmt: &str) -> Result<String> {
        run(podman().args(["inspect", "-f", fmt, &self.name]))
    }

    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}").is_ok_and(|s| s == "true")
    }

    pub fn exit_code(&self) -> Result<i64> {
        Ok(self.inspect("{{.State.ExitCode}}")?.parse()?)
    }

    pub fn pid(&self) -> Result<u32> {
        Ok(self.inspect("{{.State.Pid}}")?.parse()?)
    }

    /// (stdout, stderr) of the container so far.
    pub fn logs(&self) -> Result<(String, String)> {
        let out = podman().args(["logs", &self.name]).stdin(Stdio::null()).output()?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Every JSON alert on stdout so far.
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .logs()?
            .0
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    pub fn wait_alert(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<Option<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.alerts()?.into_iter().find(|a| pred(a)) {
                return Ok(Some(a));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// GET `path` on the published port: (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no HTTP status in {:?}", &buf[..buf.len().min(80)]))?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Wait for /readyz to answer 200; false when the container exited first or time ran out.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.http_get("/readyz"), Ok((200, _))) {
                return true;
            }
            if !self.running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    /// `podman stop -t grace` (SIGTERM, SIGKILL after `grace`); returns the exit code and the
    /// time the stop took.
    pub fn stop(&self, grace: u64) -> Result<(i64, Duration)> {
        let t = Instant::now();
        run(podman().args(["stop", "-t", &grace.to_string(), &self.name]))?;
        Ok((self.exit_code()?, t.elapsed()))
    }
}

impl Drop for MonitorContainer {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A host shell in its own cgroup, started BEFORE the monitor (so the monitor learns it from
/// /proc, which needs CAP_SYS_PTRACE for its exe link), that opens /etc/shadow itself when
/// [`PendingShadowRead::fire`] is called. The shell itself, not a child: what the alert says
/// about it then depends only on /proc, never on the order in which the monitor sees a
/// child's fork and exec.
pub struct PendingShadowRead {
    pub shell: Child,
    fifo: PathBuf,
    _cgroup: TestCgroup,
    _dir: TempDir,
}

impl PendingShadowRead {
    pub fn start() -> Result<PendingShadowRead> {
        let dir = TempDir::new("deploy-fifo")?;
        let fifo = dir.0.join("go");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!("mkfifo: {}", std::io::Error::last_os_error());
        }
        let cgroup = TestCgroup::new(&format!("deploy-{}", &random_id()[..6]))?;
        let shell = cgroup
            .command("/bin/sh")
            .arg("-c")
            // The shell stays alive afterwards: the monitor resolves a process's cgroup and table
            // entry after the event, and a process that exits at once races with that.
            .arg(format!("read x < '{}'; exec 3< /etc/shadow; sleep 60", fifo.display()))
            .stdin(Stdio::null())
            .spawn()
            .context("spawn the trigger shell")?;
        Ok(PendingShadowRead {
            shell,
            fifo,
            _cgroup: cgroup,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.shell.id()
    }

    /// Let the shell go on (it lingers until dropped).
    pub fn fire(&self) -> Result<()> {
        let c = std::ffi::CString::new(self.fifo.as_os_str().as_encoded_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let fd = loop {
            // Non-blocking: ENXIO until the shell has the fifo open for reading.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
            if fd >= 0 {
                break fd;
            }
            if Instant::now() > deadline {
                bail!("the trigger shell never opened its fifo");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let n = unsafe { libc::write(fd, b"go\n".as_ptr().cast(), 3) };
        unsafe { libc::close(fd) };
        if n != 3 {
            bail!("write to the fifo: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PendingShadowRead {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// A podman container removed on drop.
pub struct TriggerContainer {
    pub id: String,
}

impl Drop for TriggerContainer {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "-f", "-t", "0", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Run `cat /etc/shadow` in a fresh podman container from `image`. The container stays (a
/// sleep) until the returned guard is dropped: the monitor attributes the read through the
/// container's cgroup and runtime state, which must still exist when it gets to the event,
/// however late that is on a loaded machine.
pub fn container_reads_shadow(image: &str) -> Result<TriggerContainer> {
    let name = format!("monitor-deploy-trigger-{}", &random_id()[..12]);
    let nofile = host_rlimit(libc::RLIMIT_NOFILE);
    let id = run(podman().args([
        "run",
        "-d",
        "--runtime",
        "runc",
        "--network=none",
        &format!("--ulimit=nofile={nofile}:{nofile}"),
        "--ulimit=nproc=1024:1024",
        "--name",
        &name,
        image,
        "/bin/sh",
        "-c",
        "cat /etc/shadow > /dev/null; sleep 600",
    ]))?;
    Ok(TriggerContainer { id })
}

/// The capabilities `ctr run` grants by default (containerd's `oci.WithDefaultSpec`); `ctr`
/// 1.6 has no `--cap-drop ALL`, so they are dropped one by one.
const CTR_DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// `ctr run -d` the monitor image in a private containerd with the posture's capabilities,
/// host pid namespace and host mounts, under containerd's own default seccomp profile
/// (`--seccomp`, the profile its CRI plugin applies for `RuntimeDefault`). Stdout and stderr go
/// to the returned log file. The image is imported from podman.
pub fn ctr_run_monitor(
    d: &crate::containers::Containerd,
    namespace: &str,
    posture: &Posture,
    image: &str,
    configmap_yaml: &str,
    node_name: &str,
) -> Result<(String, PathBuf)> {
    let archive = d.dir.0.join("monitor-image.tar");
    run(podman()
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg(image))?;
    let base = image.rsplit_once(':').map_or(image, |(b, _)| b);
    d.ctr(&[
        "-n",
        namespace,
        "images",
        "import",
        "--base-name",
        base,
        &archive.to_string_lossy(),
    ])?;
    write_configmap_files(posture, configmap_yaml, &d.dir.0)?;
    let id = format!("monitor-deploy-{}", &random_id()[..12]);
    let log = d.dir.0.join(format!("{id}.log"));
    let mut a: Vec<String> = vec![
        "-n".into(),
        namespace.into(),
        "run".into(),
        "-d".into(),
        "--seccomp".into(),
    ];
    a.push(format!("--log-uri=file://{}", log.display()));
    for c in CTR_DEFAULT_CAPS {
        if !posture.capabilities.iter().any(|p| p == c) {
            a.push(format!("--cap-drop=CAP_{c}"));
        }
    }
    for c in &posture.capabilities {
        a.push(format!("--cap-add=CAP_{c}"));
    }
    if posture.host_pid {
        // Our own pid namespace is the host's (/proc/1/ns may be unreadable in a VM).
        a.push(format!("--with-ns=pid:/proc/{}/ns/pid", std::process::id()));
    }
    for m in &posture.mounts {
        let ro = if m.read_only { "rbind:ro" } else { "rbind:rw" };
        let src = match &m.source {
            Source::HostPath { path, .. } => path.clone(),
            Source::ConfigMap { name, key } => d.dir.0.join(format!("{name}-{key}")),
            Source::MemoryTmpfs { .. } => bail!("tmpfs mounts are not translated for ctr"),
        };
        a.push(format!(
            "--mount=type=bind,src={},dst={},options={ro}",
            src.display(),
            m.target.display()
        ));
    }
    for (k, v) in &posture.env {
        let v = match v {
            EnvValue::Literal(s) => s.as_str(),
            EnvValue::NodeName => node_name,
        };
        a.push(format!("--env={k}={v}"));
    }
    a.push(image.into());
    a.push(id.clone());
    // ctr needs the command: the image's entrypoint plus the manifest's args.
    a.push("/usr/bin/monitor".into());
    a.extend(posture.args.iter().cloned());
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    d.ctr(&refs).context("ctr run")?;
    Ok((id, log))
}

/// The value of `metric` with exactly these labels in a Prometheus text exposition.
pub fn metric_value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (lbl, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let mut got: Vec<(String, String)> = Vec::new();
        for pair in lbl.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once("=\"") {
                got.push((k.to_string(), v.trim_end_matches('"').to_string()));
            }
        }
        let want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        if got == want_sorted {
            return value.trim().parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("16Mi").unwrap(), 16 << 20);
        assert_eq!(quantity_bytes("768Mi").unwrap(), 768 << 20);
        assert_eq!(quantity_bytes("1G").unwrap(), 1_000_000_000);
        assert!(quantity_bytes("1.5Gi").is_err());
    }

    #[test]
    fn metric_lookup_ignores_label_order() {
        let t = "# HELP x\nmonitor_alerts_total{priority=\"Warning\",rule=\"Read of shadow\"} 3\nmonitor_up 1\n";
        assert_eq!(
            metric_value(
                t,
                "monitor_alerts_total",
                &[("rule", "Read of shadow"), ("priority", "Warning")]
            ),
            Some(3.0)
        );
        assert_eq!(metric_value(t, "monitor_up", &[]), Some(1.0));
        assert_eq!(metric_value(t, "monitor_alerts_total", &[("rule", "x")]), None);
    }

    #[test]
    fn the_shipped_daemonset_translates() {
        let text = std::fs::read_to_string(workspace_root().join("deploy/kubernetes/daemonset.yaml")).unwrap();
        let p = Posture::from_daemonset(&text).unwrap();
        assert!(p.host_pid && !p.host_network && p.read_only_root && p.no_new_privileges);
        assert!(
            p.mounts
                .iter()
                .all(|m| m.read_only || matches!(m.source, Source::MemoryTmpfs { .. }))
        );
    }
}
