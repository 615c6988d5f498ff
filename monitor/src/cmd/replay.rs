//! `monitor replay`: evaluate a JSON Lines recording of events offline and print the alerts.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::alert::Alert;
use crate::event::Event;
use crate::rules::{self, LoadOptions, Match, Priority};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rule files or directories (*.yaml, sorted); repeat the flag or separate with commas.
    #[arg(long = "rules", required = true, value_delimiter = ',')]
    pub rules: Vec<PathBuf>,
    /// Minimum priority of the rules loaded.
    #[arg(long, default_value = "debug")]
    pub min_priority: Priority,
    /// Recording: one event per line, as written by `monitor record`/`monitor events`.
    pub file: PathBuf,
}

/// Write one match as a Falco-format alert line (the daemon's alert type, without the
/// daemon's redaction and rate limiting: replay shows every match).
pub fn print_alert(out: &mut impl Write, m: Match, ev: &Event) -> std::io::Result<()> {
    writeln!(out, "{}", Alert::from_match(m, ev, crate::alert::hostname()).to_json())
}

/// Read a recording, calling `f` with (line number, event); bad lines are reported to stderr
/// and counted, never fatal. Returns (events, bad lines).
pub fn for_each_event(
    file: &PathBuf,
    mut f: impl FnMut(usize, &Event) -> anyhow::Result<()>,
) -> anyhow::Result<(usize, usize)> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let (mut n, mut bad) = (0, 0);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json_line(&line) {
            Ok(ev) => {
                n += 1;
                f(i + 1, &ev)?;
            }
            Err(e) => {
                bad += 1;
                if bad <= 10 {
                    eprintln!("{}:{}: skipped: {e}", file.display(), i + 1);
                }
            }
        }
    }
    Ok((n, bad))
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let opts = LoadOptions {
        min_priority: args.min_priority,
        ..LoadOptions::default()
    };
    let set = match rules::load(&args.rules, &opts) {
        Ok((set, diags)) => {
            for d in diags
                .iter()
                .filter(|d| d.severity == rules::Severity::Warning)
            {
                eprint!("{}", d.render());
            }
            set
        }
        Err(diags) => {
            for d in diags
                .iter()
                .filter(|d| d.severity >= rules::Severity::Warning)
            {
                eprint!("{}", d.render());
            }
            anyhow::bail!("the rules do not load");
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut alerts = 0usize;
    let (events, bad) = for_each_event(&args.file, |_, ev| {
        for m in set.evaluate(ev) {
            alerts += 1;
            print_alert(&mut out, m, ev)?;
        }
        Ok(())
    })?;
    out.flush()?;
    eprintln!(
        "replay: {events} events, {alerts} alerts, {bad} unreadable lines, {} rules",
        set.len()
    );
    Ok(if bad > 0 { 1 } else { 0 })
}
