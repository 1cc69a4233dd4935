//! Permissions, channels and the data path both ways.

use super::*;

#[test]
fn create_permission_refuses_unsafe_peers() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    for peer in ["127.0.0.1:9", "10.1.2.3:9", "169.254.169.254:80", "[::ffff:127.0.0.1]:9", "0.0.0.0:9"] {
        let req = peer_request(&mut c, Method::CreatePermission, peer, &[]);
        let msg = c.ask(&mut h, &req);
        let want = if peer.starts_with('[') { 443 } else { 403 };
        assert_eq!(error_code(&msg), want, "peer {peer}");
    }
    let req = c.request(Method::CreatePermission, &[]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 400, "no XOR-PEER-ADDRESS");
}

#[test]
fn loopback_peers_only_when_allowed() {
    let mut cfg = config();
    cfg.peer_policy = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..PeerPolicyConfig::default() });
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let req = peer_request(&mut c, Method::CreatePermission, "127.0.0.1:9", &[]);
    assert_eq!(c.ask(&mut h, &req).message_type().class, Class::Success);
}

#[test]
fn send_indication_needs_a_permission_that_has_not_expired() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = relayed(&c.allocated(&mut h, &[]))[0];
    let ind = send_indication(PEER, b"hello");
    assert!(h.relay(c.tuple, &ind).is_none(), "no permission yet");
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    assert_eq!(c.ask(&mut h, &req).message_type().class, Class::Success);
    let (from, to, data) = h.relay(c.tuple, &ind).unwrap();
    assert_eq!((from.port(), to, &data[..]), (relay.port(), PEER.parse().unwrap(), &b"hello"[..]));
    h.advance(Duration::from_secs(300));
    assert!(h.relay(c.tuple, &ind).is_none(), "permission expired");
}

#[test]
fn channel_bind_and_channel_data_both_ways() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let advertised = relayed(&c.allocated(&mut h, &[]))[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let bad = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x3F, 0xFF, 0, 0])]);
    assert_eq!(error_code(&c.ask(&mut h, &bad)), 400);
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.ask(&mut h, &bind).message_type().class, Class::Success);
    // Same number to another peer, or the same peer on another number: 400.
    let clash = peer_request(
        &mut c,
        Method::ChannelBind,
        "93.184.216.34:5001",
        &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])],
    );
    assert_eq!(error_code(&c.ask(&mut h, &clash)), 400);
    let clash = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x02, 0, 0])]);
    assert_eq!(error_code(&c.ask(&mut h, &clash)), 400);

    let (from, to, data) = h.relay(c.tuple, &channel_data(0x4001, b"media")).unwrap();
    assert_eq!((from, to, &data[..]), (bound_relay, PEER.parse().unwrap(), &b"media"[..]));
    assert!(h.relay(c.tuple, &channel_data(0x4002, b"x")).is_none(), "unbound channel");
    assert!(h.relay(c.tuple, &[0x40, 0x01, 0x00, 0x09, 1]).is_none(), "length past the end");

    // Peer to client over the channel: framed in place.
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"reply");
    let out =
        h.server.handle_peer(h.now(), bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5).unwrap();
    assert_eq!(out.tuple, c.tuple);
    assert_eq!(&buf[out.start..out.end], &channel_data(0x4001, b"reply")[..]);
    // From an address without a permission: dropped.
    let stranger: SocketAddr = "93.184.216.99:1".parse().unwrap();
    assert!(h.server.handle_peer(h.now(), bound_relay, stranger, &mut buf, headroom, headroom + 5).is_none());
}

#[test]
fn peer_data_without_channel_becomes_data_indication() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let advertised = relayed(&c.allocated(&mut h, &[]))[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    c.ask(&mut h, &req);
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"hello");
    let out =
        h.server.handle_peer(h.now(), bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5).unwrap();
    let msg = Message::parse(&buf[out.start..out.end]).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Data, Class::Indication));
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        PEER.parse().unwrap()
    );
    assert_eq!(msg.get(attr::DATA).unwrap(), b"hello");
}

#[test]
fn requests_without_allocation_get_437() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 437);
    let req = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0, 0, 0])]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 437);
    assert!(h.relay(c.tuple, &send_indication(PEER, b"x")).is_none());
    assert!(h.relay(c.tuple, &channel_data(0x4000, b"x")).is_none());
}

#[test]
fn unknown_method_request_is_400_and_garbage_is_dropped() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:1");
    let req = MessageBuilder::new(MessageType::new(Method::Other(0x0AB), Class::Request), &[1; 12]).finish();
    assert_eq!(error_code(&Message::parse(&h.send(t, &req).unwrap()).unwrap()), 400);
    for garbage in [&b""[..], b"\x00", b"\x00\x01\x00\x00", &[0xFF; 40], &[0x40, 0, 0, 0]] {
        assert!(h.send(t, garbage).is_none());
    }
    // Responses and indications other than Send are not answered.
    let resp = MessageBuilder::new(MessageType::new(Method::Binding, Class::Success), &[1; 12]).finish();
    assert!(h.send(t, &resp).is_none());
}

#[test]
fn stream_clients_get_padded_channel_data_and_lose_the_allocation_on_close() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    let advertised = relayed(&c.allocated(&mut h, &[]))[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.ask(&mut h, &bind).message_type().class, Class::Success);
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0xEEu8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"reply");
    let now = h.now();
    let out = h.server.handle_peer(now, bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5).unwrap();
    let mut want = channel_data(0x4001, b"reply");
    want.extend_from_slice(&[0, 0, 0]);
    assert_eq!(&buf[out.start..out.end], &want[..]);
    h.connection_closed(c.tuple);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.sockets.open.is_empty());
    assert!(matches!(h.events().last(), Some(Event::AllocationEnded { reason: EndReason::ConnectionClosed, .. })));
}

fn discovery_config() -> ServerConfig {
    let mut cfg = config();
    cfg.nat_discovery = Some(crate::proto::NatDiscovery {
        primary_ip: "10.0.0.10".parse().unwrap(),
        alternate_ip: "10.0.0.11".parse().unwrap(),
        primary_port: 3478,
        alternate_port: 3479,
    });
    cfg
}

fn binding_with(attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[9; 12]);
    for (code, value) in attrs {
        b.attr(*code, value);
    }
    b.finish()
}

#[test]
fn rfc5780_change_request_answers_from_the_other_address() {
    let mut h = Harness::new(discovery_config());
    let t = tuple("203.0.113.5:40000");
    let now = h.now();
    for (flags, from) in
        [(0u32, "10.0.0.10:3478"), (0x02, "10.0.0.10:3479"), (0x04, "10.0.0.11:3478"), (0x06, "10.0.0.11:3479")]
    {
        let attrs = if flags == 0 { vec![] } else { vec![(attr::CHANGE_REQUEST, flags.to_be_bytes().to_vec())] };
        assert!(h.server.handle_client(now, t, &binding_with(&attrs)).is_none());
        let out = h.transmit().unwrap();
        let from: SocketAddr = from.parse().unwrap();
        let expect_redirect = (flags != 0).then_some((from, t.client));
        assert_eq!(out.redirect, expect_redirect, "flags {flags:#x}");
        let msg = Message::parse(&out.data).unwrap();
        assert_eq!(attr::decode_plain_address(msg.get(attr::RESPONSE_ORIGIN).unwrap()).unwrap(), from);
        assert_eq!(
            attr::decode_plain_address(msg.get(attr::OTHER_ADDRESS).unwrap()).unwrap(),
            "10.0.0.11:3479".parse().unwrap()
        );
    }
    // RESPONSE-PORT sends the answer to another port of the client.
    let attrs = vec![(attr::RESPONSE_PORT, vec![0x1F, 0x90, 0, 0])];
    assert!(h.server.handle_client(now, t, &binding_with(&attrs)).is_none());
    let out = h.transmit().unwrap();
    assert_eq!(out.redirect, Some(("10.0.0.10:3478".parse().unwrap(), "203.0.113.5:8080".parse().unwrap())));
}

#[test]
fn rfc5780_attributes_only_where_configured() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:40000");
    let reply = h.send(t, &binding_with(&[(attr::CHANGE_REQUEST, vec![0, 0, 0, 4])])).unwrap();
    assert_eq!(error_code(&Message::parse(&reply).unwrap()), 420);
    let reply = h.send(t, &binding_with(&[])).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert!(msg.get(attr::OTHER_ADDRESS).is_none() && msg.get(attr::RESPONSE_ORIGIN).is_none());
}
