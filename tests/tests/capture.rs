//! Capture end to end (root): `monitor events --cgroup <test cgroup>` while a workload in that
//! cgroup performs exact syscalls; every scenario asserts the exact fields it must produce.
//! One monitor serves all scenarios (loading ~120 programs takes seconds); each scenario's
//! failure is collected and reported together.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use monitor_tests::capture::{URING_PY, WORKLOAD_PY, int_at, is, str_at};
use monitor_tests::harness::{MonitorProcess, TestCgroup, monitor_bin, skip_unless_root};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            eprintln!("ok: {name}");
        } else {
            let d = detail();
            eprintln!("FAILED: {name}: {d}");
            self.failures.push(format!("{name}: {d}"));
        }
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        Some(v) => {
            let mut v = v.clone();
            if let Some(p) = v.get_mut("process") {
                p["ancestors"] = Value::Null;
            }
            v.to_string()
        }
        None => "no such event".into(),
    }
}

#[test]
fn capture_end_to_end() {
    if skip_unless_root() {
        return;
    }
    let cg = TestCgroup::new("capture").expect("test cgroup");
    let scratch = std::env::temp_dir().join(format!("monitor-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("sub")).unwrap();
    std::fs::write(scratch.join("sub/file.txt"), b"x").unwrap();
    std::os::unix::fs::symlink(scratch.join("sub/file.txt"), scratch.join("lnk")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/true", scratch.join("true-link")).unwrap();
    // The kernel reports real paths: resolve /tmp itself if it is a symlink.
    let real = std::fs::canonicalize(&scratch).unwrap();
    let real_s = real.to_str().unwrap().to_string();
    let cgid = cg.id.to_string();
    let mut m = MonitorProcess::spawn(&["events", "--cgroup", &cgid], Some("Capture ready"))
        .expect("monitor starts");
    let mut c = Checks {
        failures: Vec::new(),
    };
    let me = std::process::id() as i64;

    // execve with argv, exepath, ppid and cgroup id.
    let st = cg
        .command("/bin/echo")
        .args(["capture-test", "a b"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve") && str_at(v, "process.exe") == Some("/bin/echo")
    });
    let e = ev.as_ref();
    c.check(
        "execve fields",
        e.is_some_and(|e| {
            str_at(e, "process.exepath") == Some("/usr/bin/echo")
                && e["process"]["args"] == serde_json::json!(["capture-test", "a b"])
                && int_at(e, "process.ppid") == Some(me)
                && e["cgroup_id"].as_u64() == Some(cg.id)
                && str_at(e, "args.filename") == Some("/bin/echo")
                && int_at(e, "ret") == Some(0)
        }),
        || show(&ev),
    );

    // Hostile argv: invalid UTF-8 and an escape sequence come out escaped.
    {
        use std::os::unix::ffi::OsStrExt;
        let st = cg
            .command("/bin/echo")
            .arg(std::ffi::OsStr::from_bytes(b"hostile\xff\x1b[31m"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve")
            && str_at(v, "process.args.0").is_some_and(|a| a.starts_with("hostile"))
    });
    c.check(
        "hostile argv escaped",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "process.args.0") == Some("hostile\\xff\\x1b[31m")),
        || show(&ev),
    );

    // argv longer than the capture bound: cut, and flagged.
    let long: Vec<String> = (0..100)
        .map(|i| format!("{i:03}-{}", "x".repeat(96)))
        .collect();
    assert!(
        cg.command("/bin/true")
            .args(&long)
            .status()
            .unwrap()
            .success()
    );
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve")
            && str_at(v, "process.args.0").is_some_and(|a| a.starts_with("000-x"))
    });
    c.check(
        "long argv truncated",
        ev.as_ref().is_some_and(|e| {
            e["process"]["args_truncated"] == Value::Bool(true)
                && e["process"]["args"]
                    .as_array()
                    .is_some_and(|a| a.len() < 100 && a.len() > 30)
        }),
        || show(&ev),
    );

    // Inside a chroot the kernel paths are the ones the process sees (walk stops at its root).
    let croot = real.join("croot");
    std::fs::create_dir_all(croot.join("bin")).unwrap();
    std::fs::create_dir_all(croot.join("etc")).unwrap();
    std::fs::write(croot.join("etc/marker"), b"m").unwrap();
    if std::fs::copy("/bin/busybox", croot.join("bin/busybox")).is_ok() {
        let st = cg
            .command("chroot")
            .args([
                croot.to_str().unwrap(),
                "/bin/busybox",
                "cat",
                "/etc/marker",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let ev = m.wait_for(WAIT, |v| {
            str_at(v, "type") == Some("execve")
                && v["process"]["args"] == serde_json::json!(["cat", "/etc/marker"])
        });
        c.check(
            "exec inside chroot: exepath from the new root",
            ev.as_ref().is_some_and(|e| {
                str_at(e, "process.exepath") == Some("/bin/busybox")
                    && str_at(e, "process.cwd") == Some("/")
            }),
            || show(&ev),
        );
        let bpid = ev
            .as_ref()
            .and_then(|e| e["process"]["pid"].as_u64())
            .unwrap_or(0) as u32;
        let ev = m.wait_for(WAIT, |v| {
            str_at(v, "type").is_some_and(|t| t.starts_with("open"))
                && int_at(v, "process.pid") == Some(bpid as i64)
                && str_at(v, "fd.raw_path") == Some("/etc/marker")
        });
        c.check(
            "open inside chroot: kernel path from the new root",
            ev.as_ref().is_some_and(|e| {
                str_at(e, "fd.path") == Some("/etc/marker")
                    && str_at(e, "fd.path_source") == Some("kernel")
            }),
            || show(&ev),
        );
    } else {
        eprintln!("SKIPPED: chroot scenario (no /bin/busybox to copy)");
    }

    // Under a pseudo-terminal (script(1)): tty is the pts device, stdio are ttys.
    let st = cg
        .command("script")
        .args(["-qc", "/bin/echo capture-tty", "/dev/null"])
        .stdout(Stdio::null())
        .status();
    if st.is_ok_and(|s| s.success()) {
        let ev = m.wait_for(WAIT, |v| {
            str_at(v, "type") == Some("execve")
                && v["process"]["args"] == serde_json::json!(["capture-tty"])
        });
        c.check(
            "exec on a pty: tty and stdio",
            ev.as_ref().is_some_and(|e| {
                // new_encode_dev: major 136-143 (pts) in bits 8..20.
                int_at(e, "process.tty").is_some_and(|t| (136..=143).contains(&((t >> 8) & 0xfff)))
                    && e["process"]["stdio"] == serde_json::json!(["tty", "tty", "tty"])
            }),
            || show(&ev),
        );
    } else {
        eprintln!("SKIPPED: pty scenario (script(1) unavailable)");
    }

    // fexecve(memfd): glibc's execveat(fd, "", AT_EMPTY_PATH) is reported as execveat.
    let st = cg
        .command("python3")
        .args([
            "-c",
            "import os; fd=os.memfd_create('capfexec', 0); os.write(fd, open('/usr/bin/true','rb').read()); os.execve(fd, ['fexectrue'], {})",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "process.exe") == Some("fexectrue")
            && str_at(v, "ret").is_none()
            && int_at(v, "ret") == Some(0)
            && str_at(v, "type").is_some_and(|t| t.starts_with("execve"))
    });
    c.check(
        "fexecve is execveat from a memfd",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "type") == Some("execveat")
                && e["process"]["is_exe_from_memfd"] == Value::Bool(true)
                && str_at(e, "process.exepath").is_some_and(|p| p.starts_with("/memfd:capfexec"))
        }),
        || show(&ev),
    );

    // exec through a symlink: the kernel's exe path is the target, filename is what was run.
    let link = real.join("true-link");
    let st = cg.command(link.to_str().unwrap()).status().unwrap();
    assert!(st.success());
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve") && str_at(v, "args.filename") == link.to_str()
    });
    c.check(
        "exec via symlink",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "process.exepath") == Some("/usr/bin/true")),
        || show(&ev),
    );

    // exec from a memfd.
    let st = cg
        .command("python3")
        .args([
            "-c",
            "import os; fd=os.memfd_create('capexec', 0); os.write(fd, open('/usr/bin/true','rb').read()); os.execv(f'/proc/self/fd/{fd}', ['memfdtrue'])",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve") && str_at(v, "process.exe") == Some("memfdtrue")
    });
    c.check(
        "exec from memfd",
        ev.as_ref().is_some_and(|e| {
            e["process"]["is_exe_from_memfd"] == Value::Bool(true)
                && str_at(e, "process.exepath").is_some_and(|p| p.starts_with("/memfd:capexec"))
        }),
        || show(&ev),
    );

    // Exec from an overlay mount: a file of the upper (writable) layer is flagged, a lower one not.
    let ovl = real.join("ovl");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(ovl.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/true", ovl.join("lower/lower-true")).unwrap();
    std::fs::copy("/usr/bin/true", ovl.join("upper/upper-true")).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        ovl.join("lower").display(),
        ovl.join("upper").display(),
        ovl.join("work").display()
    );
    let merged = ovl.join("merged");
    let mounted = cg
        .command("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &opts,
            merged.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        for (name, upper) in [("lower-true", false), ("upper-true", true)] {
            let exe = merged.join(name);
            assert!(
                cg.command(exe.to_str().unwrap())
                    .status()
                    .unwrap()
                    .success()
            );
            let ev = m.wait_for(WAIT, |v| {
                str_at(v, "type") == Some("execve") && str_at(v, "args.filename") == exe.to_str()
            });
            c.check(
                &format!("overlay exec {name}"),
                ev.as_ref().is_some_and(|e| {
                    e["process"]["is_exe_upper_layer"] == Value::Bool(upper)
                        && str_at(e, "process.exepath") == exe.to_str()
                }),
                || show(&ev),
            );
        }
        let ev = m.wait_for(WAIT, |v| {
            str_at(v, "type") == Some("mount") && str_at(v, "fd.path") == merged.to_str()
        });
        c.check(
            "mount",
            ev.as_ref().is_some_and(|e| {
                str_at(e, "args.fstype") == Some("overlay") && int_at(e, "ret") == Some(0)
            }),
            || show(&ev),
        );
        let _ = cg.command("umount").arg(&merged).status();
        let ev = m.wait_for(WAIT, |v| {
            str_at(v, "type") == Some("umount2") && str_at(v, "fd.raw_path") == merged.to_str()
        });
        c.check(
            "umount2",
            ev.as_ref().is_some_and(|e| int_at(e, "ret") == Some(0)),
            || show(&ev),
        );
    } else {
        eprintln!("SKIPPED: overlay exec scenario (mount -t overlay failed here)");
    }

    // io_uring side door: an OPENAT submitted through a ring is reported with its opcode.
    let out = cg
        .command("python3")
        .args(["-c", URING_PY])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let upid: i64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("io_uring_submit") && int_at(v, "process.pid") == Some(upid)
    });
    c.check(
        "io_uring submission",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "args.opcode") == Some(18) && str_at(e, "args.op") == Some("OPENAT")
        }),
        || format!("{} (workload said {text:?})", show(&ev)),
    );

    // The syscall workload.
    let out = cg
        .command("python3")
        .args(["-c", WORKLOAD_PY, &real_s])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "workload exit status");
    let info: Value = serde_json::from_slice(&out.stdout).expect("workload prints its JSON");
    let pid = info["pid"].as_u64().unwrap() as u32;
    let file = format!("{real_s}/sub/file.txt");

    let noexe = format!("{real_s}/no-such-exe");
    let ev = m.wait_for(WAIT, |v| {
        is(v, "execve", pid) && str_at(v, "args.filename") == Some(noexe.as_str())
    });
    c.check(
        "failed execve",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-2) && str_at(e, "process.comm") == Some("python3")
        }),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| {
        is(v, "openat", pid) && str_at(v, "fd.raw_path") == Some("sub/file.txt")
    });
    c.check(
        "openat dirfd + relative path",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(file.as_str())
                && str_at(e, "fd.path_source") == Some("kernel")
                && str_at(e, "fd.type") == Some("file")
                && int_at(e, "ret").is_some_and(|r| r >= 0)
                && int_at(e, "args.dirfd").is_some_and(|d| d >= 0)
        }),
        || show(&ev),
    );
    let dotdot = format!(
        "../../{}/sub/file.txt",
        real.file_name().unwrap().to_str().unwrap()
    );
    let ev = m.wait_for(WAIT, |v| {
        is(v, "openat", pid) && str_at(v, "fd.raw_path") == Some(dotdot.as_str())
    });
    c.check(
        "open ../../ path",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "fd.path") == Some(file.as_str())),
        || show(&ev),
    );
    let lnk = format!("{real_s}/lnk");
    let ev = m.wait_for(WAIT, |v| {
        is(v, "openat", pid) && str_at(v, "fd.raw_path") == Some(lnk.as_str())
    });
    c.check(
        "open through symlink gives target",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "fd.path") == Some(file.as_str())),
        || show(&ev),
    );
    let missing = format!("{real_s}/missing-abs");
    let ev = m.wait_for(WAIT, |v| {
        is(v, "openat", pid) && str_at(v, "fd.raw_path") == Some(missing.as_str())
    });
    c.check(
        "open ENOENT absolute",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-2)
                && str_at(e, "fd.path") == Some(missing.as_str())
                && str_at(e, "fd.path_source") == Some("user")
        }),
        || show(&ev),
    );
    let missing_rel = format!("{real_s}/sub/missing-rel");
    let ev = m.wait_for(WAIT, |v| {
        is(v, "openat", pid) && str_at(v, "fd.raw_path") == Some("missing-rel")
    });
    c.check(
        "open ENOENT relative joins kernel cwd",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-2) && str_at(e, "fd.path") == Some(missing_rel.as_str())
        }),
        || show(&ev),
    );

    let p4 = info["port4"].as_i64().unwrap();
    let ev = m.wait_for(WAIT, |v| {
        is(v, "connect", pid) && int_at(v, "fd.net.server_port") == Some(p4)
    });
    c.check(
        "connect 127.0.0.1 refused",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-111)
                && str_at(e, "fd.net.server_ip") == Some("127.0.0.1")
                && str_at(e, "fd.type") == Some("ipv4")
                && str_at(e, "fd.net.l4proto") == Some("tcp")
        }),
        || show(&ev),
    );
    let p6 = info["port6"].as_i64().unwrap();
    let ev = m.wait_for(WAIT, |v| {
        is(v, "connect", pid) && int_at(v, "fd.net.server_port") == Some(p6)
    });
    c.check(
        "connect ::1 refused",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-111)
                && str_at(e, "fd.net.server_ip") == Some("::1")
                && str_at(e, "fd.type") == Some("ipv6")
        }),
        || show(&ev),
    );
    let upath = format!("{real_s}/u.sock");
    let ev = m.wait_for(WAIT, |v| {
        is(v, "connect", pid) && str_at(v, "fd.net.unix_path") == Some(upath.as_str())
    });
    c.check(
        "connect unix path",
        ev.as_ref()
            .is_some_and(|e| int_at(e, "ret") == Some(0) && str_at(e, "fd.type") == Some("unix")),
        || show(&ev),
    );

    let any = |v: &Value, kinds: &[&str]| {
        str_at(v, "type").is_some_and(|t| kinds.contains(&t))
            && int_at(v, "process.pid") == Some(pid as i64)
    };
    let at = |n: &str| format!("{real_s}/{n}");
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["mkdir", "mkdirat"]) && str_at(v, "fd.raw_path") == Some("newdir")
    });
    c.check(
        "mkdir relative",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(at("newdir").as_str())
                && str_at(e, "fd.path_source") == Some("user")
                && int_at(e, "args.mode") == Some(0o750)
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["rename", "renameat", "renameat2"]) && str_at(v, "fd.raw_path") == Some("newdir")
    });
    c.check(
        "rename",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(at("newdir").as_str())
                && str_at(e, "fd.target_path") == Some(at("renamed").as_str())
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["symlink", "symlinkat"]) && str_at(v, "fd.raw_path") == Some("sym")
    });
    c.check(
        "symlink",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(at("sym").as_str())
                && str_at(e, "fd.target_path") == Some("sub/file.txt")
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["link", "linkat"]) && str_at(v, "fd.raw_path") == Some("sub/file.txt")
    });
    c.check(
        "link",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(file.as_str())
                && str_at(e, "fd.target_path") == Some(at("hard").as_str())
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["chmod", "fchmodat"]) && str_at(v, "fd.raw_path") == Some("sub/file.txt")
    });
    c.check(
        "chmod mode",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(file.as_str()) && int_at(e, "args.mode") == Some(0o640)
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["unlink", "unlinkat"]) && str_at(v, "fd.raw_path") == Some("hard")
    });
    c.check(
        "unlink",
        ev.as_ref().is_some_and(|e| {
            str_at(e, "fd.path") == Some(at("hard").as_str()) && int_at(e, "ret") == Some(0)
        }),
        || show(&ev),
    );
    let (sp, cp) = (
        info["srvport"].as_i64().unwrap(),
        info["cliport"].as_i64().unwrap(),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["listen"]) && int_at(v, "fd.net.server_port") == Some(sp)
    });
    c.check(
        "listen port from the kernel socket",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "fd.net.source") == Some("kernel")),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| {
        any(v, &["accept", "accept4"]) && int_at(v, "fd.net.client_port") == Some(cp)
    });
    c.check(
        "accept endpoints",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "fd.net.server_port") == Some(sp)
                && str_at(e, "fd.net.client_ip") == Some("127.0.0.1")
                && int_at(e, "ret").is_some_and(|r| r >= 0)
        }),
        || show(&ev),
    );
    let capeff = info["capeff"].as_i64().unwrap();
    let ev = m.wait_for(WAIT, |v| any(v, &["capset"]));
    c.check(
        "capset requested sets",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(info["capset"].as_i64().unwrap())
                && int_at(e, "args.cap_effective") == Some(capeff)
                && int_at(e, "process.cap_effective") == Some(capeff)
        }),
        || show(&ev),
    );
    let ev = m.wait_for(WAIT, |v| any(v, &["bpf"]));
    c.check(
        "bpf cmd",
        ev.as_ref()
            .is_some_and(|e| str_at(e, "args.cmd.text") == Some("BPF_PROG_GET_NEXT_ID")),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| {
        is(v, "memfd_create", pid) && str_at(v, "args.name") == Some("capture-memfd")
    });
    c.check(
        "memfd_create name",
        ev.as_ref()
            .is_some_and(|e| int_at(e, "ret").is_some_and(|r| r >= 0)),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| is(v, "unshare", pid));
    c.check(
        "unshare flags",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "args.flags.raw") == Some(0x04000000)
                && str_at(e, "args.flags.text") == Some("CLONE_NEWUTS")
                && int_at(e, "ret") == Some(0)
        }),
        || show(&ev),
    );

    let traced = info["traced"].as_i64().unwrap();
    let ev = m.wait_for(WAIT, |v| {
        is(v, "ptrace", pid) && str_at(v, "args.request.text") == Some("PTRACE_ATTACH")
    });
    c.check(
        "ptrace attach",
        ev.as_ref()
            .is_some_and(|e| int_at(e, "args.pid") == Some(traced) && int_at(e, "ret") == Some(0)),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| {
        is(v, "dup2", pid) && int_at(v, "args.newfd") == Some(0)
    });
    c.check(
        "dup2 socket onto fd 0",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(0)
                && str_at(e, "fd.type") == Some("ipv4")
                && str_at(e, "args.old_type") == Some("ipv4")
        }),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| {
        is(v, "setuid", pid) && int_at(v, "args.uid") == Some(0)
    });
    c.check(
        "setuid EPERM as nobody",
        ev.as_ref().is_some_and(|e| {
            int_at(e, "ret") == Some(-1) && int_at(e, "process.euid") == Some(65534)
        }),
        || show(&ev),
    );

    let ev = m.wait_for(WAIT, |v| is(v, "procexit", pid));
    c.check(
        "procexit code",
        ev.as_ref()
            .is_some_and(|e| int_at(e, "args.code") == Some(7) && int_at(e, "ret") == Some(7 << 8)),
        || show(&ev),
    );

    let st = m.stop().expect("monitor stops");
    c.check("monitor exits 0 on SIGTERM", st.success(), || {
        format!("{st:?}")
    });
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        c.failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
}

#[test]
fn module_load_is_reported_when_hookable() {
    if skip_unless_root() {
        return;
    }
    if !Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_finit_module").exists()
        && Path::new("/sys/kernel/tracing/events/syscalls").exists()
    {
        eprintln!(
            "SKIPPED: this kernel has no finit_module tracepoint (CONFIG_MODULES off); module loads are not covered here"
        );
        return;
    }
    let out = std::process::Command::new(monitor_bin())
        .arg("doctor")
        .output()
        .expect("doctor runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    assert_eq!(
        v["kinds"]["finit_module"]["covered"],
        Value::Bool(true),
        "{v}"
    );
}

#[test]
fn doctor_reports_coverage() {
    if skip_unless_root() {
        return;
    }
    let out = std::process::Command::new(monitor_bin())
        .arg("doctor")
        .output()
        .expect("doctor runs");
    assert!(
        out.status.success(),
        "doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    for k in [
        "execve",
        "clone",
        "procexit",
        "openat",
        "connect",
        "setuid",
        "ptrace",
        "memfd_create",
        "bpf",
    ] {
        assert_eq!(
            v["kinds"][k]["covered"],
            Value::Bool(true),
            "{k} not covered: {}",
            v["kinds"][k]
        );
    }
    if !Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_init_module").exists() {
        assert_eq!(v["kinds"]["init_module"]["covered"], Value::Bool(false));
        assert!(
            v["kinds"]["init_module"]["reason"]
                .as_str()
                .unwrap()
                .contains("absent"),
            "{}",
            v["kinds"]["init_module"]
        );
    }
}

/// `--containers-only` drops host-namespace processes in the kernel; `--kind` limits types.
#[test]
fn containers_only_and_kind_filters() {
    if skip_unless_root() {
        return;
    }
    let cg = TestCgroup::new("capture-scope").expect("test cgroup");
    let cgid = cg.id.to_string();
    let mut m = MonitorProcess::spawn(
        &[
            "events",
            "--cgroup",
            &cgid,
            "--containers-only",
            "--kind",
            "execve",
            "--kind",
            "procexit",
        ],
        Some("Capture ready"),
    )
    .expect("monitor starts");
    // A host process (host mount namespace): not reported.
    let st = cg
        .command("/bin/echo")
        .arg("host-side")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    // The same in a fresh mount namespace, as in a container: reported.
    let st = cg
        .command("unshare")
        .args(["-m", "/bin/echo", "container-side"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve")
            && v["process"]["args"] == serde_json::json!(["container-side"])
    });
    assert!(
        ev.is_some(),
        "exec in a new mount namespace was not reported"
    );
    // Anything from the host-side echo would have arrived before the container-side one.
    let host = m.wait_for(Duration::from_millis(500), |v| {
        v["process"]["args"] == serde_json::json!(["host-side"])
    });
    assert!(
        host.is_none(),
        "host exec reported in containers-only mode: {host:?}"
    );
    let other = m.wait_for(Duration::from_millis(100), |v| {
        !matches!(str_at(v, "type"), Some("execve" | "procexit"))
    });
    assert!(other.is_none(), "event of a type not asked for: {other:?}");
    m.stop().expect("monitor stops");
}

fn ns_link(kind: &str) -> u64 {
    let l = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
    let s = l.to_string_lossy().to_string();
    s.split_once('[')
        .and_then(|(_, r)| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// A real runc container (busybox rootfs) in the test cgroup: its exec and open are reported
/// with the container's namespaces, cgroup id and paths as the container sees them.
#[test]
fn runc_container_exec_and_open() {
    if skip_unless_root() {
        return;
    }
    let runc_ok = std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runc_ok || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: needs runc and /bin/busybox (busybox-static)");
        return;
    }
    let cg = TestCgroup::new("capture-runc").expect("test cgroup");
    let mount = monitor_tests::harness::cgroup2_mount().unwrap();
    let rel = cg
        .path
        .strip_prefix(&mount)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let bundle = std::env::temp_dir().join(format!("monitor-capture-runc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&bundle);
    for d in [
        "rootfs/bin",
        "rootfs/etc",
        "rootfs/proc",
        "rootfs/dev",
        "rootfs/sys",
    ] {
        std::fs::create_dir_all(bundle.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/marker"), b"m").unwrap();
    let st = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = Value::Bool(false);
    cfg["process"]["args"] = serde_json::json!(["/bin/busybox", "cat", "/etc/marker"]);
    cfg["linux"]["cgroupsPath"] = Value::String(format!("/{rel}"));
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();

    let cgid = cg.id.to_string();
    let mut m = MonitorProcess::spawn(
        &["events", "--cgroup", &cgid, "--containers-only"],
        Some("Capture ready"),
    )
    .expect("monitor starts");
    let id = format!("monitor-capture-{}", std::process::id());
    let out = std::process::Command::new("runc")
        .args(["run", &id])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"m");

    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("execve")
            && v["process"]["args"] == serde_json::json!(["cat", "/etc/marker"])
    });
    let e = ev
        .clone()
        .unwrap_or_else(|| panic!("no exec event from the container"));
    assert_eq!(
        str_at(&e, "process.exepath"),
        Some("/bin/busybox"),
        "{}",
        show(&ev)
    );
    assert_eq!(e["cgroup_id"].as_u64(), Some(cg.id));
    assert_ne!(
        e["process"]["pidns"].as_u64(),
        Some(ns_link("pid")),
        "container pid namespace"
    );
    assert_ne!(
        e["process"]["mntns"].as_u64(),
        Some(ns_link("mnt")),
        "container mount namespace"
    );
    let pid = e["process"]["pid"].as_u64().unwrap() as u32;
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type").is_some_and(|t| t.starts_with("open"))
            && str_at(v, "fd.raw_path") == Some("/etc/marker")
    });
    let o = ev
        .clone()
        .unwrap_or_else(|| panic!("no open event from the container"));
    assert_eq!(int_at(&o, "process.pid"), Some(pid as i64));
    assert_eq!(str_at(&o, "fd.path"), Some("/etc/marker"), "{}", show(&ev));
    assert_eq!(str_at(&o, "fd.path_source"), Some("kernel"));
    let ev = m.wait_for(WAIT, |v| {
        str_at(v, "type") == Some("procexit") && int_at(v, "process.pid") == Some(pid as i64)
    });
    assert_eq!(
        ev.as_ref().and_then(|e| int_at(e, "args.code")),
        Some(0),
        "{}",
        show(&ev)
    );
    m.stop().expect("monitor stops");
    let _ = std::fs::remove_dir_all(&bundle);
}
