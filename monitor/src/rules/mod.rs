//! A Falco-compatible rule engine.
//!
//! Layers, each its own module, data flowing one way:
//!
//! ```text
//! files --yaml (positions)--> loader (rules, macros, lists; append/override)
//!       --parser (lexer + recursive descent, spans)--> AST
//!       --compile (typed field schema, literals typed, macros/lists expanded)--> program::Node
//!       --optimize (constant folding, sets/automata, cheapest operand first)
//!       --index by evt.type--> RuleSet::evaluate
//! ```
//!
//! Every load problem is a [`Diagnostic`] (stable code, file:line:col, caret). Warnings never
//! stop loading; an error makes [`load`] fail so that [`reload`] keeps the previous rules,
//! while [`load_lenient`] skips the offending rule and keeps the others (for `rules check` and
//! for measuring compatibility with rule files written for Falco).

pub mod bench;
pub mod compile;
pub mod diag;
pub mod fields;
pub mod fixture;
pub mod loader;
pub mod output;
pub mod parser;
pub mod plan;
pub mod program;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use prometheus::{Counter, CounterVec, IntCounter, IntCounterVec, IntGauge, Opts};
use serde::Serialize;

use crate::event::Event;
pub use compile::FieldUse;
use compile::{Compiler, CondSrc};
pub use diag::{Code, Diagnostic, Severity};
use diag::{Pos, Sink};
use fields::Ctx;
use loader::{Defs, ExVal, FileLoader, RuleDef};
use output::Template;
use parser::{Expr, Rhs, Span, Value};
use program::{KindSet, Node};

/// Falco's priorities: one type for rules, alerts and config (`alert::Priority`).
pub use crate::alert::Priority;

/// Deploy-time selection. Order of application: `enabled:` in the files, then tags (when
/// `enable_tags` is set only rules carrying one of them stay), `disable_tags`, then names
/// (`enable_rules` wins over everything, `disable_rules` over tags), then `min_priority`.
/// Names accept `*` globs.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub min_priority: Priority,
    pub enable_tags: Vec<String>,
    pub disable_tags: Vec<String>,
    pub enable_rules: Vec<String>,
    pub disable_rules: Vec<String>,
    /// Files or directories loaded after the main paths (local tuning: append/override).
    pub overrides: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Match {
    pub rule: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub output: String,
    pub output_fields: BTreeMap<String, serde_json::Value>,
}

struct Rule {
    name: String,
    priority: Priority,
    tags: Vec<String>,
    program: Node,
    output: Template,
    /// `None`: not constrained by `evt.type`.
    kinds: Option<KindSet>,
    /// Fields of the condition, exceptions and macros included.
    fields: Vec<FieldUse>,
    /// This rule's series of the sampled cost metrics, resolved once at load.
    cost: RuleCost,
}

struct RuleCost {
    seconds: Counter,
    samples: IntCounter,
}

/// One event in this many is evaluated rule by rule with each rule timed, for sets of up to
/// [`TIMING_RULES_PER_STEP`] rules. A power of two.
pub const TIMING_SAMPLE_EVERY: u64 = 64;

/// Larger sets sample proportionally less often (the interval doubles per doubling of the rule
/// count above this): a timed event costs the rule-by-rule walk, which grows with the set
/// while the shared plan does not, so a fixed interval would make timing dominate at 100x.
pub const TIMING_RULES_PER_STEP: usize = 64;

/// The sampling interval for a set of `rules` rules (a power of two).
pub fn timing_interval(rules: usize) -> u64 {
    let steps = u64::try_from(rules.div_ceil(TIMING_RULES_PER_STEP).max(1)).unwrap_or(1 << 20);
    TIMING_SAMPLE_EVERY.saturating_mul(steps.next_power_of_two())
}

/// `monitor_rule_evaluation_seconds_total{rule}`: time spent evaluating the rule on sampled
/// events. `rule` is bounded by the loaded rule set.
static EVAL_SECONDS: LazyLock<CounterVec> = LazyLock::new(|| {
    let c = CounterVec::new(
        Opts::new(
            "monitor_rule_evaluation_seconds_total",
            "Time spent evaluating each rule, on the sampled events only (one event in 64 for up to 64 rules, rarer for larger sets)",
        ),
        &["rule"],
    )
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

/// `monitor_rule_evaluations_sampled_total{rule}`: timed evaluations of the rule; with the
/// seconds counter it gives the mean cost of one evaluation.
static EVAL_SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "monitor_rule_evaluations_sampled_total",
            "Timed evaluations of each rule (sampled events, evaluated rule by rule)",
        ),
        &["rule"],
    )
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});
/// What one loaded rule reads from events ([`RuleSet::rule_fields`]).
#[derive(Clone, Debug)]
pub struct RuleFields<'a> {
    pub rule: &'a str,
    /// The event kinds the rule can match; `None` when every kind can.
    pub kinds: Option<&'a KindSet>,
    /// Fields of the condition (macros and exceptions included), in order of first use.
    pub condition: &'a [FieldUse],
    /// Fields substituted by the output template.
    pub output: Vec<FieldUse>,
}

/// A compiled, indexed rule set. Immutable; swap a new one in to change rules.
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Rule indices (ascending = load order) per event kind id, "any" rules included: the
    /// rule-by-rule path (timed samples, and the reference the shared plan is tested against).
    by_kind: Vec<Vec<u32>>,
    /// Every rule in one prefix tree of shared terms: the normal path.
    plan: plan::Plan,
    /// Events seen, for sampling; `u64::MAX` mask = timing off.
    events: AtomicU64,
    sample_mask: u64,
    hash: String,
    any_count: usize,
    /// Number of memoised macros (size of the per-event memo).
    memo_count: usize,
}

impl RuleSet {
    pub fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            by_kind: vec![Vec::new(); 512],
            plan: plan::Plan::build(&[]),
            events: AtomicU64::new(0),
            sample_mask: TIMING_SAMPLE_EVERY - 1,
            hash: fnv_hex(b""),
            any_count: 0,
            memo_count: 0,
        }
    }

    /// The rules the event matches, in load order. One event in [`Self::timing_interval`] is
    /// evaluated rule by rule with each rule timed (`monitor_rule_evaluation_seconds_total`);
    /// the others go through the shared plan. Both give the same matches.
    pub fn evaluate(&self, ev: &Event) -> Vec<Match> {
        if self.sample_mask != u64::MAX
            && self.events.fetch_add(1, Ordering::Relaxed) & self.sample_mask == 0
        {
            return self.evaluate_timed(ev);
        }
        let cx = Ctx::with_memo(ev, self.memo_count);
        let mut hits = Vec::new();
        self.plan.matches(&cx, &mut hits);
        hits.into_iter().map(|i| self.render(i, &cx)).collect()
    }

    /// Rule by rule, in load order, without sharing terms between rules: the reference for
    /// [`Self::evaluate`] (tests, `rules bench`).
    pub fn evaluate_linear(&self, ev: &Event) -> Vec<Match> {
        let cx = Ctx::with_memo(ev, self.memo_count);
        self.rules_for(ev)
            .iter()
            .filter(|&&i| self.rules[i as usize].program.eval(&cx))
            .map(|&i| self.render(i, &cx))
            .collect()
    }

    fn evaluate_timed(&self, ev: &Event) -> Vec<Match> {
        let cx = Ctx::with_memo(ev, self.memo_count);
        let mut out = Vec::new();
        let mut t0 = Instant::now();
        for &i in self.rules_for(ev) {
            let r = &self.rules[i as usize];
            let hit = r.program.eval(&cx);
            // One clock read per rule: it ends this rule's interval and starts the next one's.
            let t1 = Instant::now();
            r.cost.seconds.inc_by(t1.duration_since(t0).as_secs_f64());
            r.cost.samples.inc();
            t0 = t1;
            if hit {
                out.push(self.render(i, &cx));
                // Rendering is not the next rule's cost.
                t0 = Instant::now();
            }
        }
        out
    }

    fn rules_for(&self, ev: &Event) -> &[u32] {
        self.by_kind
            .get(ev.kind as u16 as usize)
            .map_or(&[][..], Vec::as_slice)
    }

    fn render(&self, i: u32, cx: &Ctx<'_>) -> Match {
        let r = &self.rules[i as usize];
        let (output, output_fields) = r.output.render(cx);
        Match {
            rule: r.name.clone(),
            priority: r.priority,
            tags: r.tags.clone(),
            output,
            output_fields,
        }
    }

    /// Turn per-rule timing on (the default) or off.
    pub fn set_timing(&mut self, on: bool) {
        self.sample_mask = if on {
            timing_interval(self.rules.len()) - 1
        } else {
            u64::MAX
        };
    }

    /// One event in this many is timed rule by rule (`None`: timing off).
    pub fn timing_interval(&self) -> Option<u64> {
        (self.sample_mask != u64::MAX).then(|| self.sample_mask + 1)
    }

    /// Terms the shared plan evaluates for this event, against the rule-by-rule candidates
    /// (`rules bench` prints the averages).
    pub fn plan_work(&self, ev: &Event) -> (usize, usize) {
        let cx = Ctx::with_memo(ev, self.memo_count);
        (self.plan.terms_evaluated(&cx), self.rules_for(ev).len())
    }

    /// Distinct shared terms and prefix-tree nodes of the plan.
    pub fn plan_size(&self) -> (usize, usize) {
        self.plan.size()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Hash of the loaded files' contents and the load options (FNV-1a 64, not cryptographic:
    /// it identifies a rule set version in logs and metrics, it does not authenticate it).
    pub fn content_hash(&self) -> String {
        self.hash.clone()
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Name and priority of every loaded rule (metrics export a zero series for each).
    pub fn rule_priorities(&self) -> impl Iterator<Item = (&str, Priority)> {
        self.rules.iter().map(|r| (r.name.as_str(), r.priority))
    }

    /// The fields each rule reads, and the event kinds it applies to: what a field-coverage
    /// check needs to know which live events must carry which fields.
    pub fn rule_fields(&self) -> impl Iterator<Item = RuleFields<'_>> {
        self.rules.iter().map(|r| RuleFields {
            rule: &r.name,
            kinds: r.kinds.as_ref(),
            condition: &r.fields,
            output: r
                .output
                .fields()
                .map(|(w, f)| FieldUse::new(w, None, f.cloned()))
                .collect(),
        })
    }

    /// Rules with no `evt.type` constraint (evaluated for every event).
    pub fn unindexed_rules(&self) -> usize {
        self.any_count
    }
}

static LOADED: LazyLock<IntGauge> = LazyLock::new(|| {
    let g =
        IntGauge::new("monitor_rules_loaded", "Rules in the live rule set").expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(g.clone()));
    g
});

/// Load, compile and swap in a new rule set atomically. On any error the live set is kept,
/// the failure is counted (`monitor_rules_reloads_total{result="failure"}`), and the
/// diagnostics are returned.
pub fn reload(
    live: &ArcSwap<RuleSet>,
    paths: &[PathBuf],
    opts: &LoadOptions,
) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    match load(paths, opts) {
        Ok((set, diags)) => {
            LOADED.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
            crate::metrics::record_reload(true);
            tracing::info!(rules = set.len(), hash = %set.content_hash(), "Rule set reloaded.");
            live.store(Arc::new(set));
            Ok(diags)
        }
        Err(diags) => {
            crate::metrics::record_reload(false);
            let errors = diags.iter().filter(|d| d.is_error()).count();
            tracing::warn!(
                errors,
                "Rule reload failed; the previous rule set stays live."
            );
            Err(diags)
        }
    }
}

/// Record the size of a rule set loaded outside [`reload`] (first load at start-up).
pub fn set_loaded_metric(set: &RuleSet) {
    LOADED.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
}

/// Load rule files. Fails when any diagnostic is an error.
pub fn load(
    paths: &[PathBuf],
    opts: &LoadOptions,
) -> Result<(RuleSet, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (set, diags) = load_lenient(paths, opts);
    if diags.iter().any(Diagnostic::is_error) {
        Err(diags)
    } else {
        Ok((set, diags))
    }
}

/// Subdirectory of a rules directory loaded right after the directory's own files: the
/// monitor-only refinements (macro redefinitions, `override: condition: replace`) of rules
/// that Falco loads from the parent directory in a less precise form.
pub const MONITOR_DIR: &str = "monitor.d";

/// Expand directories into their `*.yaml`/`*.yml` files, sorted by name, followed by the
/// sorted files of the directory's [`MONITOR_DIR`] subdirectory when it has one (Falco, given
/// the same directory, reads only its files, not subdirectories).
pub fn expand_paths(paths: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, std::io::Error)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            yaml_files(p, &mut out);
            let sub = p.join(MONITOR_DIR);
            if sub.is_dir() {
                yaml_files(&sub, &mut out);
            }
        } else {
            out.push(Ok(p.clone()));
        }
    }
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<Result<PathBuf, (PathBuf, std::io::Error)>>) {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut files: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(Ok));
        }
        Err(e) => out.push(Err((dir.to_path_buf(), e))),
    }
}

/// Load what can be loaded: rules with errors are skipped (and reported), the rest compiled.
pub fn load_lenient(paths: &[PathBuf], opts: &LoadOptions) -> (RuleSet, Vec<Diagnostic>) {
    load_impl(paths, opts, false)
}

/// [`load_lenient`] in Falco-only mode: every monitor extension (a field whose schema entry
/// is marked own, an event type of the `SideDoor` family such as `sock_connect`) is an error
/// (code R0701) and its rule is skipped. Checks that the files meant for Falco users
/// (`rules/*.yaml`, without `rules/monitor.d`) stay loadable by Falco.
pub fn load_falco_only(paths: &[PathBuf], opts: &LoadOptions) -> (RuleSet, Vec<Diagnostic>) {
    load_impl(paths, opts, true)
}

fn load_impl(
    paths: &[PathBuf],
    opts: &LoadOptions,
    falco_only: bool,
) -> (RuleSet, Vec<Diagnostic>) {
    let mut sink = Sink::default();
    let mut defs = Defs::default();
    let mut hasher = Fnv::new();
    let files = expand_paths(paths)
        .into_iter()
        .chain(expand_paths(&opts.overrides));
    for f in files {
        let path = match f {
            Ok(p) => p,
            Err((p, e)) => {
                let pos = Pos {
                    file: p.display().to_string().into(),
                    line: 1,
                    col: 1,
                };
                sink.error(
                    Code::Io,
                    &pos,
                    1,
                    None,
                    format!("cannot read directory: {e}"),
                );
                continue;
            }
        };
        let name: Arc<str> = path.display().to_string().into();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                hasher.write(name.as_bytes());
                hasher.write(text.as_bytes());
                let text: Arc<str> = text.into();
                sink.add_file(name.clone(), text.clone());
                FileLoader::new(&mut defs, &mut sink, text).load(name);
            }
            Err(e) => {
                let pos = Pos {
                    file: name,
                    line: 1,
                    col: 1,
                };
                sink.error(
                    Code::Io,
                    &pos,
                    1,
                    None,
                    format!("cannot read rule file: {e}"),
                );
            }
        }
    }
    hasher.write(format!("{opts:?}").as_bytes());
    let set = build(defs, opts, &mut sink, hasher.hex(), falco_only);
    (set, dedup(sink.diags))
}

/// Load rules from in-memory text (tests, `rules check` on stdin); `name` labels diagnostics.
pub fn load_str(name: &str, text: &str, opts: &LoadOptions) -> (RuleSet, Vec<Diagnostic>) {
    let mut sink = Sink::default();
    let mut defs = Defs::default();
    let name: Arc<str> = name.into();
    let text: Arc<str> = text.into();
    sink.add_file(name.clone(), text.clone());
    FileLoader::new(&mut defs, &mut sink, text.clone()).load(name);
    let mut h = Fnv::new();
    h.write(text.as_bytes());
    let set = build(defs, opts, &mut sink, h.hex(), false);
    (set, dedup(sink.diags))
}

/// A problem inside a macro shared by many rules is reported once, naming the first rule.
fn dedup(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    diags
        .into_iter()
        .filter(|d| seen.insert((d.code, d.pos.clone(), d.message.clone())))
        .collect()
}

fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        program::Glob::new(pattern).is_ok_and(|g| g.matches(name))
    } else {
        pattern == name
    }
}

fn selected(r: &RuleDef, opts: &LoadOptions) -> bool {
    let mut on = r.enabled;
    if !opts.enable_tags.is_empty() {
        on = on && r.tags.iter().any(|t| opts.enable_tags.contains(t));
    }
    if r.tags.iter().any(|t| opts.disable_tags.contains(t)) {
        on = false;
    }
    if opts.disable_rules.iter().any(|p| name_matches(p, &r.name)) {
        on = false;
    }
    if opts.enable_rules.iter().any(|p| name_matches(p, &r.name)) {
        on = true;
    }
    on && r.priority.unwrap_or_default() >= opts.min_priority
}

fn build(
    mut defs: Defs,
    opts: &LoadOptions,
    sink: &mut Sink,
    hash: String,
    falco_only: bool,
) -> RuleSet {
    // Parse every macro once (errors reported at the macro, whether used or not).
    let mut names: Vec<String> = defs.macros.keys().cloned().collect();
    names.sort();
    for n in names {
        let Some(m) = defs.macros.get_mut(&n) else {
            continue;
        };
        match parser::parse(&m.cond.text) {
            Ok(e) => m.parsed = Some(e),
            Err(e) => {
                let code = if e.too_deep {
                    Code::TooDeep
                } else {
                    Code::Syntax
                };
                let pos = m.cond.locate(e.span.start);
                sink.error(
                    code,
                    &pos,
                    e.span.len(),
                    Some(&format!("macro {n}")),
                    e.message,
                );
            }
        }
    }
    for sel in [&opts.enable_rules, &opts.disable_rules] {
        for p in sel {
            if !defs.rules.iter().any(|r| name_matches(p, &r.name)) {
                let pos = Pos {
                    file: "<options>".into(),
                    line: 1,
                    col: 1,
                };
                sink.warn(
                    Code::SelectionUnused,
                    &pos,
                    1,
                    None,
                    format!("rule selection `{p}` matches no rule"),
                );
            }
        }
    }

    let mut rules = Vec::new();
    let mut kinds_of = Vec::new();
    let mut memo_ids = HashMap::new();
    for r in &defs.rules {
        if !selected(r, opts) {
            continue;
        }
        if r.source != "syscall" {
            sink.warn(
                Code::BadItem,
                &r.pos,
                r.name.len(),
                Some(&r.name),
                format!(
                    "rule source `{}` is not supported (only syscall); rule skipped",
                    r.source
                ),
            );
            continue;
        }
        let Some(cond) = &r.cond else { continue };
        let compiled = compile_rule(r, cond, &defs, sink, &mut memo_ids, falco_only);
        let Some((program, output, fields)) = compiled else {
            continue;
        };
        let kinds = program.kinds();
        if matches!(program, Node::Const(false)) || kinds.as_ref().is_some_and(KindSet::is_empty) {
            sink.warn(
                Code::UncapturedEventType,
                &r.pos,
                r.name.len(),
                Some(&r.name),
                "rule can never fire with the monitor's events (see the warnings above)"
                    .to_string(),
            );
        }
        kinds_of.push(kinds.clone());
        let cost = RuleCost {
            seconds: EVAL_SECONDS.with_label_values(&[r.name.as_str()]),
            samples: EVAL_SAMPLES.with_label_values(&[r.name.as_str()]),
        };
        rules.push(Rule {
            name: r.name.clone(),
            priority: r.priority.unwrap_or_default(),
            tags: r.tags.clone(),
            program,
            output,
            kinds,
            fields,
            cost,
        });
    }

    let mut by_kind = vec![Vec::new(); 512];
    let mut any_count = 0;
    for (i, k) in kinds_of.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        match k {
            Some(set) => {
                for kind in set.iter() {
                    by_kind[kind as u16 as usize].push(i);
                }
            }
            None => {
                any_count += 1;
                for kind in monitor_common::EventType::ALL {
                    by_kind[*kind as u16 as usize].push(i);
                }
            }
        }
    }
    let plan = plan::Plan::build(
        &rules
            .iter()
            .enumerate()
            .map(|(i, r)| plan::PlanRule {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                program: &r.program,
                kinds: r.kinds.as_ref(),
            })
            .collect::<Vec<_>>(),
    );
    RuleSet {
        sample_mask: timing_interval(rules.len()) - 1,
        rules,
        by_kind,
        plan,
        events: AtomicU64::new(0),
        hash,
        any_count,
        memo_count: memo_ids.len(),
    }
}

/// Compile one rule: condition, exceptions, output. `None` when it has errors (reported).
fn compile_rule(
    r: &RuleDef,
    cond: &CondSrc,
    defs: &Defs,
    sink: &mut Sink,
    memo_ids: &mut HashMap<String, u32>,
    falco_only: bool,
) -> Option<(Node, Template, Vec<FieldUse>)> {
    let first_diag = sink.diags.len();
    let expr = match parser::parse(&cond.text) {
        Ok(e) => e,
        Err(e) => {
            let code = if e.too_deep {
                Code::TooDeep
            } else {
                Code::Syntax
            };
            sink.error(
                code,
                &cond.locate(e.span.start),
                e.span.len(),
                Some(&r.name),
                e.message,
            );
            return None;
        }
    };
    let mut c = Compiler::new(&defs.macros, &defs.lists, sink, memo_ids, &r.name);
    c.falco_only = falco_only;
    let mut node = c.expr(&expr, cond);
    let mut ex_nodes = Vec::new();
    for ex in &r.exceptions {
        // Validate fields at their own position.
        for (f, pos) in &ex.fields {
            let fe = compile::field_expr(f);
            if let fields::Lookup::Unknown = fields::lookup(&fe.name, fe.arg.as_deref()) {
                c.errors += 1;
                c.sink.error(
                    Code::BadException,
                    pos,
                    f.len(),
                    Some(&r.name),
                    format!("exception `{}`: unknown field `{f}`", ex.name),
                );
            }
        }
        for row in &ex.values {
            let mut checks = Vec::new();
            for (i, cell) in row.iter().enumerate() {
                let field_text = if ex.single {
                    &ex.fields[0].0
                } else {
                    &ex.fields[i].0
                };
                let comp = if ex.single {
                    &ex.comps[0]
                } else {
                    &ex.comps[i]
                };
                let Some(op) = op_from(comp) else {
                    c.errors += 1;
                    c.sink.error(
                        Code::BadException,
                        &ex.pos,
                        1,
                        Some(&r.name),
                        format!("exception `{}`: `{comp}` is not an operator", ex.name),
                    );
                    continue;
                };
                let (pos, rhs) = match cell {
                    ExVal::One(text, pos)
                        if matches!(
                            op,
                            parser::Op::In | parser::Op::Intersects | parser::Op::PMatch
                        ) =>
                    {
                        (
                            pos.clone(),
                            Rhs::List(
                                vec![Value {
                                    text: text.clone(),
                                    quoted: false,
                                    span: Span::default(),
                                }],
                                Span::default(),
                            ),
                        )
                    }
                    ExVal::One(text, pos) => (
                        pos.clone(),
                        Rhs::Value(Value {
                            text: text.clone(),
                            quoted: false,
                            span: Span::default(),
                        }),
                    ),
                    ExVal::Many(items, pos) => (
                        pos.clone(),
                        Rhs::List(
                            items
                                .iter()
                                .map(|(t, _)| Value {
                                    text: t.clone(),
                                    quoted: false,
                                    span: Span::default(),
                                })
                                .collect(),
                            Span::default(),
                        ),
                    ),
                };
                let e = Expr::Check {
                    field: compile::field_expr(field_text),
                    op,
                    op_span: Span::default(),
                    rhs,
                };
                let src = CondSrc::synthetic(String::new(), pos);
                checks.push(c.expr(&e, &src));
            }
            ex_nodes.push(Node::And(checks));
        }
    }
    if !ex_nodes.is_empty() {
        node = Node::And(vec![node, Node::Not(Box::new(Node::Or(ex_nodes)))]);
    }
    let errors = c.errors;
    let used = std::mem::take(&mut c.used);
    let out_src = r.output.clone().unwrap_or_default();
    let output = Template::compile(&out_src, sink, &r.name, falco_only);
    if errors > 0 {
        if r.skip_if_unknown
            && sink.diags[first_diag..]
                .iter()
                .filter(|d| d.is_error())
                .all(|d| d.code == Code::UnknownField)
        {
            for d in &mut sink.diags[first_diag..] {
                d.severity = Severity::Info;
            }
        }
        return None;
    }
    Some((node.optimize(), output, used))
}

fn op_from(s: &str) -> Option<parser::Op> {
    use parser::Op;
    Some(match s {
        "=" | "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "in" => Op::In,
        "intersects" => Op::Intersects,
        "pmatch" => Op::PMatch,
        "contains" => Op::Contains,
        "icontains" => Op::IContains,
        "startswith" => Op::StartsWith,
        "endswith" => Op::EndsWith,
        "glob" => Op::Glob,
        "regex" => Op::Regex,
        _ => return None,
    })
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

fn fnv_hex(b: &[u8]) -> String {
    let mut f = Fnv::new();
    f.write(b);
    f.hex()
}

/// Path of the repository's shipped rules relative to a crate manifest dir (tests, tools).
pub fn shipped_rules_dir(manifest_dir: &Path) -> PathBuf {
    manifest_dir.join("..").join("rules")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_fields_lists_condition_macro_exception_and_output_fields_with_kinds() {
        let text = r#"
- macro: shell_procs
  condition: proc.name in (sh, bash)
- rule: shell reads
  desc: d
  condition: evt.type = openat and shell_procs and (fd.name startswith /etc or proc.aenv contains X) and proc.aname[2] != runc
  output: "%proc.cmdline read %fd.name in %container.id (%evt.cpu)"
  priority: WARNING
  exceptions:
    - name: trusted
      fields: [proc.pname, evt.arg.flags]
      values:
        - [init, O_RDONLY]
"#;
        let (set, diags) = load_str("t.yaml", text, &LoadOptions::default());
        assert!(!diags.iter().any(Diagnostic::is_error), "{diags:?}");
        let all: Vec<RuleFields<'_>> = set.rule_fields().collect();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.rule, "shell reads");
        let kinds: Vec<EventTypeName> = r.kinds.unwrap().iter().map(|k| k.name()).collect();
        assert_eq!(kinds, ["openat"]);
        let cond: Vec<(&str, bool)> = r
            .condition
            .iter()
            .map(|u| (u.text.as_str(), u.field.is_some()))
            .collect();
        assert_eq!(
            cond,
            [
                ("evt.type", true),
                ("proc.name", true),
                ("fd.name", true),
                ("proc.aenv", false),
                ("proc.aname[2]", true),
                ("proc.pname", true),
                ("evt.arg.flags", true),
            ]
        );
        let out: Vec<(&str, bool)> = r
            .output
            .iter()
            .map(|u| (u.text.as_str(), u.field.is_some()))
            .collect();
        assert_eq!(
            out,
            [
                ("proc.cmdline", true),
                ("fd.name", true),
                ("container.id", true),
                ("evt.cpu", false)
            ]
        );
    }

    type EventTypeName = &'static str;

    #[test]
    fn one_event_in_64_is_timed_per_rule_and_timing_can_be_off() {
        let text = r#"
- rule: timing probe
  desc: d
  condition: evt.type = openat and fd.name startswith /etc
  output: "%fd.name"
  priority: WARNING
- rule: timing probe exec
  desc: d
  condition: evt.type = execve
  output: x
  priority: WARNING
"#;
        let (mut set, diags) = load_str("t.yaml", text, &LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(set.timing_interval(), Some(64));
        let ev = Event {
            kind: monitor_common::EventType::Openat,
            fd: Some(crate::event::Fd {
                path: Some("/etc/passwd".into()),
                ..Default::default()
            }),
            ..Event::default()
        };
        let samples = |r: &str| EVAL_SAMPLES.with_label_values(&[r]).get();
        let seconds = |r: &str| EVAL_SECONDS.with_label_values(&[r]).get();
        for _ in 0..130 {
            // Timed or not, the verdict is the same.
            assert_eq!(set.evaluate(&ev).len(), 1);
        }
        // Events 0, 64 and 128; only the rule for the event's kind is evaluated and timed.
        assert_eq!(samples("timing probe"), 3);
        assert!(seconds("timing probe") > 0.0);
        assert_eq!(samples("timing probe exec"), 0);
        set.set_timing(false);
        assert_eq!(set.timing_interval(), None);
        for _ in 0..130 {
            assert_eq!(set.evaluate(&ev).len(), 1);
        }
        assert_eq!(samples("timing probe"), 3);
        assert_eq!(timing_interval(64), 64);
        assert_eq!(timing_interval(65), 128);
        assert_eq!(timing_interval(250), 256);
        assert_eq!(timing_interval(5900), 8192);
    }
}
