//! An eventfd as a doorbell: a thread that sleeps in `epoll_wait` on its sockets (no runtime, so
//! no channel to await) learns that another thread has work for it when this fd, in the same set,
//! turns readable.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd used as a level-triggered doorbell.
pub struct Wakeup(OwnedFd);

impl Wakeup {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the fd readable (it stays so until `clear`).
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. The only failure is a counter at its maximum,
        // which is readable already.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the fd unreadable again: call it before looking at the work it announces, so a ring
    /// that comes during that work is not lost.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing rung) leaves it untouched.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for Wakeup {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Epoll;

    #[test]
    fn a_ring_stays_readable_until_cleared_and_rings_coalesce() {
        let mut set = Epoll::new(1).expect("epoll");
        let w = Wakeup::new().expect("eventfd");
        set.add(w.as_raw_fd(), 9).expect("add");
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 0);
        w.ring();
        w.ring();
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 1);
        w.clear();
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 0);
        w.clear();
        assert_eq!(set.wait(Duration::ZERO).expect("wait"), 0);
    }
}
