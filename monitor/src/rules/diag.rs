//! Load diagnostics: every problem found while loading rules is a value with a stable code, a
//! position (file, 1-based line and column), the offending text and a caret line, so that an
//! operator can fix a rule file without reading engine source.

use std::fmt;
use std::sync::Arc;

/// How bad a diagnostic is. Errors make [`super::load`] fail (the offending item is skipped by
/// [`super::load_lenient`]); warnings never stop loading; infos are purely informational.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Stable diagnostic codes. The string form (`as_str`) is part of the CLI's contract: scripts
/// and tests match on it, so a code is never renumbered or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The file could not be read.
    Io,
    /// YAML syntax error.
    YamlSyntax,
    /// A top-level item has the wrong shape (not a mapping, unknown kind).
    BadItem,
    /// A required key is missing or has the wrong type.
    BadKey,
    /// A key this engine does not know (Falco ignores some; we say so).
    UnknownKey,
    /// Priority is not one of Falco's names.
    BadPriority,
    /// A rule or macro is defined twice without append/override.
    Redefined,
    /// Condition syntax error.
    Syntax,
    /// Condition nests deeper than the parser allows.
    TooDeep,
    /// A field name Falco does not define either.
    UnknownField,
    /// A Falco field whose data the monitor's events do not carry: comparisons on it are false.
    UnsupportedField,
    /// A field's argument (`[...]`) is missing, superfluous or malformed.
    FieldArg,
    /// The operator cannot apply to the field's type.
    BadOperator,
    /// A literal cannot be parsed into the field's type.
    BadLiteral,
    /// A bare identifier names no macro.
    UndefinedMacro,
    /// A macro refers to itself, directly or not.
    MacroCycle,
    /// Invalid regular expression or glob.
    BadPattern,
    /// `evt.type` names a syscall the monitor never captures.
    UncapturedEventType,
    /// Output template problem.
    Output,
    /// The file asks for a newer engine than this one.
    EngineVersion,
    /// `required_plugin_versions`: informational, this engine has no plugins.
    PluginVersions,
    /// `append`/`override` names an item that was never defined.
    AppendUndefined,
    /// Malformed `override`/`append` use.
    BadOverride,
    /// Malformed exception.
    BadException,
    /// Deploy-time selection named a rule or tag that matched nothing.
    SelectionUnused,
    /// Falco-only mode: a monitor extension (own field or event type) Falco cannot load.
    NotFalco,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "R0001",
            Code::YamlSyntax => "R0002",
            Code::BadItem => "R0003",
            Code::BadKey => "R0004",
            Code::UnknownKey => "R0005",
            Code::BadPriority => "R0006",
            Code::Redefined => "R0007",
            Code::Syntax => "R0101",
            Code::TooDeep => "R0102",
            Code::UnknownField => "R0201",
            Code::UnsupportedField => "R0202",
            Code::FieldArg => "R0203",
            Code::BadOperator => "R0204",
            Code::BadLiteral => "R0205",
            Code::UndefinedMacro => "R0206",
            Code::MacroCycle => "R0207",
            Code::BadPattern => "R0208",
            Code::UncapturedEventType => "R0209",
            Code::Output => "R0301",
            Code::EngineVersion => "R0401",
            Code::PluginVersions => "R0402",
            Code::AppendUndefined => "R0501",
            Code::BadOverride => "R0502",
            Code::BadException => "R0503",
            Code::SelectionUnused => "R0601",
            Code::NotFalco => "R0701",
        }
    }
}

/// A position in a rule file. Line and column are 1-based; the column counts characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub pos: Pos,
    /// Characters to underline from `pos.col` (at least 1).
    pub len: usize,
    pub message: String,
    /// The source line `pos.line`, for the caret display (empty when unknown).
    pub source_line: String,
    /// The rule/macro/list the problem belongs to, when any.
    pub item: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The offending text (what the caret underlines).
    pub fn offending(&self) -> String {
        self.source_line
            .chars()
            .skip(self.pos.col.saturating_sub(1))
            .take(self.len.max(1))
            .collect()
    }

    /// rustc-like rendering with the source line and a caret line under the offending text.
    pub fn render(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let mut s = format!("{sev}[{}]: {}", self.code.as_str(), self.message);
        if let Some(item) = &self.item {
            s.push_str(&format!(" (in {item})"));
        }
        s.push_str(&format!("\n  --> {}\n", self.pos));
        if !self.source_line.is_empty() {
            let num = self.pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs would shift the caret: render them as single spaces on both lines.
            let line: String = self
                .source_line
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            s.push_str(&format!("{pad} |\n{num} | {line}\n{pad} | "));
            s.push_str(&" ".repeat(self.pos.col.saturating_sub(1)));
            s.push_str(&"^".repeat(self.len.max(1)));
            s.push('\n');
        }
        s
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Collects diagnostics and knows each loaded file's text, to fill `source_line`.
#[derive(Default)]
pub struct Sink {
    pub diags: Vec<Diagnostic>,
    /// (name, text, byte offset of every line start).
    files: Vec<(Arc<str>, Arc<str>, Vec<usize>)>,
}

impl Sink {
    pub fn add_file(&mut self, name: Arc<str>, text: Arc<str>) {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.push((name, text, starts));
    }

    fn line_of(&self, pos: &Pos) -> String {
        let Some((_, text, starts)) = self.files.iter().find(|(n, _, _)| **n == *pos.file) else {
            return String::new();
        };
        let Some(&start) = starts.get(pos.line.saturating_sub(1)) else {
            return String::new();
        };
        text[start..].lines().next().unwrap_or("").to_string()
    }

    pub fn push(
        &mut self,
        code: Code,
        severity: Severity,
        pos: &Pos,
        len: usize,
        item: Option<&str>,
        message: String,
    ) {
        let source_line = self.line_of(pos);
        self.diags.push(Diagnostic {
            code,
            severity,
            pos: pos.clone(),
            len: len.max(1),
            message,
            source_line,
            item: item.map(str::to_string),
        });
    }

    pub fn error(
        &mut self,
        code: Code,
        pos: &Pos,
        len: usize,
        item: Option<&str>,
        message: String,
    ) {
        self.push(code, Severity::Error, pos, len, item, message);
    }

    pub fn warn(&mut self, code: Code, pos: &Pos, len: usize, item: Option<&str>, message: String) {
        self.push(code, Severity::Warning, pos, len, item, message);
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}
