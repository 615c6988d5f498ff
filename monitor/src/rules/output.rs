//! Output templates: `%field` and `%(field)` substitution, as Falco.
//!
//! Substituted values come from inside containers (argv, paths): each is bounded to
//! [`MAX_VALUE_CHARS`] and control characters are escaped, so an alert line cannot be forged
//! or blown up by the monitored process.

use std::collections::BTreeMap;

use super::compile::CondSrc;
use super::diag::{Code, Severity, Sink};
use super::fields::{self, Ctx, FieldRef, Lookup};

pub const MAX_VALUE_CHARS: usize = 1024;

#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    /// Field as written, and its resolution (`None`: renders `<NA>`).
    Field(String, Option<FieldRef>),
}

#[derive(Clone, Debug, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// `falco_only`: a monitor-only field is an error ([`super::load_falco_only`]).
    pub fn compile(src: &CondSrc, sink: &mut Sink, item: &str, falco_only: bool) -> Template {
        let cs: Vec<char> = src.text.chars().collect();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < cs.len() {
            if cs[i] != '%' {
                lit.push(cs[i]);
                i += 1;
                continue;
            }
            let start = i;
            let (name, arg, end) = if cs.get(i + 1) == Some(&'(') {
                match cs[i + 2..].iter().position(|c| *c == ')') {
                    Some(p) => {
                        let inner: String = cs[i + 2..i + 2 + p].iter().collect();
                        let (n, a) = split_arg(&inner);
                        (n, a, i + 3 + p)
                    }
                    None => {
                        lit.push('%');
                        i += 1;
                        continue;
                    }
                }
            } else {
                let mut j = i + 1;
                while j < cs.len()
                    && (cs[j].is_ascii_alphanumeric() || cs[j] == '_' || cs[j] == '.')
                {
                    j += 1;
                }
                // A trailing '.' ends the sentence, not the field.
                while j > i + 1 && cs[j - 1] == '.' {
                    j -= 1;
                }
                if j == i + 1 || !cs[i + 1].is_ascii_alphabetic() {
                    lit.push('%');
                    i += 1;
                    continue;
                }
                let name: String = cs[i + 1..j].iter().collect();
                let mut arg = None;
                if cs.get(j) == Some(&'[')
                    && let Some(p) = cs[j..].iter().position(|c| *c == ']')
                {
                    arg = Some(cs[j + 1..j + p].iter().collect::<String>());
                    j += p + 1;
                }
                (name, arg, j)
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            let written: String = cs[start + 1..end].iter().collect::<String>();
            let written = written
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_string();
            let pos = || src.locate(start);
            let len = end - start;
            let field = match fields::lookup(&name, arg.as_deref()) {
                Lookup::Found { spec, .. } if falco_only && spec.is_own() => {
                    sink.push(
                        Code::NotFalco,
                        Severity::Error,
                        &pos(),
                        len,
                        Some(item),
                        format!(
                            "output field `{written}` is a monitor extension; Falco cannot load it"
                        ),
                    );
                    None
                }
                Lookup::Found { spec, arg } => Some(FieldRef {
                    id: spec.id,
                    arg,
                    transformers: Vec::new(),
                }),
                Lookup::Unsupported(why) => {
                    sink.push(
                        Code::Output,
                        Severity::Info,
                        &pos(),
                        len,
                        Some(item),
                        format!(
                            "output field `{written}` is not supported ({why}); it renders as <NA>"
                        ),
                    );
                    None
                }
                Lookup::Unknown => {
                    sink.push(
                        Code::Output,
                        Severity::Warning,
                        &pos(),
                        len,
                        Some(item),
                        format!("unknown output field `{written}`; it renders as <NA>"),
                    );
                    None
                }
                Lookup::BadArg(m) => {
                    sink.push(Code::Output, Severity::Warning, &pos(), len, Some(item), m);
                    None
                }
            };
            parts.push(Part::Field(written, field));
            i = end;
        }
        // Folded YAML blocks (`output: >`) end with a newline; Falco trims it.
        let lit = lit.trim_end().to_string();
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Template { parts }
    }

    /// The fields the template substitutes, as written and resolved (`None`: renders `<NA>`,
    /// unknown or unsupported).
    pub fn fields(&self) -> impl Iterator<Item = (&str, Option<&FieldRef>)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(w, f) => Some((w.as_str(), f.as_ref())),
            Part::Lit(_) => None,
        })
    }

    /// The rendered text and the `output_fields` map (field -> JSON value, null when absent).
    pub fn render(&self, cx: &Ctx<'_>) -> (String, BTreeMap<String, serde_json::Value>) {
        let mut out = String::new();
        let mut map = BTreeMap::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(name, f) => {
                    let v = f.as_ref().map(|f| fields::extract(f, cx));
                    match v.as_ref().and_then(|v| v.render()) {
                        Some(s) => {
                            let s = sanitize(&s);
                            out.push_str(&s);
                            let json = match v {
                                Some(fields::V::I(i)) => serde_json::Value::from(i),
                                Some(fields::V::B(b)) => serde_json::Value::Bool(b),
                                _ => serde_json::Value::String(s),
                            };
                            map.insert(name.clone(), json);
                        }
                        None => {
                            out.push_str("<NA>");
                            map.insert(name.clone(), serde_json::Value::Null);
                        }
                    }
                }
            }
        }
        (out, map)
    }
}

fn split_arg(s: &str) -> (String, Option<String>) {
    match s.split_once('[') {
        Some((n, a)) => (n.to_string(), Some(a.trim_end_matches(']').to_string())),
        None => (s.to_string(), None),
    }
}

/// Bound and escape an untrusted value for a one-line alert.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_CHARS));
    for (n, c) in s.chars().enumerate() {
        if n >= MAX_VALUE_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
