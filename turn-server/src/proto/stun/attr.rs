//! Attribute type codes and value codecs (RFC 8489 section 14, RFC 8656 section 18).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{TransactionId, MAGIC_COOKIE};

pub const MAPPED_ADDRESS: u16 = 0x0001;
pub const CHANGE_REQUEST: u16 = 0x0003;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001A;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
pub const USERHASH: u16 = 0x001E;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const RESERVATION_TOKEN: u16 = 0x0022;
pub const PRIORITY: u16 = 0x0024;
pub const USE_CANDIDATE: u16 = 0x0025;
pub const PADDING: u16 = 0x0026;
pub const CONNECTION_ID: u16 = 0x002A;
pub const RESPONSE_PORT: u16 = 0x0027;
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const SOFTWARE: u16 = 0x8022;
pub const ALTERNATE_SERVER: u16 = 0x8023;
pub const FINGERPRINT: u16 = 0x8028;
pub const RESPONSE_ORIGIN: u16 = 0x802B;
pub const OTHER_ADDRESS: u16 = 0x802C;

/// Attributes in the comprehension-required range (< 0x8000) that a request may carry without
/// being answered 420; anything else below 0x8000 is unknown to us.
pub fn is_understood(code: u16) -> bool {
    matches!(
        code,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | CONNECTION_ID
            // ICE attributes: harmless on a Binding request, and browsers' consent checks may carry them.
            | PRIORITY
            | USE_CANDIDATE
    )
}

/// Address family byte used in address attributes and REQUESTED-ADDRESS-FAMILY.
pub const FAMILY_IPV4: u8 = 0x01;
pub const FAMILY_IPV6: u8 = 0x02;

/// Why an attribute value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("attribute value has the wrong length")]
    BadLength,
    #[error("unknown address family {0:#04x}")]
    BadFamily(u8),
    #[error("attribute value is malformed")]
    Malformed,
}

/// Decodes an XOR-MAPPED-ADDRESS style value (also XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS).
pub fn decode_xor_address(value: &[u8], tid: &TransactionId) -> Result<SocketAddr, AttrError> {
    if value.len() < 4 {
        return Err(AttrError::BadLength);
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match value[1] {
        FAMILY_IPV4 => {
            let raw: [u8; 4] = value.get(4..8).and_then(|s| s.try_into().ok()).ok_or(AttrError::BadLength)?;
            if value.len() != 8 {
                return Err(AttrError::BadLength);
            }
            IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(raw) ^ MAGIC_COOKIE))
        }
        FAMILY_IPV6 => {
            let raw: [u8; 16] = value.get(4..20).and_then(|s| s.try_into().ok()).ok_or(AttrError::BadLength)?;
            if value.len() != 20 {
                return Err(AttrError::BadLength);
            }
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(tid);
            let mut octets = raw;
            for (o, m) in octets.iter_mut().zip(mask) {
                *o ^= m;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => return Err(AttrError::BadFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Length of the value [`encode_xor_address`] writes for `addr`.
pub fn xor_address_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() {
        8
    } else {
        20
    }
}

/// Writes an XOR address value into `out`, which must be exactly [`xor_address_len`] long.
pub fn encode_xor_address(out: &mut [u8], addr: &SocketAddr, tid: &TransactionId) {
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_IPV4;
            out[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_IPV6;
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(tid);
            for ((o, b), m) in out[4..20].iter_mut().zip(ip.octets()).zip(mask) {
                *o = b ^ m;
            }
        }
    }
}

/// Decodes a plain (non-XOR) MAPPED-ADDRESS value, as old RFC 3489 agents send it.
pub fn decode_plain_address(value: &[u8]) -> Result<SocketAddr, AttrError> {
    if value.len() < 4 {
        return Err(AttrError::BadLength);
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    match (value[1], value.len()) {
        (FAMILY_IPV4, 8) => Ok(SocketAddr::new(Ipv4Addr::new(value[4], value[5], value[6], value[7]).into(), port)),
        (FAMILY_IPV6, 20) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&value[4..20]);
            Ok(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        (FAMILY_IPV4 | FAMILY_IPV6, _) => Err(AttrError::BadLength),
        (other, _) => Err(AttrError::BadFamily(other)),
    }
}

/// A 32-bit big-endian value (LIFETIME, PASSWORD-ALGORITHM header, and friends).
pub fn decode_u32(value: &[u8]) -> Result<u32, AttrError> {
    let raw: [u8; 4] = value.try_into().map_err(|_| AttrError::BadLength)?;
    Ok(u32::from_be_bytes(raw))
}

/// CHANNEL-NUMBER: the number in the first two bytes, then two bytes RFFU.
pub fn decode_channel_number(value: &[u8]) -> Result<u16, AttrError> {
    if value.len() != 4 {
        return Err(AttrError::BadLength);
    }
    Ok(u16::from_be_bytes([value[0], value[1]]))
}

/// REQUESTED-TRANSPORT: protocol number in the first byte (17 = UDP, 6 = TCP).
pub fn decode_requested_transport(value: &[u8]) -> Result<u8, AttrError> {
    if value.len() != 4 {
        return Err(AttrError::BadLength);
    }
    Ok(value[0])
}

/// REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY: family in the first byte.
pub fn decode_family(value: &[u8]) -> Result<u8, AttrError> {
    if value.len() != 4 {
        return Err(AttrError::BadLength);
    }
    match value[0] {
        f @ (FAMILY_IPV4 | FAMILY_IPV6) => Ok(f),
        other => Err(AttrError::BadFamily(other)),
    }
}

/// EVEN-PORT: the R bit asks the server to also reserve the next-higher port.
pub fn decode_even_port(value: &[u8]) -> Result<bool, AttrError> {
    match value.first() {
        Some(b) if value.len() == 1 || value.len() == 4 => Ok(b & 0x80 != 0),
        _ => Err(AttrError::BadLength),
    }
}

/// RESERVATION-TOKEN: 8 opaque bytes.
pub fn decode_reservation_token(value: &[u8]) -> Result<u64, AttrError> {
    let raw: [u8; 8] = value.try_into().map_err(|_| AttrError::BadLength)?;
    Ok(u64::from_be_bytes(raw))
}

/// ERROR-CODE: class and number, then a UTF-8 reason phrase.
pub fn decode_error_code(value: &[u8]) -> Result<(u16, &str), AttrError> {
    if value.len() < 4 {
        return Err(AttrError::BadLength);
    }
    let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
    let reason = std::str::from_utf8(&value[4..]).map_err(|_| AttrError::Malformed)?;
    Ok((code, reason))
}

/// PASSWORD-ALGORITHM: algorithm number, parameter length, parameters (padded).
pub fn decode_password_algorithm(value: &[u8]) -> Result<u16, AttrError> {
    if value.len() < 4 {
        return Err(AttrError::BadLength);
    }
    let params_len = usize::from(u16::from_be_bytes([value[2], value[3]]));
    if value.len() < 4 + params_len {
        return Err(AttrError::BadLength);
    }
    Ok(u16::from_be_bytes([value[0], value[1]]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TID: TransactionId = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

    #[test]
    fn xor_address_round_trip_v4_and_v6() {
        for addr in ["192.0.2.1:32853", "[2001:db8:1234:5678:11:2233:4455:6677]:32853", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = vec![0u8; xor_address_len(&addr)];
            encode_xor_address(&mut buf, &addr, &TID);
            assert_eq!(decode_xor_address(&buf, &TID).unwrap(), addr);
        }
    }

    #[test]
    fn xor_address_rfc5769_value() {
        // From RFC 5769 2.2: XOR-MAPPED-ADDRESS of 192.0.2.1:32853.
        let value = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(decode_xor_address(&value, &TID).unwrap(), "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn malformed_values_are_errors() {
        assert_eq!(decode_xor_address(&[0, 1, 0], &TID), Err(AttrError::BadLength));
        assert_eq!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &TID), Err(AttrError::BadLength));
        assert_eq!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &TID), Err(AttrError::BadLength));
        assert_eq!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &TID), Err(AttrError::BadFamily(3)));
        assert_eq!(decode_u32(&[1, 2, 3]), Err(AttrError::BadLength));
        assert_eq!(decode_channel_number(&[0x40, 0]), Err(AttrError::BadLength));
        assert_eq!(decode_family(&[3, 0, 0, 0]), Err(AttrError::BadFamily(3)));
        assert_eq!(decode_even_port(&[]), Err(AttrError::BadLength));
        assert_eq!(decode_reservation_token(&[0; 7]), Err(AttrError::BadLength));
        assert_eq!(decode_error_code(&[0, 0, 4]), Err(AttrError::BadLength));
        assert_eq!(decode_password_algorithm(&[0, 1, 0, 8, 0]), Err(AttrError::BadLength));
    }

    #[test]
    fn error_code_decodes_class_and_number() {
        assert_eq!(decode_error_code(&[0, 0, 4, 38, b'x']).unwrap(), (438, "x"));
    }

    #[test]
    fn even_port_reads_r_bit() {
        assert!(decode_even_port(&[0x80, 0, 0, 0]).unwrap());
        assert!(!decode_even_port(&[0x00]).unwrap());
    }
}
