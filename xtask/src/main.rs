//! `cargo xtask <command>`: orchestration that is easier to keep in Rust than in shell.
//! One module per command.

mod bench_capture;
mod bench_rules;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print performance figures (never assertions).
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Exec, open and connect storms with and without the monitor attached.
    Capture(bench_capture::Args),
    /// Events/s per core through the rule engine.
    Rules(bench_rules::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench { what: Bench::Capture(a) } => bench_capture::run(a),
        Command::Bench { what: Bench::Rules(a) } => bench_rules::run(a),
    }
}
