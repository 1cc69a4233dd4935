//! Every UDP socket of a worker, listening and relay sockets alike, in one epoll set. A datagram
//! worker's thread sleeps on the set itself (`udp_thread`); the stream worker's runtime watches it
//! as a single fd (`udp::datagram_loop`). Either way a worker with ten thousand allocations has one
//! registration for them instead of ten thousand, both directions share one wake-up, and the order
//! of service follows the kernel's ready list.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use udp_batch::Epoll;

use crate::proto::FastMap;

/// Ready sockets fetched per `epoll_wait`.
pub(super) const MAX_EVENTS: usize = 64;
/// The epoll token of the wake-up fd (`watch_wakeup`); socket tokens carry a slot below 2^32 - 1.
const WAKE_TOKEN: u64 = u64::MAX;

struct Entry {
    /// A relay socket, owned here; `None` for a listening socket, which the worker owns.
    socket: Option<UdpSocket>,
    fd: RawFd,
    addr: SocketAddr,
    generation: u32,
}

/// Relay sockets by slot; an epoll token is the slot and its generation, so an event fetched for
/// a socket closed since never reaches the socket that reused the slot.
pub(super) struct RelaySet {
    epoll: Epoll,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_addr: FastMap<SocketAddr, u32>,
    generation: u32,
    /// The fd `watch_wakeup` added.
    wakeup: RawFd,
    /// Relay sockets closed but kept open until `reap`: a send queued for one in the current
    /// burst still leaves from it, and its fd number cannot pass to a socket opened meanwhile.
    closing: Vec<UdpSocket>,
}

/// A ready socket, or the wake-up fd.
#[derive(Clone, Copy)]
pub(super) struct Ready {
    pub(super) fd: RawFd,
    pub(super) addr: SocketAddr,
    pub(super) role: Role,
    /// The epoll token, for `is_watched`.
    token: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A listening socket: datagrams from clients.
    Listener,
    /// A relay socket: datagrams from peers.
    Relay,
    /// The wake-up fd: the control plane has work for this worker.
    Wakeup,
}

impl RelaySet {
    pub(super) fn new() -> io::Result<Self> {
        Ok(RelaySet {
            epoll: Epoll::new(MAX_EVENTS)?,
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: FastMap::default(),
            generation: 0,
            wakeup: -1,
            closing: Vec::new(),
        })
    }

    pub(super) fn insert(&mut self, addr: SocketAddr, socket: UdpSocket) -> io::Result<()> {
        self.close(addr);
        let slot = self.watch(socket.as_raw_fd(), addr, Some(socket))?;
        self.by_addr.insert(addr, slot);
        Ok(())
    }

    /// Adds a listening socket, which the caller owns and keeps open for the life of the set, so
    /// that datagrams from clients and from peers are drained from one ready list.
    pub(super) fn watch_listener(&mut self, fd: RawFd, addr: SocketAddr) -> io::Result<()> {
        self.watch(fd, addr, None).map(|_| ())
    }

    /// Adds an fd (an eventfd, which the caller owns and keeps open for the life of the set) whose
    /// readability `wait` reports as a `Role::Wakeup` entry.
    pub(super) fn watch_wakeup(&mut self, fd: RawFd) -> io::Result<()> {
        self.epoll.add(fd, WAKE_TOKEN)?;
        self.wakeup = fd;
        Ok(())
    }

    fn watch(&mut self, fd: RawFd, addr: SocketAddr, socket: Option<UdpSocket>) -> io::Result<u32> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.generation = self.generation.wrapping_add(1);
        let token = u64::from(self.generation) << 32 | u64::from(slot);
        // Level-triggered: a socket left with datagrams after its share of a round stays ready.
        if let Err(e) = self.epoll.add(fd, token) {
            self.free.push(slot);
            return Err(e);
        }
        self.slots[slot as usize] = Some(Entry { socket, fd, addr, generation: self.generation });
        Ok(slot)
    }

    /// Stops watching the relay socket at `addr`; the socket itself closes at the next `reap`.
    pub(super) fn close(&mut self, addr: SocketAddr) {
        let Some(slot) = self.by_addr.remove(&addr) else { return };
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::take) else { return };
        self.free.push(slot);
        // The socket is still open (in `closing` below), so its fd names it; a failure would mean
        // it was never in the set, which `watch` rules out.
        let _ = self.epoll.remove(entry.fd);
        self.closing.extend(entry.socket);
    }

    /// Closes the sockets `close` set aside: call once the sends queued for them have left.
    pub(super) fn reap(&mut self) {
        self.closing.clear();
    }

    fn socket(&self, addr: &SocketAddr) -> Option<&UdpSocket> {
        let slot = *self.by_addr.get(addr)?;
        self.slots.get(slot as usize)?.as_ref()?.socket.as_ref()
    }

    /// The socket bound to `addr`, for batched sends to peers.
    pub(super) fn fd_of(&self, addr: &SocketAddr) -> Option<RawFd> {
        self.socket(addr).map(AsRawFd::as_raw_fd)
    }

    /// Sends one datagram from the relay socket bound to `relay`; `None` if there is none.
    pub(super) fn send_to(&self, relay: &SocketAddr, data: &[u8], to: SocketAddr) -> Option<io::Result<usize>> {
        self.socket(relay).map(|s| s.send_to(data, to))
    }

    /// Whether the socket `ready` listed is still in the set. A request served earlier in the same
    /// round may have closed it, and its fd number may since belong to another socket (a relay
    /// socket opened meanwhile, or another thread's connection), which must not be read as this.
    pub(super) fn is_watched(&self, ready: &Ready) -> bool {
        ready.role != Role::Relay || self.entry(ready.token).is_some()
    }

    /// The socket an epoll token names, unless it was closed since (its slot empty or reused).
    fn entry(&self, token: u64) -> Option<&Entry> {
        let (generation, slot) = ((token >> 32) as u32, token as u32);
        self.slots.get(slot as usize)?.as_ref().filter(|e| e.generation == generation)
    }

    /// The epoll fd: readable when some socket of the set may be (for a runtime to watch).
    pub(super) fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Fills `out` with the sockets ready now, without waiting; `out` holds fewer than the most
    /// one call returns when no other socket was ready.
    pub(super) fn ready(&mut self, out: &mut Vec<Ready>) -> io::Result<()> {
        self.wait(out, Duration::ZERO)
    }

    /// Like `ready`, but sleeps up to `timeout` (rounded up to whole milliseconds) for a first
    /// socket to become ready; `out` is empty when the time ran out or a signal interrupted.
    pub(super) fn wait(&mut self, out: &mut Vec<Ready>, timeout: Duration) -> io::Result<()> {
        out.clear();
        // Only a broken epoll fd fails here (EINTR comes back as no event).
        self.epoll.wait(timeout)?;
        for token in self.epoll.tokens() {
            if token == WAKE_TOKEN {
                let none: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
                out.push(Ready { fd: self.wakeup, addr: none, role: Role::Wakeup, token });
                continue;
            }
            if let Some(e) = self.entry(token) {
                let role = if e.socket.is_none() { Role::Listener } else { Role::Relay };
                out.push(Ready { fd: e.fd, addr: e.addr, role, token });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let a = s.local_addr().expect("address");
        (s, a)
    }

    #[test]
    fn a_socket_closed_after_the_poll_is_no_longer_watched_even_when_its_fd_comes_back() {
        let mut set = RelaySet::new().expect("epoll");
        let (socket, addr) = bound();
        set.insert(addr, socket).expect("insert");
        let (sender, _) = bound();
        sender.send_to(b"x", addr).expect("send");
        let mut ready = Vec::new();
        set.wait(&mut ready, Duration::from_secs(2)).expect("wait");
        assert_eq!(ready.len(), 1);
        assert!(set.is_watched(&ready[0]));

        // Closed during the round; the next socket takes the same slot (and, once reaped and
        // unless another test's thread took it first, the same fd number).
        set.close(addr);
        set.reap();
        let (next, next_addr) = bound();
        set.insert(next_addr, next).expect("insert");
        assert_eq!(set.by_addr.get(&next_addr).copied(), Some(ready[0].token as u32));
        assert!(!set.is_watched(&ready[0]));
    }

    #[test]
    fn a_closed_socket_can_still_send_until_reaped() {
        let mut set = RelaySet::new().expect("epoll");
        let (socket, addr) = bound();
        let fd = socket.as_raw_fd();
        set.insert(addr, socket).expect("insert");
        let (receiver, to) = bound();
        set.close(addr);
        assert!(set.fd_of(&addr).is_none(), "closed for the core");
        // What a burst queued before the close still leaves from the old socket.
        // SAFETY: `fd` is still open: the set holds the socket until `reap`.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sent = socket2::SockRef::from(&borrowed).send_to(b"x", &to.into()).expect("send from a closed socket");
        assert_eq!(sent, 1);
        let mut buf = [0u8; 4];
        receiver.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        assert_eq!(receiver.recv_from(&mut buf).expect("received").0, 1);
        set.reap();
        assert!(set.closing.is_empty());
    }
}
