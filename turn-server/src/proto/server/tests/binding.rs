//! STUN Binding requests, with and without RFC 5780 NAT behaviour discovery.

use super::*;

#[test]
fn binding_returns_reflexive_address() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:40000");
    let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]).finish();
    let reply = h.send(t, &req).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Binding, Class::Success));
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        t.client
    );
    assert_eq!(msg.get(attr::SOFTWARE).unwrap(), b"turn-server test");
    assert!(msg.has_fingerprint());
}

#[test]
fn binding_with_unknown_required_attribute_gets_420() {
    let mut h = Harness::new(config());
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]);
    b.attr(0x0042, b"?");
    let reply = h.send(tuple("203.0.113.5:1"), &b.finish()).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&msg), 420);
    assert_eq!(msg.get(attr::UNKNOWN_ATTRIBUTES).unwrap(), &[0x00, 0x42]);
}

#[test]
fn no_stun_drops_binding_but_not_turn() {
    let mut cfg = config();
    cfg.no_stun = true;
    let mut h = Harness::new(cfg);
    let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]).finish();
    assert!(h.send(tuple("203.0.113.5:1"), &req).is_none());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = c.allocated(&mut h, &[]);
    assert_eq!(msg.message_type().class, Class::Success);
}
