//! Rule files -> item definitions: rules, macros, lists, engine/plugin requirements, with
//! Falco's `append: true` and `override: {key: append|replace}` semantics applied in load
//! order (shipped files first, then local overrides).

use std::collections::HashMap;
use std::sync::Arc;

use super::Priority;
use super::compile::{CondSrc, ListDef, ListItem, MacroDef};
use super::diag::{Code, Pos, Severity, Sink};
use super::yaml::{self, Node};

/// The Falco engine version whose rule-file features this engine implements.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 57, 0);

#[derive(Clone, Debug)]
pub enum ExVal {
    One(String, Pos),
    Many(Vec<(String, Pos)>, Pos),
}

#[derive(Clone, Debug)]
pub struct ExceptionDef {
    pub name: String,
    pub pos: Pos,
    /// (field text, position).
    pub fields: Vec<(String, Pos)>,
    pub comps: Vec<String>,
    /// Single-field form: `fields: name`, each value is one alternative.
    pub single: bool,
    pub values: Vec<Vec<ExVal>>,
}

#[derive(Clone, Debug)]
pub struct RuleDef {
    pub name: String,
    pub pos: Pos,
    pub desc: String,
    pub cond: Option<CondSrc>,
    pub output: Option<CondSrc>,
    pub priority: Option<Priority>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub exceptions: Vec<ExceptionDef>,
    pub source: String,
    pub skip_if_unknown: bool,
}

#[derive(Default)]
pub struct Defs {
    pub rules: Vec<RuleDef>,
    pub macros: HashMap<String, MacroDef>,
    pub lists: HashMap<String, ListDef>,
}

const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "source",
    "append",
    "override",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];

pub struct FileLoader<'a> {
    pub defs: &'a mut Defs,
    pub sink: &'a mut Sink,
    src: Arc<str>,
}

fn str_of(n: &Node) -> Option<String> {
    n.as_str().map(str::to_string)
}

impl<'a> FileLoader<'a> {
    pub fn new(defs: &'a mut Defs, sink: &'a mut Sink, src: Arc<str>) -> Self {
        FileLoader { defs, sink, src }
    }

    pub fn load(&mut self, file: Arc<str>) {
        let docs = match yaml::parse(file.clone(), &self.src) {
            Ok(d) => d,
            Err(e) => {
                self.sink.error(
                    Code::YamlSyntax,
                    &e.pos,
                    1,
                    None,
                    format!("YAML syntax error: {}", e.message),
                );
                return;
            }
        };
        for doc in docs {
            if doc.is_null() {
                continue;
            }
            let Some(items) = doc.as_seq() else {
                let pos = doc
                    .as_map()
                    .and_then(|m| m.first())
                    .map_or(&doc.pos, |(k, _)| &k.pos);
                self.sink.error(
                    Code::BadItem,
                    pos,
                    1,
                    None,
                    format!(
                        "a rules file is a sequence of items, found {}",
                        doc.kind_name()
                    ),
                );
                continue;
            };
            for item in items {
                self.item(item);
            }
        }
    }

    fn item(&mut self, item: &Node) {
        let Some(map) = item.as_map() else {
            self.sink.error(
                Code::BadItem,
                &item.pos,
                1,
                None,
                format!(
                    "an item is a mapping (`- rule: ...`), found {}",
                    item.kind_name()
                ),
            );
            return;
        };
        // The item kind is whichever known key is present (Falco does not require it first).
        const KINDS: &[&str] = &[
            "rule",
            "macro",
            "list",
            "required_engine_version",
            "required_plugin_versions",
        ];
        let Some((k, _)) = map
            .iter()
            .find(|(k, _)| k.as_str().is_some_and(|s| KINDS.contains(&s)))
            .or(map.first())
        else {
            return;
        };
        let kind = k.as_str().unwrap_or("");
        match kind {
            "rule" => self.rule(item),
            "macro" => self.macro_(item),
            "list" => self.list(item),
            "required_engine_version" => self.engine_version(item),
            "required_plugin_versions" => {
                self.sink.push(Code::PluginVersions, Severity::Info, &k.pos, kind.len(), None, "required_plugin_versions noted: this engine has no plugins; container metadata comes from the monitor's own attribution".to_string());
            }
            _ => {
                // Falco ignores unknown top-level items with a warning; so do we.
                self.sink.warn(Code::BadItem, &k.pos, kind.len().max(1), None, format!("unknown item kind `{kind}` (expected rule, macro, list, required_engine_version)"));
            }
        }
    }

    fn engine_version(&mut self, item: &Node) {
        let Some(v) = item.get("required_engine_version") else {
            return;
        };
        let text = v.as_str().unwrap_or("");
        let parts: Vec<Option<u64>> = text.split('.').map(|p| p.trim().parse().ok()).collect();
        let ok = match parts.as_slice() {
            // Old integer engine versions predate 0.x.y numbering: all satisfied.
            [Some(_)] => true,
            [Some(a), Some(b), Some(c)] => (*a, *b, *c) <= ENGINE_VERSION,
            [Some(a), Some(b)] => (*a, *b, 0) <= ENGINE_VERSION,
            _ => {
                self.sink.error(
                    Code::EngineVersion,
                    &v.pos,
                    text.len(),
                    None,
                    format!("`{text}` is not a version"),
                );
                return;
            }
        };
        if !ok {
            let (a, b, c) = ENGINE_VERSION;
            self.sink.error(
                Code::EngineVersion,
                &v.pos,
                text.len(),
                None,
                format!(
                    "the file requires engine version {text}, this engine implements {a}.{b}.{c}"
                ),
            );
        }
    }

    /// `append: true` or `override:` mapping -> per-key mode.
    fn modes(
        &mut self,
        item: &Node,
        name: &str,
        allowed_append: &[&str],
        allowed_replace: &[&str],
    ) -> Option<HashMap<String, bool>> {
        let mut modes = HashMap::new();
        if let Some(a) = item.get("append") {
            match a.as_bool() {
                Some(true) => {
                    modes.insert("*append".to_string(), true);
                }
                Some(false) => {}
                None => {
                    self.sink.error(
                        Code::BadOverride,
                        &a.pos,
                        1,
                        Some(name),
                        "`append` must be true or false".to_string(),
                    );
                    return None;
                }
            }
        }
        if let Some(o) = item.get("override") {
            if item.get("append").is_some() {
                self.sink.error(
                    Code::BadOverride,
                    &o.pos,
                    8,
                    Some(name),
                    "`override` and `append` cannot be used together".to_string(),
                );
                return None;
            }
            let Some(m) = o.as_map() else {
                self.sink.error(
                    Code::BadOverride,
                    &o.pos,
                    1,
                    Some(name),
                    "`override` is a mapping of key: append|replace".to_string(),
                );
                return None;
            };
            for (k, v) in m {
                let key = k.as_str().unwrap_or("");
                let mode = v.as_str().unwrap_or("");
                let allowed = match mode {
                    "append" => allowed_append.contains(&key),
                    "replace" => allowed_replace.contains(&key),
                    _ => {
                        self.sink.error(
                            Code::BadOverride,
                            &v.pos,
                            mode.len(),
                            Some(name),
                            format!("override mode `{mode}` is neither append nor replace"),
                        );
                        return None;
                    }
                };
                if !allowed {
                    self.sink.error(
                        Code::BadOverride,
                        &k.pos,
                        key.len(),
                        Some(name),
                        format!("`{key}` cannot be overridden with `{mode}`"),
                    );
                    return None;
                }
                if item.get(key).is_none() {
                    self.sink.error(
                        Code::BadOverride,
                        &k.pos,
                        key.len(),
                        Some(name),
                        format!("override names `{key}` but the item does not set it"),
                    );
                    return None;
                }
                modes.insert(key.to_string(), mode == "append");
            }
        }
        Some(modes)
    }

    fn cond(&self, n: &Node) -> CondSrc {
        CondSrc::new(n, self.src.clone())
    }

    fn name_of(&mut self, item: &Node, key: &str) -> Option<(String, Pos)> {
        let n = item.get(key)?;
        match n.as_str() {
            Some(s) if !s.trim().is_empty() => Some((s.trim().to_string(), n.pos.clone())),
            _ => {
                self.sink.error(
                    Code::BadKey,
                    &n.pos,
                    1,
                    None,
                    format!("`{key}` needs a non-empty name"),
                );
                None
            }
        }
    }

    fn macro_(&mut self, item: &Node) {
        let Some((name, pos)) = self.name_of(item, "macro") else {
            return;
        };
        let Some(modes) = self.modes(item, &name, &["condition"], &["condition"]) else {
            return;
        };
        let Some(c) = item.get("condition") else {
            self.sink.error(
                Code::BadKey,
                &pos,
                name.len(),
                Some(&name),
                "macro has no `condition`".to_string(),
            );
            return;
        };
        if c.as_str().is_none() {
            self.sink.error(
                Code::BadKey,
                &c.pos,
                1,
                Some(&name),
                "`condition` must be a string".to_string(),
            );
            return;
        }
        let cond = self.cond(c);
        let append = modes.contains_key("*append") || modes.get("condition") == Some(&true);
        if append || modes.contains_key("condition") {
            match self.defs.macros.get_mut(&name) {
                Some(m) if append => m.cond.append(&cond),
                Some(m) => m.cond = cond,
                None => self.sink.error(
                    Code::AppendUndefined,
                    &pos,
                    name.len(),
                    Some(&name),
                    format!("append/override of macro `{name}`, which is not defined earlier"),
                ),
            }
            return;
        }
        self.defs.macros.insert(
            name,
            MacroDef {
                cond,
                pos,
                parsed: None,
            },
        );
    }

    fn list(&mut self, item: &Node) {
        let Some((name, pos)) = self.name_of(item, "list") else {
            return;
        };
        let Some(modes) = self.modes(item, &name, &["items"], &["items"]) else {
            return;
        };
        let items_node = item.get("items");
        let mut items = Vec::new();
        match items_node {
            Some(n) if n.is_null() => {}
            Some(n) => match n.as_seq() {
                Some(seq) => {
                    for it in seq {
                        match it.as_str() {
                            Some(s) => items.push(ListItem {
                                text: s.to_string(),
                                pos: it.pos.clone(),
                            }),
                            None => self.sink.error(
                                Code::BadKey,
                                &it.pos,
                                1,
                                Some(&name),
                                format!("list items are scalars, found {}", it.kind_name()),
                            ),
                        }
                    }
                }
                None => {
                    self.sink.error(
                        Code::BadKey,
                        &n.pos,
                        1,
                        Some(&name),
                        "`items` must be a sequence".to_string(),
                    );
                    return;
                }
            },
            None => {
                self.sink.error(
                    Code::BadKey,
                    &pos,
                    name.len(),
                    Some(&name),
                    "list has no `items`".to_string(),
                );
                return;
            }
        }
        let append = modes.contains_key("*append") || modes.get("items") == Some(&true);
        if append || modes.contains_key("items") {
            match self.defs.lists.get_mut(&name) {
                Some(l) if append => l.items.extend(items),
                Some(l) => l.items = items,
                None => self.sink.error(
                    Code::AppendUndefined,
                    &pos,
                    name.len(),
                    Some(&name),
                    format!("append/override of list `{name}`, which is not defined earlier"),
                ),
            }
            return;
        }
        self.defs.lists.insert(name, ListDef { items, pos });
    }

    fn tags(&mut self, n: &Node, name: &str) -> Vec<String> {
        match n.as_seq() {
            Some(seq) => seq.iter().filter_map(str_of).collect(),
            None if n.is_null() => Vec::new(),
            None => {
                self.sink.error(
                    Code::BadKey,
                    &n.pos,
                    1,
                    Some(name),
                    "`tags` must be a sequence".to_string(),
                );
                Vec::new()
            }
        }
    }

    fn priority(&mut self, n: &Node, name: &str) -> Option<Priority> {
        let s = n.as_str().unwrap_or("");
        match s.parse::<Priority>().ok() {
            Some(p) => Some(p),
            None => {
                self.sink.error(Code::BadPriority, &n.pos, s.len(), Some(name), format!("`{s}` is not a priority (emergency, alert, critical, error, warning, notice, informational, debug)"));
                None
            }
        }
    }

    fn exceptions(&mut self, n: &Node, name: &str) -> Vec<ExceptionDef> {
        let Some(seq) = n.as_seq() else {
            if !n.is_null() {
                self.sink.error(
                    Code::BadException,
                    &n.pos,
                    1,
                    Some(name),
                    "`exceptions` must be a sequence".to_string(),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in seq {
            let Some(ename) = e.get("name").and_then(str_of) else {
                self.sink.error(
                    Code::BadException,
                    &e.pos,
                    1,
                    Some(name),
                    "an exception needs a `name`".to_string(),
                );
                continue;
            };
            let (fields, single) = match e.get("fields") {
                Some(f) if f.as_str().is_some() => (
                    vec![(f.as_str().unwrap_or("").to_string(), f.pos.clone())],
                    true,
                ),
                Some(f) if f.as_seq().is_some() => (
                    f.as_seq()
                        .unwrap_or(&[])
                        .iter()
                        .filter_map(|x| Some((x.as_str()?.to_string(), x.pos.clone())))
                        .collect(),
                    false,
                ),
                _ => {
                    self.sink.error(
                        Code::BadException,
                        &e.pos,
                        1,
                        Some(name),
                        format!("exception `{ename}` needs `fields`"),
                    );
                    continue;
                }
            };
            if fields.is_empty() {
                self.sink.error(
                    Code::BadException,
                    &e.pos,
                    1,
                    Some(name),
                    format!("exception `{ename}` has no fields"),
                );
                continue;
            }
            let comps: Vec<String> = match e.get("comps") {
                None => vec![if single { "in" } else { "=" }.to_string(); fields.len()],
                Some(c) if c.as_str().is_some() => {
                    vec![c.as_str().unwrap_or("=").to_string(); fields.len()]
                }
                Some(c) => c
                    .as_seq()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(str_of)
                    .collect(),
            };
            if comps.len() != fields.len() {
                let p = e.get("comps").map_or(e.pos.clone(), |c| c.pos.clone());
                self.sink.error(
                    Code::BadException,
                    &p,
                    1,
                    Some(name),
                    format!(
                        "exception `{ename}`: {} comps for {} fields",
                        comps.len(),
                        fields.len()
                    ),
                );
                continue;
            }
            let mut values = Vec::new();
            if let Some(vs) = e.get("values").and_then(Node::as_seq) {
                for row in vs {
                    if single {
                        match row.as_str() {
                            Some(s) => {
                                values.push(vec![ExVal::One(s.to_string(), row.pos.clone())])
                            }
                            None => self.sink.error(
                                Code::BadException,
                                &row.pos,
                                1,
                                Some(name),
                                format!("exception `{ename}`: single-field values are scalars"),
                            ),
                        }
                        continue;
                    }
                    let Some(cells) = row.as_seq() else {
                        self.sink.error(Code::BadException, &row.pos, 1, Some(name), format!("exception `{ename}`: each value is a sequence with one entry per field"));
                        continue;
                    };
                    if cells.len() != fields.len() {
                        self.sink.error(
                            Code::BadException,
                            &row.pos,
                            1,
                            Some(name),
                            format!(
                                "exception `{ename}`: {} values for {} fields",
                                cells.len(),
                                fields.len()
                            ),
                        );
                        continue;
                    }
                    values.push(
                        cells
                            .iter()
                            .map(|c| match c.as_seq() {
                                Some(items) => ExVal::Many(
                                    items
                                        .iter()
                                        .filter_map(|i| {
                                            Some((i.as_str()?.to_string(), i.pos.clone()))
                                        })
                                        .collect(),
                                    c.pos.clone(),
                                ),
                                None => {
                                    ExVal::One(c.as_str().unwrap_or("").to_string(), c.pos.clone())
                                }
                            })
                            .collect(),
                    );
                }
            }
            out.push(ExceptionDef {
                name: ename,
                pos: e.pos.clone(),
                fields,
                comps,
                single,
                values,
            });
        }
        out
    }

    fn rule(&mut self, item: &Node) {
        let Some((name, pos)) = self.name_of(item, "rule") else {
            return;
        };
        for (k, _) in item.as_map().unwrap_or(&[]) {
            let key = k.as_str().unwrap_or("");
            if !RULE_KEYS.contains(&key) {
                self.sink.warn(
                    Code::UnknownKey,
                    &k.pos,
                    key.len(),
                    Some(&name),
                    format!("unknown rule key `{key}` (ignored)"),
                );
            }
        }
        let Some(modes) = self.modes(
            item,
            &name,
            &["condition", "output", "desc", "tags", "exceptions"],
            &[
                "condition",
                "output",
                "desc",
                "priority",
                "tags",
                "exceptions",
                "enabled",
            ],
        ) else {
            return;
        };
        let legacy_append = modes.contains_key("*append");
        let existing = self.defs.rules.iter().position(|r| r.name == name);
        let keys: Vec<&str> = item
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        let only_enabled = keys.iter().all(|k| matches!(*k, "rule" | "enabled"));

        if legacy_append || !modes.is_empty() || (only_enabled && keys.len() == 2) {
            let Some(idx) = existing else {
                self.sink.error(
                    Code::AppendUndefined,
                    &pos,
                    name.len(),
                    Some(&name),
                    format!("append/override of rule `{name}`, which is not defined earlier"),
                );
                return;
            };
            let mode = |k: &str| -> Option<bool> {
                if legacy_append {
                    // Legacy append: condition and exceptions append, other keys are ignored.
                    return matches!(k, "condition" | "exceptions").then_some(true);
                }
                if only_enabled && k == "enabled" {
                    return Some(false);
                }
                modes.get(k).copied()
            };
            if let Some(c) = item.get("condition")
                && let Some(app) = mode("condition")
            {
                let cs = self.cond(c);
                let r = &mut self.defs.rules[idx];
                match (&mut r.cond, app) {
                    (Some(old), true) => old.append(&cs),
                    (slot, _) => *slot = Some(cs),
                }
            }
            if let Some(o) = item.get("output")
                && let Some(app) = mode("output")
            {
                let cs = self.cond(o);
                let r = &mut self.defs.rules[idx];
                match (&mut r.output, app) {
                    (Some(old), true) => old.append(&cs),
                    (slot, _) => *slot = Some(cs),
                }
            }
            if let Some(d) = item.get("desc")
                && let Some(app) = mode("desc")
            {
                let d = d.as_str().unwrap_or("").to_string();
                let r = &mut self.defs.rules[idx];
                if app {
                    r.desc = format!("{} {d}", r.desc)
                } else {
                    r.desc = d
                }
            }
            if let Some(p) = item.get("priority")
                && mode("priority").is_some()
                && let Some(p) = self.priority(p, &name)
            {
                self.defs.rules[idx].priority = Some(p);
            }
            if let Some(t) = item.get("tags")
                && let Some(app) = mode("tags")
            {
                let t = self.tags(t, &name);
                let r = &mut self.defs.rules[idx];
                if app { r.tags.extend(t) } else { r.tags = t }
            }
            if let Some(e) = item.get("enabled")
                && mode("enabled").is_some()
            {
                match e.as_bool() {
                    Some(b) => self.defs.rules[idx].enabled = b,
                    None => self.sink.error(
                        Code::BadKey,
                        &e.pos,
                        1,
                        Some(&name),
                        "`enabled` must be true or false".to_string(),
                    ),
                }
            }
            if let Some(e) = item.get("exceptions")
                && let Some(app) = mode("exceptions")
            {
                let ex = self.exceptions(e, &name);
                let r = &mut self.defs.rules[idx];
                if app {
                    for new in ex {
                        match r.exceptions.iter_mut().find(|x| x.name == new.name) {
                            Some(old) => old.values.extend(new.values),
                            None => r.exceptions.push(new),
                        }
                    }
                } else {
                    r.exceptions = ex;
                }
            }
            return;
        }

        // A full definition.
        let mut missing = Vec::new();
        for k in ["condition", "output", "desc", "priority"] {
            if item.get(k).is_none() {
                missing.push(k);
            }
        }
        if !missing.is_empty() {
            self.sink.error(
                Code::BadKey,
                &pos,
                name.len(),
                Some(&name),
                format!("rule is missing {}", missing.join(", ")),
            );
            return;
        }
        let cond_node = item.get("condition").filter(|c| c.as_str().is_some());
        let out_node = item.get("output").filter(|c| c.as_str().is_some());
        let (Some(cond_node), Some(out_node)) = (cond_node, out_node) else {
            self.sink.error(
                Code::BadKey,
                &pos,
                name.len(),
                Some(&name),
                "`condition` and `output` must be strings".to_string(),
            );
            return;
        };
        let Some(priority) = item.get("priority").and_then(|p| self.priority(p, &name)) else {
            return;
        };
        let enabled = match item.get("enabled") {
            None => true,
            Some(e) => match e.as_bool() {
                Some(b) => b,
                None => {
                    self.sink.error(
                        Code::BadKey,
                        &e.pos,
                        1,
                        Some(&name),
                        "`enabled` must be true or false".to_string(),
                    );
                    return;
                }
            },
        };
        let tags = item
            .get("tags")
            .map(|t| self.tags(t, &name))
            .unwrap_or_default();
        let exceptions = item
            .get("exceptions")
            .map(|e| self.exceptions(e, &name))
            .unwrap_or_default();
        let def = RuleDef {
            name: name.clone(),
            pos,
            desc: item.get("desc").and_then(str_of).unwrap_or_default(),
            cond: Some(self.cond(cond_node)),
            output: Some(self.cond(out_node)),
            priority: Some(priority),
            tags,
            enabled,
            exceptions,
            source: item
                .get("source")
                .and_then(str_of)
                .unwrap_or_else(|| "syscall".to_string()),
            skip_if_unknown: item
                .get("skip-if-unknown-filter")
                .and_then(Node::as_bool)
                .unwrap_or(false),
        };
        match existing {
            Some(i) => {
                let p = def.pos.clone();
                self.sink.push(
                    Code::Redefined,
                    Severity::Info,
                    &p,
                    name.len(),
                    Some(&name),
                    "rule redefined: this definition replaces the earlier one".to_string(),
                );
                self.defs.rules[i] = def;
            }
            None => self.defs.rules.push(def),
        }
    }
}
