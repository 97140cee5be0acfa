//! UDP sockets: socket2 set-up (address and port reuse, large buffers).

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Socket buffer size asked for; the kernel caps it at `net.core.rmem_max`.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a non-blocking UDP socket on `addr`. With `reuse_port`, several
/// sockets (one per shard) share the address and the kernel spreads
/// datagrams across them.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` is IPv6 only, so `0.0.0.0` on the same port can be another listener.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Best effort: a smaller buffer still works, it just drops sooner in a burst.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds `n` sockets on one address; the first fixes the port when `addr` has port 0.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = bind(addr, n > 1)?;
    let actual = first.local_addr()?;
    let mut v = vec![first];
    for _ in 1..n {
        v.push(bind(actual, true)?);
    }
    Ok(v)
}

/// Asks the kernel to queue ICMP errors (port unreachable, ...) for this
/// unconnected socket, so a next hop with no listener fails over at once
/// instead of after `failover_ms` (Linux `IP_RECVERR`). Best effort.
#[cfg(target_os = "linux")]
pub fn enable_icmp_errors(sock: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    let (level, opt) = match sock.local_addr()? {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_RECVERR),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
    };
    // SAFETY: a valid fd, a c_int option value and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not available off Linux: failover then relies on `failover_ms`.
#[cfg(not(target_os = "linux"))]
pub fn enable_icmp_errors(_sock: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Reads every queued ICMP error and returns the destinations that were
/// unreachable (the `msg_name` of an error-queue message is the original
/// datagram's destination).
#[cfg(target_os = "linux")]
pub fn drain_icmp_errors<S: std::os::fd::AsRawFd>(sock: &S) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for _ in 0..64 {
        // SAFETY: zeroed plain-old-data structs; every pointer handed to
        // recvmsg points into these locals and lives across the call.
        let got = unsafe {
            let mut name: libc::sockaddr_storage = std::mem::zeroed();
            let mut data = [0u8; 512];
            let mut ctrl = [0u8; 512];
            let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.as_mut_ptr().cast();
            msg.msg_controllen = ctrl.len();
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT);
            if n < 0 {
                None
            } else {
                Some(sockaddr_to_std(&name))
            }
        };
        match got {
            Some(Some(a)) => out.push(a),
            Some(None) => {}
            None => break,
        }
    }
    out
}

/// Not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn drain_icmp_errors<S>(_sock: &S) -> Vec<SocketAddr> {
    Vec::new()
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn port_unreachable_is_reported_with_its_destination() {
        let a = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        enable_icmp_errors(&a).unwrap();
        // A port with nobody on it: bind and drop to find one.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        a.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", closed).unwrap();
        let mut got = Vec::new();
        for _ in 0..50 {
            got = drain_icmp_errors(&a);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, vec![closed]);
    }
}
