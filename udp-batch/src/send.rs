//! Batched sends out of receive slots: what a burst relays leaves with `sendmmsg` from the slots
//! it arrived in, without a copy. Consecutive datagrams through one socket to one destination,
//! all of one size but the last (a burst of media packets, typically), leave as one GSO send: the
//! kernel walks the route and builds headers once for the run instead of once per datagram. The
//! receiver still gets separate datagrams.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::addr::{from_socket_addr, zeroed_mmsghdr};
use crate::cmsg::SegmentCmsg;
use crate::RecvBatch;

/// One datagram to send out of a `RecvBatch` slot: `slot[start..end]` to `to` through `fd`.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub fd: RawFd,
    pub slot: usize,
    pub start: usize,
    pub end: usize,
    pub to: SocketAddr,
}

/// The kernel's cap on segments in one GSO send (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send: the payload of one IPv4 datagram, less headers.
const MAX_GSO_BYTES: usize = 65_000;

/// Datagrams queued during one receive batch, sent from its slots before the next receive.
pub struct SendQueue {
    out: Vec<Out>,
    /// (first index in `out`, datagram count, segment size) per message.
    runs: Vec<(usize, usize, usize)>,
    iovs: Vec<libc::iovec>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    cmsgs: Vec<SegmentCmsg>,
    hdrs: Vec<libc::mmsghdr>,
    /// Whether runs to one destination may leave as one GSO message.
    gso: bool,
}

impl SendQueue {
    /// A queue with room for `n` datagrams before it grows (one receive batch's worth).
    pub fn new(n: usize) -> Self {
        SendQueue {
            out: Vec::with_capacity(n),
            runs: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            cmsgs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
            gso: true,
        }
    }

    /// Every datagram its own message, never a GSO run (see `SendBatch::without_gso`).
    pub fn without_gso(mut self) -> Self {
        self.gso = false;
        self
    }

    pub fn push(&mut self, out: Out) {
        self.out.push(out);
    }

    /// Sends everything queued, one `sendmmsg` per run of messages through the same socket, and
    /// returns how many datagrams the kernel took. A full socket buffer drops the rest of that run
    /// (as a plain `sendto` would drop them); any other error drops only the message it names.
    /// Entries that do not lie inside a slot of `from` are dropped unsent.
    pub fn flush(&mut self, from: &RecvBatch) -> usize {
        self.out.retain(|o| o.slot < from.capacity() && o.start <= o.end && o.end <= from.slot_size());
        if self.out.is_empty() {
            return 0;
        }
        self.group();
        self.iovs.clear();
        for o in &self.out {
            let data = &from.slot(o.slot)[o.start..o.end];
            self.iovs.push(libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() });
        }
        self.names.clear();
        self.cmsgs.clear();
        for &(first, count, seg) in &self.runs {
            self.names.push(from_socket_addr(&self.out[first].to));
            let mut cmsg = SegmentCmsg::default();
            if count > 1 {
                cmsg.write(seg as u16);
            }
            self.cmsgs.push(cmsg);
        }
        // Pointers into the vectors above are taken only now that none of them grows again.
        self.hdrs.clear();
        for (r, &(first, count, _)) in self.runs.iter().enumerate() {
            let mut hdr = zeroed_mmsghdr();
            hdr.msg_hdr.msg_iov = &mut self.iovs[first];
            hdr.msg_hdr.msg_iovlen = count as _;
            hdr.msg_hdr.msg_name = (&mut self.names[r].0 as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = self.names[r].1;
            if count > 1 {
                hdr.msg_hdr.msg_control = self.cmsgs[r].as_mut_ptr();
                hdr.msg_hdr.msg_controllen = SegmentCmsg::LEN as _;
            }
            self.hdrs.push(hdr);
        }
        let mut sent = 0;
        let mut r = 0;
        while r < self.runs.len() {
            let fd = self.out[self.runs[r].0].fd;
            let n = self.runs[r..].iter().take_while(|run| self.out[run.0].fd == fd).count();
            sent += send_run(fd, &mut self.hdrs[r..r + n]).0;
            r += n;
        }
        self.out.clear();
        sent
    }

    /// Splits `out` into messages: runs for GSO where socket, destination and size allow.
    fn group(&mut self) {
        self.runs.clear();
        let mut i = 0;
        while i < self.out.len() {
            let first = self.out[i];
            let seg = first.end - first.start;
            let mut j = i + 1;
            let mut total = seg;
            while self.gso && seg > 0 && j < self.out.len() && j - i < MAX_SEGMENTS {
                let o = self.out[j];
                let len = o.end - o.start;
                if o.fd != first.fd || o.to != first.to || len > seg || len == 0 || total + len > MAX_GSO_BYTES {
                    break;
                }
                total += len;
                j += 1;
                if len < seg {
                    break; // only the last segment may be shorter
                }
            }
            self.runs.push((i, j - i, seg));
            i = j;
        }
    }
}

/// Sends `hdrs` through `fd`, dropping what the kernel refuses; returns the datagrams sent and the
/// last error met (for a caller that must tell a dead destination from a busy one).
pub(crate) fn send_run(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> (usize, Option<io::Error>) {
    let (mut done, mut sent, mut error) = (0, 0, None);
    while done < hdrs.len() {
        let rest = &mut hdrs[done..];
        // SAFETY: the headers point at live iovecs (into the caller's buffers), addresses and cmsgs.
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if rc > 0 {
            sent += rest[..rc as usize].iter().map(|h| h.msg_hdr.msg_iovlen).sum::<usize>();
            done += rc as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A full buffer: what is left would meet it too, and UDP may drop.
            Some(libc::EAGAIN | libc::ENOBUFS) => {
                error = Some(e);
                break;
            }
            _ if rest[0].msg_hdr.msg_controllen > 0 => {
                // GSO refused (a device without it, a segment above the MTU): one by one.
                sent += send_each(fd, &rest[0]);
                done += 1;
            }
            _ => {
                // An ICMP-reported error or a refused destination concerns this message only.
                tracing::trace!(error = %e, "dropped datagram");
                error = Some(e);
                done += 1;
            }
        }
    }
    (sent, error)
}

/// Sends the segments of a GSO message as separate datagrams; returns how many went.
fn send_each(fd: RawFd, hdr: &libc::mmsghdr) -> usize {
    let m = &hdr.msg_hdr;
    let mut sent = 0;
    for k in 0..m.msg_iovlen {
        // SAFETY: `msg_iov` points at `msg_iovlen` live iovecs, `msg_name` at an address of
        // `msg_namelen` bytes (or is null on a connected socket).
        let rc = unsafe {
            let iov = &*m.msg_iov.add(k);
            libc::sendto(fd, iov.iov_base, iov.iov_len, 0, m.msg_name.cast(), m.msg_namelen)
        };
        if rc < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "dropped datagram");
        } else {
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_burst_and_sends_it_back_from_the_slots() {
        let ((a, a_addr), (b, b_addr)) = (loopback(), loopback());
        for i in 0..5u8 {
            a.send_to(&[i; 10], b_addr).expect("send");
        }
        let mut batch = RecvBatch::new(4, 8, 100, 4);
        assert_eq!(batch.recv(b.as_raw_fd()).expect("recv"), 4);
        let mut queue = SendQueue::new(4);
        for i in 0..4 {
            let (from, slot, start, end) = batch.slot_mut(i).expect("slot");
            assert_eq!((from, end - start, slot[start]), (a_addr, 10, i as u8));
            queue.push(Out { fd: b.as_raw_fd(), slot: i, start, end, to: a_addr });
        }
        assert_eq!(queue.flush(&batch), 4);
        assert_eq!(batch.recv(b.as_raw_fd()).expect("recv"), 1);
        assert_eq!(batch.recv(b.as_raw_fd()).map_err(|e| e.kind()).err(), Some(io::ErrorKind::WouldBlock));
        let mut buf = [0u8; 16];
        for i in 0..4u8 {
            let (n, from) = a.recv_from(&mut buf).expect("echo");
            assert_eq!((n, from, buf[0]), (10, b_addr, i));
        }
    }

    #[test]
    fn runs_of_one_size_to_one_destination_arrive_as_separate_datagrams() {
        let ((src, src_addr), (a, a_addr), (c, c_addr)) = (loopback(), loopback(), loopback());
        let sizes = [10usize, 10, 10, 5, 10, 10, 7];
        let dests = [a_addr, a_addr, a_addr, a_addr, a_addr, c_addr, a_addr];
        for (i, n) in sizes.iter().enumerate() {
            src.send_to(&vec![i as u8; *n], src_addr).expect("send");
        }
        let mut batch = RecvBatch::new(8, 8, 100, 4);
        assert_eq!(batch.recv(src.as_raw_fd()).expect("recv"), sizes.len());
        let mut queue = SendQueue::new(8);
        for (i, to) in dests.iter().enumerate() {
            let (_, _, start, end) = batch.slot_mut(i).expect("slot");
            queue.push(Out { fd: src.as_raw_fd(), slot: i, start, end, to: *to });
        }
        assert_eq!(queue.flush(&batch), sizes.len());
        assert_eq!(queue.runs.iter().map(|r| r.1).collect::<Vec<_>>(), [4, 1, 1, 1]);
        let mut buf = [0u8; 64];
        for (i, (n, to)) in sizes.iter().zip(dests).enumerate() {
            let sock = if to == a_addr { &a } else { &c };
            let (got, _) = sock.recv_from(&mut buf).expect("datagram");
            assert_eq!((got, buf[0]), (*n, i as u8));
        }
    }

    #[test]
    fn entries_outside_the_slots_are_dropped_unsent() {
        let (s, to) = loopback();
        let batch = RecvBatch::new(2, 0, 16, 0);
        let mut queue = SendQueue::new(2);
        queue.push(Out { fd: s.as_raw_fd(), slot: 2, start: 0, end: 1, to });
        queue.push(Out { fd: s.as_raw_fd(), slot: 0, start: 4, end: 17, to });
        assert_eq!(queue.flush(&batch), 0);
        s.set_nonblocking(true).expect("nonblocking");
        assert_eq!(s.recv(&mut [0u8; 4]).map_err(|e| e.kind()).err(), Some(io::ErrorKind::WouldBlock));
    }
}
