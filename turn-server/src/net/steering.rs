//! Which worker a client's datagrams reach. Every worker has its own listening socket on each
//! address (SO_REUSEPORT), and a classic BPF program on the group picks the socket by the
//! client's IP address alone, not its port. So all 5-tuples of one client host (the candidates of
//! one ICE agent, an RTP/RTCP pair claiming an EVEN-PORT reservation) meet the same worker, and
//! reservations and the per-source challenge rate limit need no sharing between datagram
//! workers. (The per-source allocation quota is the ledger's, relay-wide: a host's TCP and TLS
//! clients are the stream worker's.)

use std::io;
use std::net::UdpSocket;

/// `SKF_NET_OFF` of linux/filter.h: absolute loads relative to the network (IP) header.
const SKF_NET_OFF: i32 = -0x100000;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
const XOR_X: u16 = (libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;

fn op(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn load(ip_header_offset: i32) -> libc::sock_filter {
    // The kernel reads k as a signed offset; SKF_NET_OFF makes it relative to the IP header.
    op(LD_W_ABS, (SKF_NET_OFF + ip_header_offset) as u32)
}

/// The program: the source address (IPv6: its four words folded by XOR) modulo `workers`, which
/// is the index of the socket in the group, in the order the sockets were bound.
fn program(ipv6: bool, workers: u32) -> Vec<libc::sock_filter> {
    let mut prog = Vec::new();
    if ipv6 {
        // Source address: bytes 8..24 of the IPv6 header.
        prog.push(load(8));
        for offset in [12, 16, 20] {
            prog.extend([op(TAX, 0), load(offset), op(XOR_X, 0)]);
        }
    } else {
        // Source address: bytes 12..16 of the IPv4 header.
        prog.push(load(12));
    }
    prog.extend([op(MOD_K, workers), op(RET_A, 0)]);
    prog
}

/// Steers the SO_REUSEPORT group `socket` belongs to by client IP across `workers` sockets.
pub fn steer_by_client_ip(socket: &UdpSocket, ipv6: bool, workers: u32) -> io::Result<()> {
    let mut prog = program(ipv6, workers.max(1));
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // `fprog` points into `prog`, alive for the call; the kernel copies the program.
    super::socket::set_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::socket::bind_listener;
    use std::net::SocketAddr;
    use std::time::Duration;

    /// Four sockets on one port, steered: datagrams from one client address, whatever its port,
    /// all reach one socket, the one its address picks.
    #[test]
    fn one_client_address_always_reaches_the_same_socket() {
        let first = bind_listener("127.0.0.1:0".parse().expect("literal")).expect("bind");
        let addr = first.local_addr().expect("addr");
        let mut group = vec![first];
        for _ in 1..4 {
            group.push(bind_listener(addr).expect("bind the same port"));
        }
        steer_by_client_ip(&group[0], false, 4).expect("attach the program");
        for s in &group {
            s.set_nonblocking(false).expect("blocking");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        }
        for last_octet in [2u8, 3, 4, 5] {
            let client: SocketAddr = format!("127.0.0.{last_octet}:0").parse().expect("literal");
            for _ in 0..3 {
                let from = std::net::UdpSocket::bind(client).expect("bind client");
                from.send_to(b"x", addr).expect("send");
            }
            let got: Vec<usize> = (0..4)
                .map(|i| {
                    let mut buf = [0u8; 8];
                    std::iter::from_fn(|| group[i].recv_from(&mut buf).ok()).count()
                })
                .collect();
            let expected = usize::from(last_octet) % 4;
            assert_eq!(got.iter().sum::<usize>(), 3, "{got:?}");
            assert_eq!(got[expected], 3, "client .{last_octet}: {got:?}");
        }
    }
}
