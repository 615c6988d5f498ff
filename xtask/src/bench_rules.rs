//! `cargo xtask bench rules`: events per CPU-second through the rule engine with the shipped
//! rule set and Falco's stable set, at 1x, 10x and 100x the rule count (rules cloned under new
//! names, each copy with one term of its own). Each row compares, in the same run, rule-by-rule
//! evaluation, the shared plan the daemon uses, and the plan with per-rule cost sampling on.
//! Builds the monitor in release mode and runs its hidden `rules bench` command, so the figures
//! are for optimised code whatever profile xtask itself runs in.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "monitor"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p monitor failed");
    }
    let mut sets = vec![format!("shipped={}", root.join("rules").display())];
    let falco = std::env::var_os("MONITOR_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("..").join("shared"))
        .join("third_party/falcosecurity-rules/falco_rules.yaml");
    if falco.is_file() {
        sets.push(format!("falco-stable={}", falco.display()));
    } else {
        eprintln!(
            "note: {} not found (set MONITOR_SHARED_DIR); measuring the shipped set only",
            falco.display()
        );
    }
    let mut cmd = Command::new(root.join("target/release/monitor"));
    cmd.args([
        "rules",
        "bench",
        "--events",
        &args.events.to_string(),
        "--fixtures",
    ])
    .arg(root.join("rules/fixtures"));
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let status = cmd
        .current_dir(&root)
        .status()
        .context("running monitor rules bench")?;
    if !status.success() {
        bail!("monitor rules bench failed");
    }
    Ok(())
}
