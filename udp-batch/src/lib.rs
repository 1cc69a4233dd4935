//! Batched UDP syscalls on Linux, in one place: the relay's data path and the bench's load
//! generator both need `recvmmsg`, `sendmmsg`, UDP GSO and a bare epoll set, and each kept its own
//! copy of the same `unsafe` code before. Like `quinn-udp` it is a thin layer over the kernel with
//! no runtime and no protocol in it: callers hand it raw fds of sockets they own and it moves
//! datagrams in bursts, allocating nothing per datagram.
//!
//! - [`RecvBatch`]: one `recvmmsg` fills many slots, each with room before and after the payload
//!   for the caller to frame it in place.
//! - [`SendQueue`]: datagrams queued out of a `RecvBatch`'s slots and sent with `sendmmsg`, runs of
//!   one size to one destination as one GSO message.
//! - [`SendBatch`]: caller-filled buffers sent on a connected socket as one GSO message.
//! - [`Epoll`]: a level-triggered epoll set whose events carry the caller's tokens.
//! - [`Wakeup`]: an eventfd, the doorbell of a thread that sleeps on an [`Epoll`].
//! - [`set_option`]: `setsockopt` for the options `socket2` does not offer.

mod addr;
mod cmsg;
mod epoll;
mod recv;
mod send;
mod sendbatch;
mod sockopt;
mod wakeup;

pub use epoll::Epoll;
pub use recv::RecvBatch;
pub use send::{Out, SendQueue};
pub use sendbatch::SendBatch;
pub use sockopt::set_option;
pub use wakeup::Wakeup;

/// A UDP socket on an ephemeral loopback port and its address, for the tests of every module.
#[cfg(test)]
fn loopback() -> (std::net::UdpSocket, std::net::SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}
