//! Codec tests against the RFC 5769 and RFC 8489 B.1 vectors (copied from shared/vectors) and
//! malformed input of every kind.
#![allow(clippy::unwrap_used)]

use super::attr;
use super::integrity::Integrity;
use super::message::{looks_like_stun, IntegrityAttr};
use super::*;

const REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
const RESPONSE_V4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
const RESPONSE_V6: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";
const LONG_TERM: &str = "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666";
const SHA256_REQUEST: &str = "000100902112a44278ad3433c6ad72c029da412e001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704001500296f624d61744a6f733241414143662f2f3439396b39353464364f4c33346f4c394653547679363473410000000014000b6578616d706c652e6f726700001d000400020000001c0020b5c7bf005b6c52a21c51c5e892f81924136296cb927c43149309278cc6518e65";

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).unwrap()
}

#[test]
fn rfc5769_request_parses_and_verifies_short_term() {
    let raw = bytes(REQUEST);
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Binding, Class::Request));
    assert_eq!(msg.get(attr::USERNAME).unwrap(), b"evtj:h6vY");
    assert_eq!(msg.get(attr::SOFTWARE).unwrap(), b"STUN test client");
    assert!(msg.has_fingerprint());
    assert_eq!(msg.check_integrity(SHORT_TERM_PASSWORD), Integrity::Valid);
    assert_eq!(msg.check_integrity(b"wrong"), Integrity::Invalid);
}

#[test]
fn rfc5769_responses_decode_mapped_address() {
    for (hex, want) in [(RESPONSE_V4, "192.0.2.1:32853"), (RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853")]
    {
        let raw = bytes(hex);
        let msg = Message::parse(&raw).unwrap();
        assert_eq!(msg.message_type(), MessageType::new(Method::Binding, Class::Success));
        let value = msg.get(attr::XOR_MAPPED_ADDRESS).unwrap();
        let addr = attr::decode_xor_address(value, msg.transaction_id()).unwrap();
        assert_eq!(addr, want.parse().unwrap());
        assert_eq!(msg.check_integrity(SHORT_TERM_PASSWORD), Integrity::Valid);
    }
}

#[test]
fn rfc5769_long_term_request_verifies_with_md5_key() {
    let raw = bytes(LONG_TERM);
    let msg = Message::parse(&raw).unwrap();
    let key = ice_config::long_term_key(ice_config::PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrIX");
    assert_eq!(msg.get(attr::REALM).unwrap(), b"example.org");
    assert_eq!(msg.check_integrity(key.as_bytes()), Integrity::Valid);
    assert!(!msg.has_fingerprint());
}

#[test]
fn rfc8489_sha256_request_verifies_with_sha256_key() {
    let raw = bytes(SHA256_REQUEST);
    let msg = Message::parse(&raw).unwrap();
    assert!(matches!(msg.integrity(), Some(IntegrityAttr::Sha256 { len: 32, .. })));
    let key =
        ice_config::long_term_key(ice_config::PasswordAlgorithm::Sha256, "マトリックス", "example.org", "TheMatrIX");
    assert_eq!(msg.check_integrity(key.as_bytes()), Integrity::Valid);
    let md5 = ice_config::long_term_key(ice_config::PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrIX");
    assert_eq!(msg.check_integrity(md5.as_bytes()), Integrity::Invalid);
    assert_eq!(attr::decode_password_algorithm(msg.get(attr::PASSWORD_ALGORITHM).unwrap()).unwrap(), 2);
}

#[test]
fn builder_output_round_trips_with_integrity_and_fingerprint() {
    let tid = [7u8; 12];
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Error), &tid);
    b.error_code(438, "Stale Nonce").attr(attr::NONCE, b"abc").attr(attr::REALM, b"example.org");
    b.xor_address(attr::XOR_MAPPED_ADDRESS, &"[2001:db8::1]:9".parse().unwrap());
    b.integrity_sha1(b"key").integrity_sha256(b"key").fingerprint();
    let raw = b.finish();
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Allocate, Class::Error));
    assert_eq!(attr::decode_error_code(msg.get(attr::ERROR_CODE).unwrap()).unwrap(), (438, "Stale Nonce"));
    assert_eq!(msg.get(attr::NONCE).unwrap(), b"abc");
    assert_eq!(msg.check_integrity(b"key"), Integrity::Valid);
    assert!(msg.has_fingerprint());
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let tid = [1u8; 12];
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &tid);
    b.attr(attr::USERNAME, b"u").integrity_sha1(b"k").attr(attr::REALM, b"injected").attr(0x0777, b"x");
    let raw = b.finish();
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.get(attr::USERNAME).unwrap(), b"u");
    assert!(msg.get(attr::REALM).is_none());
    assert_eq!(msg.unknown_required().count(), 0);
    assert_eq!(msg.check_integrity(b"k"), Integrity::Valid);
}

#[test]
fn malformed_messages_are_rejected_not_panicking() {
    let good = bytes(REQUEST);
    assert_eq!(Message::parse(&good[..19]).unwrap_err(), ParseError::TooShort);
    // Truncated: the length field says more than there is.
    assert_eq!(Message::parse(&good[..good.len() - 4]).unwrap_err(), ParseError::BadLength);
    let mut bad_cookie = good.clone();
    bad_cookie[4] ^= 1;
    assert_eq!(Message::parse(&bad_cookie).unwrap_err(), ParseError::NotStun);
    let mut top_bits = good.clone();
    top_bits[0] |= 0x80;
    assert_eq!(Message::parse(&top_bits).unwrap_err(), ParseError::NotStun);
    let mut bad_fp = good.clone();
    let n = bad_fp.len();
    bad_fp[n - 1] ^= 1;
    assert_eq!(Message::parse(&bad_fp).unwrap_err(), ParseError::BadFingerprint);
    // An attribute whose length runs past the end of the message.
    let mut overrun = good.clone();
    overrun[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
    assert_eq!(Message::parse(&overrun).unwrap_err(), ParseError::AttributeOverrun);
    // Length not a multiple of four.
    let mut odd = good.clone();
    odd[3] = 0x57;
    assert_eq!(Message::parse(&odd).unwrap_err(), ParseError::BadLength);
    // Bad MESSAGE-INTEGRITY: flip a byte of the HMAC.
    let mut bad_mi = bytes(LONG_TERM);
    let n = bad_mi.len();
    bad_mi[n - 1] ^= 1;
    let msg = Message::parse(&bad_mi).unwrap();
    let key = ice_config::long_term_key(ice_config::PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrIX");
    assert_eq!(msg.check_integrity(key.as_bytes()), Integrity::Invalid);
}

#[test]
fn fingerprint_must_be_last() {
    let tid = [2u8; 12];
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &tid);
    b.fingerprint().attr(attr::SOFTWARE, b"x");
    let raw = b.finish();
    // The fingerprint no longer matches either, since the length grew; both are drops.
    assert!(Message::parse(&raw).is_err());
}

#[test]
fn unknown_comprehension_required_attributes_are_listed() {
    let tid = [3u8; 12];
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &tid);
    b.attr(0x0031, b"?").attr(0x8031, b"optional").attr(attr::LIFETIME, &[0, 0, 0, 1]);
    let raw = b.finish();
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.unknown_required().collect::<Vec<_>>(), vec![0x0031]);
}

#[test]
fn demux_test() {
    assert!(looks_like_stun(&bytes(REQUEST)));
    assert!(!looks_like_stun(&[0x40, 0, 0, 4, 1, 2, 3, 4]));
}
