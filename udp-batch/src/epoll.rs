//! A bare epoll set: the batched calls drain whole sockets, so a caller sleeping on many of them
//! needs only their readiness and a token of its own per fd, not a runtime's reactor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A level-triggered epoll set: a socket left with datagrams after its share of a round is
/// listed again by the next wait.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    /// Events filled by the last `wait`.
    ready: usize,
}

impl Epoll {
    /// A set that reports up to `max_events` ready fds per wait.
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)], ready: 0 })
    }

    /// Watches `fd` for readability; its events carry `token`. The caller keeps `fd` open while it
    /// is in the set (closing it removes it).
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: the set's fd is live; `ev` is a valid epoll_event the kernel copies; a stale or
        // foreign `fd` makes the call fail, it cannot touch memory.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd`. The caller must still hold `fd` open: removing a number that already
    /// names another file would remove that one.
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: the set's fd is live; a null event is allowed for EPOLL_CTL_DEL; a stale `fd`
        // makes the call fail, it cannot touch memory.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sleeps up to `timeout` (rounded up to whole milliseconds) for a first fd to become ready,
    /// and returns how many are; read their tokens with [`tokens`](Self::tokens). A signal ends
    /// the wait early with none.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        self.ready = 0;
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        let max = self.events.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: the events buffer has room for the `max` entries the kernel may write.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), max, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        self.ready = n as usize;
        Ok(self.ready)
    }

    /// The tokens of the fds the last `wait` found ready, in the kernel's order.
    pub fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.events[..self.ready].iter().map(|e| e.u64)
    }

    /// How many events one wait can return: a full wait means more fds may be ready.
    pub fn capacity(&self) -> usize {
        self.events.len()
    }
}

/// Readable when some fd of the set may be, for a runtime to watch the whole set as one fd.
impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback;

    #[test]
    fn a_readable_socket_is_reported_by_its_token_until_drained() {
        let mut set = Epoll::new(4).expect("epoll");
        let ((quiet, _), (busy, busy_addr)) = (loopback(), loopback());
        set.add(quiet.as_raw_fd(), 7).expect("add");
        set.add(busy.as_raw_fd(), 1 << 40).expect("add");
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 0);
        busy.send_to(b"x", busy_addr).expect("send");
        assert_eq!(set.wait(Duration::from_secs(2)).expect("wait"), 1);
        assert_eq!(set.tokens().collect::<Vec<_>>(), [1 << 40]);
        // Level-triggered: still listed while the datagram waits.
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 1);
        busy.recv(&mut [0u8; 4]).expect("recv");
        assert_eq!(set.wait(Duration::from_millis(1)).expect("wait"), 0);
        assert_eq!(set.tokens().count(), 0);
    }

    #[test]
    fn a_removed_socket_is_not_reported() {
        let mut set = Epoll::new(4).expect("epoll");
        let (socket, addr) = loopback();
        set.add(socket.as_raw_fd(), 3).expect("add");
        socket.send_to(b"x", addr).expect("send");
        assert_eq!(set.wait(Duration::from_secs(2)).expect("wait"), 1);
        set.remove(socket.as_raw_fd()).expect("remove");
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 0);
        assert!(set.remove(socket.as_raw_fd()).is_err(), "not in the set any more");
    }

    #[test]
    fn a_closed_fd_cannot_be_added() {
        let set = Epoll::new(1).expect("epoll");
        let fd = loopback().0.as_raw_fd();
        // The socket is dropped: the number names nothing (unless another test's thread reused
        // it, which is why only a failure is checked when one happens).
        if let Err(e) = set.add(fd, 0) {
            assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        }
    }
}
