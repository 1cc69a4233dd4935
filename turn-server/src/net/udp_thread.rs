//! A datagram worker's thread. It has no async runtime: the thread sleeps in `epoll_wait` on its
//! own socket set, so a datagram costs one wake-up, one `epoll_wait` and its share of a
//! `recvmmsg`/`sendmmsg`, with no reactor between the socket and the core (a runtime watching the
//! set would add a second, nested epoll and its scheduler to every wake-up). Timers become the
//! wait's timeout; the control plane reaches the thread through an eventfd in the same set.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::clock;
use super::datagram::{DatagramSide, NoStreams};
use super::udp::DatagramPath;

/// Serves the worker's sockets and timers until `on_wakeup` returns false (`Ok`) or the set
/// breaks (`Err`). `on_wakeup` runs whenever the wake-up fd was readable.
pub(super) fn serve(side: &DatagramSide, mut on_wakeup: impl FnMut() -> bool) -> io::Result<()> {
    let mut path = DatagramPath::new();
    let mut next_timer = side.run_timers(&NoStreams);
    loop {
        let timeout = clock::until(next_timer);
        // Only a broken epoll fd fails here (EINTR comes back as an empty list).
        side.relays.borrow_mut().wait(&mut path.ready, timeout)?;
        // Level-triggered: a socket left with datagrams after its batch is listed again by the
        // next wait, which then does not sleep, so every ready socket gets its turn in order.
        let round = path.serve_ready(side, &NoStreams);
        if round.woken && !on_wakeup() {
            return Ok(());
        }
        // The round's own clock read, taken as the wait returned, serves the timers too.
        if round.at >= next_timer {
            next_timer = side.run_timers(&NoStreams);
        }
    }
}

/// An eventfd: the control plane's doorbell for a worker thread.
pub(super) struct Wakeup(OwnedFd);

impl Wakeup {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the fd readable (it stays so until `clear`).
    pub(super) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. The only failure is a counter at its maximum,
        // which is readable already.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the fd unreadable again: called before the work it announces is looked at, so a ring
    /// that comes during that work is not lost.
    pub(super) fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing rung) leaves it untouched.
        unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_ring_stays_readable_until_cleared_and_rings_coalesce() {
        let w = Wakeup::new().expect("eventfd");
        assert!(!readable(w.fd()));
        w.ring();
        w.ring();
        assert!(readable(w.fd()));
        w.clear();
        assert!(!readable(w.fd()));
        w.clear();
        assert!(!readable(w.fd()));
    }
}
