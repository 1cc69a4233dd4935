//! MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 (RFC 8489 14.5, 14.6), checked without copying.

use hmac::{Hmac, Mac};

use super::message::{IntegrityAttr, Message};
use super::HEADER_LEN;

pub type HmacSha1 = Hmac<sha1::Sha1>;
pub type HmacSha256 = Hmac<sha2::Sha256>;

/// HMAC state over `prefix` (a message up to an integrity attribute) with the header's length field
/// replaced by `end - 20`, where `end` is where the integrity attribute ends.
pub(crate) fn keyed_mac<M: Mac + hmac::digest::KeyInit>(prefix: &[u8], end: usize, key: &[u8]) -> M {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&prefix[..2]);
    mac.update(&((end - HEADER_LEN) as u16).to_be_bytes());
    mac.update(&prefix[4..]);
    mac
}

/// Result of checking a message's integrity with one candidate key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// No MESSAGE-INTEGRITY(-SHA256) attribute.
    Missing,
    Valid,
    Invalid,
}

/// Which HMAC a request used, so the response is protected the same way (RFC 8489 9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityAlgorithm {
    Sha1,
    Sha256,
}

impl Message<'_> {
    pub fn integrity_algorithm(&self) -> Option<IntegrityAlgorithm> {
        match self.integrity()? {
            IntegrityAttr::Sha1 { .. } => Some(IntegrityAlgorithm::Sha1),
            IntegrityAttr::Sha256 { .. } => Some(IntegrityAlgorithm::Sha256),
        }
    }

    /// Checks the message's integrity attribute with `key`, in constant time.
    pub fn check_integrity(&self, key: &[u8]) -> Integrity {
        let raw = self.raw();
        let ok = match self.integrity() {
            None => return Integrity::Missing,
            Some(IntegrityAttr::Sha1 { offset }) => {
                let Some(tag) = raw.get(offset + 4..offset + 24) else { return Integrity::Invalid };
                if u16::from_be_bytes([raw[offset + 2], raw[offset + 3]]) != 20 {
                    return Integrity::Invalid;
                }
                keyed_mac::<HmacSha1>(&raw[..offset], offset + 24, key).verify_slice(tag).is_ok()
            }
            Some(IntegrityAttr::Sha256 { offset, len }) => {
                // RFC 8489 14.6: at least 16 bytes, a multiple of 4, at most 32.
                if !(16..=32).contains(&len) || len % 4 != 0 {
                    return Integrity::Invalid;
                }
                let Some(tag) = raw.get(offset + 4..offset + 4 + len) else { return Integrity::Invalid };
                keyed_mac::<HmacSha256>(&raw[..offset], offset + 4 + len, key).verify_truncated_left(tag).is_ok()
            }
        };
        if ok {
            Integrity::Valid
        } else {
            Integrity::Invalid
        }
    }
}
