//! `monitor rules check|test|diff`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::rules::{self, LoadOptions, Severity, fixture};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Load rule files and print every diagnostic (with carets) to stderr.
    Check {
        /// Fail on warnings too (CI).
        #[arg(long)]
        deny_warnings: bool,
        /// Also print informational diagnostics.
        #[arg(long, short)]
        verbose: bool,
        /// Load rules marked `enabled: false` too (to check a whole file).
        #[arg(long)]
        all: bool,
        /// Rule files or directories.
        #[arg(default_value = "rules")]
        paths: Vec<PathBuf>,
    },
    /// Run the fixtures of each rule file (`<dir>/fixtures/<stem>/*.yaml`).
    Test {
        /// Fixture directory to use instead of the per-file convention.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[arg(default_value = "rules")]
        paths: Vec<PathBuf>,
    },
    /// Events/s through the engine at 1x, 10x, 100x the rule count (used by `cargo xtask bench rules`).
    #[command(hide = true)]
    Bench {
        /// Rule sets to measure, each `label=path[,path...]`.
        #[arg(long = "set", required = true)]
        sets: Vec<String>,
        /// Fixture directories whose events are mixed into the benign stream.
        #[arg(long)]
        fixtures: Vec<PathBuf>,
        /// Events per measurement.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Alerts added and removed on a recording when going from the OLD rules to the NEW ones.
    Diff {
        #[arg(long, required = true, value_delimiter = ',')]
        old: Vec<PathBuf>,
        #[arg(long, required = true, value_delimiter = ',')]
        new: Vec<PathBuf>,
        /// Recording (JSON Lines events).
        file: PathBuf,
    },
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    match args.cmd {
        Cmd::Check {
            deny_warnings,
            verbose,
            all,
            paths,
        } => check(&paths, deny_warnings, verbose, all),
        Cmd::Test { fixtures, paths } => test(&paths, fixtures),
        Cmd::Diff { old, new, file } => diff(&old, &new, &file),
        Cmd::Bench {
            sets,
            fixtures,
            events,
        } => crate::rules::bench::run(&sets, &fixtures, events),
    }
}

fn check(paths: &[PathBuf], deny_warnings: bool, verbose: bool, all: bool) -> anyhow::Result<i32> {
    let opts = LoadOptions {
        enable_rules: if all {
            vec!["*".to_string()]
        } else {
            Vec::new()
        },
        ..LoadOptions::default()
    };
    let (set, diags) = rules::load_lenient(paths, &opts);
    let mut counts = [0usize; 3];
    for d in &diags {
        counts[d.severity as usize] += 1;
        if d.severity > Severity::Info || verbose {
            eprint!("{}", d.render());
        }
    }
    let [infos, warnings, errors] = counts;
    eprintln!(
        "rules check: {} rules loaded ({} unindexed), {errors} errors, {warnings} warnings, {infos} infos; hash {}",
        set.len(),
        set.unindexed_rules(),
        set.content_hash()
    );
    Ok(if errors > 0 || (deny_warnings && warnings > 0) {
        1
    } else {
        0
    })
}

fn test(paths: &[PathBuf], fixtures: Option<PathBuf>) -> anyhow::Result<i32> {
    let set = match rules::load(paths, &LoadOptions::default()) {
        Ok((s, _)) => s,
        Err(diags) => {
            for d in diags.iter().filter(|d| d.is_error()) {
                eprint!("{}", d.render());
            }
            anyhow::bail!("the rules do not load");
        }
    };
    let files: Vec<PathBuf> = match fixtures {
        Some(dir) => fixture::files_in(&dir),
        None => rules::expand_paths(paths)
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|f| fixture::files_for(&f))
            .collect(),
    };
    let (mut pass, mut fail) = (0, 0);
    for f in &files {
        let cases = match fixture::read_file(f) {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL {e}");
                fail += 1;
                continue;
            }
        };
        for c in &cases {
            let o = fixture::run_case(&set, c);
            if o.passed {
                pass += 1;
                println!("ok   {} :: {}", f.display(), o.case);
            } else {
                fail += 1;
                println!(
                    "FAIL {} :: {}: {} (fired: {:?})",
                    f.display(),
                    o.case,
                    o.problems.join("; "),
                    o.fired
                );
            }
        }
    }
    println!(
        "rules test: {pass} passed, {fail} failed, {} fixture files",
        files.len()
    );
    Ok(if fail > 0 || files.is_empty() { 1 } else { 0 })
}

fn diff(old: &[PathBuf], new: &[PathBuf], file: &PathBuf) -> anyhow::Result<i32> {
    let load = |p: &[PathBuf]| -> anyhow::Result<rules::RuleSet> {
        match rules::load(p, &LoadOptions::default()) {
            Ok((s, _)) => Ok(s),
            Err(diags) => {
                for d in diags.iter().filter(|d| d.is_error()) {
                    eprint!("{}", d.render());
                }
                anyhow::bail!("rules {p:?} do not load")
            }
        }
    };
    let (a, b) = (load(old)?, load(new)?);
    let mut added: BTreeMap<String, usize> = BTreeMap::new();
    let mut removed: BTreeMap<String, usize> = BTreeMap::new();
    super::replay::for_each_event(file, |line, ev| {
        let ra: Vec<String> = a.evaluate(ev).into_iter().map(|m| m.rule).collect();
        let rb: Vec<String> = b.evaluate(ev).into_iter().map(|m| m.rule).collect();
        for r in rb.iter().filter(|r| !ra.contains(r)) {
            println!("+ line {line}: {r}");
            *added.entry(r.clone()).or_default() += 1;
        }
        for r in ra.iter().filter(|r| !rb.contains(r)) {
            println!("- line {line}: {r}");
            *removed.entry(r.clone()).or_default() += 1;
        }
        Ok(())
    })?;
    for (r, n) in &added {
        eprintln!("added   {n:>6}  {r}");
    }
    for (r, n) in &removed {
        eprintln!("removed {n:>6}  {r}");
    }
    Ok(0)
}
