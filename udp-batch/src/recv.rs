//! Batched receives: one `recvmmsg` fills many slots. On loopback the syscall entry is a large
//! share of a datagram's cost, and reading a burst in one call also lets the caller hand the burst
//! on under one clock read.
//!
//! Slots are allocated zeroed and untouched, so the kernel maps only the pages datagrams are
//! written to: a batch of 64 KiB slots costs resident memory in proportion to the traffic seen.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;

use crate::addr::{to_socket_addr, zeroed_mmsghdr, zeroed_storage};

/// Receive slots with their headers, for one socket at a time. The headers point into the boxed
/// slices' heap storage, which never moves, so a `RecvBatch` may move; its raw pointers keep it
/// on the thread that made it.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot: usize,
    headroom: usize,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl RecvBatch {
    /// `n` slots, each receiving up to `max` bytes after `headroom` bytes (where the caller may
    /// frame the payload in place) and with `tail` bytes after it (padding).
    pub fn new(n: usize, headroom: usize, max: usize, tail: usize) -> Self {
        let slot = headroom + max + tail;
        let mut buf = vec![0u8; n * slot].into_boxed_slice();
        let base = buf.as_mut_ptr();
        let mut iovs: Box<[libc::iovec]> = (0..n)
            // SAFETY: i * slot + headroom stays inside `buf` (n * slot bytes long).
            .map(|i| libc::iovec { iov_base: unsafe { base.add(i * slot + headroom) }.cast(), iov_len: max })
            .collect();
        let mut names: Box<[libc::sockaddr_storage]> = (0..n).map(|_| zeroed_storage()).collect();
        let hdrs = (0..n)
            .map(|i| {
                let mut hdr = zeroed_mmsghdr();
                hdr.msg_hdr.msg_iov = &mut iovs[i];
                hdr.msg_hdr.msg_iovlen = 1;
                hdr.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                hdr
            })
            .collect();
        RecvBatch { buf, slot, headroom, iovs, names, hdrs }
    }

    /// Reads what is queued on `fd`, up to one datagram per slot, without blocking. Returns how
    /// many slots were filled; `WouldBlock` when nothing was queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_with(fd, libc::MSG_DONTWAIT)
    }

    /// Like [`recv`](Self::recv) with the caller's `recvmmsg` flags, e.g. `MSG_WAITFORONE` on a
    /// blocking socket with a receive timeout (which then ends as `WouldBlock`).
    pub fn recv_with(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for hdr in self.hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let n = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points at live iovecs, slots and names of the sizes it declares.
        let rc = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n, flags, ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Datagram `i` of the last receive: its sender, the whole slot, and where the payload starts
    /// and ends in it. `None` for a sender of an unknown family.
    pub fn slot_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8], usize, usize)> {
        let hdr = self.hdrs.get(i)?;
        let from = to_socket_addr(&self.names[i], hdr.msg_hdr.msg_namelen)?;
        let len = self.len(i);
        let slot = self.buf.get_mut(i * self.slot..(i + 1) * self.slot)?;
        Some((from, slot, self.headroom, self.headroom + len))
    }

    /// The payload of datagram `i` of the last receive (empty past the datagrams received).
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = i * self.slot + self.headroom;
        self.buf.get(start..start + self.len(i)).unwrap_or_default()
    }

    fn len(&self, i: usize) -> usize {
        match (self.hdrs.get(i), self.iovs.get(i)) {
            (Some(hdr), Some(iov)) => (hdr.msg_len as usize).min(iov.iov_len),
            _ => 0,
        }
    }

    /// Slot `i`, for sends that point into it.
    pub(crate) fn slot(&self, i: usize) -> &[u8] {
        &self.buf[i * self.slot..(i + 1) * self.slot]
    }

    /// Bytes in one slot: headroom, the largest payload and the tail.
    pub(crate) fn slot_size(&self) -> usize {
        self.slot
    }

    /// How many datagrams one receive can return.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_burst_lands_after_the_headroom_with_its_senders() {
        let ((a, a_addr), (b, b_addr)) = (loopback(), loopback());
        for i in 0..3u8 {
            a.send_to(&[i; 7], b_addr).expect("send");
        }
        let mut batch = RecvBatch::new(4, 36, 100, 4);
        assert_eq!(batch.recv(b.as_raw_fd()).expect("recv"), 3);
        for i in 0..3 {
            assert_eq!(batch.payload(i), [i as u8; 7]);
            let (from, slot, start, end) = batch.slot_mut(i).expect("slot");
            assert_eq!((from, slot.len(), start, end), (a_addr, 140, 36, 43));
        }
        assert!(batch.payload(3).is_empty() && batch.payload(9).is_empty());
        let e = batch.recv(b.as_raw_fd()).expect_err("nothing queued");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_datagram_longer_than_a_slot_is_cut_to_it() {
        let ((a, _), (b, b_addr)) = (loopback(), loopback());
        a.send_to(&[9; 50], b_addr).expect("send");
        let mut batch = RecvBatch::new(2, 0, 16, 0);
        assert_eq!(batch.recv(b.as_raw_fd()).expect("recv"), 1);
        assert_eq!(batch.payload(0), [9; 16]);
    }
}
