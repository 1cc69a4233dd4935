//! Property tests of the codec: whatever the builder writes parses back to the same type,
//! transaction id and attributes, with integrity and fingerprint that verify; and no input,
//! however malformed, makes the parser or the attribute decoders panic. The vector tests in
//! `tests.rs` pin exact bytes; these cover the space between the vectors.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::attr;
use super::integrity::{Integrity, IntegrityAlgorithm};
use super::*;

/// Few cases: each is microseconds, and the suite runs on every `cargo test`.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Request), Just(Class::Indication), Just(Class::Success), Just(Class::Error)]
}

/// Attribute codes the parser treats like any other (not integrity or fingerprint).
fn plain_code() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("integrity and fingerprint are added by their own builder calls", |c| {
        ![attr::MESSAGE_INTEGRITY, attr::MESSAGE_INTEGRITY_SHA256, attr::FINGERPRINT].contains(c)
    })
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

#[derive(Debug, Clone)]
enum Seal {
    None,
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

fn seal() -> impl Strategy<Value = Seal> {
    let key = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![Just(Seal::None), key.clone().prop_map(Seal::Sha1), key.prop_map(Seal::Sha256)]
}

/// One message as the builder is asked to write it.
#[derive(Debug, Clone)]
struct Spec {
    method: u16,
    class: Class,
    tid: TransactionId,
    attrs: Vec<(u16, Vec<u8>)>,
    xor: Option<SocketAddr>,
    seal: Seal,
    fingerprint: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let attrs = proptest::collection::vec((plain_code(), proptest::collection::vec(any::<u8>(), 0..48)), 0..8);
    (0u16..0x1000, class(), any::<TransactionId>(), attrs, proptest::option::of(socket_addr()), seal(), any::<bool>())
        .prop_map(|(method, class, tid, attrs, xor, seal, fingerprint)| Spec {
            method,
            class,
            tid,
            attrs,
            xor,
            seal,
            fingerprint,
        })
}

fn build(s: &Spec) -> Vec<u8> {
    let mut b = MessageBuilder::new(MessageType::new(Method::from_code(s.method), s.class), &s.tid);
    for (code, value) in &s.attrs {
        b.attr(*code, value);
    }
    if let Some(addr) = &s.xor {
        b.xor_address(attr::XOR_PEER_ADDRESS, addr);
    }
    match &s.seal {
        Seal::None => {}
        Seal::Sha1(key) => {
            b.integrity_sha1(key);
        }
        Seal::Sha256(key) => {
            b.integrity_sha256(key);
        }
    }
    if s.fingerprint {
        b.fingerprint();
    }
    b.finish()
}

fn key_of(seal: &Seal) -> Option<&[u8]> {
    match seal {
        Seal::None => None,
        Seal::Sha1(k) | Seal::Sha256(k) => Some(k),
    }
}

/// Runs every read the relay makes on a parsed message; only panics matter.
fn read_everything(msg: &Message<'_>) {
    for a in msg.attributes() {
        let _ = attr::decode_xor_address(a.value, msg.transaction_id());
        let _ = attr::decode_plain_address(a.value);
        let _ = attr::decode_u32(a.value);
        let _ = attr::decode_channel_number(a.value);
        let _ = attr::decode_requested_transport(a.value);
        let _ = attr::decode_family(a.value);
        let _ = attr::decode_even_port(a.value);
        let _ = attr::decode_reservation_token(a.value);
        let _ = attr::decode_error_code(a.value);
        let _ = attr::decode_password_algorithm(a.value);
        let _ = msg.get(a.code);
    }
    let _ = msg.unknown_required().count();
    let _ = msg.integrity_algorithm();
    let _ = msg.check_integrity(b"key");
    let _ = msg.check_integrity(b"");
}

/// Bytes with a valid header (cookie, a length that matches) around an arbitrary body: the input
/// that gets past the first checks and exercises the attribute walk.
fn stun_shaped() -> impl Strategy<Value = Vec<u8>> {
    (any::<u16>(), any::<TransactionId>(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
        |(typ, tid, words)| {
            let mut body: Vec<u8> = words.iter().flat_map(|w| [*w, 0, 0, *w]).collect();
            // Attribute lengths drawn from the body itself are mostly huge: make some small.
            for chunk in body.chunks_mut(8) {
                if chunk.len() >= 4 {
                    chunk[2] = 0;
                    chunk[3] &= 0x1F;
                }
            }
            let mut m = Vec::with_capacity(HEADER_LEN + body.len());
            m.extend_from_slice(&(typ & 0x3FFF).to_be_bytes());
            m.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
            m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            m.extend_from_slice(&tid);
            m.extend_from_slice(&body);
            m
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn built_messages_parse_back_to_what_was_written(s in spec()) {
        let raw = build(&s);
        let msg = Message::parse(&raw).unwrap();
        prop_assert_eq!(msg.message_type(), MessageType::new(Method::from_code(s.method), s.class));
        prop_assert_eq!(msg.message_type().to_u16(), MessageType::from_u16(msg.message_type().to_u16()).to_u16());
        prop_assert_eq!(msg.transaction_id(), &s.tid);
        let got: Vec<(u16, Vec<u8>)> = msg.attributes().map(|a| (a.code, a.value.to_vec())).collect();
        let mut want = s.attrs.clone();
        if let Some(addr) = &s.xor {
            let mut v = vec![0u8; attr::xor_address_len(addr)];
            attr::encode_xor_address(&mut v, addr, &s.tid);
            want.push((attr::XOR_PEER_ADDRESS, v));
        }
        prop_assert_eq!(got, want);
        if let Some(addr) = &s.xor {
            let value = msg.attributes().last().unwrap().value;
            prop_assert_eq!(attr::decode_xor_address(value, &s.tid).unwrap(), *addr);
        }
        prop_assert_eq!(msg.has_fingerprint(), s.fingerprint);
        match &s.seal {
            Seal::None => prop_assert_eq!(msg.check_integrity(b"any"), Integrity::Missing),
            Seal::Sha1(key) => {
                prop_assert_eq!(msg.integrity_algorithm(), Some(IntegrityAlgorithm::Sha1));
                prop_assert_eq!(msg.check_integrity(key), Integrity::Valid);
            }
            Seal::Sha256(key) => {
                prop_assert_eq!(msg.integrity_algorithm(), Some(IntegrityAlgorithm::Sha256));
                prop_assert_eq!(msg.check_integrity(key), Integrity::Valid);
            }
        }
        if let Some(key) = key_of(&s.seal) {
            let mut other = key.to_vec();
            other.push(0x5A);
            prop_assert_eq!(msg.check_integrity(&other), Integrity::Invalid);
        }
    }

    /// FINGERPRINT (a CRC-32) catches any one changed byte: the message no longer parses, or no
    /// longer carries a fingerprint at all (a changed length swallowed it).
    #[test]
    fn one_changed_byte_breaks_the_fingerprint(s in spec(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut raw = build(&Spec { fingerprint: true, ..s });
        let i = at.index(raw.len());
        raw[i] ^= flip;
        let parsed = Message::parse(&raw);
        prop_assert!(!parsed.is_ok_and(|m| m.has_fingerprint()), "byte {} changed, still a valid fingerprint", i);
    }

    /// MESSAGE-INTEGRITY(-SHA256) covers every byte up to the end of its value.
    #[test]
    fn one_changed_byte_before_the_mac_end_breaks_integrity(
        s in spec(),
        sha256 in any::<bool>(),
        key in proptest::collection::vec(any::<u8>(), 0..40),
        at in any::<prop::sample::Index>(),
        flip in 1u8..,
    ) {
        let seal = if sha256 { Seal::Sha256(key.clone()) } else { Seal::Sha1(key.clone()) };
        let mut raw = build(&Spec { seal, fingerprint: false, ..s });
        let i = at.index(raw.len());
        raw[i] ^= flip;
        if let Ok(msg) = Message::parse(&raw) {
            prop_assert_ne!(msg.check_integrity(&key), Integrity::Valid, "byte {} changed", i);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(msg) = Message::parse(&raw) {
            read_everything(&msg);
        }
    }

    #[test]
    fn stun_shaped_bytes_never_panic(raw in stun_shaped()) {
        if let Ok(msg) = Message::parse(&raw) {
            read_everything(&msg);
        }
    }
}
