//! Cross-rule sharing: the rules of a set as one prefix tree of condition terms.
//!
//! Each rule's program is an `and` of terms (macro references, field checks, `or` groups ...).
//! Rules of one set share many terms: `spawned_process`, `container`, `open_write`, an
//! `evt.type in (...)` check. Evaluating rule by rule walks every rule's tree for every event,
//! even when a term they all start with is false; that per-rule walk is what made 100x rule
//! sets superlinearly slow (cache misses over thousands of boxed trees).
//!
//! Here every term gets a canonical key; terms with equal keys are the same test. Each rule's
//! terms are put in one global order, cheapest *per rule that shares them* first (a term used
//! by 500 rules costs its evaluation once for all of them), and the rules are inserted into a
//! prefix tree over that order. An event walks the tree: a node's term is evaluated once for
//! every rule below it, and a false term prunes the whole subtree. Each node also carries the
//! union of the event kinds of the rules below it, so a walk never enters a subtree that
//! cannot match the event's kind (this replaces the per-kind rule lists).
//!
//! `and` is commutative without side effects (macro memoisation only caches), so reordering
//! terms never changes a verdict; `RuleSet::evaluate_linear` keeps the rule-by-rule path and
//! the tests check both agree on every fixture.

use std::collections::HashMap;

use super::fields::Ctx;
use super::program::{KindSet, Node};

/// One node of the prefix tree: a term, and what lies below it.
struct PNode {
    term: u32,
    /// Union of the kinds of every rule in this subtree.
    kinds: KindSet,
    /// Rules whose every term is on the path to (and including) this node.
    rules: Vec<u32>,
    children: Vec<u32>,
}

pub struct Plan {
    terms: Vec<Node>,
    nodes: Vec<PNode>,
    /// Per event-kind id: the root nodes whose subtree holds a rule of that kind.
    roots_by_kind: Vec<Vec<u32>>,
    /// Rules with no term at all (`condition: always_true`), and their kinds.
    unconditional: Vec<(u32, KindSet)>,
}

/// A rule as the plan sees it: its program and the kinds it can match (`None`: any).
pub struct PlanRule<'a> {
    pub index: u32,
    pub program: &'a Node,
    pub kinds: Option<&'a KindSet>,
}

/// A rule's terms with their keys.
type Terms<'a> = Vec<(String, &'a Node)>;

fn terms_of(n: &Node) -> Vec<&Node> {
    match n {
        Node::And(v) => v.iter().collect(),
        Node::Const(true) => Vec::new(),
        other => vec![other],
    }
}

impl Plan {
    pub fn build(rules: &[PlanRule<'_>]) -> Plan {
        // Key every term; a term without a canonical key is unique to its rule.
        let mut keyed: Vec<(u32, KindSet, Terms<'_>)> = Vec::new();
        let mut uses: HashMap<String, u32> = HashMap::new();
        for r in rules {
            let kinds = r.kinds.cloned().unwrap_or_else(KindSet::all);
            if kinds.is_empty() {
                continue; // can never fire
            }
            let mut ts: Vec<(String, &Node)> = Vec::new();
            for (i, t) in terms_of(r.program).into_iter().enumerate() {
                let k = t.key().unwrap_or_else(|| format!("#{}:{i}", r.index));
                if !ts.iter().any(|(x, _)| *x == k) {
                    ts.push((k, t));
                }
            }
            for (k, _) in &ts {
                *uses.entry(k.clone()).or_default() += 1;
            }
            keyed.push((r.index, kinds, ts));
        }
        // One global order: amortised cost (cost / rules sharing the term), then key, so that
        // rules sharing terms list them in the same order and share tree prefixes.
        let rank = |k: &str, t: &Node| -> f64 {
            f64::from(t.cost() + 1) / f64::from(uses.get(k).copied().unwrap_or(1))
        };
        let mut plan = Plan {
            terms: Vec::new(),
            nodes: Vec::new(),
            roots_by_kind: vec![Vec::new(); 512],
            unconditional: Vec::new(),
        };
        let mut term_ids: HashMap<String, u32> = HashMap::new();
        let mut roots: Vec<u32> = Vec::new();
        // (parent node or u32::MAX for the root, term id) -> node
        let mut edges: HashMap<(u32, u32), u32> = HashMap::new();
        for (index, kinds, mut ts) in keyed {
            if ts.is_empty() {
                plan.unconditional.push((index, kinds));
                continue;
            }
            ts.sort_by(|(ka, ta), (kb, tb)| {
                rank(ka, ta)
                    .total_cmp(&rank(kb, tb))
                    .then_with(|| ka.cmp(kb))
            });
            let mut parent = u32::MAX;
            for (k, t) in ts {
                let next_term = u32::try_from(plan.terms.len()).unwrap_or(u32::MAX);
                let term = *term_ids.entry(k).or_insert_with(|| {
                    plan.terms.push(t.clone());
                    next_term
                });
                let next_node = u32::try_from(plan.nodes.len()).unwrap_or(u32::MAX);
                let node = *edges.entry((parent, term)).or_insert_with(|| {
                    plan.nodes.push(PNode {
                        term,
                        kinds: KindSet::default(),
                        rules: Vec::new(),
                        children: Vec::new(),
                    });
                    if parent == u32::MAX {
                        roots.push(next_node);
                    } else {
                        plan.nodes[parent as usize].children.push(next_node);
                    }
                    next_node
                });
                let n = &mut plan.nodes[node as usize];
                n.kinds = n.kinds.or(&kinds);
                parent = node;
            }
            plan.nodes[parent as usize].rules.push(index);
        }
        for r in roots {
            for k in plan.nodes[r as usize].kinds.iter() {
                plan.roots_by_kind[k as u16 as usize].push(r);
            }
        }
        plan
    }

    /// Indices of the rules the event matches, ascending (load order).
    pub fn matches(&self, cx: &Ctx<'_>, out: &mut Vec<u32>) {
        let kind = cx.ev.kind;
        for (i, k) in &self.unconditional {
            if k.contains(kind) {
                out.push(*i);
            }
        }
        let Some(roots) = self.roots_by_kind.get(kind as u16 as usize) else {
            return;
        };
        // Iterative walk: a rule with thousands of `and` terms makes a deep path, and the
        // daemon's stack must not depend on what a rule file contains.
        let mut stack: Vec<u32> = roots.iter().rev().copied().collect();
        while let Some(i) = stack.pop() {
            let n = &self.nodes[i as usize];
            if !n.kinds.contains(kind) || !self.terms[n.term as usize].eval(cx) {
                continue;
            }
            out.extend_from_slice(&n.rules);
            stack.extend(n.children.iter().rev());
        }
        out.sort_unstable();
    }

    /// Terms the walk evaluates for this event (what an event costs; for `rules bench`).
    pub fn terms_evaluated(&self, cx: &Ctx<'_>) -> usize {
        let kind = cx.ev.kind;
        let Some(roots) = self.roots_by_kind.get(kind as u16 as usize) else {
            return 0;
        };
        let mut n_eval = 0;
        let mut stack: Vec<u32> = roots.clone();
        while let Some(i) = stack.pop() {
            let n = &self.nodes[i as usize];
            if !n.kinds.contains(kind) {
                continue;
            }
            n_eval += 1;
            if self.terms[n.term as usize].eval(cx) {
                stack.extend(n.children.iter());
            }
        }
        n_eval
    }

    /// Distinct terms and tree nodes (for `rules check --verbose` and tests).
    pub fn size(&self) -> (usize, usize) {
        (self.terms.len(), self.nodes.len())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::event::Event;
    use crate::rules::{self, LoadOptions, RuleSet, fixture};

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every fixture event of the shipped rules and Falco's stable set, and the benign
    /// recording: what the shared plan is checked against.
    fn corpus() -> Vec<Event> {
        let mut events = Vec::new();
        let mut dirs = vec![workspace().join("rules/fixtures")];
        dirs.push(workspace().join("rules/monitor.d/fixtures"));
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml") {
                    let cases = fixture::read_file(&p).expect("fixture parses");
                    events.extend(cases.into_iter().map(|c| c.event));
                } else if p.extension().is_some_and(|x| x == "jsonl") {
                    let text = std::fs::read_to_string(&p).expect("recording");
                    events.extend(text.lines().filter_map(|l| Event::from_json_line(l).ok()));
                }
            }
        }
        events
    }

    fn rule_sets() -> Vec<(String, RuleSet)> {
        let mut paths = vec![("shipped".to_string(), workspace().join("rules"))];
        let falco = std::env::var_os("MONITOR_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("..").join("shared"))
            .join("third_party/falcosecurity-rules");
        for f in [
            "falco_rules.yaml",
            "falco-incubating_rules.yaml",
            "falco-sandbox_rules.yaml",
        ] {
            if falco.join(f).is_file() {
                paths.push((f.to_string(), falco.join(f)));
            }
        }
        paths
            .into_iter()
            .map(|(l, p)| {
                let (mut set, _) = rules::load_lenient(&[p], &LoadOptions::default());
                set.set_timing(false);
                (l, set)
            })
            .collect()
    }

    #[test]
    fn shared_plan_matches_rule_by_rule_evaluation_on_every_fixture() {
        let events = corpus();
        assert!(events.len() > 300, "corpus has {} events", events.len());
        for (label, set) in rule_sets() {
            let mut fired = 0;
            for ev in &events {
                let shared = set.evaluate(ev);
                let linear = set.evaluate_linear(ev);
                assert_eq!(
                    shared, linear,
                    "{label}: plan and rule-by-rule differ on {ev:?}"
                );
                fired += shared.len();
            }
            assert!(
                fired > 0,
                "{label}: no rule fired on the corpus; the comparison is vacuous"
            );
            let (terms, nodes) = set.plan_size();
            eprintln!(
                "{label}: {} rules, {terms} shared terms, {nodes} plan nodes, {fired} matches",
                set.len()
            );
        }
    }

    #[test]
    fn a_rule_with_thousands_of_terms_is_walked_without_deep_recursion() {
        let terms: Vec<String> = (0..3000).map(|i| format!("proc.name != x{i}")).collect();
        let text = format!(
            "- rule: long\n  desc: d\n  condition: evt.type = execve and {}\n  output: x\n  priority: WARNING\n",
            terms.join(" and ")
        );
        let (mut set, diags) = rules::load_str("t.yaml", &text, &LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        set.set_timing(false);
        assert_eq!(set.plan_size(), (3001, 3001));
        let mut ev = Event {
            kind: crate::event::EventType::Execve,
            ..Event::default()
        };
        ev.process.comm = "sh".into();
        // A small stack: a recursive walk of a 3,001-node path would overflow it.
        let n = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || set.evaluate(&ev).len())
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(n, 1);
    }

    #[test]
    fn rules_sharing_a_macro_share_its_term_and_a_false_term_prunes_them_all() {
        let text = r#"
- macro: writes
  condition: evt.type = openat and evt.is_open_write = true
- rule: a
  desc: d
  condition: writes and fd.name startswith /etc
  output: a
  priority: WARNING
- rule: b
  desc: d
  condition: writes and fd.name startswith /root and proc.name = sh
  output: b
  priority: WARNING
- rule: c
  desc: d
  condition: evt.type = execve and proc.name = sh
  output: c
  priority: WARNING
"#;
        let (mut set, diags) = rules::load_str("t.yaml", text, &LoadOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        set.set_timing(false);
        // Terms: the macro, two startswith, proc.name = sh (shared by b and c), evt.type=execve.
        assert_eq!(set.plan_size().0, 5);
        let mut ev = Event {
            kind: crate::event::EventType::Openat,
            ..Event::default()
        };
        ev.process.comm = "sh".into();
        ev.fd = Some(crate::event::Fd {
            path: Some("/root/.profile".into()),
            ..Default::default()
        });
        ev.args.insert(
            "flags".into(),
            crate::event::Arg::Flags {
                raw: 1,
                text: "O_WRONLY".into(),
            },
        );
        let names = |m: Vec<rules::Match>| m.into_iter().map(|m| m.rule).collect::<Vec<_>>();
        assert_eq!(names(set.evaluate(&ev)), ["b"]);
        ev.kind = crate::event::EventType::Execve;
        assert_eq!(names(set.evaluate(&ev)), ["c"]);
        ev.args.clear();
        ev.kind = crate::event::EventType::Openat;
        assert!(set.evaluate(&ev).is_empty());
    }
}
