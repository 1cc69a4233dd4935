//! Which worker a client's datagrams reach. Every worker has its own listening socket on each
//! address (SO_REUSEPORT), and a classic BPF program on the group picks the socket from the
//! client's whole transport address, IP and port. One 5-tuple always meets the same worker (its
//! allocation lives there), while the many 5-tuples of one host (everyone behind a carrier-grade
//! NAT address, a load tester) spread over every worker. What must hold across a host's 5-tuples
//! is relay-wide in the `Ledger`: the per-source allocation quota, the per-source rate limit on
//! answers to unauthenticated requests, and EVEN-PORT reservations (an RTP/RTCP pair's second
//! Allocate may reach another worker than the first).
//!
//! Where the program looks: the kernel runs a reuseport program from the UDP lookup
//! (`reuseport_select_sock` with `hdr_len` = the UDP header's 8 bytes), after `run_bpf_filter`
//! has pulled the skb past that header, so offset 0 is the UDP payload and the header itself is
//! out of reach of plain offsets. `SKF_NET_OFF`-relative loads reach it from the IP header: the
//! source port is the UDP header's first half-word, right after the IP header (IPv4: its length
//! from IHL; IPv6: the fixed 40 bytes, so a datagram with extension headers is steered by their
//! first bytes instead, the same for every datagram of a flow that carries them).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// `SKF_NET_OFF` of linux/filter.h: absolute loads relative to the network (IP) header.
const SKF_NET_OFF: i32 = -0x100000;
/// Bytes of the fixed IPv6 header, before the UDP header (without extension headers).
const IPV6_HEADER: i32 = 40;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
/// `ldxb 4*([k]&0xf)`: the IPv4 header's length from its IHL nibble.
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
const XOR_X: u16 = (libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;

fn op(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

/// `code` at `ip_header_offset` from the IP header (for `LD_H_IND`, from the IP header plus X).
fn net(code: u16, ip_header_offset: i32) -> libc::sock_filter {
    // The kernel reads k as a signed offset; SKF_NET_OFF makes it relative to the IP header.
    op(code, (SKF_NET_OFF + ip_header_offset) as u32)
}

/// The program: the source address (IPv6: its four words folded by XOR), XOR the source port,
/// modulo `workers`, which is the index of the socket in the group, in the order the sockets
/// were bound. [`socket_index`] is the same function in Rust. A load out of the packet ends the
/// program with 0: the first socket.
fn program(ipv6: bool, workers: u32) -> Vec<libc::sock_filter> {
    let mut prog = Vec::new();
    if ipv6 {
        // Source address: bytes 8..24 of the IPv6 header; then the port right after the header.
        prog.push(net(LD_W_ABS, 8));
        for offset in [12, 16, 20] {
            prog.extend([op(TAX, 0), net(LD_W_ABS, offset), op(XOR_X, 0)]);
        }
        prog.extend([op(TAX, 0), net(LD_H_ABS, IPV6_HEADER), op(XOR_X, 0)]);
    } else {
        // X = the IPv4 header's length, A = the port after it; then XOR the source address
        // (bytes 12..16).
        prog.extend([net(LDX_B_MSH, 0), net(LD_H_IND, 0), op(TAX, 0), net(LD_W_ABS, 12), op(XOR_X, 0)]);
    }
    prog.extend([op(MOD_K, workers), op(RET_A, 0)]);
    prog
}

/// The socket of a group of `workers` that the program picks for datagrams from `client`.
pub fn socket_index(client: SocketAddr, workers: u32) -> u32 {
    let ip = match client.ip() {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            v6.octets().chunks_exact(4).fold(0, |acc, w| acc ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        }
    };
    (ip ^ u32::from(client.port())) % workers.max(1)
}

/// Steers the SO_REUSEPORT group `socket` belongs to by client transport address (IP and port)
/// across `workers` sockets.
pub fn steer_by_client_address(socket: &UdpSocket, ipv6: bool, workers: u32) -> io::Result<()> {
    let mut prog = program(ipv6, workers.max(1));
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // `fprog` points into `prog`, alive for the call; the kernel copies the program.
    super::socket::set_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::socket::{bind_listener, join_listener};
    use std::time::Duration;

    const SOCKETS: usize = 4;
    /// Client sockets per address: enough that every listening socket gets some (each misses
    /// all 64 with probability (3/4)^64, about 1e-8).
    const PORTS: usize = 64;

    fn steered_group(local: &str) -> (Vec<UdpSocket>, SocketAddr) {
        let first = bind_listener(local.parse().expect("literal")).expect("bind");
        let addr = first.local_addr().expect("addr");
        let mut group = vec![first];
        for _ in 1..SOCKETS {
            group.push(join_listener(addr).expect("bind the same port"));
        }
        steer_by_client_address(&group[0], addr.is_ipv6(), SOCKETS as u32).expect("attach the program");
        for s in &group {
            s.set_nonblocking(false).expect("blocking");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        }
        (group, addr)
    }

    /// Every datagram the group received, as (socket index, source).
    fn received(group: &[UdpSocket]) -> Vec<(usize, SocketAddr)> {
        let mut got = Vec::new();
        for (i, s) in group.iter().enumerate() {
            let mut buf = [0u8; 8];
            got.extend(std::iter::from_fn(|| s.recv_from(&mut buf).ok()).map(|(_, from)| (i, from)));
        }
        got
    }

    /// Sends three datagrams from each of `PORTS` ports of `client` and checks where they went.
    fn spreads_one_address(local: &str, client: &str) {
        let (group, addr) = steered_group(local);
        let senders: Vec<UdpSocket> =
            (0..PORTS).map(|_| UdpSocket::bind(client).expect("bind a client port")).collect();
        for _ in 0..3 {
            for s in &senders {
                s.send_to(b"x", addr).expect("send");
            }
        }
        let got = received(&group);
        assert_eq!(got.len(), 3 * PORTS, "every datagram arrives once");
        for (socket, from) in &got {
            // The socket the kernel chose is the one IP and port pick: the program reads the
            // port where it is, or this fails for most of the 64 ports.
            assert_eq!(*socket as u32, socket_index(*from, SOCKETS as u32), "{from} reached socket {socket}");
        }
        let per_socket: Vec<usize> = (0..SOCKETS).map(|i| got.iter().filter(|(s, _)| *s == i).count()).collect();
        assert!(per_socket.iter().all(|n| *n > 0), "one address spreads over every socket: {per_socket:?}");
    }

    /// One client address with many ports: its 5-tuples spread over all four sockets, each one
    /// always to the same socket, the one its address and port pick.
    #[test]
    fn one_address_spreads_over_every_socket_and_each_5_tuple_keeps_its_socket() {
        spreads_one_address("127.0.0.1:0", "127.0.0.3:0");
    }

    #[test]
    fn ipv6_clients_are_steered_by_address_and_port_too() {
        if UdpSocket::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        }
        spreads_one_address("[::1]:0", "[::1]:0");
    }

    #[test]
    fn distinct_addresses_on_one_port_are_steered_by_their_addresses() {
        let (group, addr) = steered_group("127.0.0.1:0");
        let port = UdpSocket::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let mut sent = 0;
        for last_octet in 2u8..10 {
            // The port may be taken on another loopback address; those are skipped.
            if let Ok(s) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, last_octet], port))) {
                s.send_to(b"x", addr).expect("send");
                sent += 1;
            }
        }
        let got = received(&group);
        assert_eq!(got.len(), sent);
        for (socket, from) in &got {
            assert_eq!(*socket as u32, socket_index(*from, SOCKETS as u32), "{from}");
        }
    }
}
