//! Parser accept/reject tables and diagnostics with exact positions.

use monitor::rules::parser::{self, Expr, Op};
use monitor::rules::{Code, LoadOptions, Severity, load_str};

#[test]
fn accepts_falco_condition_syntax() {
    let ok = [
        "evt.type = execve",
        "evt.type in (execve, execveat) and evt.dir = <",
        "not proc.name in (bash, sh) or (fd.num >= 0 and fd.typechar = 'f')",
        "proc.aname[2] = qualys-cloud-ag",
        "proc.name in (runc:[0:PARENT], runc:[1:CHILD], runc)",
        "fd.name startswith /etc/ and not fd.name glob '/etc/*.d/*'",
        r#"proc.cmdline = "sh -c node -e \"require('nan')\"""#,
        "proc.pname exists",
        "not proc.pname exists",
        "evt.arg.flags contains O_TRUNC",
        "evt.arg[0] = x",
        "tolower(proc.name) = bash",
        "toupper(tolower(proc.name)) = BASH",
        "len(proc.args) > 100",
        "proc.name = val(proc.pname)",
        "fd.name pmatch (/etc, /usr/bin)",
        "proc.args intersects (-V, -l)",
        "proc.name regex '^ba?sh$'",
        "fd.sip in ('10.0.0.0/8', 192.168.1.1)",
        "my_macro and (other_macro or evt.rawres in (0, 1, 2))",
        "evt.type=open",
        "fd.num>=0",
        "proc.name!=bash",
        "evt.type in ()",
        "a or b and c",
    ];
    for c in ok {
        if let Err(e) = parser::parse(c) {
            panic!("rejected {c:?}: {} at {:?}", e.message, e.span);
        }
    }
}

#[test]
fn rejects_bad_conditions_at_the_offending_text() {
    // (condition, expected span start, message fragment)
    let bad: &[(&str, usize, &str)] = &[
        ("", 0, "empty condition"),
        ("evt.type =", 10, "expected a value"),
        ("(evt.type = open", 0, "unbalanced `(`"),
        ("evt.type = open)", 15, "unexpected text"),
        ("proc.name bash", 10, "expected an operator"),
        ("proc.name", 0, "not followed by an operator"),
        ("proc.name in bash", 13, "expected `(`"),
        ("proc.name in (a b)", 16, "expected `,` or `)`"),
        ("proc.name = (a)", 12, "single value"),
        ("evt.type = open and", 19, "unexpected end"),
        ("proc.name = 'abc", 12, "unterminated"),
        ("proc.aname[2 = x", 10, "unclosed `[`"),
        ("and proc.name = x", 0, "expected a field"),
        ("= x", 0, "expected a field"),
    ];
    for (c, start, msg) in bad {
        match parser::parse(c) {
            Ok(e) => panic!("accepted {c:?}: {e:?}"),
            Err(e) => {
                assert!(
                    e.message.contains(msg),
                    "{c:?}: message {:?} lacks {msg:?}",
                    e.message
                );
                assert_eq!(
                    e.span.start, *start,
                    "{c:?}: span {:?} ({})",
                    e.span, e.message
                );
            }
        }
    }
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    let e = parser::parse("a or b and c").unwrap();
    let Expr::Or(items) = e else { panic!("{e:?}") };
    assert!(matches!(items[0], Expr::Macro(ref n, _) if n == "a"));
    assert!(matches!(items[1], Expr::And(_)));
    let e = parser::parse("not a and b").unwrap();
    assert!(matches!(e, Expr::And(ref v) if matches!(v[0], Expr::Not(_))));
    let e = parser::parse("fd.num>=0").unwrap();
    assert!(matches!(e, Expr::Check { op: Op::Ge, .. }));
}

#[test]
fn nesting_is_limited() {
    let deep = format!("{}evt.type = open{}", "(".repeat(200), ")".repeat(200));
    let e = parser::parse(&deep).unwrap_err();
    assert!(e.too_deep);
    let nots = format!("{}evt.type = open", "not ".repeat(100));
    assert!(parser::parse(&nots).unwrap_err().too_deep);
    let ok = format!("{}evt.type = open{}", "(".repeat(30), ")".repeat(30));
    parser::parse(&ok).unwrap();
}

fn diags(text: &str) -> Vec<monitor::rules::Diagnostic> {
    load_str("t.yaml", text, &LoadOptions::default()).1
}

#[test]
fn unknown_field_points_at_its_line_and_column() {
    let y = "- rule: r\n  desc: d\n  condition: evt.type = open and proc.nmae = bash\n  output: o\n  priority: INFO\n";
    let d = diags(y);
    let e = d
        .iter()
        .find(|d| d.code == Code::UnknownField)
        .expect("unknown field diagnostic");
    assert_eq!((e.pos.line, e.pos.col, e.len), (3, 34, 9));
    assert_eq!(e.offending(), "proc.nmae");
    assert_eq!(e.code.as_str(), "R0201");
    let r = e.render();
    assert!(r.contains("t.yaml:3:34"), "{r}");
    assert!(
        r.contains("\n  |                                  ^^^^^^^^^\n"),
        "{r}"
    );
}

#[test]
fn positions_inside_folded_blocks_and_macros() {
    let y = "\
- macro: m
  condition: >
    evt.type = open
    and fd.typechar = f
    and fd.num >= abc
- rule: r
  desc: d
  condition: >
    m
    and proc.name = x
  output: o %proc.name
  priority: WARNING
";
    let d = diags(y);
    let e = d
        .iter()
        .find(|d| d.code == Code::BadLiteral)
        .expect("bad literal");
    assert_eq!((e.pos.line, e.pos.col), (5, 19), "{}", e.render());
    assert_eq!(e.offending(), "abc");
    assert_eq!(e.item.as_deref(), Some("r"));
}

#[test]
fn syntax_error_in_quoted_condition() {
    let y = "- rule: r\n  desc: d\n  condition: \"evt.type = open and (fd.num > 0\"\n  output: o\n  priority: INFO\n";
    let d = diags(y);
    let e = d.iter().find(|d| d.code == Code::Syntax).expect("syntax");
    // The `(` is char 20 of the condition, the scalar's quote is at column 14.
    assert_eq!((e.pos.line, e.pos.col), (3, 35), "{}", e.render());
    assert_eq!(e.offending(), "(");
}

#[test]
fn yaml_syntax_and_item_shape_errors() {
    let d = diags("- rule: r\n  desc: [unclosed\n");
    assert_eq!(d[0].code, Code::YamlSyntax);
    let d = diags("rule: r\n");
    assert_eq!(d[0].code, Code::BadItem);
    assert_eq!((d[0].pos.line, d[0].pos.col), (1, 1));
    let d = diags(
        "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: LOUD\n",
    );
    let e = d.iter().find(|d| d.code == Code::BadPriority).unwrap();
    assert_eq!((e.pos.line, e.pos.col), (5, 13));
    let d = diags("- rule: r\n  condition: evt.type = open\n");
    assert!(
        d.iter()
            .any(|d| d.code == Code::BadKey && d.message.contains("desc"))
    );
}

#[test]
fn type_and_operator_errors() {
    let rule = |c: &str| {
        format!("- rule: r\n  desc: d\n  condition: {c}\n  output: o\n  priority: INFO\n")
    };
    // (condition, code, offending text): the column is computed from where the text sits in
    // the condition, which starts at column 14 (`  condition: `).
    let cases: &[(&str, Code, &str)] = &[
        ("fd.num > x", Code::BadLiteral, "x"),
        ("proc.name > x", Code::BadOperator, ">"),
        ("fd.num contains 1", Code::BadOperator, "contains"),
        ("proc.is_exe_upper_layer = yes", Code::BadLiteral, "yes"),
        ("fd.sip = 300.1.1.1", Code::BadLiteral, "300.1.1.1"),
        ("proc.name regex '('", Code::BadPattern, "'('"),
        ("undefined_macro", Code::UndefinedMacro, "undefined_macro"),
        ("proc.name[1] = x", Code::FieldArg, "proc.name[1]"),
        ("proc.aname[x] = y", Code::FieldArg, "proc.aname[x]"),
        ("len(fd.num) > 1", Code::BadOperator, "len(fd.num)"),
    ];
    for (c, code, text) in cases {
        let d = diags(&rule(c));
        let e = d
            .iter()
            .find(|d| d.code == *code)
            .unwrap_or_else(|| panic!("{c}: no {code:?} in {d:#?}"));
        let col = 14 + c.find(text).unwrap();
        assert_eq!((e.pos.line, e.pos.col), (3, col), "{c}: {}", e.render());
        assert_eq!(e.offending(), *text, "{c}: {}", e.render());
        assert_eq!(e.severity, Severity::Error);
    }
}

#[test]
fn unsupported_fields_warn_and_compare_false() {
    let y = "- rule: r\n  desc: d\n  condition: evt.type = execve and not proc.aenv contains X\n  output: o\n  priority: INFO\n";
    let (set, d) = load_str("t.yaml", y, &LoadOptions::default());
    let w = d.iter().find(|d| d.code == Code::UnsupportedField).unwrap();
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!((w.pos.line, w.pos.col), (3, 40));
    assert_eq!(set.len(), 1);
}

#[test]
fn environment_searches_the_monitor_cannot_answer_are_flagged_where_written() {
    // A variable the monitor drops at capture: by name, and inside a whole-env search.
    for (cond, col, text) in [
        ("evt.type = execve and proc.env[AWS_SECRET_ACCESS_KEY] exists", 36, "proc.env"),
        ("evt.type = execve and not proc.env contains AWS_SECRET", 58, "AWS_SECRET"),
    ] {
        let y = format!("- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n");
        let (set, d) = load_str("t.yaml", &y, &LoadOptions::default());
        let w = d
            .iter()
            .find(|d| d.code == Code::UnsupportedField)
            .unwrap_or_else(|| panic!("{cond}: no R0202 in {d:#?}"));
        assert_eq!(w.severity, Severity::Warning, "{cond}");
        assert_eq!((w.pos.line, w.pos.col), (3, col), "{cond}: {}", w.render());
        assert!(w.offending().starts_with(text), "{cond}: {}", w.render());
        assert_eq!(set.len(), 1);
    }
    // Kept variables: no diagnostic, by name or in a search (Falco's spelling, any case).
    for cond in [
        "evt.type = execve and proc.env[LD_PRELOAD] startswith /tmp",
        "evt.type = execve and proc.env icontains glibc_tunables",
        "evt.type = execve and proc.env contains \"HTTP_PROXY=http://p \"",
    ] {
        let y = format!("- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n");
        let (_, d) = load_str("t.yaml", &y, &LoadOptions::default());
        assert!(d.is_empty(), "{cond}: {d:#?}");
    }
}

#[test]
fn macro_cycles_are_reported() {
    let y = "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: r\n  desc: d\n  condition: a\n  output: o\n  priority: INFO\n";
    let d = diags(y);
    let e = d.iter().find(|d| d.code == Code::MacroCycle).unwrap();
    assert!(e.message.contains("a -> b -> a"), "{}", e.message);
}

/// Garbage in, diagnostics out: no input makes the loader panic.
#[test]
fn random_conditions_never_panic() {
    let atoms = [
        "evt.type",
        "=",
        "!=",
        "in",
        "(",
        ")",
        ",",
        "and",
        "or",
        "not",
        "proc.name",
        "bash",
        "'q'",
        "\"",
        "exists",
        "proc.aname[",
        "]",
        "2",
        "tolower(",
        "val(",
        "glob",
        "'[a-'",
        "regex",
        "'('",
        "fd.sip",
        "10.0.0.0/8",
        "pmatch",
        "m",
        "<",
        ">=",
        "é",
        "\\",
        "\n",
        "evt.arg.",
        "evt.arg[0]",
        "len(",
        "intersects",
        "contains",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let n = (next() % 12) as usize + 1;
        let cond: Vec<&str> = (0..n)
            .map(|_| atoms[(next() % atoms.len() as u64) as usize])
            .collect();
        let cond = cond.join(if next() % 2 == 0 { " " } else { "" });
        let _ = parser::parse(&cond);
        let y = format!(
            "- macro: m\n  condition: evt.type = open\n- rule: r\n  desc: d\n  condition: {:?}\n  output: o %{}\n  priority: INFO\n",
            cond,
            atoms[(next() % atoms.len() as u64) as usize]
        );
        let (set, d) = load_str("fuzz.yaml", &y, &LoadOptions::default());
        for x in &d {
            let _ = x.render();
        }
        let _ = set.evaluate(&monitor::event::Event::default());
    }
}

#[test]
fn exception_without_fields_is_an_error() {
    let y = "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: INFO\n  exceptions:\n    - name: e\n      fields: []\n";
    let d = diags(y);
    assert!(
        d.iter()
            .any(|d| d.code == Code::BadException && d.is_error()),
        "{d:#?}"
    );
}
