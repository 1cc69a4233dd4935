//! Batched UDP I/O (`recvmmsg`/`sendmmsg`) and a small epoll set. On loopback the sender of a
//! datagram pays for most of its trip through the network stack, so the generator would cost as
//! much per datagram as the server it measures; batching takes the syscall entries off its bill
//! and keeps it ahead of the server on a machine with as few cores as this one.

use std::io;
use std::os::fd::RawFd;
use std::ptr;

use turn_server::net::socket::SegmentCmsg;

/// `n` receive buffers of `cap` bytes with their headers, filled by one `recvmmsg`. The header
/// arrays point into the buffer vectors' heap storage, which never moves once built, so moving a
/// `Batch` is fine; its raw pointers make it `!Send`, so each thread builds its own.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    cap: usize,
}

impl Batch {
    pub fn new(n: usize, cap: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; cap]).collect();
        let iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: cap }).collect();
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let names: Vec<libc::sockaddr_storage> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut batch = Batch { bufs, iovs, names, hdrs: Vec::with_capacity(n), cap };
        for i in 0..n {
            // SAFETY: msghdr is plain old data; the pointers set below complete it.
            let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_iov = &mut batch.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name = (&mut batch.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            batch.hdrs.push(hdr);
        }
        batch
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to `capacity()` datagrams; `flags` e.g. `MSG_WAITFORONE` on a socket with a
    /// receive timeout, or `MSG_DONTWAIT`. `Ok(0)` means nothing arrived in time.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for (hdr, iov) in self.hdrs.iter_mut().zip(self.iovs.iter_mut()) {
            iov.iov_len = self.cap;
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_len = 0;
        }
        let n = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points at live buffers of the sizes it declares.
        let rc = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n, flags, ptr::null_mut()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    /// The `i`th datagram of the last `recv`.
    pub fn data(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(self.cap);
        &self.bufs[i][..len]
    }

    /// Sends the first `count` datagrams of the last `recv` back to where each came from.
    /// Returns how many the kernel took.
    pub fn echo(&mut self, fd: RawFd, count: usize) -> io::Result<usize> {
        for i in 0..count {
            self.iovs[i].iov_len = self.hdrs[i].msg_len as usize;
        }
        send_all(fd, &mut self.hdrs[..count])
    }
}

/// Outgoing datagrams on a connected socket: `n` buffers the caller fills, sent as one GSO
/// message (one trip through the sender's half of the stack; the kernel still delivers separate
/// datagrams to a receiver that has not asked for UDP_GRO, as neither server has) or, where the
/// kernel refuses GSO, with one `sendmmsg`.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsg: SegmentCmsg,
    gso: bool,
}

impl SendBatch {
    pub fn new(n: usize, cap: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; cap]).collect();
        let mut iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 0 }).collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: plain old data; a null msg_name sends to the connected address.
                let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
                hdr
            })
            .collect();
        SendBatch { bufs, iovs, hdrs, cmsg: SegmentCmsg::default(), gso: true }
    }

    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Sends buffers `0..count`, each `len` bytes long. Returns how many the kernel took.
    pub fn send(&mut self, fd: RawFd, count: usize, len: usize) -> io::Result<usize> {
        for iov in &mut self.iovs[..count] {
            iov.iov_len = len;
        }
        if count > 1 && self.gso {
            match self.send_segmented(fd, count, len) {
                Ok(()) => return Ok(count),
                // A kernel or device without UDP GSO: plain batches from now on.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT)) => {
                    self.gso = false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        send_all(fd, &mut self.hdrs[..count])
    }

    /// One message of `count` segments of `len` bytes, gathered from the buffers.
    fn send_segmented(&mut self, fd: RawFd, count: usize, len: usize) -> io::Result<()> {
        let seg = u16::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.cmsg.write(seg);
        // SAFETY: plain old data; the iovecs point at live buffers of the lengths they declare,
        // and the control buffer holds the cmsg just written.
        let rc = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = self.iovs.as_mut_ptr();
            msg.msg_iovlen = count;
            msg.msg_control = self.cmsg.as_mut_ptr();
            msg.msg_controllen = SegmentCmsg::LEN as _;
            libc::sendmsg(fd, &msg, 0)
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn send_all(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let mut done = 0;
    // Bounded: a partial send is retried at most a few times, then the rest counts as not sent.
    for _ in 0..4 {
        if done == hdrs.len() {
            break;
        }
        let rest = &mut hdrs[done..];
        // SAFETY: the headers point at live buffers of the lengths they declare.
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                _ if done > 0 => break,
                _ => return Err(e),
            }
        }
        done += rc as usize;
    }
    Ok(done)
}

/// A level-triggered epoll set whose events carry the caller's index for each fd.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is closed in Drop.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events] })
    }

    pub fn add(&self, fd: RawFd, index: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: index };
        // SAFETY: both fds are live; ev is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Indices of ready fds, waiting at most `timeout_ms`.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<impl Iterator<Item = u64> + '_> {
        // SAFETY: the events buffer has room for the count passed.
        let n = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), self.events.len() as i32, timeout_ms) };
        let n = if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            0
        } else {
            n as usize
        };
        Ok(self.events[..n].iter().map(|e| e.u64))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}
