//! `monitor`: parse the command line, set up logging, hand over to `monitor::cmd`.

use clap::{Parser, Subcommand};
use monitor::cmd;

/// The daemon allocates a few dozen small objects per event on the capture thread and frees
/// them on the rules thread: glibc malloc spent ~40% of the CPU there (arena locks, cross-thread
/// frees, consolidation); mimalloc's per-thread free lists take that path without locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "monitor", version, about = "Runtime security monitor for containers (eBPF)")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); logs go to stderr.
    #[arg(long, global = true, env = "MONITOR_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: capture, attribute, evaluate the rules, write alerts, serve metrics.
    Run(cmd::run::Args),
    /// Print decoded, enriched events as JSON lines.
    Events(cmd::events::Args),
    /// Save the enriched live event stream to a file (JSON lines).
    Record(cmd::record::Args),
    /// Evaluate a recording offline and print the alerts.
    Replay(cmd::replay::Args),
    /// Check, test and diff rule files.
    Rules(cmd::rules::Args),
    /// List the containers tracked now.
    Containers(cmd::containers::Args),
    /// Report what this kernel lets the monitor attach and what it cannot see.
    Doctor(cmd::doctor::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs usually go to a file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()))
        .init();
    let result = match cli.command {
        Command::Run(a) => cmd::run::main(a),
        Command::Events(a) => cmd::events::main(a),
        Command::Record(a) => cmd::record::main(a),
        Command::Replay(a) => cmd::replay::main(a),
        Command::Rules(a) => cmd::rules::main(a),
        Command::Containers(a) => cmd::containers::main(a),
        Command::Doctor(a) => cmd::doctor::main(a),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("monitor: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
