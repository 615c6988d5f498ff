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

fn benign(i: usize) -> Event {
    let process = Process {
        pid: 1000 + (i % 50) as u32,
        tid: 1000 + (i % 50) as u32,
        ppid: 900,
        comm: ["java", "nginx", "python3", "ls", "node"][i % 5].to_string(),
        exe: "app".into(),
        exepath: [
            "/usr/bin/java",
            "/usr/sbin/nginx",
            "/usr/bin/python3",
            "/usr/bin/ls",
            "/usr/local/bin/node",
        ][i % 5]
            .into(),
        args: vec!["-c".into(), format!("config-{}.yaml", i % 7)],
        cwd: "/app".into(),
        ancestors: vec![Ancestor {
            pid: 900,
            comm: "containerd-shim".into(),
            exepath: "/usr/bin/containerd-shim-runc-v2".into(),
            args: vec![],
        }]
        .into(),
        ..Process::default()
    };
    let container = Container {
        id: "0123456789ab".into(),
        name: "app".into(),
        image: "docker.io/acme/app:1".into(),
        image_repository: "docker.io/acme/app".into(),
        image_tag: "1".into(),
        metadata_complete: true,
        ..Container::default()
    };
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
                "flags".to_string(),
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
                "flags".to_string(),
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
        kind,
        ret: 0,
        process,
        fd,
        args,
        cgroup_id: 1,
        container,
    }
}

fn rules_arg_flags(raw: i64, text: &str) -> crate::event::Arg {
    crate::event::Arg::Flags {
        raw,
        text: text.to_string(),
    }
}

/// Concatenate rule files, repeating every rule `k` times under new names.
fn multiply(paths: &[PathBuf], k: usize) -> anyhow::Result<String> {
    let mut out = String::new();
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
                for i in 1..k {
                    out.push_str(&format!("- rule: {} copy {i}\n{body}", name.trim()));
                }
            }
        }
    }
    Ok(out)
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
    let mixed: Vec<Event> = (0..n.max(1))
        .map(|i| {
            if i % 10 == 9 && !attack.is_empty() {
                attack[i / 10 % attack.len()].clone()
            } else {
                benign(i)
            }
        })
        .collect();
    let quiet: Vec<Event> = (0..n.max(1)).map(benign).collect();
    println!(
        "{:<14} {:>5} {:>6} {:>9} {:>14} {:>10} {:>14} {:>10} {:>8}",
        "rule set",
        "mult",
        "rules",
        "load ms",
        "benign ev/s",
        "ns/event",
        "mixed ev/s",
        "ns/event",
        "alerts"
    );
    for s in sets {
        let (label, paths) = s.split_once('=').unwrap_or((s.as_str(), s.as_str()));
        let paths: Vec<PathBuf> = paths.split(',').map(PathBuf::from).collect();
        for k in [1usize, 10, 100] {
            let text = multiply(&paths, k)?;
            let opts = LoadOptions::default();
            let t0 = Instant::now();
            let (set, diags) = rules::load_str(label, &text, &opts);
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
            let measure = |events: &[Event]| -> (f64, usize) {
                for ev in events.iter().take(1000) {
                    std::hint::black_box(set.evaluate(ev));
                }
                let t = Instant::now();
                let mut alerts = 0usize;
                for ev in events {
                    alerts += std::hint::black_box(set.evaluate(ev)).len();
                }
                (events.len() as f64 / t.elapsed().as_secs_f64(), alerts)
            };
            let (b, _) = measure(&quiet);
            let (m, alerts) = measure(&mixed);
            println!(
                "{label:<14} {k:>4}x {:>6} {load_ms:>9} {b:>14.0} {:>10.0} {m:>14.0} {:>10.0} {alerts:>8}",
                set.len(),
                1e9 / b,
                1e9 / m
            );
        }
    }
    Ok(0)
}
