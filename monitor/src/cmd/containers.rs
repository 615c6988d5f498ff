//! `monitor containers`: one-shot discovery of the containers on this node, printed as JSON
//! lines (one per container) or, with `--table`, as a human table.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::container::{Attributor, AttributorOptions, ContainerSummary, RuntimeRoots};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a table instead of JSON lines.
    #[arg(long)]
    pub table: bool,
    /// cgroup2 mount point (default: found in /proc/self/mountinfo).
    #[arg(long)]
    pub cgroup2_mount: Option<PathBuf>,
    /// runc state roots (repeatable; replaces the defaults).
    #[arg(long = "runc-root")]
    pub runc_roots: Vec<PathBuf>,
    /// containerd shim task roots, `<root>/<namespace>/<id>` (repeatable; replaces the defaults).
    #[arg(long = "containerd-task-root")]
    pub containerd_task_roots: Vec<PathBuf>,
    /// containers/storage graph roots used by podman (repeatable; replaces the defaults).
    #[arg(long = "podman-storage")]
    pub podman_storage: Vec<PathBuf>,
    /// containers/storage run roots used by CRI-O (repeatable; replaces the defaults).
    #[arg(long = "crio-run-storage")]
    pub crio_run_storage: Vec<PathBuf>,
    /// docker data roots (repeatable; replaces the defaults).
    #[arg(long = "docker-root")]
    pub docker_roots: Vec<PathBuf>,
}

impl Args {
    pub fn options(&self) -> AttributorOptions {
        let d = RuntimeRoots::default();
        let pick = |given: &Vec<PathBuf>, default: Vec<PathBuf>| {
            if given.is_empty() {
                default
            } else {
                given.clone()
            }
        };
        AttributorOptions {
            cgroup2_mount: self.cgroup2_mount.clone(),
            roots: RuntimeRoots {
                runc: pick(&self.runc_roots, d.runc),
                containerd_tasks: pick(&self.containerd_task_roots, d.containerd_tasks),
                podman_storage: pick(&self.podman_storage, d.podman_storage),
                crio_run_storage: pick(&self.crio_run_storage, d.crio_run_storage),
                docker: pick(&self.docker_roots, d.docker),
            },
            ..AttributorOptions::default()
        }
    }
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let attributor =
        Attributor::new(args.options()).context("cannot set up container attribution")?;
    attributor.discover();
    let list = attributor.containers();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.table {
        write_table(&mut out, &list)?;
    } else {
        for c in &list {
            writeln!(out, "{}", serde_json::to_string(c)?)?;
        }
    }
    out.flush()?;
    Ok(0)
}

fn write_table(out: &mut impl Write, list: &[ContainerSummary]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<12}  {:<10}  {:<20}  {:<32}  {:<8}  POD",
        "ID", "RUNTIME", "NAME", "IMAGE", "PID"
    )?;
    for c in list {
        let pod = c
            .k8s
            .as_ref()
            .map(|k| format!("{}/{}", k.namespace, k.pod_name))
            .unwrap_or_default();
        let pid = c.init_pid.map(|p| p.to_string()).unwrap_or_default();
        writeln!(
            out,
            "{:<12}  {:<10}  {:<20}  {:<32}  {:<8}  {}",
            c.id,
            c.runtime,
            clip(&c.name, 20),
            clip(&c.image, 32),
            pid,
            pod
        )?;
    }
    Ok(())
}

/// Names come from container configs: keep the table's columns, and drop control characters.
fn clip(s: &str, n: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= n {
        clean
    } else {
        clean
            .chars()
            .take(n - 1)
            .chain(std::iter::once('…'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_clips_and_escapes() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\nb\x1b", 5), "a?b?");
    }
}
