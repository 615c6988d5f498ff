//! Decoding of the cgroup sock_addr events (`sock_connect`, `sock_sendmsg`): the destination
//! as the kernel's cgroup hook saw it, whatever the entry path (syscall, io_uring, 32-bit
//! compat). It lands in `fd.net` as the server side with `source=kernel`; the client side is
//! not known yet at that hook (the socket may not be bound) and is left empty.
//!
//! Also `compat_syscall` (the last section): the exec of a 32-bit program.
//!
//! Fields: fd.type ipv4/ipv6 (ipv4 for an IPv4-mapped IPv6 destination, shown dotted), fd.net.l4proto (from the socket type, falling back to the
//! protocol number), fd.net.server_ip/server_port; args.protocol (IPPROTO_* number) and
//! args.sock_type (SOCK_* number); sock_sendmsg also args.repeats (datagrams to the same
//! destination from the same process left out since its previous report: once a second).

use monitor_common::{FdKind, compat_aux, sockaddr_aux};

use crate::decode::Record;
use crate::event::{Arg, Event, Fd, FdType, NetTuple, Source};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Fill `ev.fd` and `ev.args` from a sock_addr record. A record whose family is neither
/// AF_INET nor AF_INET6 (never written by the kernel side) gets no `fd.net`, not a guess.
pub fn fill(ev: &mut Event, r: &Record<'_>) {
    let p = &r.payload;
    let s = &p.sock;
    let protocol = p.aux[sockaddr_aux::PROTOCOL];
    ev.args.insert("protocol".into(), Arg::Int(protocol as i64));
    ev.args.insert("sock_type".into(), Arg::Int(i64::from(s.sock_type)));
    if r.kind == monitor_common::EventType::SockSendmsg {
        ev.args.insert(
            "repeats".into(),
            Arg::Int(p.aux[sockaddr_aux::REPEATS].min(i64::MAX as u64) as i64),
        );
    }
    let (typ, ip) = match s.family {
        AF_INET => (
            FdType::Ipv4,
            std::net::Ipv4Addr::new(s.remote_addr[0], s.remote_addr[1], s.remote_addr[2], s.remote_addr[3]).to_string(),
        ),
        // An IPv4-mapped destination (::ffff:a.b.c.d) on an AF_INET6 socket is IPv4 traffic,
        // and connect4 does not run for it: shown as the IPv4 address, so that rules naming
        // 169.254.169.254 cannot be sidestepped by spelling it ::ffff:169.254.169.254.
        AF_INET6 => match std::net::Ipv6Addr::from(s.remote_addr).to_ipv4_mapped() {
            Some(v4) => (FdType::Ipv4, v4.to_string()),
            None => (FdType::Ipv6, std::net::Ipv6Addr::from(s.remote_addr).to_string()),
        },
        _ => {
            ev.fd = Some(Fd {
                typ: crate::decode::fd_type(FdKind::from_u8(p.fd_kind)),
                ..Fd::default()
            });
            return;
        }
    };
    ev.fd = Some(Fd {
        num: None,
        typ,
        net: Some(NetTuple {
            l4proto: l4proto(s.sock_type, protocol).to_string(),
            client_ip: None,
            client_port: None,
            server_ip: Some(ip),
            server_port: Some(s.remote_port),
            unix_path: None,
            source: Source::Kernel,
        }),
        ..Fd::default()
    });
}

/// Falco's l4proto names: from SOCK_* (masked of SOCK_NONBLOCK/SOCK_CLOEXEC), else IPPROTO_*.
fn l4proto(sock_type: u16, protocol: u64) -> &'static str {
    match (sock_type & 0xf, protocol) {
        (1, _) | (_, 6) => "tcp",
        (2, _) | (_, 17) => "udp",
        (3, _) => "raw",
        (_, 1) | (_, 58) => "icmp",
        _ => "",
    }
}

// ---- compat_syscall ----------------------------------------------------------------------

/// `compat_syscall` from the 32-bit exec detector: args.source = "exec_32bit" and
/// args.task_size (the new image's address-space limit). An unknown source is shown by number.
pub fn fill_compat(ev: &mut Event, r: &Record<'_>) {
    let p = &r.payload;
    let source = match p.aux[compat_aux::SOURCE] {
        compat_aux::SOURCE_EXEC_32BIT => Arg::Str("exec_32bit".into()),
        n => Arg::Int(n as i64),
    };
    ev.args.insert("source".into(), source);
    ev.args
        .insert("task_size".into(), Arg::Int(p.aux[compat_aux::TASK_SIZE] as i64));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, parse};
    use monitor_common::{EventHeader, EventType, Payload, STRINGS_OFFSET, WIRE_VERSION};

    fn record(kind: EventType, f: impl FnOnce(&mut Payload)) -> Vec<u8> {
        let mut payload = Payload::default();
        f(&mut payload);
        let h = EventHeader {
            version: WIRE_VERSION,
            kind: kind as u16,
            len: STRINGS_OFFSET as u32,
            tgid: 4242,
            tid: 4243,
            cgroup_id: 99,
            ..EventHeader::default()
        };
        let mut out = Vec::with_capacity(STRINGS_OFFSET);
        // SAFETY: plain data structs viewed as bytes.
        out.extend_from_slice(unsafe {
            std::slice::from_raw_parts((&h as *const EventHeader).cast::<u8>(), size_of::<EventHeader>())
        });
        out.extend_from_slice(unsafe {
            std::slice::from_raw_parts((&payload as *const Payload).cast::<u8>(), size_of::<Payload>())
        });
        out
    }

    fn decode(bytes: &[u8]) -> Event {
        let r = parse(bytes).expect("valid record");
        Decoder::new(0, "b".into()).event(&r)
    }

    #[test]
    fn connect4_tcp() {
        let b = record(EventType::SockConnect, |p| {
            p.sock.family = 2;
            p.sock.sock_type = 1;
            p.sock.remote_port = 8080;
            p.sock.remote_addr[..4].copy_from_slice(&[169, 254, 169, 254]);
            p.fd_kind = FdKind::Ipv4 as u8;
            p.aux[0] = 6;
        });
        let ev = decode(&b);
        assert_eq!(ev.kind, EventType::SockConnect);
        assert_eq!(ev.process.pid, 4242);
        assert_eq!(ev.cgroup_id, 99);
        let fd = ev.fd.expect("fd");
        assert_eq!(fd.typ, FdType::Ipv4);
        let net = fd.net.expect("net");
        assert_eq!(net.l4proto, "tcp");
        assert_eq!(net.server_ip.as_deref(), Some("169.254.169.254"));
        assert_eq!(net.server_port, Some(8080));
        assert_eq!(net.client_ip, None);
        assert_eq!(net.source, Source::Kernel);
        assert_eq!(ev.args.get("protocol"), Some(&Arg::Int(6)));
    }

    #[test]
    fn sendmsg6_udp() {
        let b = record(EventType::SockSendmsg, |p| {
            p.sock.family = 10;
            p.sock.sock_type = 2;
            p.sock.remote_port = 53;
            p.sock.remote_addr[15] = 1;
            p.fd_kind = FdKind::Ipv6 as u8;
            p.aux[0] = 17;
            p.aux[1] = 41;
        });
        let ev = decode(&b);
        let fd = ev.fd.expect("fd");
        assert_eq!(fd.typ, FdType::Ipv6);
        let net = fd.net.expect("net");
        assert_eq!(net.l4proto, "udp");
        assert_eq!(net.server_ip.as_deref(), Some("::1"));
        assert_eq!(net.server_port, Some(53));
        assert_eq!(ev.args.get("repeats"), Some(&Arg::Int(41)));
    }

    #[test]
    fn v4_mapped_destination_is_shown_as_ipv4() {
        let b = record(EventType::SockConnect, |p| {
            p.sock.family = 10;
            p.sock.sock_type = 1;
            p.sock.remote_port = 80;
            p.sock.remote_addr[10] = 0xff;
            p.sock.remote_addr[11] = 0xff;
            p.sock.remote_addr[12..].copy_from_slice(&[169, 254, 169, 254]);
        });
        let fd = decode(&b).fd.expect("fd");
        assert_eq!(fd.typ, FdType::Ipv4);
        assert_eq!(fd.net.expect("net").server_ip.as_deref(), Some("169.254.169.254"));
    }

    #[test]
    fn unknown_family_has_no_endpoint() {
        let b = record(EventType::SockConnect, |p| {
            p.sock.family = 77;
            p.sock.remote_port = 1;
        });
        let ev = decode(&b);
        assert!(ev.fd.expect("fd").net.is_none());
    }

    #[test]
    fn compat_exec() {
        let b = record(EventType::CompatSyscall, |p| {
            p.aux[0] = 1;
            p.aux[1] = 0xffff_e000;
        });
        let ev = decode(&b);
        assert_eq!(ev.kind, EventType::CompatSyscall);
        assert_eq!(ev.args.get("source"), Some(&Arg::Str("exec_32bit".into())));
        assert_eq!(ev.args.get("task_size"), Some(&Arg::Int(0xffff_e000)));
        assert!(ev.fd.is_none());
        let b = record(EventType::CompatSyscall, |p| p.aux[0] = 9);
        assert_eq!(decode(&b).args.get("source"), Some(&Arg::Int(9)));
    }

    #[test]
    fn l4proto_names() {
        assert_eq!(l4proto(1 | 0x800, 0), "tcp");
        assert_eq!(l4proto(0, 17), "udp");
        assert_eq!(l4proto(3, 1), "raw");
        assert_eq!(l4proto(5, 0), "");
    }
}
