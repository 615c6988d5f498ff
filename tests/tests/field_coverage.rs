//! Every field the shipped rules and Falco's stable rules read is filled on live events.
//!
//! The engine lists, per loaded rule, the fields of its condition (macros and exceptions
//! included) and of its output, and the event kinds the rule can match
//! (`RuleSet::rule_fields`). One `monitor events --containers-only` captures a real runc
//! container doing a set of behaviours (files, links, exec chains, sockets, privilege and
//! namespace calls, ptrace, bpf, file capabilities, io_uring, a 32-bit program). Then, with
//! the engine's own extraction (`rules::fields::is_filled`), each field must be filled on at
//! least one live event of a kind one of its rules applies to.
//!
//! [`NOT_FILLED_HERE`] lists the fields that cannot be filled, with the reason. The test fails
//! when an unlisted field is missing, and when a listed field starts being filled (the list
//! must shrink as capture grows).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use monitor::event::{Event, EventType};
use monitor::rules::{self, FieldUse, LoadOptions, fields::is_filled, program::KindSet};
use monitor_tests::containers::skip_unless_tools;
use monitor_tests::harness::{MonitorProcess, skip_unless_root, workspace_root};
use monitor_tests::live::{LiveContainer, Shape, build_helper, compile_c, put};

/// Fields no live event can fill here, and why.
const NOT_FILLED_HERE: &[(&str, &str)] = &[
    // Known to Falco, never carried by the monitor's events (the engine warns at load).
    ("fd.sip.name", "DNS answers are not captured"),
    // Only read by the module-load rules: CONFIG_MODULES is off on this kernel, so
    // init_module/finit_module return ENOSYS and have no tracepoints.
    (
        "proc.aexepath[2]",
        "only the module-load rule reads it; CONFIG_MODULES is off here",
    ),
];

/// A freestanding ia32 program (no 32-bit libc needed): exit(0) through `int $0x80`.
const EXIT32_C: &str = r#"
void _start(void) { __asm__ volatile("int $0x80" : : "a"(1), "b"(0) : "memory"); }
"#;

/// field text -> (resolved field or None, kinds its rules apply to, rules naming it).
type Needs = BTreeMap<String, (Option<rules::fields::FieldRef>, KindSet, BTreeSet<String>)>;

fn collect_needs(sets: &[(&str, Vec<PathBuf>)]) -> Needs {
    let mut needs: Needs = BTreeMap::new();
    for (label, paths) in sets {
        let (set, diags) = rules::load_lenient(paths, &LoadOptions::default());
        assert!(
            !diags.iter().any(|d| d.is_error()),
            "{label} does not load: {:?}",
            diags.iter().find(|d| d.is_error()).map(|d| d.render())
        );
        assert!(!set.is_empty(), "{label}: no rules loaded");
        for r in set.rule_fields() {
            let kinds = r.kinds.cloned().unwrap_or_else(KindSet::all);
            let uses: Vec<&FieldUse> = r.condition.iter().chain(r.output.iter()).collect();
            for u in uses {
                let e = needs
                    .entry(u.text.clone())
                    .or_insert_with(|| (u.field.clone(), KindSet::default(), BTreeSet::new()));
                e.1 = e.1.or(&kinds);
                e.2.insert(format!("{label}: {}", r.rule));
            }
        }
    }
    needs
}

fn container_rootfs(root: &Path, helper: Option<&Path>, exit32: Option<&Path>) -> anyhow::Result<()> {
    put(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    put(root, "etc/group", "root:x:0:\nnobody:x:65534:\n")?;
    put(root, "etc/shadow", "root:$6$x$y:19000:0:99999:7:::\n")?;
    put(root, "root/notes.txt", "hello\n")?;
    put(
        root,
        "opt/chain.sh",
        "n=$1\nif [ \"$n\" -gt 0 ]; then sh /opt/chain.sh $((n - 1)); else cat /root/notes.txt; fi\n",
    )?;
    for d in ["mnt", "opt", "work"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    if let Some(h) = helper {
        std::fs::copy(h, root.join("opt/helper"))?;
    }
    if let Some(e) = exit32 {
        std::fs::copy(e, root.join("opt/exit32"))?;
    }
    Ok(())
}

/// The behaviours, each a `sh -c` script run with `runc exec`. Exit statuses are not judged:
/// a refused attempt still produces the event the fields are read from.
const BEHAVIOURS: &[(&str, &str)] = &[
    // A login session as pam_loginuid makes one: the audit login uid set (CAP_AUDIT_CONTROL),
    // then a program run under it (user.loginname).
    ("login", "echo 0 > /proc/self/loginuid && /bin/true"),
    (
        "files",
        "cd /work && cat /etc/shadow >/dev/null && echo data > f1 && echo more >> f1 \
         && mv f1 f2 && ln -s f2 s1 && ln f2 h1 && chmod 4755 f2 && chmod 0644 f2 \
         && truncate -s 0 f2 && mkdir d1 && rmdir d1 && rm s1 h1 \
         && cp /bin/busybox /work/sh && /work/sh -c true && cat /etc/../etc/passwd >/dev/null",
    ),
    // Eight shells deep: the stable rules read ancestors up to proc.aname[7].
    ("exec chain", "sh /opt/chain.sh 8"),
    (
        "network",
        // `listening` is monitor_tests::live::LISTENING_SH (a const cannot format! it in):
        // wait for the listener instead of sleeping, which a loaded machine outlasts.
        "listening() { i=0; until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q \":$1 [0-9A-F]*:0000 0A \" || [ $i -ge 600 ]; do i=$((i+1)); sleep 0.1; done; }; \
         nc -l -p 8080 >/dev/null & listening 1F90; echo hi | nc 127.0.0.1 8080; \
         nc -l -p 8081 >/dev/null & listening 1F91; /opt/helper dupsock 8081; \
         ping -c 1 -W 1 127.0.0.1 >/dev/null; wait",
    ),
    (
        "privilege",
        "/opt/helper ids; su nobody -s /bin/sh -c true; mount -t tmpfs none /mnt; \
         umount /mnt; unshare -m true; nsenter -t 1 -m true; /opt/helper ptrace; \
         /opt/helper bpf; /opt/helper memfd; /opt/exit32; \
         cp /bin/busybox /work/capped; /opt/helper setcap /work/capped; \
         env LD_PRELOAD=/opt/none.so LD_AUDIT=/opt/none.so /bin/true; \
         touch /work/ur1; /opt/helper uring rename /work/ur1 /work/ur2; \
         /opt/helper uring unlink /work/ur2; /opt/helper uring open /etc/passwd",
    ),
];

#[test]
fn every_rule_field_is_filled_on_live_events() {
    if skip_unless_root() {
        return;
    }
    if skip_unless_tools(&["runc", "nsenter", "gcc"]) {
        return;
    }
    let root = workspace_root();
    let falco = std::env::var_os("MONITOR_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared"))
        .join("third_party/falcosecurity-rules/falco_rules.yaml");
    let mut sets = vec![("shipped", vec![root.join("rules")])];
    if falco.is_file() {
        sets.push(("falco-stable", vec![falco]));
    } else {
        // The stable set is half of what this test is for: say so loudly, check the rest.
        eprintln!(
            "NOTE: {} not found (set MONITOR_SHARED_DIR); checking the shipped rules only",
            falco.display()
        );
    }
    let needs = collect_needs(&sets);

    let work = std::env::temp_dir().join(format!("monitor-fieldcov-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let helper = work.join("helper");
    build_helper(&helper).expect("gcc -static builds the helper");
    let exit32 = work.join("exit32");
    let exit32_ok = match compile_c(
        &exit32,
        EXIT32_C,
        &["-m32", "-nostdlib", "-static", "-ffreestanding", "-fno-pie", "-no-pie"],
    ) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("NOTE: no 32-bit program ({e:#}): compat_syscall fields will be missing");
            false
        }
    };

    let mut mon =
        MonitorProcess::spawn(&["events", "--containers-only"], Some("Capture ready")).expect("monitor events starts");
    let shape = Shape {
        extra_caps: vec![
            "CAP_AUDIT_CONTROL",
            "CAP_SYS_ADMIN",
            "CAP_NET_RAW",
            "CAP_SYS_PTRACE",
            "CAP_SETUID",
            "CAP_SETGID",
        ],
        overlay: true,
        ..Shape::default()
    };
    let c = LiveContainer::start("fieldcov-0", "registry.example/shop/web:1.4.2", &shape, |r| {
        container_rootfs(r, Some(&helper), exit32_ok.then_some(exit32.as_path()))
    })
    .expect("container starts");
    for (name, script) in BEHAVIOURS {
        let out = c.sh(script).expect("runc exec");
        eprintln!(
            "behaviour {name}: exit {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // A last, recognisable event: everything the container did before it has been read
    // once this one is seen (one reader, in order per ring; the wait adds margin for the
    // bulk ring's timer).
    let _ = c.sh("cat /etc/group >/dev/null");
    let cid = c.short_id().to_string();
    let last = mon.wait_for(Duration::from_secs(60), |v| {
        v["container"]["id"] == cid.as_str() && v["fd"]["path"].as_str().is_some_and(|p| p.ends_with("/etc/group"))
    });
    assert!(last.is_some(), "the container's last open never arrived");
    let _ = mon.wait_for(Duration::from_secs(1), |_| false);
    drop(c);
    let seen = std::mem::take(&mut mon.seen);
    let _ = mon.stop();
    let _ = std::fs::remove_dir_all(&work);

    let mut events: Vec<Event> = Vec::new();
    let mut unparsed = 0usize;
    for line in &seen {
        match Event::from_json_line(line) {
            Ok(ev) if ev.container.id == cid => events.push(ev),
            Ok(_) => {}
            Err(_) => unparsed += 1,
        }
    }
    assert_eq!(unparsed, 0, "every line of `monitor events` is an event");
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for ev in &events {
        *per_kind.entry(ev.kind.name()).or_default() += 1;
    }
    eprintln!("{} live events from the container: {per_kind:?}", events.len());

    let mut missing: BTreeMap<&str, String> = BTreeMap::new();
    let mut filled: BTreeSet<&str> = BTreeSet::new();
    for (text, (field, kinds, users)) in &needs {
        let applicable = events.iter().filter(|e| kinds.contains(e.kind));
        let ok = match field {
            Some(f) => applicable.clone().any(|e| is_filled(f, e)),
            None => false,
        };
        if ok {
            filled.insert(text);
            continue;
        }
        let seen_kinds: BTreeSet<&str> = applicable.map(|e| e.kind.name()).collect();
        let why = match field {
            None => "not supported by the engine".to_string(),
            Some(_) if seen_kinds.is_empty() => format!(
                "no live event of its kinds ({})",
                kinds.iter().map(EventType::name).collect::<Vec<_>>().join(",")
            ),
            Some(_) => format!(
                "absent on every live {}",
                seen_kinds.into_iter().collect::<Vec<_>>().join(",")
            ),
        };
        let first_user = users.iter().next().cloned().unwrap_or_default();
        missing.insert(
            text,
            format!("{why}; read by {first_user} and {} more", users.len() - 1),
        );
    }
    eprintln!("{} fields read by the rules, {} filled live", needs.len(), filled.len());
    let listed: BTreeMap<&str, &str> = NOT_FILLED_HERE.iter().copied().collect();
    let unexpected: Vec<String> = missing
        .iter()
        .filter(|(f, _)| !listed.contains_key(*f))
        .map(|(f, why)| format!("  {f}: {why}"))
        .collect();
    let now_filled: Vec<&str> = listed.keys().filter(|f| filled.contains(*f)).copied().collect();
    // Without the stable set, its fields are legitimately unread.
    let stale: Vec<&str> = listed
        .keys()
        .filter(|f| sets.len() == 2 && !needs.contains_key(**f))
        .copied()
        .collect();
    for (f, why) in &missing {
        if let Some(reason) = listed.get(f) {
            eprintln!("not filled here (listed): {f}: {reason}");
        } else {
            eprintln!("MISSING: {f}: {why}");
        }
    }
    assert!(
        unexpected.is_empty() && now_filled.is_empty() && stale.is_empty(),
        "field coverage changed:\nmissing and not listed in NOT_FILLED_HERE:\n{}\nlisted but now filled (remove them): {now_filled:?}\nlisted but no rule reads them (remove them): {stale:?}",
        unexpected.join("\n")
    );
}
