//! Every UDP socket of a worker, listening and relay sockets alike, in one epoll set, which tokio
//! watches as a single fd. One task drains whichever sockets are ready, so a worker with ten
//! thousand allocations has one task and one reactor registration for them instead of ten
//! thousand, a datagram costs no task wake-up of its own, both directions share one wake-up, and
//! the order of service follows the kernel's ready list.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;

use crate::proto::FastMap;

/// Ready sockets fetched per `epoll_wait`.
pub(super) const MAX_EVENTS: usize = 64;

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
    /// Shared with the relay task, which awaits it without borrowing the set.
    epoll: Rc<AsyncFd<OwnedFd>>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_addr: FastMap<SocketAddr, u32>,
    generation: u32,
    events: Vec<libc::epoll_event>,
}

/// A ready socket.
#[derive(Clone, Copy)]
pub(super) struct Ready {
    pub(super) fd: RawFd,
    pub(super) addr: SocketAddr,
    /// A listening socket (datagrams from clients), else a relay socket (from peers).
    pub(super) listener: bool,
}

impl RelaySet {
    /// Must be called inside a tokio runtime (the epoll fd registers with its reactor).
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped, which
        // happens only with the AsyncFd that owns it.
        let epoll = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(RelaySet {
            epoll: Rc::new(epoll),
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: FastMap::default(),
            generation: 0,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
        })
    }

    pub(super) fn insert(&mut self, addr: SocketAddr, socket: UdpSocket) -> io::Result<()> {
        self.remove(addr);
        let slot = self.watch(socket.as_raw_fd(), addr, Some(socket))?;
        self.by_addr.insert(addr, slot);
        Ok(())
    }

    /// Adds a listening socket, which the caller owns and keeps open for the life of the set, so
    /// that datagrams from clients and from peers are drained from one ready list.
    pub(super) fn watch_listener(&mut self, fd: RawFd, addr: SocketAddr) -> io::Result<()> {
        self.watch(fd, addr, None).map(|_| ())
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
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: both fds are live; `ev` is a valid epoll_event.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            self.free.push(slot);
            return Err(io::Error::last_os_error());
        }
        self.slots[slot as usize] = Some(Entry { socket, fd, addr, generation: self.generation });
        Ok(slot)
    }

    /// Closes the socket (closing removes it from the epoll set).
    pub(super) fn remove(&mut self, addr: SocketAddr) {
        if let Some(slot) = self.by_addr.remove(&addr) {
            if let Some(entry) = self.slots.get_mut(slot as usize) {
                *entry = None;
                self.free.push(slot);
            }
        }
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

    /// What the datagram task awaits: readable when some socket of the set may be.
    pub(super) fn waiter(&self) -> Rc<AsyncFd<OwnedFd>> {
        self.epoll.clone()
    }

    /// Fills `out` with the sockets ready now, without waiting; `out` holds fewer than the most
    /// one call returns when no other socket was ready.
    pub(super) fn ready(&mut self, out: &mut Vec<Ready>) -> io::Result<()> {
        out.clear();
        // SAFETY: the events buffer holds MAX_EVENTS entries.
        let n =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), MAX_EVENTS as libc::c_int, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        for ev in &self.events[..n as usize] {
            let token = ev.u64;
            let (generation, slot) = ((token >> 32) as u32, token as u32);
            if let Some(Some(e)) = self.slots.get(slot as usize) {
                if e.generation == generation {
                    out.push(Ready { fd: e.fd, addr: e.addr, listener: e.socket.is_none() });
                }
            }
        }
        Ok(())
    }
}
