//! Whether the edge's listening addresses can be bound, for `sipedge check`.
//!
//! Start binds every `[[listen]]` and `[admin] addr` and exits if one is
//! taken or not on this host. Check tries the same binds and lets go at
//! once. It never listens and never receives: a UDP probe binds without
//! `SO_REUSEADDR`/`SO_REUSEPORT`, so it cannot join (and take datagrams from)
//! another socket's port; a TCP probe binds with `SO_REUSEADDR` like the edge,
//! so a port with only TIME_WAIT connections left is free, and no `listen`.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

use crate::config::{Config, ConfigError};
use crate::sip::Transport;

/// One error per configured address that cannot be bound now (port 0 is
/// always free and is skipped).
pub fn unbindable(cfg: &Config) -> Vec<ConfigError> {
    let listeners = cfg.listen.iter().enumerate().map(|(i, l)| (format!("listen[{i}].addr"), l.addr, l.transport));
    let admin = std::iter::once(("admin.addr".to_owned(), cfg.admin.addr, Transport::Tcp));
    listeners
        .chain(admin)
        .filter(|(_, addr, _)| addr.port() != 0)
        .filter_map(|(field, addr, t)| {
            try_bind(addr, t).err().map(|e| ConfigError::new(field, format!("{addr} ({t}) cannot be bound: {e}")))
        })
        .collect()
}

fn try_bind(addr: SocketAddr, t: Transport) -> io::Result<()> {
    let (ty, proto) = match t {
        Transport::Udp => (Type::DGRAM, Protocol::UDP),
        Transport::Tcp | Transport::Tls => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.bind(&addr.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> Config {
        let text = format!("[edge]\ndata_dir = \"d\"\n{listen}[admin]\naddr = \"127.0.0.1:0\"\n");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn a_taken_udp_or_tcp_port_is_named_and_a_free_one_passes() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (u, t) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let c = cfg(&format!(
            "[[listen]]\ntransport = \"udp\"\naddr = \"{u}\"\n[[listen]]\ntransport = \"tcp\"\naddr = \"{t}\"\n"
        ));
        let fields: Vec<String> = unbindable(&c).iter().map(|e| e.to_string()).collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert!(fields[0].starts_with("listen[0].addr") && fields[0].contains(&u.to_string()), "{fields:?}");
        assert!(fields[1].starts_with("listen[1].addr"), "{fields:?}");
        drop((udp, tcp));
        assert!(unbindable(&c).is_empty(), "free again once released");
    }

    #[test]
    fn an_address_not_on_this_host_is_refused() {
        // 192.0.2.0/24 is TEST-NET-1: never configured on a test machine.
        let c = cfg("[[listen]]\ntransport = \"udp\"\naddr = \"192.0.2.1:5070\"\n");
        let e = unbindable(&c);
        assert_eq!(e.len(), 1, "{e:?}");
    }
}
