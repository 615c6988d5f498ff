//! `monitor run`: the daemon. Shipped rules by default, JSON alerts on stdout, metrics on
//! `--metrics-address`, clean stop on SIGINT/SIGTERM.
//!
//! Settings come from the config file, then `MONITOR_*` environment variables, then these flags
//! (see `config`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::alert::Priority;
use crate::config::{Config, RunOverrides};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML config file (default /etc/monitor/monitor.yaml when present).
    #[arg(long, env = "MONITOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rule files or directories, repeatable (default: the shipped rules).
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
    /// Load only rules at or above this priority (Falco names, case-insensitive).
    #[arg(long)]
    pub min_priority: Option<Priority>,
    /// Load only rules carrying one of these tags; repeatable.
    #[arg(long = "enable-tag")]
    pub enable_tags: Vec<String>,
    /// Do not load rules carrying this tag; repeatable.
    #[arg(long = "disable-tag")]
    pub disable_tags: Vec<String>,
    /// Do not load this rule (exact name or `*` glob); repeatable.
    #[arg(long = "disable-rule")]
    pub disable_rules: Vec<String>,
    /// Skip host processes in the kernel.
    #[arg(long)]
    pub containers_only: bool,
    /// Where /metrics, /healthz and /readyz are served (default 127.0.0.1:9376).
    #[arg(long = "metrics-address")]
    pub metrics_address: Option<SocketAddr>,
    /// Also append alerts to this file (rotated at 100 MiB, 5 kept).
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Do not write alerts to stdout.
    #[arg(long)]
    pub no_stdout: bool,
    /// Turn off per-(rule, container) rate limiting.
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Turn off secret redaction in alerts.
    #[arg(long)]
    pub no_redaction: bool,
}

impl Args {
    fn overrides(self) -> RunOverrides {
        RunOverrides {
            config: self.config,
            rules: self.rules,
            min_priority: self.min_priority,
            enable_tags: self.enable_tags,
            disable_tags: self.disable_tags,
            disable_rules: self.disable_rules,
            containers_only: self.containers_only.then_some(true),
            http_address: self.metrics_address,
            output_file: self.output_file,
            no_stdout: self.no_stdout,
            no_rate_limit: self.no_rate_limit,
            no_redaction: self.no_redaction,
        }
    }
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let cfg = match Config::resolve(&args.overrides()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("monitor: {e}");
            return Ok(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(crate::pipeline::run_daemon(cfg))?;
    Ok(0)
}
