//! Long-term credential keys (RFC 8489 section 9.2.2).
//!
//! The relay checks MESSAGE-INTEGRITY with a key derived from `username:realm:password`, never
//! with the password itself; static users may even be configured with only the key (coturn's
//! `name:0x<hex>` form) so the password never sits on the server. This module is that derivation.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

/// The PASSWORD-ALGORITHM values of RFC 8489 section 18.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithm {
    /// MD5, the only algorithm RFC 5389 clients know.
    Md5,
    /// SHA-256, RFC 8489.
    Sha256,
}

impl PasswordAlgorithm {
    /// The 16-bit code carried in PASSWORD-ALGORITHM(S).
    pub fn code(self) -> u16 {
        match self {
            Self::Md5 => 0x0001,
            Self::Sha256 => 0x0002,
        }
    }

    /// The algorithm for a wire code; `None` for unknown codes, which a server must ignore.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0x0001 => Some(Self::Md5),
            0x0002 => Some(Self::Sha256),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 => 32,
        }
    }
}

/// A derived long-term key; its length is fixed by the algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum LongTermKey {
    /// MD5 key, 16 bytes.
    Md5([u8; 16]),
    /// SHA-256 key, 32 bytes.
    Sha256([u8; 32]),
}

impl LongTermKey {
    /// The key bytes, as the HMAC key for MESSAGE-INTEGRITY(-SHA256).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Md5(k) => k,
            Self::Sha256(k) => k,
        }
    }

    /// The algorithm that produced this key.
    pub fn algorithm(&self) -> PasswordAlgorithm {
        match self {
            Self::Md5(_) => PasswordAlgorithm::Md5,
            Self::Sha256(_) => PasswordAlgorithm::Sha256,
        }
    }
}

impl fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is as good as the password for authenticating to the relay.
        write!(f, "LongTermKey::{:?}(<redacted>)", self.algorithm())
    }
}

/// Why a hex key could not be read.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key has the wrong number of hex digits for its algorithm.
    #[error("{algorithm:?} key must be {expected} hex digits, got {actual}")]
    BadLength {
        /// The algorithm the key was read for.
        algorithm: PasswordAlgorithm,
        /// Hex digits required.
        expected: usize,
        /// Hex digits given (after any `0x` prefix).
        actual: usize,
    },
    /// A character that is not a hex digit, at this (0-based, after any `0x`) position.
    #[error("key is not hexadecimal (bad character at position {position})")]
    NotHex {
        /// Where the first bad character is.
        position: usize,
    },
}

/// `MD5(username:realm:password)` or `SHA-256(username:realm:password)`.
///
/// No SASLprep/OpaqueString processing is applied: browsers send usernames and passwords as
/// given, REST credentials are ASCII, and coturn does not apply it either. Callers that need it
/// must normalise the inputs first.
pub fn long_term_key(alg: PasswordAlgorithm, username: &str, realm: &str, password: &str) -> LongTermKey {
    fn feed<D: Digest>(mut d: D, username: &str, realm: &str, password: &str) -> D {
        d.update(username.as_bytes());
        d.update(b":");
        d.update(realm.as_bytes());
        d.update(b":");
        d.update(password.as_bytes());
        d
    }
    match alg {
        PasswordAlgorithm::Md5 => LongTermKey::Md5(feed(Md5::new(), username, realm, password).finalize().into()),
        PasswordAlgorithm::Sha256 => {
            LongTermKey::Sha256(feed(Sha256::new(), username, realm, password).finalize().into())
        }
    }
}

/// Reads a precomputed key written in hex, with or without a `0x`/`0X` prefix.
pub fn long_term_key_from_hex(alg: PasswordAlgorithm, hex: &str) -> Result<LongTermKey, KeyError> {
    let digits = hex.strip_prefix("0x").or_else(|| hex.strip_prefix("0X")).unwrap_or(hex);
    if let Some(position) = digits.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(KeyError::NotHex { position });
    }
    let expected = alg.key_len() * 2;
    if digits.len() != expected {
        return Err(KeyError::BadLength { algorithm: alg, expected, actual: digits.len() });
    }
    match alg {
        PasswordAlgorithm::Md5 => {
            let mut key = [0u8; 16];
            decode_hex(digits, &mut key);
            Ok(LongTermKey::Md5(key))
        }
        PasswordAlgorithm::Sha256 => {
            let mut key = [0u8; 32];
            decode_hex(digits, &mut key);
            Ok(LongTermKey::Sha256(key))
        }
    }
}

/// Fills `out` from `digits`, which the caller has checked are ASCII hex of length `2 * out.len()`.
fn decode_hex(digits: &str, out: &mut [u8]) {
    fn nibble(b: u8) -> u8 {
        match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0,
        }
    }
    for (byte, pair) in out.iter_mut().zip(digits.as_bytes().chunks_exact(2)) {
        *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hmac::{Hmac, Mac};

    const USER: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"; // マトリックス
                                                                           // From python3 hashlib over "マトリックス:example.org:TheMatrIX".
    const RFC5769_MD5_KEY: &str = "e8ca7ad59d5eb0518e312911d2dab2a9";
    const RFC8489_SHA256_KEY: &str = "dd295a613b9058c3c23d6dc7165bda072304d989c9d0af3a8c7e184b4f9bb4a1";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn algorithm_codes_round_trip() {
        assert_eq!(PasswordAlgorithm::Md5.code(), 1);
        assert_eq!(PasswordAlgorithm::Sha256.code(), 2);
        for alg in [PasswordAlgorithm::Md5, PasswordAlgorithm::Sha256] {
            assert_eq!(PasswordAlgorithm::from_code(alg.code()), Some(alg));
        }
        assert_eq!(PasswordAlgorithm::from_code(0), None);
        assert_eq!(PasswordAlgorithm::from_code(3), None);
        assert_eq!(PasswordAlgorithm::from_code(0xffff), None);
    }

    #[test]
    fn rfc5769_md5_key() {
        let key = long_term_key(PasswordAlgorithm::Md5, USER, "example.org", "TheMatrIX");
        assert_eq!(hex(key.as_bytes()), RFC5769_MD5_KEY);
        assert_eq!(key.algorithm(), PasswordAlgorithm::Md5);
    }

    #[test]
    fn rfc8489_sha256_key() {
        let key = long_term_key(PasswordAlgorithm::Sha256, USER, "example.org", "TheMatrIX");
        assert_eq!(hex(key.as_bytes()), RFC8489_SHA256_KEY);
        assert_eq!(key.algorithm(), PasswordAlgorithm::Sha256);
    }

    #[test]
    fn md5_key_reproduces_rfc5769_message_integrity() {
        // RFC 5769 2.4: HMAC-SHA1 over everything before MESSAGE-INTEGRITY (the header length
        // already covers it) must equal the attribute's value.
        let msg = unhex(
            "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe3\
             82b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b\
             6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
        );
        let key = long_term_key(PasswordAlgorithm::Md5, USER, "example.org", "TheMatrIX");
        let (signed, mi) = msg.split_at(msg.len() - 24);
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(signed);
        assert_eq!(mac.finalize().into_bytes().as_slice(), &mi[4..]);
    }

    #[test]
    fn sha256_key_reproduces_rfc8489_message_integrity_sha256() {
        let msg = unhex(
            "000100902112a44278ad3433c6ad72c029da412e001e00204a3cf38fef6992bda952c6780417da0f\
             24819415569e60b205c46e41407f1704001500296f624d61744a6f733241414143662f2f3439396b\
             39353464364f4c33346f4c394653547679363473410000000014000b6578616d706c652e6f726700\
             001d000400020000001c0020b5c7bf005b6c52a21c51c5e892f81924136296cb927c43149309278c\
             c6518e65",
        );
        let key = long_term_key(PasswordAlgorithm::Sha256, USER, "example.org", "TheMatrIX");
        let (signed, mi) = msg.split_at(msg.len() - 36);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(signed);
        assert_eq!(mac.finalize().into_bytes().as_slice(), &mi[4..]);
    }

    #[test]
    fn key_depends_on_every_part_but_not_on_field_boundaries() {
        let base = long_term_key(PasswordAlgorithm::Md5, "a", "b", "c");
        assert_ne!(base, long_term_key(PasswordAlgorithm::Md5, "x", "b", "c"));
        assert_ne!(base, long_term_key(PasswordAlgorithm::Md5, "a", "x", "c"));
        assert_ne!(base, long_term_key(PasswordAlgorithm::Md5, "a", "b", "x"));
        // The RFC hashes the joined string, so only the concatenation matters; pinned here so
        // nobody "fixes" it into an incompatible derivation.
        assert_eq!(
            long_term_key(PasswordAlgorithm::Md5, "a:b", "c", "d"),
            long_term_key(PasswordAlgorithm::Md5, "a", "b:c", "d")
        );
    }

    #[test]
    fn debug_redacts_key() {
        let key = long_term_key(PasswordAlgorithm::Md5, USER, "example.org", "TheMatrIX");
        let shown = format!("{key:?}");
        assert_eq!(shown, "LongTermKey::Md5(<redacted>)");
        let key = long_term_key(PasswordAlgorithm::Sha256, "a", "b", "c");
        assert_eq!(format!("{key:?}"), "LongTermKey::Sha256(<redacted>)");
    }

    #[test]
    fn from_hex_accepts_prefixes_and_case() {
        let expected = long_term_key(PasswordAlgorithm::Md5, USER, "example.org", "TheMatrIX");
        for form in [
            RFC5769_MD5_KEY.to_string(),
            format!("0x{RFC5769_MD5_KEY}"),
            format!("0X{}", RFC5769_MD5_KEY.to_uppercase()),
        ] {
            assert_eq!(long_term_key_from_hex(PasswordAlgorithm::Md5, &form).unwrap(), expected, "{form}");
        }
        let sha = long_term_key_from_hex(PasswordAlgorithm::Sha256, RFC8489_SHA256_KEY).unwrap();
        assert_eq!(hex(sha.as_bytes()), RFC8489_SHA256_KEY);
    }

    #[test]
    fn from_hex_rejects_wrong_length() {
        assert_eq!(
            long_term_key_from_hex(PasswordAlgorithm::Md5, "0xabcd"),
            Err(KeyError::BadLength { algorithm: PasswordAlgorithm::Md5, expected: 32, actual: 4 })
        );
        assert_eq!(
            long_term_key_from_hex(PasswordAlgorithm::Sha256, RFC5769_MD5_KEY),
            Err(KeyError::BadLength { algorithm: PasswordAlgorithm::Sha256, expected: 64, actual: 32 })
        );
        assert!(matches!(
            long_term_key_from_hex(PasswordAlgorithm::Md5, ""),
            Err(KeyError::BadLength { actual: 0, .. })
        ));
        assert!(matches!(
            long_term_key_from_hex(PasswordAlgorithm::Md5, "0x"),
            Err(KeyError::BadLength { actual: 0, .. })
        ));
    }

    #[test]
    fn from_hex_rejects_non_hex() {
        let mut bad = RFC5769_MD5_KEY.to_string();
        bad.replace_range(5..6, "g");
        assert_eq!(long_term_key_from_hex(PasswordAlgorithm::Md5, &bad), Err(KeyError::NotHex { position: 5 }));
        // A multibyte character must not be split or miscounted as two hex digits.
        let mut multibyte = RFC5769_MD5_KEY[..30].to_string();
        multibyte.push('é');
        assert_eq!(long_term_key_from_hex(PasswordAlgorithm::Md5, &multibyte), Err(KeyError::NotHex { position: 30 }));
        assert!(matches!(
            long_term_key_from_hex(PasswordAlgorithm::Md5, "0x0x0000"),
            Err(KeyError::NotHex { position: 1 })
        ));
    }

    #[test]
    fn key_error_messages() {
        assert_eq!(
            KeyError::NotHex { position: 3 }.to_string(),
            "key is not hexadecimal (bad character at position 3)"
        );
        assert_eq!(
            KeyError::BadLength { algorithm: PasswordAlgorithm::Md5, expected: 32, actual: 4 }.to_string(),
            "Md5 key must be 32 hex digits, got 4"
        );
    }
}
