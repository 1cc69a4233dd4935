//! RFC 6062 TCP allocations: Connect, ConnectionBind, peers connecting in.

use super::*;

/// A TCP client with an RFC 6062 allocation; returns it and the relay's bound address.
fn tcp_allocation(h: &mut Harness) -> (Client, SocketAddr) {
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(h);
    let req = c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    let relay = relayed(&c.ask(h, &req))[0];
    (c, SocketAddr::new("10.0.0.10".parse().unwrap(), relay.port()))
}

#[test]
fn tcp_allocation_connect_and_bind() {
    let mut h = Harness::new(config());
    let (mut c, bound) = tcp_allocation(&mut h);
    assert!(h.sockets.open.contains(&bound));

    // Connect: the core asks the driver to connect, then answers with a CONNECTION-ID.
    let req = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert!(h.send(c.tuple, &req).is_none(), "answered once the driver reports");
    let Some(TcpCommand::ConnectPeer { id, peer, .. }) = h.command() else { panic!("no ConnectPeer") };
    assert_eq!(peer, PEER.parse().unwrap());
    // A second Connect to the same peer while the first is open: 446.
    let again = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert_eq!(error_code(&c.ask(&mut h, &again)), 446);
    h.server.tcp_connect_result(h.now(), id, true);
    let reply = h.transmit().unwrap();
    let msg = c.verify(&reply.data);
    assert_eq!(msg.message_type(), MessageType::new(Method::Connect, Class::Success));
    assert_eq!(attr::decode_u32(msg.get(attr::CONNECTION_ID).unwrap()).unwrap(), id);

    // ConnectionBind on a new data connection splices it.
    let mut data = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    data.username = c.username.clone();
    data.key = c.key.clone();
    data.tuple.transport = ClientTransport::Tcp;
    data.nonce = Message::parse(&h.send(data.tuple, &data.unauthenticated(Method::ConnectionBind, &[])).unwrap())
        .map(|m| m.get(attr::NONCE).unwrap().to_vec())
        .unwrap();
    let bind = data.request(Method::ConnectionBind, &[(attr::CONNECTION_ID, id.to_be_bytes().to_vec())]);
    assert_eq!(data.ask(&mut h, &bind).message_type().class, Class::Success);
    assert_eq!(h.command(), Some(TcpCommand::Splice { id, data: data.tuple }));
    // The id is single use.
    let bind = data.request(Method::ConnectionBind, &[(attr::CONNECTION_ID, id.to_be_bytes().to_vec())]);
    assert_eq!(error_code(&data.ask(&mut h, &bind)), 400);

    // Deleting the allocation closes its peer connections.
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    c.ask(&mut h, &req);
    assert_eq!(h.command(), Some(TcpCommand::ClosePeer { id }));
}

#[test]
fn tcp_allocation_refusals() {
    let mut h = Harness::new(config());
    // Over UDP, or with UDP-only attributes: 400.
    let mut udp_client = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    udp_client.learn_nonce(&mut h);
    let req = udp_client.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    assert_eq!(error_code(&udp_client.ask(&mut h, &req)), 400);
    let mut c = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(&mut h);
    let req =
        c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0]), (attr::EVEN_PORT, vec![0; 4])]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 400);
    let req = c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    c.ask(&mut h, &req);
    // A refused peer: 403, and no connect attempt.
    let req = peer_request(&mut c, Method::Connect, "127.0.0.1:7", &[]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 403);
    assert!(h.command().is_none());
    // ChannelBind makes no sense on a TCP allocation.
    let req = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0, 0, 0])]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 400);
    // A peer that cannot be reached: 447.
    let req = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert!(h.send(c.tuple, &req).is_none());
    let Some(TcpCommand::ConnectPeer { id, .. }) = h.command() else { panic!("no ConnectPeer") };
    h.server.tcp_connect_result(h.now(), id, false);
    assert_eq!(error_code(&c.verify(&h.transmit().unwrap().data)), 447);
}

#[test]
fn tcp_peer_connections_need_a_permission_and_expire_unbound() {
    let mut h = Harness::new(config());
    let (mut c, bound) = tcp_allocation(&mut h);
    let now = h.now();
    assert_eq!(h.server.tcp_peer_incoming(now, bound, PEER.parse().unwrap()), None, "no permission yet");
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    c.ask(&mut h, &req);
    let id = h.server.tcp_peer_incoming(now, bound, PEER.parse().unwrap()).unwrap();
    let ind = h.transmit().unwrap();
    let msg = Message::parse(&ind.data).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::ConnectionAttempt, Class::Indication));
    assert_eq!(attr::decode_u32(msg.get(attr::CONNECTION_ID).unwrap()).unwrap(), id);
    // Not bound within 30 s: closed.
    h.advance(Duration::from_secs(31));
    assert_eq!(h.command(), Some(TcpCommand::ClosePeer { id }));
}
