//! Just enough netlink for what the XDP side reads from the kernel: one request on a fresh
//! socket, its answer's messages (all of a dump's), and their attributes. Used for the neighbour
//! table (rtnetlink) and the devices' XDP features (the generic netlink `netdev` family).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const HEADER: usize = std::mem::size_of::<libc::nlmsghdr>();

/// One netlink message: its type and payload (after the header).
pub(crate) struct Message {
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// A request message: header (with `flags` besides NLM_F_REQUEST) and `payload`.
pub(crate) fn request(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let len = HEADER + payload.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence: one request per socket
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns it
    msg.extend_from_slice(payload);
    msg
}

/// An attribute (type, length, value, padded to 4 bytes), to append to a payload.
pub(crate) fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// The attributes in `data`, in order; stops at the first malformed one.
pub(crate) fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER ride in the type's top bits.
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[len.next_multiple_of(4).min(data.len())..];
        Some((kind, value))
    })
}

/// Sends `msg` on a new `protocol` socket and collects the answer: every message up to
/// NLMSG_DONE for a dump, else the first one. An error message is the errno it carries.
pub(crate) fn exchange(protocol: libc::c_int, msg: &[u8], dump: bool) -> io::Result<Vec<Message>> {
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers at once; the timeout only bounds a kernel that does not.
    let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: SO_RCVTIMEO takes a timeval; the pointer and length describe `timeout`.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // SAFETY: the pointer and length describe `msg`.
    if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 || parse(&buf[..n], &mut found)? || !dump {
            return Ok(found);
        }
    }
}

/// Adds the messages of one datagram of an answer; true once the answer is complete.
pub(crate) fn parse(mut data: &[u8], into: &mut Vec<Message>) -> io::Result<bool> {
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < HEADER || len > data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a truncated netlink message"));
        }
        let payload = &data[HEADER..len];
        match i32::from(kind) {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let code = payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ => into.push(Message { kind, payload: payload.to_vec() }),
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip() {
        let mut payload = vec![7u8; 4];
        payload.extend(attribute(1, &[1, 2, 3]));
        payload.extend(attribute(2, &42u32.to_ne_bytes()));
        let mut data = request(30, 0, &payload);
        data.extend(request(libc::NLMSG_DONE as u16, 0, &[]));
        let mut found = Vec::new();
        assert!(parse(&data, &mut found).unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, 30);
        let attrs: Vec<_> = attributes(&found[0].payload[4..]).collect();
        assert_eq!(attrs, [(1, &[1u8, 2, 3][..]), (2, &42u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn a_truncated_message_or_an_error_is_an_error() {
        let mut data = request(30, 0, &[0; 8]);
        data.truncate(data.len() - 2);
        assert!(parse(&data, &mut Vec::new()).is_err());
        let error = request(libc::NLMSG_ERROR as u16, 0, &(-libc::ENOENT).to_ne_bytes());
        let e = parse(&error, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
