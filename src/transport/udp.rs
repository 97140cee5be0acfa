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
