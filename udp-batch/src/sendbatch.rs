//! Caller-filled datagrams on a connected socket, sent as one GSO message: one trip through the
//! sender's half of the stack for a whole burst. The kernel still delivers separate datagrams to
//! a receiver that has not asked for UDP_GRO. This is the load generator's side of the bench: on
//! loopback the sender pays for most of a datagram's trip, so without it the generator would cost
//! as much per datagram as the server it measures.

use std::io;
use std::os::fd::RawFd;

use crate::addr::zeroed_mmsghdr;
use crate::cmsg::SegmentCmsg;
use crate::send::send_run;

/// `n` buffers the caller fills, sent as one GSO message or, where the kernel refuses GSO, with
/// one `sendmmsg`. The headers point into the buffers' heap storage, which never moves once
/// built, so a `SendBatch` may move; its raw pointers keep it on the thread that made it.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsg: SegmentCmsg,
    gso: bool,
}

impl SendBatch {
    /// `n` buffers of `cap` bytes each.
    pub fn new(n: usize, cap: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; cap]).collect();
        let mut iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 0 }).collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // A null msg_name sends to the connected address.
                let mut hdr = zeroed_mmsghdr();
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
                hdr
            })
            .collect();
        SendBatch { bufs, iovs, hdrs, cmsg: SegmentCmsg::default(), gso: true }
    }

    /// Never one segmented (GSO) message: every datagram its own message in the `sendmmsg`, as
    /// datagrams arrive from a network card. (On loopback a GSO message reaches the receiver's
    /// ingress as one packet, which a kernel fast path for single datagrams passes by.)
    pub fn without_gso(mut self) -> Self {
        self.gso = false;
        self
    }

    /// Buffer `i`, to fill before a send.
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Sends the first `len` bytes of buffers `0..count` as `count` datagrams on the connected
    /// socket `fd`. Returns how many the kernel took; an error only when it took none for a
    /// reason other than a full buffer.
    pub fn send(&mut self, fd: RawFd, count: usize, len: usize) -> io::Result<usize> {
        let count = count.min(self.bufs.len());
        let len = self.bufs.first().map_or(0, |b| len.min(b.len()));
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
        match send_run(fd, &mut self.hdrs[..count]) {
            (0, Some(e)) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            (sent, _) => Ok(sent),
        }
    }

    /// One message of `count` segments of `len` bytes, gathered from the buffers.
    fn send_segmented(&mut self, fd: RawFd, count: usize, len: usize) -> io::Result<()> {
        let seg = u16::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.cmsg.write(seg);
        let mut hdr = zeroed_mmsghdr();
        let msg = &mut hdr.msg_hdr;
        msg.msg_iov = self.iovs.as_mut_ptr();
        msg.msg_iovlen = count;
        msg.msg_control = self.cmsg.as_mut_ptr();
        msg.msg_controllen = SegmentCmsg::LEN as _;
        // SAFETY: the iovecs point at live buffers of the lengths they declare (at most each
        // buffer's size), and the control buffer holds the cmsg just written.
        let rc = unsafe { libc::sendmsg(fd, msg, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_burst_on_a_connected_socket_arrives_as_separate_datagrams() {
        let ((rx, rx_addr), (tx, _)) = (loopback(), loopback());
        tx.connect(rx_addr).expect("connect");
        let mut batch = SendBatch::new(4, 32);
        for i in 0..4 {
            batch.buf_mut(i)[..12].fill(i as u8);
        }
        assert_eq!(batch.send(tx.as_raw_fd(), 3, 12).expect("send"), 3);
        assert_eq!(batch.send(tx.as_raw_fd(), 1, 12).expect("send"), 1);
        let mut buf = [0u8; 64];
        for i in [0u8, 1, 2, 0] {
            let n = rx.recv(&mut buf).expect("datagram");
            assert_eq!((n, buf[0], buf[11]), (12, i, i));
        }
    }

    #[test]
    fn a_send_nobody_can_take_is_an_error() {
        let (tx, _) = loopback();
        // Not connected: there is no destination for a null msg_name.
        let mut batch = SendBatch::new(2, 8);
        assert!(batch.send(tx.as_raw_fd(), 1, 8).is_err());
    }
}
