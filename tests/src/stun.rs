//! A minimal, independent STUN codec for probes: Binding and unauthenticated Allocate requests,
//! and the response fields the tests look at (class, error code, XOR-MAPPED-ADDRESS).
//!
//! Written from RFC 8489 directly rather than with the server's own codec, so a bug shared by
//! both sides cannot hide.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const ALLOCATE_REQUEST: u16 = 0x0003;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const ATTR_LIFETIME: u16 = 0x000D;

/// The class bits of a STUN message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// The parts of a response that the tests check.
#[derive(Debug, Clone)]
pub struct Response {
    pub method: u16,
    pub class: Class,
    pub transaction_id: [u8; 12],
    pub error_code: Option<u16>,
    pub xor_mapped_address: Option<SocketAddr>,
    /// LIFETIME, in seconds (Allocate and Refresh responses).
    pub lifetime: Option<u32>,
}

/// A fresh random transaction id.
pub fn transaction_id() -> [u8; 12] {
    rand::random()
}

/// A Binding request with no attributes.
pub fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    header(BINDING_REQUEST, 0, tid)
}

/// An Allocate request with only REQUESTED-TRANSPORT=UDP: a server answers it with 401.
pub fn unauthenticated_allocate(tid: [u8; 12]) -> Vec<u8> {
    let mut msg = header(ALLOCATE_REQUEST, 8, tid);
    msg.extend_from_slice(&ATTR_REQUESTED_TRANSPORT.to_be_bytes());
    msg.extend_from_slice(&4u16.to_be_bytes());
    msg.extend_from_slice(&[17, 0, 0, 0]);
    msg
}

fn header(msg_type: u16, len: u16, tid: [u8; 12]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(20 + usize::from(len));
    msg.extend_from_slice(&msg_type.to_be_bytes());
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    msg.extend_from_slice(&tid);
    msg
}

/// Parses a STUN message; `None` if it is not one (or is truncated).
pub fn parse(buf: &[u8]) -> Option<Response> {
    if buf.len() < 20 || buf[0] & 0xC0 != 0 {
        return None;
    }
    let msg_type = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE || buf.len() < 20 + len {
        return None;
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&buf[8..20]);
    let class = match ((msg_type >> 7) & 0b10) | ((msg_type >> 4) & 0b1) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    let method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2);
    let mut response =
        Response { method, class, transaction_id, error_code: None, xor_mapped_address: None, lifetime: None };
    let mut attrs = &buf[20..20 + len];
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen)?;
        match kind {
            ATTR_XOR_MAPPED_ADDRESS => {
                response.xor_mapped_address = xor_address(value, &transaction_id);
            }
            ATTR_LIFETIME if value.len() == 4 => {
                response.lifetime = Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]));
            }
            ATTR_ERROR_CODE if value.len() >= 4 => {
                response.error_code = Some(u16::from(value[2] & 0x07) * 100 + u16::from(value[3]));
            }
            _ => {}
        }
        let padded = (4 + alen + 3) & !3;
        attrs = attrs.get(padded..).unwrap_or_default();
    }
    Some(response)
}

fn xor_address(value: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match family {
        0x01 => {
            let raw = value.get(4..8)?;
            let mut ip = [0u8; 4];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = raw[i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        0x02 => {
            let raw = value.get(4..20)?;
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(tid);
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = raw[i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Sends `request` from `socket` to `server` every `interval` until a STUN response with the
/// same transaction id arrives or `within` passes.
pub fn transact(
    socket: &UdpSocket,
    server: SocketAddr,
    request: &[u8],
    interval: Duration,
    within: Duration,
) -> Option<Response> {
    let tid: [u8; 12] = request.get(8..20)?.try_into().ok()?;
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // A send error (e.g. ICMP port unreachable reported on a previous send) is retried.
        let _ = socket.send_to(request, server);
        let wait_until = (Instant::now() + interval).min(deadline);
        loop {
            let left = wait_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).ok()?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == server => {
                    if let Some(r) = parse(&buf[..n]) {
                        if r.transaction_id == tid {
                            return Some(r);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                // E.g. ICMP port unreachable while the server is still starting: wait out the
                // interval instead of spinning.
                Err(_) => std::thread::sleep(left),
            }
        }
    }
    None
}
