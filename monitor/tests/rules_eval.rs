//! Evaluation semantics, condition by condition, on one reference event.

use monitor::event::{Ancestor, Arg, Event, EventType, Fd, FdType, NetTuple, Process, Source};
use monitor::rules::{LoadOptions, load_str};

fn event() -> Event {
    Event {
        schema: 1,
        ts: 1_700_000_010_000_000_000,
        num: 7,
        kind: EventType::Connect,
        ret: -115,
        process: Process {
            pid: 42,
            comm: "curl".into(),
            exe: "curl".into(),
            exepath: "/usr/bin/curl".into(),
            args: vec!["-s".into(), "http://x".into()].into(),
            euid: 1000,
            start_ts: 1_700_000_000_000_000_000,
            cap_effective: 1 << 21,
            ancestors: vec![
                Ancestor {
                    pid: 41,
                    comm: "sh".into(),
                    exe: "sh".into(),
                    exepath: "/bin/dash".into(),
                    args: vec!["-c".into(), "curl -s http://x".into()],
                },
                Ancestor {
                    pid: 40,
                    comm: "nginx".into(),
                    exe: "nginx".into(),
                    exepath: "/usr/sbin/nginx".into(),
                    args: vec![],
                },
            ]
            .into(),
            ..Process::default()
        },
        fd: Some(Fd {
            num: Some(3),
            typ: FdType::Ipv4,
            net: Some(NetTuple {
                l4proto: "tcp".into(),
                client_ip: Some("10.0.0.2".into()),
                client_port: Some(40000),
                server_ip: Some("93.184.216.34".into()),
                server_port: Some(80),
                unix_path: None,
                source: Source::Kernel,
            }),
            ..Fd::default()
        }),
        args: [(
            "flags".into(),
            Arg::Flags {
                raw: 2048,
                text: "O_NONBLOCK".into(),
            },
        )]
        .into_iter()
        .collect(),
        cgroup_id: 1,
        container: Default::default(),
    }
}

fn eval(cond: &str) -> bool {
    let y = format!(
        "- rule: r\n  desc: d\n  condition: '{}'\n  output: o\n  priority: INFO\n",
        cond.replace('\'', "''")
    );
    let (set, d) = load_str("t.yaml", &y, &LoadOptions::default());
    assert!(!d.iter().any(|d| d.is_error()), "{cond}: {d:#?}");
    assert_eq!(set.len(), 1, "{cond}");
    !set.evaluate(&event()).is_empty()
}

#[test]
fn conditions_evaluate_like_falco() {
    let table: &[(&str, bool)] = &[
        ("evt.type = connect", true),
        ("evt.type != connect", false),
        ("evt.type in (open, connect)", true),
        ("not evt.type in (open, execve)", true),
        ("evt.res = EINPROGRESS", true),
        ("evt.rawres < 0 and evt.failed = true", true),
        ("evt.dir = <", true),
        ("proc.name = curl and proc.pname = sh", true),
        ("proc.aname[2] = nginx", true),
        ("proc.aname[0] = curl", true),
        ("proc.aname = nginx", true),
        ("proc.aname = curl", false),
        ("proc.apid[2] = 40", true),
        ("proc.cmdline = \"curl -s http://x\"", true),
        ("proc.pcmdline = \"sh -c curl -s http://x\"", true),
        ("proc.args startswith -s", true),
        ("proc.duration > 5000000000", true),
        ("user.uid = 1000", true),
        ("user.loginuid = -1", true),
        ("thread.cap_effective contains CAP_SYS_ADMIN", true),
        ("fd.sip = 93.184.216.34 and fd.sport = 80", true),
        ("fd.snet in (\"93.184.0.0/16\")", true),
        ("fd.ip = 10.0.0.2", true),
        ("fd.net = \"10.0.0.0/8\"", true),
        (
            "fd.lip = 10.0.0.2 and fd.rport = 80 and fd.lport = 40000",
            true,
        ),
        ("fd.name = \"10.0.0.2:40000->93.184.216.34:80\"", true),
        (
            "fd.typechar = 4 and fd.type = ipv4 and fd.sockfamily = ip and fd.l4proto = tcp",
            true,
        ),
        (
            "evt.arg.flags contains O_NONBLOCK and evt.rawarg.flags = 2048",
            true,
        ),
        // An absent field fails every comparison, `!=` included; `not` inverts that.
        ("fd.directory != /etc", false),
        ("not fd.directory = /etc", true),
        ("fd.directory exists", false),
        ("proc.pname exists", true),
        ("k8s.ns.name = prod", false),
        ("tolower(proc.name) = CURL", false),
        ("toupper(proc.name) = CURL", true),
        ("len(proc.name) = 4", true),
        ("basename(proc.exepath) = curl", true),
        ("proc.exepath glob '/usr/*/cu?l'", true),
        ("proc.exepath pmatch (/usr/bin, /opt)", true),
        ("proc.exepath pmatch (/usr/b)", false),
        ("proc.name regex '^cu.l$'", true),
        ("proc.name icontains CUR", true),
        ("proc.name bcontains 7572", true),
        ("proc.args intersects (-s, -v)", true),
        ("proc.name = val(proc.pname)", false),
        ("proc.name != val(proc.pname)", true),
        // Merged alternatives (set, automaton) keep their meaning.
        ("proc.name = a or proc.name = b or proc.name = curl", true),
        (
            "proc.exepath startswith /a or proc.exepath startswith /b or proc.exepath startswith /usr/",
            true,
        ),
        (
            "proc.exepath startswith /a or proc.exepath startswith /b or proc.exepath startswith /bin",
            false,
        ),
        (
            "proc.cmdline contains x1 or proc.cmdline contains x2 or proc.cmdline contains http",
            true,
        ),
        (
            "proc.cmdline icontains X1 or proc.cmdline icontains X2 or proc.cmdline icontains HTTP",
            true,
        ),
    ];
    let mut wrong = Vec::new();
    for (c, want) in table {
        if eval(c) != *want {
            wrong.push(format!("{c}: expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn index_puts_rules_in_their_kind_buckets() {
    let y = "\
- rule: a
  desc: d
  condition: evt.type = execve and proc.name = curl
  output: o
  priority: INFO
- rule: b
  desc: d
  condition: proc.name = curl
  output: o
  priority: INFO
- rule: c
  desc: d
  condition: not evt.type in (execve) and proc.name = curl
  output: o
  priority: INFO
";
    let (set, _) = load_str("t.yaml", y, &LoadOptions::default());
    assert_eq!(set.unindexed_rules(), 1);
    let fired: Vec<String> = set.evaluate(&event()).into_iter().map(|m| m.rule).collect();
    assert_eq!(fired, ["b", "c"]);
}

#[test]
fn append_and_override_semantics() {
    let y = "\
- list: names
  items: [wget]
- list: names
  items: [curl]
  append: true
- macro: net_tool
  condition: proc.name in (names)
- macro: is_connect
  condition: evt.type = execve
- macro: is_connect
  condition: or evt.type = connect
  append: true
- rule: a
  desc: d
  condition: is_connect
  output: o
  priority: INFO
- rule: a
  condition: and net_tool
  append: true
- rule: b
  desc: d
  condition: evt.type = connect
  output: o
  priority: INFO
  tags: [x]
- rule: b
  condition: and proc.name = nope
  override:
    condition: append
- rule: c
  desc: d
  condition: evt.type = connect
  output: first
  priority: DEBUG
- rule: c
  output: second %proc.name
  priority: CRITICAL
  override:
    output: replace
    priority: replace
";
    let (set, d) = load_str("t.yaml", y, &LoadOptions::default());
    assert!(!d.iter().any(|d| d.is_error()), "{d:#?}");
    let m = set.evaluate(&event());
    let fired: Vec<&str> = m.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(fired, ["a", "c"]);
    assert_eq!(m[1].output, "second curl");
    assert_eq!(m[1].priority, monitor::rules::Priority::Critical);
    // Appending to something never defined is an error that names it.
    let (_, d) = load_str(
        "t.yaml",
        "- list: nope\n  items: [a]\n  append: true\n",
        &LoadOptions::default(),
    );
    assert!(
        d.iter()
            .any(|d| d.code == monitor::rules::Code::AppendUndefined && d.message.contains("nope"))
    );
    // override of a key the item does not set.
    let bad = "- rule: c\n  desc: d\n  condition: evt.type = connect\n  output: o\n  priority: INFO\n- rule: c\n  override:\n    output: append\n";
    let (_, d) = load_str("t.yaml", bad, &LoadOptions::default());
    assert!(
        d.iter()
            .any(|d| d.code == monitor::rules::Code::BadOverride),
        "{d:#?}"
    );
}
