//! Creating UDP sockets the way a relay needs them: non-blocking, large buffers, IPv6 sockets
//! IPv6-only (so v4 and v6 listeners on the same port coexist), and the DF bit on request.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer size asked for on listeners: bursts from many clients arrive on one socket.
const LISTENER_BUFFER: usize = 4 << 20;

pub fn bind_udp(addr: SocketAddr, reuse_port: bool, buffer: Option<usize>) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Some(size) = buffer {
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(size);
        let _ = socket.set_send_buffer_size(size);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The first listening socket on `addr`, which opens an SO_REUSEPORT group for the workers
/// ([`join_listener`]). Such a group takes in any socket of the same user that asks, so a second
/// relay started on the same port would silently get half of its clients. A plain bind first,
/// closed at once, turns that into "address in use".
pub fn bind_listener(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    drop(bind_udp(addr, false, None)?);
    join_listener(addr)
}

/// One more listening socket on `addr`, joining the group [`bind_listener`] opened.
pub fn join_listener(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    bind_udp(addr, true, Some(LISTENER_BUFFER))
}

/// A TCP listener (also for TLS) with SO_REUSEADDR, so a restart does not wait for TIME_WAIT.
pub fn bind_tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// An RFC 6062 relay listener: SO_REUSEADDR and SO_REUSEPORT so that outgoing connections to
/// peers can bind the same relayed address.
pub fn bind_tcp_relay(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// RFC 8656 DONT-FRAGMENT: never fragment what the relay sends to the peer.
#[cfg(target_os = "linux")]
pub fn set_dont_fragment(socket: &std::net::UdpSocket, ipv6: bool) -> io::Result<()> {
    let (level, name, value) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_DO)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)
    };
    set_option(socket, level, name, &value)
}

/// `setsockopt` with a plain-data value, for options socket2 does not offer.
#[cfg(target_os = "linux")]
pub(super) use udp_batch::set_option;

#[cfg(not(target_os = "linux"))]
pub fn set_dont_fragment(_socket: &std::net::UdpSocket, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

/// Sends one datagram with a plain non-blocking `sendto` (the sockets are non-blocking): UDP
/// sends only fail to go on a full buffer, where dropping is the right thing anyway.
pub fn send_datagram(socket: &std::net::UdpSocket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    socket.send_to(data, to)
}
