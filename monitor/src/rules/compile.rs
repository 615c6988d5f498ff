//! Compilation: AST -> [`Node`] program. Fields are resolved against the schema, literals
//! parsed into the field's type, macros expanded (with cycle detection) and list references
//! spliced into list literals. Every problem becomes a diagnostic pointing at the offending
//! text, inside the rule or inside the macro/list that carries it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use monitor_common::{EventType, Family};

use super::diag::{Code, Pos, Sink};
use super::fields::{self, FieldRef, Id, Lookup, Transformer, Ty};
use super::parser::{Expr, FieldExpr, Op, Rhs, Span, Value, unquote_item};
use super::program::{Check, Cidr, Glob, KindSet, Node, PathPrefixes, Test};
use super::yaml;

/// Where a condition's text came from: one segment per YAML scalar (appends add segments), so
/// any char offset maps back to a file position.
#[derive(Clone, Debug, Default)]
pub struct CondSrc {
    pub text: String,
    segs: Vec<(usize, yaml::Node, Arc<str>)>,
    /// Position used when there is no segment (synthesised conditions).
    fallback: Pos,
}

impl CondSrc {
    pub fn new(node: &yaml::Node, src: Arc<str>) -> CondSrc {
        let text = node.as_str().unwrap_or("").to_string();
        CondSrc {
            text,
            segs: vec![(0, node.clone(), src)],
            fallback: node.pos.clone(),
        }
    }

    pub fn synthetic(text: String, pos: Pos) -> CondSrc {
        CondSrc {
            text,
            segs: Vec::new(),
            fallback: pos,
        }
    }

    /// Falco's legacy `append: true` joins conditions with a space.
    pub fn append(&mut self, other: &CondSrc) {
        self.text.push(' ');
        let base = self.text.chars().count();
        self.text.push_str(&other.text);
        for (off, n, s) in &other.segs {
            self.segs.push((base + off, n.clone(), s.clone()));
        }
    }

    pub fn locate(&self, offset: usize) -> Pos {
        match self.segs.iter().rev().find(|(o, _, _)| *o <= offset) {
            Some((o, node, src)) => node.locate(src, offset - o),
            None => self.fallback.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub cond: CondSrc,
    pub pos: Pos,
    pub parsed: Option<Expr>,
}

#[derive(Clone, Debug)]
pub struct ListItem {
    pub text: String,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct ListDef {
    pub items: Vec<ListItem>,
    pub pos: Pos,
}

pub struct Compiler<'a> {
    pub macros: &'a HashMap<String, MacroDef>,
    pub lists: &'a HashMap<String, ListDef>,
    pub sink: &'a mut Sink,
    /// Macro name -> memo id, shared by every rule of a set.
    pub memo_ids: &'a mut HashMap<String, u32>,
    /// The rule being compiled, named in every diagnostic.
    pub item: String,
    pub errors: usize,
    stack: Vec<String>,
    warned: HashSet<String>,
    /// Macro/field names used (for "never fires" explanations).
    pub unsupported_used: Vec<String>,
    /// Reject monitor extensions (own fields, own event types): the file must load in Falco.
    pub falco_only: bool,
    /// Every field the compiled condition refers to, macros included, in order of first use
    /// (the field-coverage test checks that live events fill each one).
    pub used: Vec<FieldUse>,
}

/// A field a rule refers to: as written (`proc.aname[2]`, `evt.arg.flags`), and its
/// resolution (`None` for a field Falco defines but the monitor's events never carry).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldUse {
    pub text: String,
    pub field: Option<FieldRef>,
}

impl FieldUse {
    pub fn new(name: &str, arg: Option<&str>, field: Option<FieldRef>) -> FieldUse {
        let text = match arg {
            Some(a) => format!("{name}[{a}]"),
            None => name.to_string(),
        };
        // Transformers change the value, not whether the event carries the field.
        let field = field.map(|mut f| {
            f.transformers.clear();
            f
        });
        FieldUse { text, field }
    }

    fn push_unique(list: &mut Vec<FieldUse>, u: FieldUse) {
        if !list.contains(&u) {
            list.push(u);
        }
    }
}

/// Where a literal sits: an offset in the condition being compiled, or a list item's own
/// position. Resolved to a file position only when a diagnostic needs it (mapping offsets back
/// onto the YAML source is the costly part of compiling).
enum At {
    Offset(usize),
    Pos(Pos),
}

/// A resolved value ready for typing: its text and where it came from.
struct Lit {
    text: String,
    at: At,
    len: usize,
}

impl Lit {
    fn pos(&self, src: &CondSrc) -> Pos {
        match &self.at {
            At::Offset(o) => src.locate(*o),
            At::Pos(p) => p.clone(),
        }
    }
}

impl<'a> Compiler<'a> {
    pub fn new(
        macros: &'a HashMap<String, MacroDef>,
        lists: &'a HashMap<String, ListDef>,
        sink: &'a mut Sink,
        memo_ids: &'a mut HashMap<String, u32>,
        item: &str,
    ) -> Self {
        Compiler {
            macros,
            lists,
            sink,
            memo_ids,
            item: item.to_string(),
            errors: 0,
            stack: Vec::new(),
            warned: HashSet::new(),
            unsupported_used: Vec::new(),
            falco_only: false,
            used: Vec::new(),
        }
    }

    fn error(&mut self, code: Code, pos: &Pos, len: usize, msg: String) {
        self.errors += 1;
        let item = self.item.clone();
        self.sink.error(code, pos, len, Some(&item), msg);
    }

    fn warn(&mut self, code: Code, pos: &Pos, len: usize, msg: String) {
        let item = self.item.clone();
        self.sink.warn(code, pos, len, Some(&item), msg);
    }

    pub fn expr(&mut self, e: &Expr, src: &CondSrc) -> Node {
        match e {
            Expr::And(v) => Node::And(v.iter().map(|x| self.expr(x, src)).collect()),
            Expr::Or(v) => Node::Or(v.iter().map(|x| self.expr(x, src)).collect()),
            Expr::Not(x) => Node::Not(Box::new(self.expr(x, src))),
            Expr::Macro(name, span) => self.macro_ref(name, *span, src),
            Expr::Check {
                field,
                op,
                op_span,
                rhs,
            } => self.check(field, *op, *op_span, rhs, src),
        }
    }

    fn macro_ref(&mut self, name: &str, span: Span, src: &CondSrc) -> Node {
        let pos = || src.locate(span.start);
        let Some(m) = self.macros.get(name) else {
            let hint = if self.lists.contains_key(name) {
                " (it is a list: use it inside `in (...)`)"
            } else {
                ""
            };
            self.error(
                Code::UndefinedMacro,
                &pos(),
                span.len(),
                format!("`{name}` is not a defined macro{hint}"),
            );
            return Node::Const(false);
        };
        if self.stack.iter().any(|s| s == name) {
            let chain = format!("{} -> {name}", self.stack.join(" -> "));
            self.error(
                Code::MacroCycle,
                &pos(),
                span.len(),
                format!("macro cycle: {chain}"),
            );
            return Node::Const(false);
        }
        let Some(parsed) = &m.parsed else {
            // Its own parse error was reported where the macro is defined.
            self.errors += 1;
            return Node::Const(false);
        };
        self.stack.push(name.to_string());
        let n = self.expr(parsed, &m.cond);
        self.stack.pop();
        let next = u32::try_from(self.memo_ids.len()).unwrap_or(u32::MAX);
        let id = *self.memo_ids.entry(name.to_string()).or_insert(next);
        Node::Memo(id, Box::new(n))
    }

    /// Resolve a field expression; `None` after reporting when unusable. `Some(None)` is a
    /// known-but-unsupported field (reported; comparisons on it are false).
    fn field(&mut self, f: &FieldExpr, src: &CondSrc) -> Option<Option<(FieldRef, Ty)>> {
        let pos = || src.locate(f.name_span.start);
        let len = f.span.end.saturating_sub(f.name_span.start).max(1);
        let (spec, arg) = match fields::lookup(&f.name, f.arg.as_deref()) {
            Lookup::Found { spec, .. } if self.falco_only && spec.is_own() => {
                self.error(
                    Code::NotFalco,
                    &pos(),
                    f.name_span.len(),
                    format!(
                        "field `{}` is a monitor extension; Falco cannot load it (move the condition to rules/monitor.d)",
                        f.name
                    ),
                );
                return None;
            }
            Lookup::Found { spec, arg } => (spec, arg),
            Lookup::Unsupported(why) => {
                let full = match &f.arg {
                    Some(a) => format!("{}[{a}]", f.name),
                    None => f.name.clone(),
                };
                FieldUse::push_unique(
                    &mut self.used,
                    FieldUse::new(&f.name, f.arg.as_deref(), None),
                );
                if self.warned.insert(full.clone()) {
                    self.warn(
                        Code::UnsupportedField,
                        &pos(),
                        len,
                        format!("field `{full}` is not supported: {why}; every comparison on it is false"),
                    );
                }
                self.unsupported_used.push(full);
                return Some(None);
            }
            Lookup::Unknown => {
                self.error(
                    Code::UnknownField,
                    &pos(),
                    f.name_span.len(),
                    format!("unknown field `{}`", f.name),
                );
                return None;
            }
            Lookup::BadArg(msg) => {
                self.error(Code::FieldArg, &pos(), len, msg);
                return None;
            }
        };
        let mut ty = spec.ty;
        let mut ts = Vec::new();
        for t in &f.transformers {
            let Some(tr) = Transformer::from_name(t) else {
                continue;
            };
            if ty != Ty::Str {
                let p = src.locate(f.span.start);
                self.error(
                    Code::BadOperator,
                    &p,
                    f.span.len(),
                    format!(
                        "transformer `{t}` applies to strings, `{}` is not one",
                        f.name
                    ),
                );
                return None;
            }
            if tr == Transformer::Len {
                ty = Ty::Int;
            }
            ts.push(tr);
        }
        let field = FieldRef {
            id: spec.id,
            arg,
            transformers: ts,
        };
        FieldUse::push_unique(
            &mut self.used,
            FieldUse::new(&f.name, f.arg.as_deref(), Some(field.clone())),
        );
        Some(Some((field, ty)))
    }

    /// Expand a list literal: bare items naming a list are replaced by its items (recursively).
    fn expand(&mut self, items: &[Value], out: &mut Vec<Lit>) {
        for v in items {
            if !v.quoted
                && let Some(l) = self.lists.get(&v.text)
            {
                let mut seen = HashSet::new();
                self.expand_list(&v.text, l, &mut seen, out);
                continue;
            }
            out.push(Lit {
                text: v.text.clone(),
                at: At::Offset(v.span.start),
                len: v.span.len(),
            });
        }
    }

    fn expand_list(
        &mut self,
        name: &str,
        l: &ListDef,
        seen: &mut HashSet<String>,
        out: &mut Vec<Lit>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        for it in &l.items {
            let (text, quoted) = unquote_item(&it.text);
            if !quoted && let Some(inner) = self.lists.get(&text) {
                self.expand_list(&text, inner, seen, out);
                continue;
            }
            out.push(Lit {
                text,
                at: At::Pos(it.pos.clone()),
                len: it.text.chars().count(),
            });
        }
    }

    fn check(&mut self, f: &FieldExpr, op: Op, op_span: Span, rhs: &Rhs, src: &CondSrc) -> Node {
        let Some(resolved) = self.field(f, src) else {
            return Node::Const(false);
        };
        let Some((mut field, ty)) = resolved else {
            return Node::Const(false);
        };
        // `proc.args intersects (...)` means "any argument is one of": compare argv
        // element-wise instead of the joined string.
        if op == Op::Intersects && field.id == Id::ProcArgs && field.transformers.is_empty() {
            field.arg = fields::FArg::Key("argv".to_string());
        }
        let field = field;
        let bad_op = |c: &mut Self| {
            c.error(
                Code::BadOperator,
                &src.locate(op_span.start),
                op_span.len(),
                format!(
                    "operator `{}` does not apply to `{}` ({})",
                    op.as_str(),
                    f.name,
                    ty_name(ty)
                ),
            );
            Node::Const(false)
        };
        let mk = |test: Test, negate: bool| {
            Node::Check(Box::new(Check {
                field: field.clone(),
                test,
                negate,
            }))
        };

        if op == Op::Exists {
            return mk(Test::Exists, false);
        }
        if let Rhs::Field(other) = rhs {
            let Some(Some((oref, oty))) = self.field(other, src) else {
                return Node::Const(false);
            };
            if oty != ty {
                let p = src.locate(other.span.start);
                self.error(
                    Code::BadOperator,
                    &p,
                    other.span.len(),
                    format!(
                        "cannot compare `{}` ({}) with `{}` ({})",
                        f.name,
                        ty_name(ty),
                        other.name,
                        ty_name(oty)
                    ),
                );
                return Node::Const(false);
            }
            return mk(Test::Field(op, oref), op == Op::Ne);
        }
        // Gather literal(s).
        let mut lits = Vec::new();
        match rhs {
            Rhs::Value(v) => lits.push(Lit {
                text: v.text.clone(),
                at: At::Offset(v.span.start),
                len: v.span.len(),
            }),
            Rhs::List(items, _) => self.expand(items, &mut lits),
            Rhs::None | Rhs::Field(_) => {}
        }

        // The whole `proc.env` holds only the kept variables: a search for any other one
        // would be silently false (and `not` of it silently true). Say so where it is written.
        if field.id == Id::ProcEnv && matches!(field.arg, fields::FArg::None) {
            for l in &lits {
                let upper = l.text.to_ascii_uppercase();
                if !crate::event::ENV_KEPT.iter().any(|k| upper.contains(k)) {
                    self.warn(
                        Code::UnsupportedField,
                        &l.pos(src),
                        l.len,
                        format!(
                            "`{}` names no environment variable the monitor keeps (proc.env holds only those that change what code runs, listed in rules/README.md); this comparison is always false",
                            l.text
                        ),
                    );
                }
            }
        }

        // evt.type: a kind set, which also feeds the index.
        if field.id == Id::EvtType
            && field.transformers.is_empty()
            && matches!(op, Op::Eq | Op::Ne | Op::In)
        {
            let mut set = KindSet::default();
            for l in &lits {
                match EventType::from_name(&l.text) {
                    Some(k) if self.falco_only && k.family() == Family::SideDoor => {
                        self.error(
                            Code::NotFalco,
                            &l.pos(src),
                            l.len,
                            format!("event type `{}` is a monitor extension; Falco cannot load it (move the condition to rules/monitor.d)", l.text),
                        );
                    }
                    Some(k) => set.insert(k),
                    None => {
                        if self.warned.insert(format!("evt.type={}", l.text)) {
                            self.warn(
                                Code::UncapturedEventType,
                                &l.pos(src),
                                l.len,
                                format!("event type `{}` is never captured by the monitor", l.text),
                            );
                        }
                    }
                }
            }
            return mk(Test::Kinds(Box::new(set)), op == Op::Ne);
        }

        match ty {
            Ty::Str => self.str_check(op, &lits, src, &mk, bad_op),
            Ty::Int => {
                let mut vals = Vec::new();
                for l in &lits {
                    match parse_int(&l.text) {
                        Some(i) => vals.push(i),
                        None => {
                            self.error(
                                Code::BadLiteral,
                                &l.pos(src),
                                l.len,
                                format!(
                                    "`{}` is not an integer (field `{}` is numeric)",
                                    l.text, f.name
                                ),
                            );
                            return Node::Const(false);
                        }
                    }
                }
                let first = vals.first().copied().unwrap_or(0);
                match op {
                    Op::Eq => mk(Test::IEq(first), false),
                    Op::Ne => mk(Test::IEq(first), true),
                    Op::Lt => mk(Test::ILt(first), false),
                    Op::Le => mk(Test::ILe(first), false),
                    Op::Gt => mk(Test::IGt(first), false),
                    Op::Ge => mk(Test::IGe(first), false),
                    Op::In | Op::Intersects => mk(Test::ISet(vals), false),
                    _ => bad_op(self),
                }
            }
            Ty::Bool => {
                let mut vals = Vec::new();
                for l in &lits {
                    match l.text.as_str() {
                        "true" => vals.push(true),
                        "false" => vals.push(false),
                        _ => {
                            self.error(
                                Code::BadLiteral,
                                &l.pos(src),
                                l.len,
                                format!(
                                    "`{}` is not `true` or `false` (field `{}` is boolean)",
                                    l.text, f.name
                                ),
                            );
                            return Node::Const(false);
                        }
                    }
                }
                match op {
                    Op::Eq => mk(Test::BEq(vals[0]), false),
                    Op::Ne => mk(Test::BEq(vals[0]), true),
                    Op::In | Op::Intersects => {
                        match (vals.contains(&true), vals.contains(&false)) {
                            (true, true) => mk(Test::Exists, false),
                            (t, _) => mk(Test::BEq(t), false),
                        }
                    }
                    _ => bad_op(self),
                }
            }
            Ty::Ip => {
                let mut nets = Vec::new();
                for l in &lits {
                    match Cidr::parse(&l.text) {
                        Some(c) => nets.push(c),
                        None => {
                            self.error(
                                Code::BadLiteral,
                                &l.pos(src),
                                l.len,
                                format!(
                                    "`{}` is not an IP address or CIDR network (field `{}`)",
                                    l.text, f.name
                                ),
                            );
                            return Node::Const(false);
                        }
                    }
                }
                match op {
                    Op::Eq | Op::In | Op::Intersects => mk(Test::Net(nets), false),
                    Op::Ne => mk(Test::Net(nets), true),
                    _ => bad_op(self),
                }
            }
        }
    }

    fn str_check(
        &mut self,
        op: Op,
        lits: &[Lit],
        src: &CondSrc,
        mk: &dyn Fn(Test, bool) -> Node,
        bad_op: impl Fn(&mut Self) -> Node,
    ) -> Node {
        let first = lits.first().map(|l| l.text.as_str()).unwrap_or("");
        match op {
            Op::Eq => mk(Test::SEq(first.into()), false),
            Op::Ne => mk(Test::SEq(first.into()), true),
            Op::In | Op::Intersects => {
                if lits.len() == 1 {
                    mk(Test::SEq(first.into()), false)
                } else {
                    mk(
                        Test::SSet(lits.iter().map(|l| l.text.as_str().into()).collect()),
                        false,
                    )
                }
            }
            Op::Contains => mk(Test::SContains(first.into()), false),
            Op::IContains => mk(Test::SIContains(first.to_ascii_lowercase().into()), false),
            Op::StartsWith => mk(Test::SStarts(first.into()), false),
            Op::EndsWith => mk(Test::SEnds(first.into()), false),
            Op::BContains | Op::BStartsWith => match hex_bytes(first) {
                Some(b) if op == Op::BContains => mk(Test::BContains(b), false),
                Some(b) => mk(Test::BStarts(b), false),
                None => {
                    let l = &lits[0];
                    self.error(
                        Code::BadLiteral,
                        &l.pos(src),
                        l.len,
                        format!("`{}` is not a hex byte string", l.text),
                    );
                    Node::Const(false)
                }
            },
            Op::Glob | Op::IGlob => {
                let pat = if op == Op::IGlob {
                    first.to_lowercase()
                } else {
                    first.to_string()
                };
                match Glob::new(&pat) {
                    Ok(g) if op == Op::Glob => match g.as_simple() {
                        Some((b'=', l)) => mk(Test::SEq(l.into()), false),
                        Some((b's', l)) => mk(Test::SStarts(l.into()), false),
                        Some((_, l)) => mk(Test::SEnds(l.into()), false),
                        None => mk(Test::SGlob(Box::new(g)), false),
                    },
                    Ok(g) => mk(Test::SIGlob(Box::new(g)), false),
                    Err(e) => {
                        let l = &lits[0];
                        self.error(Code::BadPattern, &l.pos(src), l.len, e);
                        Node::Const(false)
                    }
                }
            }
            Op::PMatch => mk(
                Test::PMatch(Box::new(PathPrefixes::new(
                    lits.iter().map(|l| l.text.as_str()),
                ))),
                false,
            ),
            Op::Regex => match regex::RegexBuilder::new(first).size_limit(1 << 20).build() {
                Ok(r) => mk(Test::Regex(Box::new(r)), false),
                Err(e) => {
                    let l = &lits[0];
                    self.error(
                        Code::BadPattern,
                        &l.pos(src),
                        l.len,
                        format!("invalid regular expression: {e}"),
                    );
                    Node::Const(false)
                }
            },
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Exists => bad_op(self),
        }
    }
}

fn ty_name(t: Ty) -> &'static str {
    match t {
        Ty::Str => "string",
        Ty::Int => "integer",
        Ty::Bool => "boolean",
        Ty::Ip => "IP address",
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    t.parse().ok()
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parse `name` or `name[arg]` (exception `fields:` entries) into a field expression.
pub fn field_expr(text: &str) -> FieldExpr {
    let (name, arg) = match text.split_once('[') {
        Some((n, rest)) => (n.to_string(), Some(rest.trim_end_matches(']').to_string())),
        None => (text.to_string(), None),
    };
    let n = text.chars().count();
    FieldExpr {
        name,
        arg,
        transformers: Vec::new(),
        span: Span { start: 0, end: n },
        name_span: Span { start: 0, end: n },
    }
}
