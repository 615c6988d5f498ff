//! RFC 5424 syslog over a unix datagram socket (`/dev/log`) and/or UDP. The message is the
//! alert's JSON; the severity is the alert's priority (Falco's priorities are syslog's levels).

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SinkCtx;
use crate::alert::Alert;

/// Larger messages are cut (at a character boundary): many syslog daemons and networks drop
/// oversize datagrams, and a cut JSON line is still readable by a human.
const MAX_MESSAGE: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    User,
    #[default]
    Daemon,
    Auth,
    Authpriv,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Authpriv => 10,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        }
    }
}

/// RFC 5424 header fields are printable US-ASCII without spaces, bounded; anything else
/// becomes `_`, empty becomes the NILVALUE `-`.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if out.is_empty() { "-".to_string() } else { out }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`.
pub fn format_rfc5424(alert: &Alert, facility: Facility, app_name: &str) -> String {
    let pri = u16::from(facility.code()) * 8 + u16::from(alert.priority.syslog_severity());
    let mut msg = format!(
        "<{pri}>1 {} {} {} {} alert - {}",
        header_field(&alert.time, 64),
        header_field(&alert.hostname, 255),
        header_field(app_name, 48),
        std::process::id(),
        alert.to_json()
    );
    if msg.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    msg
}

pub(super) struct Syslog {
    socket: Option<PathBuf>,
    unix: Option<UnixDatagram>,
    udp: Option<(UdpSocket, String)>,
    facility: Facility,
    app_name: String,
}

impl Syslog {
    pub(super) fn new(
        socket: Option<PathBuf>,
        udp: Option<String>,
        facility: Facility,
        app_name: &str,
    ) -> anyhow::Result<Syslog> {
        if socket.is_none() && udp.is_none() {
            anyhow::bail!("set `socket` (e.g. /dev/log) and/or `udp` (host:port)");
        }
        let udp = match udp {
            Some(addr) => {
                use std::net::ToSocketAddrs;
                let target = addr
                    .to_socket_addrs()
                    .map_err(|e| anyhow::anyhow!("udp address {addr:?}: {e}"))?
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("udp address {addr:?} resolves to nothing"))?;
                let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let s = UdpSocket::bind(bind)?;
                s.connect(target)?;
                Some((s, addr))
            }
            None => None,
        };
        Ok(Syslog {
            socket,
            unix: None,
            udp,
            facility,
            app_name: app_name.to_string(),
        })
    }

    /// Send to every configured transport; Ok if at least one took it.
    fn send(&mut self, msg: &str) -> Result<(), String> {
        let mut ok = false;
        let mut errs = Vec::new();
        if let Some(path) = &self.socket {
            if self.unix.is_none() {
                match UnixDatagram::unbound() {
                    Ok(s) => self.unix = Some(s),
                    Err(e) => errs.push(format!("unix socket: {e}")),
                }
            }
            if let Some(s) = &self.unix {
                match s.send_to(msg.as_bytes(), path) {
                    Ok(_) => ok = true,
                    Err(e) => errs.push(format!("{}: {e}", path.display())),
                }
            }
        }
        if let Some((s, addr)) = &self.udp {
            match s.send(msg.as_bytes()) {
                Ok(_) => ok = true,
                Err(e) => errs.push(format!("udp {addr}: {e}")),
            }
        }
        if ok { Ok(()) } else { Err(errs.join("; ")) }
    }
}

pub(super) fn run(mut ctx: SinkCtx, mut s: Syslog) {
    while let Some(a) = ctx.rx.blocking_recv() {
        ctx.dequeued(&a);
        let msg = format_rfc5424(&a, s.facility, &s.app_name);
        match s.send(&msg) {
            Ok(()) => ctx.sent(),
            Err(e) => {
                ctx.dropped(1);
                tracing::warn!(sink = %ctx.label, error = %e, "Could not send an alert to syslog; it is dropped.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::Priority;
    use crate::event::Event;

    #[test]
    fn rfc5424_over_unix_and_udp() {
        let ev = Event {
            ts: 1_700_000_000_000_000_001,
            ..Default::default()
        };
        let a = Alert::new("R", Priority::Error, &[], "o".into(), BTreeMap::new(), &ev, "node a");
        let m = format_rfc5424(&a, Facility::Local0, "monitor");
        // local0 (16) * 8 + error (3) = 131; space in the host name escaped.
        let prefix = format!(
            "<131>1 2023-11-14T22:13:20.000000001Z node_a monitor {} alert - {{",
            std::process::id()
        );
        assert!(m.starts_with(&prefix), "{m}");
        let json = &m[m.find('{').unwrap()..];
        assert_eq!(serde_json::from_str::<Alert>(json).unwrap(), a);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let udp_server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp_server.local_addr().unwrap().to_string();
        let mut s = Syslog::new(Some(path), Some(udp_addr), Facility::Local0, "monitor").unwrap();
        s.send(&m).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], m.as_bytes());
        let n = udp_server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], m.as_bytes());
    }

    #[test]
    fn oversize_message_is_cut_at_char_boundary() {
        let ev = Event::default();
        let a = Alert::new("R", Priority::Debug, &[], "é".repeat(10_000), BTreeMap::new(), &ev, "h");
        let m = format_rfc5424(&a, Facility::Daemon, "monitor");
        assert!(m.len() <= MAX_MESSAGE && m.len() > MAX_MESSAGE - 4);
        assert!(m.starts_with("<31>1 "));
    }
}
