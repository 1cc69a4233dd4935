//! Stateless nonces (RFC 8489 9.2): the server keeps nothing per client, yet can tell a nonce it
//! issued to this client address from a forged, replayed-elsewhere or expired one.
//!
//! Layout: `obMatJos2` + `gAAA` (the RFC 8489 nonce cookie with the PASSWORD-ALGORITHMS feature
//! bit set), then 19 characters of unpadded base64url holding the expiry (4 bytes) and an 80-bit
//! HMAC-SHA256 tag over expiry and client IP: 32 bytes in all, a multiple of 4, so the NONCE
//! attribute needs no padding.
//!
//! Why 80 bits of tag are enough: the nonce authenticates nothing (MESSAGE-INTEGRITY with the
//! long-term key does); it only lets the relay recognise, without state, that it issued this
//! value to this address recently. Forging one means guessing a tag for a chosen address and
//! expiry, and only the relay can check a guess (the key never leaves it): an online attack, one
//! request per guess, against answers rate limited per source. Even a million guesses a second
//! for a nonce's whole lifetime (600 s by default; the expiry is inside the MAC, so a forgery
//! cannot be made to last longer) is 2^29 guesses, a 2^-51 chance, and what it would buy is one
//! saved round trip. The bytes saved over the earlier hex form (24 hex digits for a 64-bit tag)
//! make the unauthenticated 401, which anyone can make the relay send to a spoofed address, 8
//! bytes smaller while the tag grows by 16 bits.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;

use super::stun::integrity::HmacSha256;

/// RFC 8489 9.2 "nonce cookie" followed by the base64 of the 24 security-feature bits, of which
/// only the first (password algorithms) is set: USERHASH anonymity is not offered.
pub const NONCE_PREFIX: &str = "obMatJos2gAAA";
const EXPIRY_BYTES: usize = 4;
const TAG_BYTES: usize = 10;
const SEALED_BYTES: usize = EXPIRY_BYTES + TAG_BYTES;
/// Unpadded base64 of the sealed bytes: 4 characters per 3 bytes, rounded up.
const SEALED_CHARS: usize = (SEALED_BYTES * 4).div_ceil(3);
pub const NONCE_LEN: usize = NONCE_PREFIX.len() + SEALED_CHARS;

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
        let mut sealed = [0u8; SEALED_BYTES];
        sealed[..EXPIRY_BYTES].copy_from_slice(&expiry.to_be_bytes());
        sealed[EXPIRY_BYTES..].copy_from_slice(&tag_of(&self.keys[0], expiry, client));
        let mut nonce = String::with_capacity(NONCE_LEN);
        nonce.push_str(NONCE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(sealed, &mut nonce);
        nonce
    }

    pub fn check(&self, nonce: &[u8], client: IpAddr, now_unix: u64) -> NonceCheck {
        if nonce.len() != NONCE_LEN || !nonce.starts_with(NONCE_PREFIX.as_bytes()) {
            return NonceCheck::Invalid;
        }
        // One more byte of room than needed: the engine wants space for the worst case of 19
        // characters, and a well-formed nonce fills exactly SEALED_BYTES.
        let mut sealed = [0u8; SEALED_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(&nonce[NONCE_PREFIX.len()..], &mut sealed) {
            Ok(SEALED_BYTES) => {}
            _ => return NonceCheck::Invalid,
        }
        let (expiry, tag) = sealed[..SEALED_BYTES].split_at(EXPIRY_BYTES);
        let expiry = u32::from_be_bytes([expiry[0], expiry[1], expiry[2], expiry[3]]);
        let ours = self
            .keys
            .iter()
            .any(|key| bool::from(subtle::ConstantTimeEq::ct_eq(&tag_of(key, expiry, client)[..], tag)));
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

fn tag_of(key: &[u8; 32], expiry: u32, client: IpAddr) -> [u8; TAG_BYTES] {
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&expiry.to_be_bytes());
    match client {
        IpAddr::V4(ip) => mac.update(&ip.octets()),
        IpAddr::V6(ip) => mac.update(&ip.octets()),
    }
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&full[..TAG_BYTES]);
    tag
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
        assert_eq!(NONCE_LEN, 32, "a multiple of 4: the attribute carries no padding");
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
        let valid = m.mint(IP, 1_000);
        // A last character with bits the 14 bytes do not use: another spelling, refused.
        let mut loose = valid.clone().into_bytes();
        let last = loose.len() - 1;
        loose[last] = if loose[last] == b'B' { b'C' } else { b'B' };
        let short = &valid.as_bytes()[..NONCE_LEN - 1];
        for garbage in
            [&b""[..], b"obMatJos2gAAA", &[0xff; NONCE_LEN], b"obMatJos2gAAA!!!!!!!!!!!!!!!!!!!", short, &loose]
        {
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
