//! A YAML document tree whose every node keeps its source position.
//!
//! yaml-rust2 is used through its event API (`MarkedEventReceiver`) because its `Yaml` tree
//! drops positions, and diagnostics must point at the exact line and column. Positions inside
//! a scalar (a condition token in a folded `>` block, say) are recovered by [`Node::locate`],
//! which matches the scalar's text back onto the source lines.

use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::Pos;

#[derive(Clone, Debug)]
pub enum Kind {
    Scalar(String, TScalarStyle),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A plain `null`/`~`/empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s, TScalarStyle::Plain) if s.is_empty() || s == "~" || s == "null")
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(v) => Some(v),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(..) => "a scalar",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Source position of the character at `offset` (in chars) inside this scalar's value.
    /// Exact for single-line scalars and for block/multi-line scalars whose lines appear
    /// verbatim in the value; otherwise falls back to the nearest line start found.
    pub fn locate(&self, src: &str, offset: usize) -> Pos {
        let Kind::Scalar(value, style) = &self.kind else {
            return self.pos.clone();
        };
        let quoted = matches!(
            style,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
        );
        let block = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded);
        // (char offset in value, line, col) anchors.
        let mut anchors: Vec<(usize, usize, usize)> = Vec::new();
        let mut cursor = 0usize; // byte offset in value
        let first = self.pos.line.saturating_sub(1);
        for (i, line) in src.lines().enumerate().skip(first) {
            if cursor >= value.len() {
                break;
            }
            if i == first && block {
                continue;
            }
            // Segment of the line that belongs to the scalar, and its starting column.
            let (seg, mut col) = if i == first {
                let start_col = self.pos.col + usize::from(quoted);
                (
                    line.chars().skip(start_col - 1).collect::<String>(),
                    start_col,
                )
            } else {
                (line.to_string(), 1)
            };
            let lead = seg.chars().take_while(|c| c.is_whitespace()).count();
            col += lead;
            let mut text: &str = seg.trim();
            if quoted {
                text = text.trim_end_matches(['"', '\'']);
            }
            if text.is_empty() {
                continue;
            }
            if let Some(found) = value[cursor..].find(text) {
                let byte = cursor + found;
                anchors.push((value[..byte].chars().count(), i + 1, col));
                cursor = byte + text.len();
            } else if i > first + 2000 {
                break;
            }
        }
        let Some(&(a_off, line, col)) = anchors.iter().rev().find(|(o, _, _)| *o <= offset) else {
            return self.pos.clone();
        };
        Pos {
            file: self.pos.file.clone(),
            line,
            col: col + (offset - a_off),
        }
    }
}

#[derive(Debug)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

struct Builder {
    file: Arc<str>,
    stack: Vec<(Node, Option<Node>)>,
    docs: Vec<Node>,
    anchors: std::collections::HashMap<usize, Node>,
}

impl Builder {
    fn pos(&self, m: Marker) -> Pos {
        // yaml-rust2 markers: 1-based lines, 0-based columns.
        Pos {
            file: self.file.clone(),
            line: m.line(),
            col: m.col() + 1,
        }
    }

    fn insert(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((parent, pending_key)) => match &mut parent.kind {
                Kind::Seq(v) => v.push(node),
                Kind::Map(v) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(k) => v.push((k, node)),
                },
                Kind::Scalar(..) => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = self.pos(mark);
        match ev {
            Event::Scalar(s, style, anchor, _) => {
                let node = Node {
                    kind: Kind::Scalar(s, style),
                    pos,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.insert(node);
            }
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    kind: Kind::Seq(Vec::new()),
                    pos,
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    kind: Kind::Map(Vec::new()),
                    pos,
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.insert(node);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: Kind::Scalar(String::new(), TScalarStyle::Plain),
                    pos,
                });
                self.insert(node);
            }
            _ => {}
        }
    }
}

/// Parse every document of `text`.
///
/// yaml-rust2 rejects a flow sequence whose closing `]` sits at the parent key's indentation
/// after quoted items (`items: [\n    "a"\n  ]`), a layout yaml-cpp (Falco) accepts and the
/// Falco sandbox rules use. When the reported error is on a line holding only closing
/// brackets, that line is indented by one more space and parsing retried; positions of every
/// other line are unchanged.
pub fn parse(file: Arc<str>, text: &str) -> Result<Vec<Node>, YamlError> {
    let mut owned: Option<String> = None;
    for _ in 0..1000 {
        let cur = owned.as_deref().unwrap_or(text);
        match parse_once(file.clone(), cur) {
            Ok(docs) => return Ok(docs),
            Err(e) => {
                let line_idx = e.pos.line.saturating_sub(1);
                let line = cur.lines().nth(line_idx).unwrap_or("");
                let t = line.trim();
                if e.message.contains("indentation")
                    && !t.is_empty()
                    && t.chars().all(|c| matches!(c, ']' | '}' | ','))
                {
                    let fixed: Vec<String> = cur
                        .lines()
                        .enumerate()
                        .map(|(i, l)| {
                            if i == line_idx {
                                format!(" {l}")
                            } else {
                                l.to_string()
                            }
                        })
                        .collect();
                    owned = Some(fixed.join("\n"));
                    continue;
                }
                return Err(e);
            }
        }
    }
    parse_once(file, owned.as_deref().unwrap_or(text))
}

fn parse_once(file: Arc<str>, text: &str) -> Result<Vec<Node>, YamlError> {
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: Default::default(),
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| YamlError {
        pos: Pos {
            file,
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    Ok(b.docs)
}
