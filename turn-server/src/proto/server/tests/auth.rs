//! The long-term credential mechanism: challenges, REST and static credentials, nonces, password algorithms.

use super::*;

#[test]
fn unauthenticated_allocate_is_challenged() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let req = c.unauthenticated(Method::Allocate, &[udp()]);
    let reply = h.send(c.tuple, &req).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&msg), 401);
    assert_eq!(msg.get(attr::REALM).unwrap(), REALM.as_bytes());
    assert!(msg.get(attr::NONCE).unwrap().starts_with(b"obMatJos2"));
    assert_eq!(msg.get(attr::PASSWORD_ALGORITHMS).unwrap(), &[0, 1, 0, 0, 0, 2, 0, 0]);
    assert!(msg.integrity().is_none());
    assert!(msg.get(attr::SOFTWARE).is_none(), "challenges stay small");
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn challenge_is_no_larger_than_it_needs_to_be() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let req = c.unauthenticated(Method::Allocate, &[udp()]);
    assert_eq!(req.len(), 28, "the smallest Allocate: header and REQUESTED-TRANSPORT");
    let reply = h.send(c.tuple, &req).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert!(!msg.has_fingerprint(), "a request without FINGERPRINT gets none back");
    assert_eq!(msg.get(attr::NONCE).unwrap().len(), 32, "nonce cookie and sealed expiry and tag, unpadded");
    // Header, ERROR-CODE 401 "Unauthorized", REALM "example.org" padded, NONCE, PASSWORD-ALGORITHMS.
    let expected = 20 + (4 + 4 + 12) + (4 + 12) + (4 + 32) + (4 + 8);
    assert_eq!(reply.len(), expected, "401 to a {}-byte Allocate", req.len());
    eprintln!("unauthenticated Allocate: {} B -> 401 of {} B", req.len(), reply.len());

    // A client that multiplexes STUN with other protocols sends FINGERPRINT and gets it back.
    let tid = c.tid();
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &tid);
    b.attr(udp().0, &udp().1);
    b.fingerprint();
    let reply = h.send(c.tuple, &b.finish()).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&msg), 401);
    assert!(msg.has_fingerprint());
    assert_eq!(reply.len(), expected + 8);
}

#[test]
fn rest_credential_allocates_with_protected_response() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = c.allocate(&mut h, &[]);
    let msg = c.verify(&reply);
    assert_eq!(msg.message_type(), MessageType::new(Method::Allocate, Class::Success));
    let relays = relayed(&msg);
    assert_eq!(relays.len(), 1);
    // Advertised (public) address, bound private one.
    assert_eq!(relays[0].ip(), "192.0.2.10".parse::<IpAddr>().unwrap());
    assert!((50000..=50099).contains(&relays[0].port()));
    assert!(h.sockets.open.contains(&SocketAddr::new("10.0.0.10".parse().unwrap(), relays[0].port())));
    assert_eq!(lifetime_of(&msg), 600);
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        c.tuple.client
    );
    assert!(matches!(h.events()[..], [Event::AllocationCreated { .. }]));
}

#[test]
fn static_user_allocates() {
    let mut h = Harness::new(config());
    let mut c = Client::with_password("203.0.113.5:1", "alice", "alice-pw");
    let msg = c.allocated(&mut h, &[]);
    assert_eq!(msg.message_type().class, Class::Success);
}

#[test]
fn wrong_password_and_expired_credential_get_401() {
    let mut h = Harness::new(config());
    let mut wrong = Client::with_password("203.0.113.5:1", &format!("{}:bob", T0_UNIX + 3600), "not-the-password");
    let msg = Message::parse(&wrong.allocate(&mut h, &[])).map(|m| error_code(&m)).unwrap();
    assert_eq!(msg, 401);
    let mut expired = Client::rest("203.0.113.5:2", "bob", T0_UNIX - 1);
    assert_eq!(error_code(&Message::parse(&expired.allocate(&mut h, &[])).unwrap()), 401);
    let mut unknown = Client::with_password("203.0.113.5:3", "mallory", "x");
    assert_eq!(error_code(&Message::parse(&unknown.allocate(&mut h, &[])).unwrap()), 401);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rotated_secret_still_verifies_old_credentials() {
    let mut cfg = config();
    cfg.credentials.rest = Some(RestSecrets::new(["new-secret", SECRET]).unwrap());
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(c.allocated(&mut h, &[]).message_type().class, Class::Success);
}

#[test]
fn stale_or_foreign_nonce_gets_438_with_a_fresh_one() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 7200);
    c.learn_nonce(&mut h);
    h.advance(Duration::from_secs(601));
    let req = c.request(Method::Allocate, &[udp()]);
    let msg = Message::parse(&h.send(c.tuple, &req).unwrap())
        .map(|m| (error_code(&m), m.get(attr::NONCE).map(<[u8]>::to_vec)))
        .unwrap();
    assert_eq!(msg.0, 438);
    let fresh = msg.1.unwrap();
    assert_ne!(fresh, c.nonce);
    // A nonce issued to another address is not accepted either.
    let mut other = Client::rest("203.0.113.6:1", "bob", T0_UNIX + 7200);
    other.nonce = fresh.clone();
    let req = other.request(Method::Allocate, &[udp()]);
    assert_eq!(error_code(&Message::parse(&h.send(other.tuple, &req).unwrap()).unwrap()), 438);
    // With the fresh nonce the original client succeeds.
    c.nonce = fresh;
    let req = c.request(Method::Allocate, &[udp()]);
    assert_eq!(c.ask(&mut h, &req).message_type().class, Class::Success);
}

#[test]
fn missing_username_with_integrity_is_400() {
    let mut h = Harness::new(config());
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &[3; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).integrity_sha1(b"k");
    assert_eq!(error_code(&Message::parse(&h.send(tuple("203.0.113.5:1"), &b.finish()).unwrap()).unwrap()), 400);
}

#[test]
fn sha256_password_algorithm_is_negotiated() {
    let mut h = Harness::new(config());
    let username = format!("{}:bob", T0_UNIX + 3600);
    let password = ice_config::rest_password(SECRET.as_bytes(), &username);
    let mut c = Client::with_password("203.0.113.5:1", &username, &password);
    c.key = long_term_key(PasswordAlgorithm::Sha256, &username, REALM, &password);
    c.sha256 = true;
    let reply = c.allocate(&mut h, &[]);
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(msg.message_type().class, Class::Success);
    assert!(matches!(msg.integrity(), Some(crate::proto::stun::message::IntegrityAttr::Sha256 { .. })));
    assert_eq!(msg.check_integrity(c.key.as_bytes()), Integrity::Valid);
}

#[test]
fn password_algorithm_without_the_echoed_list_is_400() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[udp(), (attr::PASSWORD_ALGORITHM, vec![0, 2, 0, 0])]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 400);
}
