//! Condition lexer and recursive-descent parser.
//!
//! Grammar (Falco's condition language, as libsinsp parses it; `and` binds tighter than `or`):
//!
//! ```text
//! expr      := or
//! or        := and ( "or" and )*
//! and       := unary ( "and" unary )*
//! unary     := "not" unary | primary
//! primary   := "(" expr ")" | MACRO | check
//! check     := field UNARY_OP                       -- exists
//!            | field CMP_OP value                   -- = == != < <= > >= contains icontains
//!                                                   -- bcontains startswith bstartswith
//!                                                   -- endswith glob iglob regex
//!            | field LIST_OP list                   -- in intersects pmatch
//! field     := TRANSFORMER "(" field ")" | NAME ( "[" ARG "]" )?
//! value     := QUOTED | BARE | "val" "(" field ")"
//! list      := "(" ( value ( "," value )* )? ")"   -- a bare item naming a list expands it
//! NAME      := [A-Za-z_][A-Za-z0-9_.]*   (a NAME without '.' and no operator is a MACRO)
//! BARE      := run of chars other than whitespace ( ) , = " '
//! QUOTED    := '"' ... '"' | "'" ... "'"  with backslash escapes
//! ```
//!
//! The lexer is driven by the parser (a value position lexes a bare string, where `<` or `:`
//! are ordinary characters; an operator position lexes `<=`). Nesting of parentheses and `not`
//! is limited to [`MAX_DEPTH`] so that a hostile file cannot overflow the stack.

/// Deepest nesting of `(` and `not` accepted.
pub const MAX_DEPTH: usize = 64;

/// Half-open range of char offsets into the condition text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// Length for a caret line: at least one character, so a point error is still visible.
    #[expect(clippy::len_without_is_empty, reason = "a caret span is never empty")]
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start).max(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Exists,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Intersects,
    PMatch,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "exists" => Op::Exists,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::PMatch,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Exists => "exists",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
        }
    }

    fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }
}

/// Field transformers Falco defines.
pub const TRANSFORMERS: &[&str] = &["tolower", "toupper", "b64", "basename", "len"];

#[derive(Clone, Debug, PartialEq)]
pub struct FieldExpr {
    pub name: String,
    pub arg: Option<String>,
    /// Outermost last: `toupper(tolower(x))` is `["tolower", "toupper"]`.
    pub transformers: Vec<String>,
    pub span: Span,
    /// Span of the bare field name (without transformers).
    pub name_span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    None,
    Value(Value),
    List(Vec<Value>, Span),
    Field(FieldExpr),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Macro(String, Span),
    Check {
        field: FieldExpr,
        op: Op,
        op_span: Span,
        rhs: Rhs,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub span: Span,
    pub too_deep: bool,
}

struct P {
    s: Vec<char>,
    i: usize,
    depth: usize,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn is_bare_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '"' | '\''))
}

/// Parse a whole condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = P {
        s: text.chars().collect(),
        i: 0,
        depth: 0,
    };
    p.ws();
    if p.i >= p.s.len() {
        return Err(p.err_at(p.i, p.i, "empty condition"));
    }
    let e = p.or()?;
    p.ws();
    if p.i < p.s.len() {
        let end = p.token_end(p.i);
        return Err(p.err_at(
            p.i,
            end,
            "unexpected text after the end of the expression (missing `and`/`or`?)",
        ));
    }
    Ok(e)
}

impl P {
    fn err_at(&self, start: usize, end: usize, msg: &str) -> ParseError {
        ParseError {
            message: msg.to_string(),
            span: Span {
                start,
                end: end.max(start + 1),
            },
            too_deep: false,
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn token_end(&self, from: usize) -> usize {
        let mut j = from;
        while j < self.s.len() && !self.s[j].is_whitespace() {
            j += 1;
        }
        j.max(from + 1)
    }

    /// True (and consumes) when the next token is the keyword `kw` as a whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let n = kw.chars().count();
        if self.i + n > self.s.len() {
            return false;
        }
        if self.s[self.i..self.i + n].iter().copied().ne(kw.chars()) {
            return false;
        }
        if let Some(&c) = self.s.get(self.i + n)
            && is_name_char(c)
        {
            return false;
        }
        self.i += n;
        true
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let mut e = self.err_at(
                self.i,
                self.i + 1,
                &format!("condition nests deeper than {MAX_DEPTH} levels"),
            );
            e.too_deep = true;
            return Err(e);
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let first = self.and()?;
        let mut items = vec![first];
        while self.keyword("or") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        let mut items = vec![first];
        while self.keyword("and") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        match self.peek() {
            None => Err(self.err_at(
                self.i,
                self.i,
                "unexpected end of condition: expected a check, a macro or `(`",
            )),
            Some('(') => {
                let open = self.i;
                self.i += 1;
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                self.ws();
                if self.peek() != Some(')') {
                    if self.i >= self.s.len() {
                        return Err(self.err_at(open, open + 1, "unbalanced `(`: no matching `)`"));
                    }
                    let end = self.token_end(self.i);
                    return Err(self.err_at(self.i, end, "expected `)`, `and` or `or`"));
                }
                self.i += 1;
                Ok(e)
            }
            Some(c) if is_name_start(c) => {
                let save = self.i;
                for kw in ["and", "or"] {
                    if self.keyword(kw) {
                        self.i = save;
                        return Err(self.err_at(
                            save,
                            save + kw.len(),
                            &format!("expected a field, a macro, `not` or `(`, found `{kw}`"),
                        ));
                    }
                }
                self.check_or_macro()
            }
            Some(_) => {
                let end = self.token_end(self.i);
                Err(self.err_at(self.i, end, "expected a field, a macro, `not` or `(`"))
            }
        }
    }

    fn name(&mut self) -> (String, Span) {
        let start = self.i;
        while self.i < self.s.len() && is_name_char(self.s[self.i]) {
            self.i += 1;
        }
        (
            self.s[start..self.i].iter().collect(),
            Span { start, end: self.i },
        )
    }

    /// `NAME [ "[" ARG "]" ]` or `TRANSFORMER "(" field ")"`; called at a name start.
    fn field(&mut self) -> Result<FieldExpr, ParseError> {
        self.ws();
        let start = self.i;
        if !self.peek().is_some_and(is_name_start) {
            let end = self.token_end(self.i);
            return Err(self.err_at(self.i, end, "expected a field name"));
        }
        let (name, name_span) = self.name();
        if self.peek() == Some('(') && TRANSFORMERS.contains(&name.as_str()) {
            self.i += 1;
            self.enter()?;
            let mut inner = self.field()?;
            self.depth -= 1;
            self.ws();
            if self.peek() != Some(')') {
                return Err(self.err_at(
                    self.i,
                    self.token_end(self.i),
                    &format!("expected `)` closing {name}("),
                ));
            }
            self.i += 1;
            inner.transformers.push(name);
            inner.span = Span { start, end: self.i };
            return Ok(inner);
        }
        let mut arg = None;
        if self.peek() == Some('[') {
            let open = self.i;
            self.i += 1;
            let a_start = self.i;
            while self.i < self.s.len() && self.s[self.i] != ']' {
                self.i += 1;
            }
            if self.i >= self.s.len() {
                return Err(self.err_at(open, open + 1, "unclosed `[` in field argument"));
            }
            arg = Some(self.s[a_start..self.i].iter().collect::<String>());
            self.i += 1;
        }
        Ok(FieldExpr {
            name,
            arg,
            transformers: Vec::new(),
            span: Span { start, end: self.i },
            name_span,
        })
    }

    fn operator(&mut self) -> Option<(Op, Span)> {
        self.ws();
        let start = self.i;
        let c0 = self.peek()?;
        let c1 = self.s.get(self.i + 1).copied();
        let (op, n) = match (c0, c1) {
            ('=', Some('=')) => (Op::Eq, 2),
            ('=', _) => (Op::Eq, 1),
            ('!', Some('=')) => (Op::Ne, 2),
            ('<', Some('=')) => (Op::Le, 2),
            ('<', _) => (Op::Lt, 1),
            ('>', Some('=')) => (Op::Ge, 2),
            ('>', _) => (Op::Gt, 1),
            (c, _) if c.is_ascii_alphabetic() => {
                let mut j = self.i;
                while j < self.s.len() && self.s[j].is_ascii_alphabetic() {
                    j += 1;
                }
                if self.s.get(j).copied().is_some_and(is_name_char) {
                    return None;
                }
                let w: String = self.s[self.i..j].iter().collect();
                let op = Op::from_word(&w)?;
                (op, j - self.i)
            }
            _ => return None,
        };
        self.i += n;
        Some((op, Span { start, end: self.i }))
    }

    fn check_or_macro(&mut self) -> Result<Expr, ParseError> {
        let save = self.i;
        let field = self.field()?;
        let after_field = self.i;
        match self.operator() {
            Some((op, op_span)) => {
                let rhs = if op == Op::Exists {
                    Rhs::None
                } else if op.takes_list() {
                    self.list()?
                } else {
                    self.ws();
                    if self.peek() == Some('(') {
                        // Falco accepts `x = (a)`? No: only list operators take lists.
                        return Err(self.err_at(
                            self.i,
                            self.i + 1,
                            &format!(
                                "operator `{}` takes a single value, not a list",
                                op.as_str()
                            ),
                        ));
                    }
                    self.value_or_val()?
                };
                Ok(Expr::Check {
                    field,
                    op,
                    op_span,
                    rhs,
                })
            }
            None => {
                let is_macro_name = field.arg.is_none()
                    && field.transformers.is_empty()
                    && !field.name.contains('.');
                if is_macro_name {
                    Ok(Expr::Macro(
                        field.name,
                        Span {
                            start: save,
                            end: after_field,
                        },
                    ))
                } else {
                    self.i = after_field;
                    self.ws();
                    if self.i >= self.s.len() {
                        return Err(self.err_at(
                            field.span.start,
                            field.span.end,
                            &format!("field `{}` is not followed by an operator", field.name),
                        ));
                    }
                    let end = self.token_end(self.i);
                    Err(self.err_at(
                        self.i,
                        end,
                        &format!("expected an operator after field `{}`", field.name),
                    ))
                }
            }
        }
    }

    fn value_or_val(&mut self) -> Result<Rhs, ParseError> {
        self.ws();
        let start = self.i;
        if self.s[self.i..].starts_with(&['v', 'a', 'l', '(']) {
            self.i += 4;
            let f = self.field()?;
            self.ws();
            if self.peek() != Some(')') {
                return Err(self.err_at(
                    self.i,
                    self.token_end(self.i),
                    "expected `)` closing val(",
                ));
            }
            self.i += 1;
            let _ = start;
            return Ok(Rhs::Field(f));
        }
        Ok(Rhs::Value(self.value()?))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            None => Err(self.err_at(self.i, self.i, "expected a value")),
            Some(q @ ('"' | '\'')) => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(self.err_at(
                                start,
                                start + 1,
                                "unterminated quoted string",
                            ));
                        }
                        Some('\\') => {
                            let c = self.s.get(self.i + 1).copied();
                            match c {
                                Some('n') => out.push('\n'),
                                Some('t') => out.push('\t'),
                                Some('r') => out.push('\r'),
                                Some(c) => out.push(c),
                                None => {
                                    return Err(self.err_at(
                                        start,
                                        start + 1,
                                        "unterminated quoted string",
                                    ));
                                }
                            }
                            self.i += 2;
                        }
                        Some(c) if c == q => {
                            self.i += 1;
                            break;
                        }
                        Some(c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
                Ok(Value {
                    text: out,
                    quoted: true,
                    span: Span { start, end: self.i },
                })
            }
            Some(c) if is_bare_char(c) => {
                while self.i < self.s.len() && is_bare_char(self.s[self.i]) {
                    self.i += 1;
                }
                Ok(Value {
                    text: self.s[start..self.i].iter().collect(),
                    quoted: false,
                    span: Span { start, end: self.i },
                })
            }
            Some(_) => Err(self.err_at(self.i, self.token_end(self.i), "expected a value")),
        }
    }

    fn list(&mut self) -> Result<Rhs, ParseError> {
        self.ws();
        let start = self.i;
        if self.peek() != Some('(') {
            let end = self.token_end(self.i);
            return Err(self.err_at(self.i, end, "expected `(` starting a list"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(')') {
            self.i += 1;
            return Ok(Rhs::List(items, Span { start, end: self.i }));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(')') => {
                    self.i += 1;
                    break;
                }
                None => {
                    return Err(self.err_at(
                        start,
                        start + 1,
                        "unbalanced `(`: list has no closing `)`",
                    ));
                }
                Some(_) => {
                    return Err(self.err_at(
                        self.i,
                        self.token_end(self.i),
                        "expected `,` or `)` in list",
                    ));
                }
            }
        }
        Ok(Rhs::List(items, Span { start, end: self.i }))
    }
}

/// Unquote a list item as Falco does when it splices list items into a condition: an item
/// written `'"a b"'` in YAML is the quoted string `a b`.
pub fn unquote_item(s: &str) -> (String, bool) {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        let mut p = P {
            s: t.chars().collect(),
            i: 0,
            depth: 0,
        };
        if let Ok(v) = p.value()
            && p.i == p.s.len()
        {
            return (v.text, true);
        }
    }
    (t.to_string(), false)
}
