//! Batched UDP syscalls: one `recvmmsg` fills many slots, one `sendmmsg` sends many datagrams.
//! On loopback the syscall entry is a large share of a datagram's cost, and reading a burst in
//! one call also means one clock read and one borrow of the core per burst.
//!
//! Slots are allocated zeroed and untouched, so the kernel maps only the pages datagrams are
//! written to: a batch of 64 KiB slots costs resident memory in proportion to the traffic seen.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

use super::socket::SegmentCmsg;

/// Receive slots with their headers, for one socket at a time. The headers point into the boxed
/// slices' heap storage, which never moves, so a `RecvBatch` may move; its raw pointers keep it
/// on the thread that made it.
pub(super) struct RecvBatch {
    buf: Box<[u8]>,
    slot: usize,
    headroom: usize,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl RecvBatch {
    /// `n` slots, each receiving up to `max` bytes after `headroom` bytes (where the core frames
    /// peer data in place) and with `tail` bytes after it (padding).
    pub(super) fn new(n: usize, headroom: usize, max: usize, tail: usize) -> Self {
        let slot = headroom + max + tail;
        let mut buf = vec![0u8; n * slot].into_boxed_slice();
        let base = buf.as_mut_ptr();
        let mut iovs: Box<[libc::iovec]> = (0..n)
            // SAFETY: i * slot + headroom stays inside `buf` (n * slot bytes long).
            .map(|i| libc::iovec { iov_base: unsafe { base.add(i * slot + headroom) }.cast(), iov_len: max })
            .collect();
        // SAFETY: sockaddr_storage is plain old data; all zeroes is AF_UNSPEC.
        let mut names: Box<[libc::sockaddr_storage]> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
        let hdrs = (0..n)
            .map(|i| {
                // SAFETY: plain old data, completed below.
                let mut hdr: libc::mmsghdr = unsafe { mem::zeroed() };
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
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for hdr in self.hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let n = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points at live iovecs, slots and names of the sizes it declares.
        let rc = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n, libc::MSG_DONTWAIT, ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Datagram `i` of the last `recv`: its sender, the whole slot, and where the payload starts
    /// and ends in it. `None` for a sender of an unknown family.
    pub(super) fn slot_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8], usize, usize)> {
        let hdr = self.hdrs.get(i)?;
        let from = to_socket_addr(&self.names[i], hdr.msg_hdr.msg_namelen)?;
        let len = (hdr.msg_len as usize).min(self.iovs[i].iov_len);
        let slot = self.buf.get_mut(i * self.slot..(i + 1) * self.slot)?;
        Some((from, slot, self.headroom, self.headroom + len))
    }

    /// Slot `i` with its payload, for sends that point into it.
    fn slot(&self, i: usize) -> &[u8] {
        &self.buf[i * self.slot..(i + 1) * self.slot]
    }

    pub(super) fn capacity(&self) -> usize {
        self.hdrs.len()
    }
}

/// One datagram to send out of a `RecvBatch` slot: `slot[start..end]` to `to` through `fd`.
#[derive(Clone, Copy)]
pub(super) struct Out {
    pub(super) fd: RawFd,
    pub(super) slot: usize,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) to: SocketAddr,
}

/// The kernel's cap on segments in one GSO send (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send: the payload of one IPv4 datagram, less headers.
const MAX_GSO_BYTES: usize = 65_000;

/// Datagrams queued during one receive batch, sent from its slots before the next receive.
/// Consecutive datagrams through one socket to one destination, all of one size but the last
/// (a burst of media packets, typically), leave as one GSO send: the kernel walks the route and
/// builds headers once for the run instead of once per datagram. The receiver still gets
/// separate datagrams.
pub(super) struct SendQueue {
    out: Vec<Out>,
    /// (first index in `out`, datagram count, segment size) per message.
    runs: Vec<(usize, usize, usize)>,
    iovs: Vec<libc::iovec>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    cmsgs: Vec<SegmentCmsg>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendQueue {
    pub(super) fn new(n: usize) -> Self {
        SendQueue {
            out: Vec::with_capacity(n),
            runs: Vec::with_capacity(n),
            iovs: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            cmsgs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        }
    }

    pub(super) fn push(&mut self, out: Out) {
        self.out.push(out);
    }

    /// Sends everything queued, one `sendmmsg` per run of messages through the same socket.
    /// A full socket buffer drops the rest of that run (as a plain `sendto` would drop them);
    /// any other error drops only the message it names.
    pub(super) fn flush(&mut self, from: &RecvBatch) {
        self.out.retain(|o| o.slot < from.capacity() && o.start <= o.end && o.end <= from.slot);
        if self.out.is_empty() {
            return;
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
            // SAFETY: plain old data, completed below.
            let mut hdr: libc::mmsghdr = unsafe { mem::zeroed() };
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
        let mut r = 0;
        while r < self.runs.len() {
            let fd = self.out[self.runs[r].0].fd;
            let n = self.runs[r..].iter().take_while(|run| self.out[run.0].fd == fd).count();
            send_run(fd, &mut self.hdrs[r..r + n]);
            r += n;
        }
        self.out.clear();
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
            while seg > 0 && j < self.out.len() && j - i < MAX_SEGMENTS {
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

/// Sends `hdrs` through `fd`, dropping what the kernel refuses.
fn send_run(fd: RawFd, hdrs: &mut [libc::mmsghdr]) {
    let mut done = 0;
    while done < hdrs.len() {
        let rest = &mut hdrs[done..];
        // SAFETY: the headers point at live iovecs (into the batch's slots), addresses and cmsgs.
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if rc > 0 {
            done += rc as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A full buffer: what is left would meet it too, and UDP may drop.
            Some(libc::EAGAIN | libc::ENOBUFS) => return,
            _ if rest[0].msg_hdr.msg_controllen > 0 => {
                // GSO refused (a device without it, a segment above the MTU): one by one.
                send_each(fd, &rest[0]);
                done += 1;
            }
            _ => {
                // An ICMP-reported error or a refused destination concerns this message only.
                tracing::trace!(error = %e, "dropped datagram");
                done += 1;
            }
        }
    }
}

/// Sends the segments of a GSO message as separate datagrams.
fn send_each(fd: RawFd, hdr: &libc::mmsghdr) {
    let m = &hdr.msg_hdr;
    for k in 0..m.msg_iovlen {
        // SAFETY: `msg_iov` points at `msg_iovlen` live iovecs, `msg_name` at an address of
        // `msg_namelen` bytes.
        let rc = unsafe {
            let iov = &*m.msg_iov.add(k);
            libc::sendto(fd, iov.iov_base, iov.iov_len, 0, m.msg_name.cast(), m.msg_namelen)
        };
        if rc < 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "dropped datagram");
        }
    }
}

fn to_socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(name.ss_family) {
        libc::AF_INET if len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is large enough.
            let sin = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

fn from_socket_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: plain old data; the family-specific fields are written below.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:3478", "[2001:db8::1]:49152"] {
            let addr: SocketAddr = a.parse().expect("literal");
            let (storage, len) = from_socket_addr(&addr);
            assert_eq!(to_socket_addr(&storage, len), Some(addr));
        }
    }

    #[test]
    fn receives_a_burst_and_sends_it_back_from_the_slots() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (a_addr, b_addr) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
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
        queue.flush(&batch);
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
        let src = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (a_addr, c_addr) = (a.local_addr().expect("addr"), c.local_addr().expect("addr"));
        let sizes = [10usize, 10, 10, 5, 10, 10, 7];
        let dests = [a_addr, a_addr, a_addr, a_addr, a_addr, c_addr, a_addr];
        for (i, n) in sizes.iter().enumerate() {
            src.send_to(&vec![i as u8; *n], src.local_addr().expect("addr")).expect("send");
        }
        let mut batch = RecvBatch::new(8, 8, 100, 4);
        assert_eq!(batch.recv(src.as_raw_fd()).expect("recv"), sizes.len());
        let mut queue = SendQueue::new(8);
        for (i, to) in dests.iter().enumerate() {
            let (_, _, start, end) = batch.slot_mut(i).expect("slot");
            queue.push(Out { fd: src.as_raw_fd(), slot: i, start, end, to: *to });
        }
        queue.flush(&batch);
        assert_eq!(queue.runs.iter().map(|r| r.1).collect::<Vec<_>>(), [4, 1, 1, 1]);
        let mut buf = [0u8; 64];
        for (i, (n, to)) in sizes.iter().zip(dests).enumerate() {
            let sock = if to == a_addr { &a } else { &c };
            let (got, _) = sock.recv_from(&mut buf).expect("datagram");
            assert_eq!((got, buf[0]), (*n, i as u8));
        }
    }
}
