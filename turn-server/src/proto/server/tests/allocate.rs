//! Allocate: attributes, families, EVEN-PORT reservations, ports, quotas, workers sharing a ledger, lifetimes.

use super::*;

#[test]
fn allocate_retransmission_and_mismatch() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let tid = [0x55; 12];
    let req = c.request_with_tid(Method::Allocate, &[udp()], tid);
    let first = relayed(&c.ask(&mut h, &req));
    let again = relayed(&c.ask(&mut h, &req));
    assert_eq!(first, again);
    assert_eq!(h.sockets.opened_total, 1);
    let other = c.request(Method::Allocate, &[udp()]);
    assert_eq!(error_code(&c.ask(&mut h, &other)), 437);
}

#[test]
fn allocate_attribute_errors() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    type Attrs = Vec<(u16, Vec<u8>)>;
    let cases: Vec<(Attrs, u16)> = vec![
        (vec![], 400),                                               // no REQUESTED-TRANSPORT
        (vec![(attr::REQUESTED_TRANSPORT, vec![99, 0, 0, 0])], 442), // neither UDP nor TCP
        (vec![(attr::REQUESTED_TRANSPORT, vec![17, 0])], 400),       // malformed
        (vec![udp(), (0x0031, vec![1])], 420),                       // unknown required
        (vec![udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![3, 0, 0, 0])], 440),
        (vec![udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![1, 0, 0, 0])], 400),
        (
            vec![
                udp(),
                (attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]),
                (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
            ],
            400,
        ),
        (vec![udp(), (attr::EVEN_PORT, vec![0x80, 0, 0, 0]), (attr::RESERVATION_TOKEN, vec![1; 8])], 400),
        (vec![udp(), (attr::RESERVATION_TOKEN, vec![1; 8])], 508), // unknown token
        (vec![udp(), (attr::LIFETIME, vec![1])], 400),
    ];
    for (attrs, want) in cases {
        let req = c.request(Method::Allocate, &attrs);
        let msg = c.ask(&mut h, &req);
        assert_eq!(error_code(&msg), want, "attributes {attrs:?}");
        if want == 420 {
            assert_eq!(msg.get(attr::UNKNOWN_ATTRIBUTES).unwrap(), &[0x00, 0x31]);
        }
    }
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.ports_in_use(), 0);
}

#[test]
fn ipv6_and_dual_stack_allocations() {
    let mut h = Harness::new(config());
    let mut v6 = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = v6.allocated(&mut h, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    let r = relayed(&msg);
    assert!(r.len() == 1 && r[0].is_ipv6());
    let mut dual = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = dual.allocated(&mut h, &[(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    let r = relayed(&msg);
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ipv4() && r[1].is_ipv6());
}

#[test]
fn dual_stack_without_ipv6_relay_reports_address_error() {
    let mut cfg = config();
    cfg.relay_ips.truncate(1);
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = c.allocated(&mut h, &[(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    assert_eq!(relayed(&msg).len(), 1);
    let aec = msg.get(attr::ADDRESS_ERROR_CODE).unwrap();
    assert_eq!((aec[0], aec[2], aec[3]), (2, 4, 40));
    let mut only6 = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = only6.allocated(&mut h, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    assert_eq!(error_code(&msg), 440);
}

#[test]
fn even_port_reservation_is_claimed_or_released() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = a.allocated(&mut h, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    let port = relayed(&msg)[0].port();
    assert_eq!(port % 2, 0);
    let token = msg.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(h.server.ports_in_use(), 2);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = b.allocated(&mut h, &[(attr::RESERVATION_TOKEN, token.clone())]);
    assert_eq!(relayed(&msg)[0].port(), port + 1);
    // The token is single use.
    let mut c = Client::rest("203.0.113.5:3", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&c.allocated(&mut h, &[(attr::RESERVATION_TOKEN, token)])), 508);

    // An unclaimed reservation gives its port back after about 30 s.
    let mut d = Client::rest("203.0.113.5:4", "bob", T0_UNIX + 3600);
    d.allocated(&mut h, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    assert_eq!(h.server.ports_in_use(), 4);
    h.advance(Duration::from_secs(31));
    assert_eq!(h.server.ports_in_use(), 3);
    // Once every allocation expires, nothing is held: no port leaks.
    h.advance(Duration::from_secs(600));
    assert_eq!(h.server.ports_in_use(), 0);
    assert!(h.sockets.open.is_empty());
}

#[test]
fn ports_held_by_other_processes_are_skipped() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    h.sockets.taken_elsewhere.insert("10.0.0.10:50000".parse().unwrap());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(relayed(&a.allocated(&mut h, &[]))[0].port(), 50001);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&b.allocated(&mut h, &[])), 508);
}

#[test]
fn quotas_per_user_and_total() {
    let mut cfg = config();
    cfg.quotas.per_user = 1;
    cfg.quotas.total = 2;
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    a.allocated(&mut h, &[]);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&b.allocated(&mut h, &[])), 486);
    let mut c = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let mut d = Client::rest("203.0.113.5:4", "dave", T0_UNIX + 3600);
    assert_eq!(error_code(&d.allocated(&mut h, &[])), 508);
    // Quota is given back when an allocation ends.
    let req = a.request(Method::Refresh, &[lifetime(0)]);
    a.ask(&mut h, &req);
    let mut e = Client::rest("203.0.113.5:5", "bob", T0_UNIX + 3600);
    assert_eq!(e.allocated(&mut h, &[]).message_type().class, Class::Success);
}

#[test]
fn workers_sharing_a_ledger_share_quotas_ports_and_nonces() {
    let mut cfg = config();
    cfg.quotas.per_user = 1;
    cfg.relay_ips.truncate(1);
    cfg.max_port = cfg.min_port + 1;
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let mut one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let mut two = Harness::with_server(Server::with_ledger(cfg, [2; 32], ledger.clone()));
    let code = |h: &mut Harness, c: &mut Client| {
        let r = c.allocate(h, &[]);
        let m = c.verify(&r);
        if m.message_type().class == Class::Success {
            0
        } else {
            error_code(&m)
        }
    };
    let mut alice = Client::rest("203.0.113.5:1", "alice", T0_UNIX + 3600);
    assert_eq!(code(&mut one, &mut alice), 0);
    // The same user through the other worker: the quota is the relay's, not the worker's.
    let mut alice_again = Client::rest("203.0.113.6:1", "alice", T0_UNIX + 3600);
    assert_eq!(code(&mut two, &mut alice_again), 486);
    let mut bob = Client::rest("203.0.113.6:2", "bob", T0_UNIX + 3600);
    assert_eq!(code(&mut two, &mut bob), 0);
    let (a, b) = (one.sockets.open.iter().next().copied(), two.sockets.open.iter().next().copied());
    assert!(a.is_some() && a != b, "each port of the range goes to one worker only: {a:?} {b:?}");
    // Two ports, both held: a third allocation on either worker finds none.
    let mut carol = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    assert_eq!(code(&mut one, &mut carol), 508);
    assert_eq!((ledger.allocations(), ledger.ports_in_use()), (2, 2));
    // Ending an allocation on one worker frees its place for the other.
    let req = alice.request(Method::Refresh, &[lifetime(0)]);
    alice.verify(&one.send(alice.tuple, &req).expect("refresh answered"));
    assert_eq!(code(&mut two, &mut alice_again), 0);
    assert_eq!((ledger.allocations(), ledger.ports_in_use()), (2, 2));
    // A nonce one worker minted is good on the other (same key).
    let mut dave = Client::rest("203.0.113.5:4", "dave", T0_UNIX + 3600);
    dave.learn_nonce(&mut one);
    let req = dave.request(Method::Allocate, &[udp()]);
    let reply = two.send(dave.tuple, &req).expect("answered");
    // Authenticated (not 438 Stale Nonce), then refused only because both ports are held.
    assert_eq!(error_code(&dave.verify(&reply)), 508);
}

#[test]
fn lifetimes_are_clamped_and_allocations_expire() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(lifetime_of(&a.allocated(&mut h, &[lifetime(100_000)])), 3600);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(lifetime_of(&b.allocated(&mut h, &[lifetime(10)])), 600);
    h.events();
    h.advance(Duration::from_secs(599));
    assert_eq!(h.server.allocation_count(), 2);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.allocation_count(), 1);
    let ended = h.events();
    assert!(matches!(&ended[..], [Event::AllocationEnded { reason: EndReason::Expired, .. }]));
    h.advance(Duration::from_secs(3000));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.ports_in_use(), 0);
    assert!(h.timeout().is_none());
}

#[test]
fn an_allocate_waits_for_its_socket_and_holds_nothing_when_the_bind_fails() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[udp()]);
    assert!(h.server.handle_client(h.now(), c.tuple, &req).is_none());
    let Output::OpenRelay { addr, kind } = h.server.poll_output() else { panic!("no OpenRelay") };
    assert_eq!(kind, SocketKind::Udp { dont_fragment: false });
    assert_eq!(h.server.ports_in_use(), 1, "the port is reserved before the bind");
    // A retransmission while the bind is under way is not answered twice.
    assert!(h.server.handle_client(h.now(), c.tuple, &req).is_none());
    assert!(matches!(h.server.poll_output(), Output::Timeout(_)));
    h.server.relay_opened(h.now(), addr, Err(BindError::Failed("permission denied".into())));
    assert_eq!(error_code(&c.verify(&h.transmit().unwrap().data)), 508);
    assert_eq!((h.server.allocation_count(), h.server.ports_in_use(), h.server.ledger().allocations()), (0, 0, 0));
}

#[test]
fn a_stream_client_gone_before_its_bind_is_answered_leaves_nothing_behind() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[udp()]);
    assert!(h.server.handle_client(h.now(), c.tuple, &req).is_none());
    let Output::OpenRelay { addr, .. } = h.server.poll_output() else { panic!("no OpenRelay") };
    h.server.connection_closed(h.now(), c.tuple);
    h.server.relay_opened(h.now(), addr, Ok(()));
    assert_eq!(h.server.poll_output(), Output::CloseRelay { addr });
    assert!(matches!(h.server.poll_output(), Output::Timeout(_)), "no answer to a closed connection");
    assert_eq!((h.server.allocation_count(), h.server.ports_in_use(), h.server.ledger().allocations()), (0, 0, 0));
}

/// Two workers of one relay, as the datagram workers are: one ledger, their own cores.
fn two_workers(cfg: ServerConfig) -> (Harness, Harness, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let two = Harness::with_server(Server::with_ledger(cfg, [2; 32], ledger.clone()));
    (one, two, ledger)
}

#[test]
fn a_reservation_made_on_one_worker_is_claimed_on_another_once() {
    let (mut one, mut two, ledger) = two_workers(config());
    // An RTP/RTCP pair from one host: steering by address and port may send its two Allocates
    // to different workers.
    let mut rtp = Client::rest("203.0.113.5:40000", "bob", T0_UNIX + 3600);
    let msg = rtp.allocated(&mut one, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    let port = relayed(&msg)[0].port();
    let token = msg.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(ledger.ports_in_use(), 2, "the pair's second port is held relay-wide");
    assert_eq!(one.sockets.open.len(), 1, "the worker that made the reservation keeps no socket for it");

    let mut rtcp = Client::rest("203.0.113.5:40001", "bob", T0_UNIX + 3600);
    let msg = rtcp.allocated(&mut two, &[(attr::RESERVATION_TOKEN, token.clone())]);
    assert_eq!(relayed(&msg)[0].port(), port + 1);
    assert!(two.sockets.open.iter().any(|a| a.port() == port + 1), "bound by the worker serving it");
    assert_eq!(ledger.ports_in_use(), 2);

    // Single use, on every worker.
    for h in [&mut one, &mut two] {
        let mut again = Client::rest("203.0.113.5:40002", "bob", T0_UNIX + 3600);
        assert_eq!(error_code(&again.allocated(h, &[(attr::RESERVATION_TOKEN, token.clone())])), 508);
    }
    // The claimed port is the new allocation's: its issuer's timer gives nothing back.
    one.advance(Duration::from_secs(31));
    assert_eq!(ledger.ports_in_use(), 2);
    let req = rtcp.request(Method::Refresh, &[lifetime(0)]);
    rtcp.ask(&mut two, &req);
    assert_eq!(ledger.ports_in_use(), 1);
    assert!(two.sockets.open.is_empty());
}

#[test]
fn an_expired_reservation_is_refused_on_any_worker_and_its_port_comes_back_once() {
    let (mut one, mut two, ledger) = two_workers(config());
    let mut rtp = Client::rest("203.0.113.5:40000", "bob", T0_UNIX + 3600);
    let msg = rtp.allocated(&mut one, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    let token = msg.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    // 31 s later on the other worker, before the issuing worker's timer has run.
    two.elapsed += Duration::from_secs(31);
    let mut rtcp = Client::rest("203.0.113.5:40001", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&rtcp.allocated(&mut two, &[(attr::RESERVATION_TOKEN, token)])), 508);
    assert_eq!((ledger.ports_in_use(), ledger.allocations()), (1, 1));
    // The issuer's timer finds it gone and releases nothing twice.
    one.advance(Duration::from_secs(31));
    assert_eq!(ledger.ports_in_use(), 1);
    one.advance(Duration::from_secs(600));
    assert_eq!((ledger.ports_in_use(), ledger.allocations()), (0, 0));
}

#[test]
fn a_claimed_reservation_whose_port_another_process_took_is_refused_and_released() {
    let (mut one, mut two, ledger) = two_workers(config());
    let mut rtp = Client::rest("203.0.113.5:40000", "bob", T0_UNIX + 3600);
    let msg = rtp.allocated(&mut one, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    let reserved = SocketAddr::new("10.0.0.10".parse().unwrap(), relayed(&msg)[0].port() + 1);
    let token = msg.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    two.sockets.taken_elsewhere.insert(reserved);
    let mut rtcp = Client::rest("203.0.113.5:40001", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&rtcp.allocated(&mut two, &[(attr::RESERVATION_TOKEN, token)])), 508);
    assert_eq!((ledger.ports_in_use(), ledger.allocations(), two.sockets.opened_total), (1, 1, 0));
}
