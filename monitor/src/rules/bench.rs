//! Rule engine throughput, for `monitor rules bench` and `cargo xtask bench rules` (figures, never assertions).
//!
//! Two streams, each evaluated on one thread (figures are events/s per core): "benign", the
//! syscalls of a busy container (library opens, execs of common tools, cluster-internal
//! connects), and "mixed", the same with the fixture events (attacks included, so alerts are
//! rendered) at one in ten.

use std::path::PathBuf;
use std::time::Instant;

use crate::event::{
    Ancestor, Container, Event, EventType, Fd, FdType, NetTuple, Process, SCHEMA_VERSION, Source,
};
use crate::rules::{self, LoadOptions, fixture};

/// What the daemon shares between the events of a process and of a container: the process
/// table's entry (comm, paths, argv and ancestor chain are `Arc`s) and the container's
/// attribution. Events clone these, as decoded events do, so the figures measure the engine
/// and not cache misses on per-event copies the daemon never makes.
struct Shared {
    processes: Vec<Process>,
    container: std::sync::Arc<Container>,
}

impl Shared {
    /// One process per (pid, argv) pair the benign stream uses: 50 pids x 7 configs.
    const PROCESSES: usize = 350;

    fn new() -> Shared {
        let ancestors: std::sync::Arc<[Ancestor]> = vec![Ancestor {
            pid: 900,
            comm: "containerd-shim".into(),
            exe: "containerd-shim-runc-v2".into(),
            exepath: "/usr/bin/containerd-shim-runc-v2".into(),
            args: vec![],
        }]
        .into();
        let processes = (0..Self::PROCESSES)
            .map(|i| Process {
                pid: 1000 + (i % 50) as u32,
                tid: 1000 + (i % 50) as u32,
                ppid: 900,
                comm: ["java", "nginx", "python3", "ls", "node"][i % 5].into(),
                exe: "app".into(),
                exepath: [
                    "/usr/bin/java",
                    "/usr/sbin/nginx",
                    "/usr/bin/python3",
                    "/usr/bin/ls",
                    "/usr/local/bin/node",
                ][i % 5]
                    .into(),
                args: vec!["-c".into(), format!("config-{}.yaml", i % 7)].into(),
                cwd: "/app".into(),
                ancestors: ancestors.clone(),
                ..Process::default()
            })
            .collect();
        let container = Container {
            id: "0123456789ab".into(),
            name: "app".into(),
            image: "docker.io/acme/app:1".into(),
            image_repository: "docker.io/acme/app".into(),
            image_tag: "1".into(),
            metadata_complete: true,
            ..Container::default()
        };
        Shared {
            processes,
            container: container.into(),
        }
    }
}

fn benign(shared: &Shared, i: usize) -> Event {
    let process = shared.processes[i % Shared::PROCESSES].clone();
    let (kind, fd, args) = match i % 10 {
        0..=4 => (
            EventType::Openat,
            Some(Fd {
                num: Some(5),
                typ: FdType::File,
                path: Some(format!("/usr/lib/x86_64-linux-gnu/lib{}.so.1", i % 13)),
                path_source: Source::Kernel,
                ..Fd::default()
            }),
            [(
                "flags".into(),
                rules_arg_flags(0, "O_RDONLY|O_CLOEXEC"),
            )]
            .into_iter()
            .collect(),
        ),
        5 => (
            EventType::Openat,
            Some(Fd {
                num: Some(6),
                typ: FdType::File,
                path: Some(format!("/app/data/{}.tmp", i % 97)),
                path_source: Source::Kernel,
                ..Fd::default()
            }),
            [(
                "flags".into(),
                rules_arg_flags(577, "O_WRONLY|O_CREAT|O_TRUNC"),
            )]
            .into_iter()
            .collect(),
        ),
        6 | 7 => (
            EventType::Connect,
            Some(Fd {
                num: Some(7),
                typ: FdType::Ipv4,
                net: Some(NetTuple {
                    l4proto: "tcp".into(),
                    client_ip: Some("10.1.2.3".into()),
                    client_port: Some(40000),
                    server_ip: Some("10.96.0.10".into()),
                    server_port: Some(5432),
                    unix_path: None,
                    source: Source::Kernel,
                }),
                ..Fd::default()
            }),
            Default::default(),
        ),
        _ => (EventType::Execve, None, Default::default()),
    };
    Event {
        schema: SCHEMA_VERSION,
        ts: 1_700_000_000_000_000_000 + i as u64,
        num: i as u64 + 1,
        kind,
        ret: 0,
        process,
        fd,
        args,
        cgroup_id: 1,
        container: shared.container.clone(),
    }
}

fn rules_arg_flags(raw: i64, text: &str) -> crate::event::Arg {
    crate::event::Arg::Flags {
        raw,
        text: text.to_string(),
    }
}

/// Concatenate rule files, repeating every rule `k` times under new names. Each copy gets one
/// term of its own (`and proc.name != "bench-<rule>-<copy>"`, appended the Falco way), so
/// copies are distinct rules that share their macros, not duplicates the engine could fold.
fn multiply(paths: &[PathBuf], k: usize) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut tails = String::new();
    let mut rule_no = 0usize;
    for f in rules::expand_paths(paths) {
        let f = f.map_err(|(p, e)| anyhow::anyhow!("{}: {e}", p.display()))?;
        let text = std::fs::read_to_string(&f)?;
        // Split into top-level items (lines starting with "- ").
        let mut items: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("- ") || items.is_empty() {
                items.push(String::new());
            }
            let last = items.len() - 1;
            items[last].push_str(line);
            items[last].push('\n');
        }
        for item in items {
            out.push_str(&item);
            if let Some(rest) = item.strip_prefix("- rule:") {
                let (name, body) = rest.split_once('\n').unwrap_or((rest, ""));
                let name = name.trim();
                // Appends and overrides of an existing rule are not new rules.
                if !body.contains("condition:")
                    || body.contains("override:")
                    || body.contains("append:")
                {
                    continue;
                }
                rule_no += 1;
                for i in 1..k {
                    out.push_str(&format!("- rule: {name} copy {i}\n{body}"));
                    tails.push_str(&format!(
                        "- rule: {name} copy {i}\n  condition: and proc.name != \"bench-{rule_no}-{i}\"\n  override:\n    condition: append\n"
                    ));
                }
            }
        }
    }
    out.push_str(&tails);
    Ok(out)
}

/// CPU time of the calling thread: the figures are events per CPU-second, so time the thread
/// spends preempted by other work on a shared machine does not count against the engine.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

pub fn run(sets: &[String], fixture_dirs: &[PathBuf], n: usize) -> anyhow::Result<i32> {
    let mut attack: Vec<Event> = Vec::new();
    for d in fixture_dirs {
        for sub in std::fs::read_dir(d).into_iter().flatten().flatten() {
            for f in fixture::files_in(&sub.path())
                .into_iter()
                .chain(fixture::files_in(d))
            {
                if let Ok(cases) = fixture::read_file(&f) {
                    attack.extend(cases.into_iter().map(|c| c.event));
                }
            }
        }
    }
    let shared = Shared::new();
    let mixed: Vec<Event> = (0..n.max(1))
        .map(|i| {
            if i % 10 == 9 && !attack.is_empty() {
                attack[i / 10 % attack.len()].clone()
            } else {
                benign(&shared, i)
            }
        })
        .collect();
    let quiet: Vec<Event> = (0..n.max(1)).map(|i| benign(&shared, i)).collect();
    println!(
        "Each figure: events per CPU-second of the evaluating thread, best of 3 interleaved rounds. 'lin' evaluates rule by rule (the engine \
before the shared plan), 'shr' is the shared plan, '+timing' the plan with per-rule cost sampling on (1 event in \
{} up to {} rules, less often above). Ratios are from the same run.",
        rules::TIMING_SAMPLE_EVERY,
        rules::TIMING_RULES_PER_STEP
    );
    println!(
        "{:<14} {:>5} {:>6} {:>8} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>11} {:>8} {:>7}",
        "rule set",
        "mult",
        "rules",
        "load ms",
        "benign lin",
        "benign shr",
        "x",
        "mixed lin",
        "mixed shr",
        "x",
        "+timing",
        "timing",
        "alerts"
    );
    for s in sets {
        let (label, paths) = s.split_once('=').unwrap_or((s.as_str(), s.as_str()));
        let paths: Vec<PathBuf> = paths.split(',').map(PathBuf::from).collect();
        for k in [1usize, 10, 100] {
            let text = multiply(&paths, k)?;
            let opts = LoadOptions::default();
            let t0 = Instant::now();
            let (mut set, diags) = rules::load_str(label, &text, &opts);
            let load_ms = t0.elapsed().as_millis();
            if diags.iter().any(|d| d.is_error()) {
                anyhow::bail!(
                    "{label} x{k} does not load: {}",
                    diags
                        .iter()
                        .find(|d| d.is_error())
                        .map(|d| d.render())
                        .unwrap_or_default()
                );
            }
            // Fewer events at high multipliers keep the linear runs short; rates stay comparable.
            let take = |v: &[Event]| -> Vec<Event> {
                v[..v.len().min(n.max(1) * 10 / (k + 9) / 3)].to_vec()
            };
            let (quiet_k, mixed_k) = (take(&quiet), take(&mixed));
            let measure = |set: &rules::RuleSet, events: &[Event], linear: bool| -> (f64, usize) {
                let eval = |ev: &Event| {
                    if linear {
                        set.evaluate_linear(ev)
                    } else {
                        set.evaluate(ev)
                    }
                };
                for ev in events.iter().take(1000) {
                    std::hint::black_box(eval(ev));
                }
                let t = thread_cpu_seconds();
                let mut alerts = 0usize;
                for ev in events {
                    alerts += std::hint::black_box(eval(ev)).len();
                }
                (
                    events.len() as f64 / (thread_cpu_seconds() - t).max(1e-9),
                    alerts,
                )
            };
            // Best of three rounds, the variants interleaved in each: the machine is shared, and
            // a burst of foreign load then hits every variant alike rather than one of them.
            let (mut bl, mut bs, mut ml, mut ms, mut mt) = (0f64, 0f64, 0f64, 0f64, 0f64);
            let (mut alerts_l, mut alerts, mut alerts_t) = (0, 0, 0);
            for _ in 0..3 {
                set.set_timing(false);
                bl = bl.max(measure(&set, &quiet_k, true).0);
                bs = bs.max(measure(&set, &quiet_k, false).0);
                let (r, a) = measure(&set, &mixed_k, true);
                (ml, alerts_l) = (ml.max(r), a);
                let (r, a) = measure(&set, &mixed_k, false);
                (ms, alerts) = (ms.max(r), a);
                set.set_timing(true);
                let (r, a) = measure(&set, &mixed_k, false);
                (mt, alerts_t) = (mt.max(r), a);
            }
            let (mut terms, mut cands) = (0usize, 0usize);
            for ev in &quiet_k {
                let (t, c) = set.plan_work(ev);
                terms += t;
                cands += c;
            }
            eprintln!(
                "{label} x{k}: benign events meet {:.1} candidate rules each; the plan evaluates {:.1} terms ({} terms, {} nodes)",
                cands as f64 / quiet_k.len() as f64,
                terms as f64 / quiet_k.len() as f64,
                set.plan_size().0,
                set.plan_size().1
            );
            if alerts != alerts_l || alerts != alerts_t {
                anyhow::bail!(
                    "{label} x{k}: alerts differ: linear {alerts_l}, shared {alerts}, timed {alerts_t}"
                );
            }
            println!(
                "{label:<14} {k:>4}x {:>6} {load_ms:>8} {bl:>11.0} {bs:>11.0} {:>6.2}x {ml:>11.0} {ms:>11.0} {:>6.2}x {mt:>11.0} {:>+7.1}% {alerts:>7}",
                set.len(),
                bs / bl,
                ms / ml,
                (ms / mt - 1.0) * 100.0,
            );
        }
    }
    Ok(0)
}
