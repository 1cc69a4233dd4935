//! Stateless nonces (RFC 8489 9.2): the server keeps nothing per client, yet can tell a nonce it
//! issued to this client address from a forged, replayed-elsewhere or expired one.
//!
//! Layout: `obMatJos2` + `gAAA` (the RFC 8489 nonce cookie with the PASSWORD-ALGORITHMS feature
//! bit set), then the expiry as 8 hex digits and a 16-hex-digit HMAC tag over expiry and client IP.

use std::net::IpAddr;

use hmac::Mac;

use super::stun::integrity::HmacSha256;

/// RFC 8489 9.2 "nonce cookie" followed by the base64 of the 24 security-feature bits, of which
/// only the first (password algorithms) is set: USERHASH anonymity is not offered.
pub const NONCE_PREFIX: &str = "obMatJos2gAAA";
const EXPIRY_HEX: usize = 8;
const TAG_HEX: usize = 16;
pub const NONCE_LEN: usize = NONCE_PREFIX.len() + EXPIRY_HEX + TAG_HEX;

/// What a presented nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but past its lifetime: answer 438 with a fresh one.
    Expired,
    /// Not ours, or issued to another address: also 438, so a client that moved just retries.
    Invalid,
}

pub struct NonceMinter {
    /// The first mints; all verify (for a rotation, as with REST secrets).
    keys: Vec<[u8; 32]>,
    lifetime_secs: u64,
}

impl NonceMinter {
    /// `key`: derived from the shared REST secret ([`fleet_nonce_key`]) so that every relay of a
    /// fleet accepts the others' nonces (a client redirected with 300 Try Alternate carries its
    /// nonce over, and browsers do not retry an Allocate answered 438); or random, in which case a
    /// restart invalidates outstanding nonces, which clients recover from with one 438.
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        NonceMinter { keys: vec![key], lifetime_secs: lifetime_secs.max(1) }
    }

    /// Replaces the keys (config reload); an empty list keeps the current ones.
    pub fn set_keys(&mut self, keys: &[[u8; 32]]) {
        if !keys.is_empty() {
            self.keys = keys.to_vec();
        }
    }

    /// Changes how long new nonces live; issued ones keep the expiry they carry.
    pub fn set_lifetime(&mut self, lifetime_secs: u64) {
        self.lifetime_secs = lifetime_secs.max(1);
    }

    pub fn mint(&self, client: IpAddr, now_unix: u64) -> String {
        // Expiry is a u32 of unix seconds: good until 2106, and it keeps the nonce short.
        let expiry = (now_unix + self.lifetime_secs).min(u64::from(u32::MAX)) as u32;
        let mut nonce = String::with_capacity(NONCE_LEN);
        nonce.push_str(NONCE_PREFIX);
        push_hex(&mut nonce, &expiry.to_be_bytes());
        push_hex(&mut nonce, &tag_of(&self.keys[0], expiry, client));
        nonce
    }

    pub fn check(&self, nonce: &[u8], client: IpAddr, now_unix: u64) -> NonceCheck {
        if nonce.len() != NONCE_LEN || !nonce.starts_with(NONCE_PREFIX.as_bytes()) {
            return NonceCheck::Invalid;
        }
        let rest = &nonce[NONCE_PREFIX.len()..];
        let (Some(expiry), Some(tag)) = (parse_hex::<4>(&rest[..EXPIRY_HEX]), parse_hex::<8>(&rest[EXPIRY_HEX..]))
        else {
            return NonceCheck::Invalid;
        };
        let expiry = u32::from_be_bytes(expiry);
        let ours = self
            .keys
            .iter()
            .any(|key| bool::from(subtle::ConstantTimeEq::ct_eq(&tag_of(key, expiry, client)[..], &tag[..])));
        if !ours {
            return NonceCheck::Invalid;
        }
        if u64::from(expiry) <= now_unix {
            NonceCheck::Expired
        } else {
            NonceCheck::Valid
        }
    }
}

/// The nonce key every relay sharing `secret` derives alike (a label keeps it apart from the
/// REST credentials signed with the same secret).
pub fn fleet_nonce_key(secret: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(b"turn-server nonce key v1");
    mac.finalize().into_bytes().into()
}

fn tag_of(key: &[u8; 32], expiry: u32, client: IpAddr) -> [u8; 8] {
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&expiry.to_be_bytes());
    match client {
        IpAddr::V4(ip) => mac.update(&ip.octets()),
        IpAddr::V6(ip) => mac.update(&ip.octets()),
    }
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&full[..8]);
    tag
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
}

fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn fresh_nonce_is_valid_until_its_lifetime() {
        let m = NonceMinter::new([1; 32], 600);
        let n = m.mint(IP, 1_000);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(n.starts_with("obMatJos2"));
        assert_eq!(m.check(n.as_bytes(), IP, 1_000), NonceCheck::Valid);
        assert_eq!(m.check(n.as_bytes(), IP, 1_599), NonceCheck::Valid);
        assert_eq!(m.check(n.as_bytes(), IP, 1_600), NonceCheck::Expired);
    }

    #[test]
    fn nonce_is_bound_to_address_and_key() {
        let m = NonceMinter::new([1; 32], 600);
        let n = m.mint(IP, 1_000);
        assert_eq!(m.check(n.as_bytes(), "198.51.100.8".parse().unwrap_or(IP), 1_000), NonceCheck::Invalid);
        let other = NonceMinter::new([2; 32], 600);
        assert_eq!(other.check(n.as_bytes(), IP, 1_000), NonceCheck::Invalid);
    }

    #[test]
    fn tampered_or_garbage_nonces_are_invalid() {
        let m = NonceMinter::new([1; 32], 600);
        let mut n = m.mint(IP, 1_000).into_bytes();
        // Push the expiry far into the future: the tag no longer matches.
        n[NONCE_PREFIX.len()] = b'f';
        assert_eq!(m.check(&n, IP, 1_000), NonceCheck::Invalid);
        for garbage in [&b""[..], b"obMatJos2gAAA", &[0xff; NONCE_LEN], b"obMatJos2gAAAzzzzzzzz0000000000000000"] {
            assert_eq!(m.check(garbage, IP, 1_000), NonceCheck::Invalid);
        }
    }

    #[test]
    fn relays_sharing_a_secret_accept_each_others_nonces_and_rotate_like_secrets() {
        let client = IP;
        let old = fleet_nonce_key(b"old-secret");
        let new = fleet_nonce_key(b"new-secret");
        assert_ne!(old, new);
        assert_eq!(old, fleet_nonce_key(b"old-secret"), "derived alike on every relay");
        let relay_a = NonceMinter::new(old, 600);
        let mut relay_b = NonceMinter::new([9; 32], 600);
        let nonce = relay_a.mint(client, 1_000);
        assert_eq!(relay_b.check(nonce.as_bytes(), client, 1_001), NonceCheck::Invalid);
        relay_b.set_keys(&[old]);
        assert_eq!(relay_b.check(nonce.as_bytes(), client, 1_001), NonceCheck::Valid);
        // Rotation: the new key mints, the old one still verifies what it minted.
        relay_b.set_keys(&[new, old]);
        assert_eq!(relay_b.check(nonce.as_bytes(), client, 1_001), NonceCheck::Valid);
        let fresh = relay_b.mint(client, 1_001);
        assert_eq!(NonceMinter::new(new, 600).check(fresh.as_bytes(), client, 1_002), NonceCheck::Valid);
        relay_b.set_keys(&[]);
        assert_eq!(relay_b.check(fresh.as_bytes(), client, 1_002), NonceCheck::Valid, "empty keeps the keys");
    }
}
