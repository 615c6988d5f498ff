//! The evaluable program: a tree of `and`/`or`/`not` over typed checks, with literals already
//! parsed into the field's type and large lists turned into hash sets and automata.

use std::collections::HashSet;
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, Anchored, Input};
use monitor_common::EventType;

use super::fields::{Ctx, FieldRef, Id, V, extract};

/// The string sets hash with FxHash: their keys come from the rule files (trusted), probes
/// from events only look up, never insert, so collisions cannot be grown by the monitored
/// side; SipHash's flooding resistance buys nothing here and costs a third of a lookup.
pub type FastSet<T> = HashSet<T, rustc_hash::FxBuildHasher>;

/// Set of event kinds, by id (ids are below `monitor_common::MAX_KIND_ID` = 512).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KindSet(pub [u64; 8]);

impl KindSet {
    pub fn insert(&mut self, k: EventType) {
        let id = k as u16 as usize;
        if id < 512 {
            self.0[id / 64] |= 1 << (id % 64);
        }
    }
    pub fn contains(&self, k: EventType) -> bool {
        let id = k as u16 as usize;
        id < 512 && self.0[id / 64] & (1 << (id % 64)) != 0
    }
    pub fn all() -> KindSet {
        let mut s = KindSet::default();
        for k in EventType::ALL {
            s.insert(*k);
        }
        s
    }
    pub fn complement(&self) -> KindSet {
        let all = KindSet::all();
        let mut out = KindSet::default();
        for i in 0..8 {
            out.0[i] = all.0[i] & !self.0[i];
        }
        out
    }
    pub fn and(&self, o: &KindSet) -> KindSet {
        let mut out = self.clone();
        for i in 0..8 {
            out.0[i] &= o.0[i];
        }
        out
    }
    pub fn or(&self, o: &KindSet) -> KindSet {
        let mut out = self.clone();
        for i in 0..8 {
            out.0[i] |= o.0[i];
        }
        out
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = EventType> + '_ {
        EventType::ALL.iter().copied().filter(|k| self.contains(*k))
    }
}

/// An IPv4/IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.bits))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.bits))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            // An IPv4-mapped IPv6 address belongs to the IPv4 network.
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            _ => false,
        }
    }
}

/// fnmatch-style glob without FNM_PATHNAME (as Falco): `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
#[derive(Clone, Debug)]
pub struct Glob(Vec<GTok>);

#[derive(Clone, Debug)]
enum GTok {
    Lit(char),
    Any,
    Star,
    Class(bool, Vec<(char, char)>),
}

impl Glob {
    pub fn new(p: &str) -> Result<Glob, String> {
        let cs: Vec<char> = p.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            match cs[i] {
                '*' => out.push(GTok::Star),
                '?' => out.push(GTok::Any),
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(cs.get(j), Some('!' | '^'));
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    while j < cs.len() && (cs[j] != ']' || first) {
                        first = false;
                        if cs.get(j + 1) == Some(&'-') && cs.get(j + 2).is_some_and(|c| *c != ']') {
                            ranges.push((cs[j], cs[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((cs[j], cs[j]));
                            j += 1;
                        }
                    }
                    if j >= cs.len() {
                        return Err(format!("unclosed `[` in glob {p:?}"));
                    }
                    out.push(GTok::Class(neg, ranges));
                    i = j;
                }
                c => out.push(GTok::Lit(c)),
            }
            i += 1;
        }
        Ok(Glob(out))
    }

    pub fn matches(&self, s: &str) -> bool {
        // ASCII text (nearly every path) is matched byte by byte, without allocating.
        if s.is_ascii() {
            self.run(s.as_bytes(), |b| b as char)
        } else {
            let cs: Vec<char> = s.chars().collect();
            self.run(&cs, |c| c)
        }
    }

    fn run<T: Copy>(&self, cs: &[T], ch: impl Fn(T) -> char) -> bool {
        // Iterative matcher with single-star backtracking: linear-ish, no recursion.
        let (mut p, mut t) = (0usize, 0usize);
        let (mut star_p, mut star_t) = (usize::MAX, 0usize);
        while t < cs.len() {
            let c = ch(cs[t]);
            let ok = match self.0.get(p) {
                Some(GTok::Lit(l)) => *l == c,
                Some(GTok::Any) => true,
                Some(GTok::Class(neg, r)) => r.iter().any(|(a, b)| *a <= c && c <= *b) != *neg,
                Some(GTok::Star) => {
                    star_p = p;
                    star_t = t;
                    p += 1;
                    continue;
                }
                None => false,
            };
            if ok {
                p += 1;
                t += 1;
            } else if star_p != usize::MAX {
                p = star_p + 1;
                star_t += 1;
                t = star_t;
            } else {
                return false;
            }
        }
        self.0[p..].iter().all(|g| matches!(g, GTok::Star))
    }

    /// A glob that is only a literal with at most one leading or trailing `*` is an equality,
    /// prefix or suffix test: cheaper, and mergeable with its neighbours.
    pub fn as_simple(&self) -> Option<(u8, String)> {
        let lit = |toks: &[GTok]| -> Option<String> {
            toks.iter()
                .map(|t| if let GTok::Lit(c) = t { Some(*c) } else { None })
                .collect()
        };
        match self.0.as_slice() {
            [GTok::Star, rest @ ..] if !rest.is_empty() => lit(rest).map(|l| (b'e', l)),
            [rest @ .., GTok::Star] if !rest.is_empty() => lit(rest).map(|l| (b's', l)),
            all => lit(all).map(|l| (b'=', l)),
        }
    }
}

/// Path prefixes for `pmatch`: a value matches when it or one of its parent directories is in
/// the set, so a lookup costs one hash probe per path component whatever the list size.
#[derive(Clone, Debug, Default)]
pub struct PathPrefixes {
    set: FastSet<Box<str>>,
    root: bool,
}

impl PathPrefixes {
    pub fn new<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = PathPrefixes::default();
        for it in items {
            let t = it.trim_end_matches('/');
            if t.is_empty() {
                p.root = true;
            } else {
                p.set.insert(t.into());
            }
        }
        p
    }
    pub fn matches(&self, v: &str) -> bool {
        if self.root && v.starts_with('/') {
            return true;
        }
        let v = v.trim_end_matches('/');
        if self.set.contains(v) {
            return true;
        }
        v.match_indices('/')
            .any(|(i, _)| i > 0 && self.set.contains(&v[..i]))
    }
}

/// Merged alternatives as one automaton, with the sorted patterns as its identity (two rules
/// with the same alternatives share one term in the plan).
#[derive(Clone, Debug)]
pub struct Automaton {
    pub ac: AhoCorasick,
    pub key: String,
}

#[derive(Clone, Debug)]
pub enum Test {
    Exists,
    Kinds(Box<KindSet>),
    SEq(Box<str>),
    SSet(FastSet<Box<str>>),
    SContains(Box<str>),
    /// Pattern already ASCII-lowercased.
    SIContains(Box<str>),
    SStarts(Box<str>),
    SEnds(Box<str>),
    BContains(Vec<u8>),
    BStarts(Vec<u8>),
    SGlob(Box<Glob>),
    SIGlob(Box<Glob>),
    PMatch(Box<PathPrefixes>),
    Regex(Box<regex::Regex>),
    /// Merged `contains`/`icontains` alternatives (any pattern occurs).
    ContainsAny(Box<Automaton>),
    /// Merged `startswith` alternatives.
    StartsAny(Box<Automaton>),
    IEq(i64),
    ISet(Vec<i64>),
    ILt(i64),
    ILe(i64),
    IGt(i64),
    IGe(i64),
    BEq(bool),
    Net(Vec<Cidr>),
    /// `val(field)` comparison.
    Field(super::parser::Op, FieldRef),
}

impl Test {
    /// A canonical text for the test: equal keys, same verdict on every event.
    pub fn key(&self) -> Option<String> {
        fn sorted<'a>(it: impl Iterator<Item = &'a str>) -> String {
            let mut v: Vec<&str> = it.collect();
            v.sort_unstable();
            format!("{v:?}")
        }
        Some(match self {
            Test::Exists => "exists".to_string(),
            Test::Kinds(s) => format!("kinds{:?}", s.0),
            Test::SEq(x) => format!("={x:?}"),
            Test::SSet(x) => format!("in{}", sorted(x.iter().map(|s| &**s))),
            Test::SContains(x) => format!("contains{x:?}"),
            Test::SIContains(x) => format!("icontains{x:?}"),
            Test::SStarts(x) => format!("startswith{x:?}"),
            Test::SEnds(x) => format!("endswith{x:?}"),
            Test::BContains(x) => format!("bcontains{x:?}"),
            Test::BStarts(x) => format!("bstartswith{x:?}"),
            Test::SGlob(g) => format!("glob{g:?}"),
            Test::SIGlob(g) => format!("iglob{g:?}"),
            Test::PMatch(p) => format!("pmatch{}{}", p.root, sorted(p.set.iter().map(|s| &**s))),
            Test::Regex(r) => format!("regex{:?}", r.as_str()),
            Test::ContainsAny(a) => format!("containsany{}", a.key),
            Test::StartsAny(a) => format!("startsany{}", a.key),
            Test::IEq(x) => format!("i={x}"),
            Test::ISet(x) => {
                let mut v = x.clone();
                v.sort_unstable();
                format!("iin{v:?}")
            }
            Test::ILt(x) => format!("i<{x}"),
            Test::ILe(x) => format!("i<={x}"),
            Test::IGt(x) => format!("i>{x}"),
            Test::IGe(x) => format!("i>={x}"),
            Test::BEq(x) => format!("b={x}"),
            Test::Net(n) => format!("net{n:?}"),
            Test::Field(op, f) => format!("field{op:?}{f:?}"),
        })
    }

    pub fn cost(&self) -> u32 {
        match self {
            Test::Kinds(_) => 0,
            Test::Exists
            | Test::IEq(_)
            | Test::ILt(_)
            | Test::ILe(_)
            | Test::IGt(_)
            | Test::IGe(_)
            | Test::BEq(_) => 1,
            Test::SEq(_)
            | Test::SSet(_)
            | Test::ISet(_)
            | Test::Net(_)
            | Test::SStarts(_)
            | Test::SEnds(_) => 2,
            Test::PMatch(_) => 3,
            Test::SContains(_)
            | Test::SIContains(_)
            | Test::BContains(_)
            | Test::BStarts(_)
            | Test::ContainsAny(_)
            | Test::StartsAny(_) => 4,
            Test::Field(..) => 4,
            Test::SGlob(_) | Test::SIGlob(_) => 6,
            Test::Regex(_) => 10,
        }
    }

    fn test(&self, v: &V<'_>, cx: &Ctx<'_>) -> bool {
        match (self, v) {
            (Test::Exists, _) => true,
            (Test::Kinds(set), _) => set.contains(cx.ev.kind),
            (Test::SEq(x), V::S(s)) => **x == **s,
            (Test::SSet(x), V::S(s)) => x.contains(&**s),
            (Test::SContains(x), V::S(s)) => s.contains(&**x),
            (Test::SIContains(x), V::S(s)) => {
                x.is_empty()
                    || s.as_bytes()
                        .windows(x.len())
                        .any(|w| w.eq_ignore_ascii_case(x.as_bytes()))
            }
            (Test::SStarts(x), V::S(s)) => s.starts_with(&**x),
            (Test::SEnds(x), V::S(s)) => s.ends_with(&**x),
            (Test::BContains(x), V::S(s)) => {
                !x.is_empty() && s.as_bytes().windows(x.len()).any(|w| w == &x[..])
            }
            (Test::BStarts(x), V::S(s)) => s.as_bytes().starts_with(x),
            (Test::SGlob(g), V::S(s)) => g.matches(s),
            (Test::SIGlob(g), V::S(s)) => g.matches(&s.to_lowercase()),
            (Test::PMatch(p), V::S(s)) => p.matches(s),
            (Test::Regex(r), V::S(s)) => r.is_match(s),
            (Test::ContainsAny(a), V::S(s)) => a.ac.is_match(&**s),
            (Test::StartsAny(a), V::S(s)) => {
                a.ac.is_match(Input::new(&**s).anchored(Anchored::Yes))
            }
            (Test::IEq(x), V::I(i)) => i == x,
            (Test::ISet(x), V::I(i)) => x.contains(i),
            (Test::ILt(x), V::I(i)) => i < x,
            (Test::ILe(x), V::I(i)) => i <= x,
            (Test::IGt(x), V::I(i)) => i > x,
            (Test::IGe(x), V::I(i)) => i >= x,
            (Test::BEq(x), V::B(b)) => b == x,
            (Test::Net(nets), V::Ip(ip)) => nets.iter().any(|n| n.contains(*ip)),
            (Test::Field(op, f), v) => {
                use super::parser::Op;
                let other = extract(f, cx);
                match (v, &other) {
                    (V::Absent, _) | (_, V::Absent) => false,
                    (V::S(a), V::S(b)) => match op {
                        Op::Eq | Op::Ne => a == b,
                        Op::Contains => a.contains(&**b),
                        Op::StartsWith => a.starts_with(&**b),
                        Op::EndsWith => a.ends_with(&**b),
                        _ => false,
                    },
                    (V::I(a), V::I(b)) => match op {
                        Op::Eq | Op::Ne => a == b,
                        Op::Lt => a < b,
                        Op::Le => a <= b,
                        Op::Gt => a > b,
                        Op::Ge => a >= b,
                        _ => false,
                    },
                    (a, b) => a == b,
                }
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Check {
    pub field: FieldRef,
    pub test: Test,
    /// `!=`: applied only when the field has a value (an absent field fails every comparison,
    /// as in Falco).
    pub negate: bool,
}

impl Check {
    pub fn eval(&self, cx: &Ctx<'_>) -> bool {
        if let Test::Kinds(set) = &self.test {
            return set.contains(cx.ev.kind) != self.negate;
        }
        let v = extract(&self.field, cx);
        match &v {
            V::Absent => false,
            V::Many(items) => {
                let any = items
                    .iter()
                    .any(|x| !matches!(x, V::Absent) && self.test.test(x, cx));
                if matches!(self.test, Test::Exists) {
                    return items.iter().any(|x| !matches!(x, V::Absent));
                }
                any != self.negate
            }
            _ => self.test.test(&v, cx) != self.negate,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Node {
    Const(bool),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Check(Box<Check>),
    /// A macro's expansion, memoised per event under the macro's id.
    Memo(u32, Box<Node>),
}

impl Node {
    /// Canonical key (see [`Test::key`]); a macro is keyed by its memo id, which names one
    /// expansion for the whole rule set.
    pub fn key(&self) -> Option<String> {
        Some(match self {
            Node::Const(b) => format!("const{b}"),
            Node::Memo(id, _) => format!("macro{id}"),
            Node::Not(n) => format!("not({})", n.key()?),
            Node::And(v) | Node::Or(v) => {
                let parts: Option<Vec<String>> = v.iter().map(Node::key).collect();
                let op = if matches!(self, Node::And(_)) {
                    "and"
                } else {
                    "or"
                };
                format!("{op}({})", parts?.join(","))
            }
            Node::Check(c) => format!(
                "{:?}{}{}",
                c.field,
                if c.negate { "!" } else { "" },
                c.test.key()?
            ),
        })
    }

    pub fn eval(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| n.eval(cx)),
            Node::Or(v) => v.iter().any(|n| n.eval(cx)),
            Node::Not(n) => !n.eval(cx),
            Node::Check(c) => c.eval(cx),
            Node::Memo(id, n) => {
                let i = *id as usize;
                let known = cx.memo.borrow().get(i).copied().unwrap_or(0);
                if known != 0 {
                    return known == 2;
                }
                let r = n.eval(cx);
                if let Some(slot) = cx.memo.borrow_mut().get_mut(i) {
                    *slot = if r { 2 } else { 1 };
                }
                r
            }
        }
    }

    pub fn cost(&self) -> u32 {
        match self {
            Node::Const(_) => 0,
            Node::And(v) | Node::Or(v) => v.iter().map(Node::cost).sum::<u32>() + 1,
            Node::Not(n) | Node::Memo(_, n) => n.cost(),
            Node::Check(c) => c.test.cost() + u32::from(super::fields::spec_of(c.field.id).cost),
        }
    }

    /// The event kinds this node can be true for; `None` when not constrained by `evt.type`.
    pub fn kinds(&self) -> Option<KindSet> {
        match self {
            Node::Const(true) => None,
            Node::Const(false) => Some(KindSet::default()),
            Node::Memo(_, n) => n.kinds(),
            Node::Check(c) => match (&c.test, c.field.id) {
                (Test::Kinds(s), Id::EvtType) => Some(if c.negate {
                    s.complement()
                } else {
                    (**s).clone()
                }),
                _ => None,
            },
            Node::Not(inner) => match &**inner {
                Node::Check(c) if matches!(c.test, Test::Kinds(_)) => {
                    let Test::Kinds(s) = &c.test else { return None };
                    Some(if c.negate {
                        (**s).clone()
                    } else {
                        s.complement()
                    })
                }
                _ => None,
            },
            Node::And(v) => v.iter().filter_map(Node::kinds).reduce(|a, b| a.and(&b)),
            Node::Or(v) => {
                let mut acc = KindSet::default();
                for n in v {
                    acc = acc.or(&n.kinds()?);
                }
                Some(acc)
            }
        }
    }

    /// Constant folding, flattening, merging of `or` alternatives on one field into sets and
    /// automata, and ordering of operands cheapest first (evaluation short-circuits).
    pub fn optimize(self) -> Node {
        match self {
            Node::Memo(id, n) => match n.optimize() {
                Node::Const(b) => Node::Const(b),
                // A single check is as cheap as the memo lookup, and stays mergeable.
                c @ Node::Check(_) => c,
                other => Node::Memo(id, Box::new(other)),
            },
            Node::Not(n) => match n.optimize() {
                Node::Const(b) => Node::Const(!b),
                Node::Not(inner) => *inner,
                other => Node::Not(Box::new(other)),
            },
            Node::And(v) => {
                let mut out = Vec::new();
                for n in v.into_iter().map(Node::optimize) {
                    match n {
                        Node::Const(true) => {}
                        Node::Const(false) => return Node::Const(false),
                        Node::And(inner) => out.extend(inner),
                        other => out.push(other),
                    }
                }
                out.sort_by_key(Node::cost);
                match out.len() {
                    0 => Node::Const(true),
                    1 => out.pop().unwrap_or(Node::Const(true)),
                    _ => Node::And(out),
                }
            }
            Node::Or(v) => {
                let mut out = Vec::new();
                for n in v.into_iter().map(Node::optimize) {
                    match n {
                        Node::Const(false) => {}
                        Node::Const(true) => return Node::Const(true),
                        Node::Or(inner) => out.extend(inner),
                        other => out.push(other),
                    }
                }
                let mut out = merge_alternatives(out);
                out.sort_by_key(Node::cost);
                match out.len() {
                    0 => Node::Const(false),
                    1 => out.pop().unwrap_or(Node::Const(false)),
                    _ => Node::Or(out),
                }
            }
            other => other,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Eq,
    Starts,
    Contains,
    IContains,
}

/// In an `or`, fold `f = a or f = b or f in (c)` into one set test, and three or more
/// `startswith`/`contains`/`icontains` on the same field into one Aho-Corasick automaton.
fn merge_alternatives(nodes: Vec<Node>) -> Vec<Node> {
    let mut groups: Vec<(FieldRef, Group, Vec<String>)> = Vec::new();
    let mut rest = Vec::new();
    for n in nodes {
        let key = match &n {
            Node::Check(c) if !c.negate => match &c.test {
                Test::SEq(s) => Some((Group::Eq, vec![s.to_string()])),
                Test::SSet(s) => Some((Group::Eq, s.iter().map(|x| x.to_string()).collect())),
                Test::SStarts(s) => Some((Group::Starts, vec![s.to_string()])),
                Test::SContains(s) => Some((Group::Contains, vec![s.to_string()])),
                Test::SIContains(s) => Some((Group::IContains, vec![s.to_string()])),
                _ => None,
            },
            _ => None,
        };
        let Some((g, pats)) = key else {
            rest.push(n);
            continue;
        };
        let Node::Check(c) = n else { continue };
        match groups
            .iter_mut()
            .find(|(f, gg, _)| *f == c.field && *gg == g)
        {
            Some((_, _, v)) => v.extend(pats),
            None => groups.push((c.field.clone(), g, pats)),
        }
    }
    for (field, g, pats) in groups {
        let single = |t: Test| {
            Node::Check(Box::new(Check {
                field: field.clone(),
                test: t,
                negate: false,
            }))
        };
        let test = match g {
            Group::Eq if pats.len() == 1 => Test::SEq(pats[0].as_str().into()),
            Group::Eq => Test::SSet(pats.iter().map(|s| s.as_str().into()).collect()),
            _ if pats.len() < 3 => {
                for p in &pats {
                    rest.push(single(match g {
                        Group::Starts => Test::SStarts(p.as_str().into()),
                        Group::Contains => Test::SContains(p.as_str().into()),
                        _ => Test::SIContains(p.as_str().into()),
                    }));
                }
                continue;
            }
            _ => {
                let built = AhoCorasick::builder()
                    .ascii_case_insensitive(g == Group::IContains)
                    .start_kind(if g == Group::Starts {
                        aho_corasick::StartKind::Anchored
                    } else {
                        aho_corasick::StartKind::Unanchored
                    })
                    .build(&pats);
                let key = {
                    let mut v: Vec<&str> = pats.iter().map(String::as_str).collect();
                    v.sort_unstable();
                    let case = if g == Group::IContains { "i" } else { "" };
                    format!("{case}{v:?}")
                };
                match built {
                    Ok(ac) if g == Group::Starts => {
                        Test::StartsAny(Box::new(Automaton { ac, key }))
                    }
                    Ok(ac) => Test::ContainsAny(Box::new(Automaton { ac, key })),
                    // Automaton too large: keep the alternatives as they were.
                    Err(_) => {
                        for p in &pats {
                            rest.push(single(match g {
                                Group::Starts => Test::SStarts(p.as_str().into()),
                                Group::Contains => Test::SContains(p.as_str().into()),
                                _ => Test::SIContains(p.as_str().into()),
                            }));
                        }
                        continue;
                    }
                }
            }
        };
        rest.push(single(test));
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_fnmatch() {
        let g = Glob::new("/home/*/.ssh/*").unwrap();
        assert!(g.matches("/home/a/.ssh/id_rsa"));
        assert!(!g.matches("/root/.ssh/id_rsa"));
        assert!(Glob::new("*../*../*").unwrap().matches("/x/../../etc"));
        assert!(Glob::new("[!a]b?").unwrap().matches("cbz"));
        assert!(!Glob::new("[!a]b?").unwrap().matches("abz"));
    }

    #[test]
    fn cidr_contains() {
        let n = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(n.contains("172.31.255.1".parse().unwrap()));
        assert!(!n.contains("172.32.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:172.16.0.1".parse().unwrap()));
    }

    #[test]
    fn pmatch_is_by_component() {
        let p = PathPrefixes::new(["/etc", "/usr/lib/"]);
        assert!(p.matches("/etc"));
        assert!(p.matches("/etc/passwd"));
        assert!(!p.matches("/etcx/passwd"));
        assert!(p.matches("/usr/lib/x/y"));
    }
}
