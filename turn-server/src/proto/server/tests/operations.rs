//! Operations: drain, capacity redirects, bandwidth caps, dropping a user.

use super::*;

/// An allocation with a channel to PEER; returns the bound relay address.
fn allocation_with_channel(h: &mut Harness, c: &mut Client) -> SocketAddr {
    let advertised = relayed(&c.allocated(h, &[]))[0];
    let bind = peer_request(c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.ask(h, &bind).message_type().class, Class::Success);
    SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port())
}

fn from_peer(h: &mut Harness, relay: SocketAddr, len: usize) -> bool {
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + len + 4];
    h.server.handle_peer(h.now(), relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + len).is_some()
}

#[test]
fn draining_redirects_new_allocations_and_keeps_existing_ones() {
    let mut cfg = config();
    let alternates: Vec<SocketAddr> = vec!["192.0.2.50:3478".parse().unwrap(), "192.0.2.51:3478".parse().unwrap()];
    cfg.alternate_servers = alternates.clone();
    cfg.alternate_servers.push("[2001:db8::50]:3478".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut live = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = allocation_with_channel(&mut h, &mut live);
    h.server.start_drain();
    assert!(h.server.is_draining());

    // New Allocates: 300 with the IPv4 alternates in turn, integrity-protected.
    let mut seen = Vec::new();
    for port in 2..4 {
        let mut c = Client::rest(&format!("203.0.113.6:{port}"), "carol", T0_UNIX + 3600);
        let reply = c.allocate(&mut h, &[]);
        let msg = c.verify(&reply);
        assert_eq!(error_code(&msg), 300);
        seen.push(attr::decode_plain_address(msg.get(attr::ALTERNATE_SERVER).unwrap()).unwrap());
    }
    assert_eq!(seen, alternates);
    assert_eq!(h.server.allocation_count(), 1);

    // The live allocation relays and refreshes as before.
    assert!(h.relay(live.tuple, &channel_data(0x4001, b"media")).is_some());
    assert!(from_peer(&mut h, relay, 100));
    let refresh = live.request(Method::Refresh, &[lifetime(600)]);
    assert_eq!(live.ask(&mut h, &refresh).message_type().class, Class::Success);
}

#[test]
fn draining_without_an_alternate_of_the_family_is_508() {
    let mut cfg = config();
    cfg.alternate_servers = vec!["[2001:db8::50]:3478".parse().unwrap()];
    let mut h = Harness::new(cfg);
    h.server.start_drain();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = c.allocate(&mut h, &[]);
    let msg = c.verify(&reply);
    assert_eq!(error_code(&msg), 508);
    assert!(msg.get(attr::ALTERNATE_SERVER).is_none());
    assert_eq!(h.server.ports_in_use(), 0);
}

#[test]
fn per_allocation_cap_drops_over_the_rate_each_direction_on_its_own() {
    let mut cfg = config();
    cfg.bandwidth.per_allocation = 100_000;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = allocation_with_channel(&mut h, &mut c);
    let payload = vec![0u8; 1000];
    let sent = (0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "one second's worth at 100 kB/s");
    // The other direction has its own allowance.
    let received = (0..150).filter(|_| from_peer(&mut h, relay, 1000)).count();
    assert_eq!(received, 100);
    assert_eq!(h.server.stats().bandwidth_dropped, [[50, 0], [50, 0]]);
    // Half a second later, half the allowance is back.
    h.advance(Duration::from_millis(500));
    let sent = (0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 50);
    // Dropped datagrams are not counted as relayed.
    assert_eq!(h.server.allocation(&c.tuple).unwrap().traffic.packets_to_peer, 150);
}

#[test]
fn per_user_cap_is_shared_by_the_users_allocations() {
    let mut cfg = config();
    cfg.bandwidth.per_user = 100_000;
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let mut other = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    allocation_with_channel(&mut h, &mut a);
    allocation_with_channel(&mut h, &mut b);
    allocation_with_channel(&mut h, &mut other);
    let payload = vec![0u8; 1000];
    let mut sent = (0..60).filter(|_| h.relay(a.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    sent += (0..60).filter(|_| h.relay(b.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "bob's two allocations share one allowance");
    assert!(h.relay(other.tuple, &channel_data(0x4001, &payload)).is_some(), "carol has her own");
    assert_eq!(h.server.stats().bandwidth_dropped[0], [0, 20]);
}

#[test]
fn per_user_cap_is_shared_across_workers() {
    let mut cfg = config();
    cfg.bandwidth.per_user = 100_000;
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let mut one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let mut two = Harness::with_server(Server::with_ledger(cfg, [2; 32], ledger));
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.6:1", "bob", T0_UNIX + 3600);
    allocation_with_channel(&mut one, &mut a);
    allocation_with_channel(&mut two, &mut b);
    let payload = vec![0u8; 1000];
    let mut sent = (0..60).filter(|_| one.relay(a.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    sent += (0..60).filter(|_| two.relay(b.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "bob's allocations on two workers share one allowance");
}

#[test]
fn a_cap_set_by_reload_applies_to_live_allocations() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    allocation_with_channel(&mut h, &mut c);
    let payload = vec![0u8; 1000];
    assert_eq!((0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count(), 150);
    let mut capped = config();
    capped.bandwidth.per_allocation = 100_000;
    assert!(h.server.reload(h.now(), capped).is_empty());
    assert_eq!((0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count(), 100);
}

#[test]
fn dropping_a_user_ends_only_their_allocations_and_frees_ports() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let mut other = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    for c in [&mut a, &mut b, &mut other] {
        let reply = c.allocate(&mut h, &[]);
        c.verify(&reply);
    }
    h.events();
    assert_eq!(h.drop_user("bob"), 2);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.ports_in_use(), 1);
    assert_eq!(h.sockets.open.len(), 1);
    let ended =
        h.events().iter().filter(|e| matches!(e, Event::AllocationEnded { reason: EndReason::Dropped, .. })).count();
    assert_eq!(ended, 2);
    assert_eq!(h.drop_user("nobody"), 0);
    // bob may allocate again at once.
    let mut again = Client::rest("203.0.113.5:4", "bob", T0_UNIX + 3600);
    let reply = again.allocate(&mut h, &[]);
    assert_eq!(again.verify(&reply).message_type().class, Class::Success);
}

#[test]
fn over_capacity_sends_new_allocations_to_the_fleet_and_serves_without_one() {
    let mut cfg = config();
    cfg.capacity = 1;
    let mut h = Harness::new(cfg);
    let mut first = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = first.allocate(&mut h, &[]);
    assert_eq!(first.verify(&reply).message_type().class, Class::Success);
    // Full, but no other relay known: a soft limit, so the client is served.
    let mut second = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let reply = second.allocate(&mut h, &[]);
    assert_eq!(second.verify(&reply).message_type().class, Class::Success);
    // With the fleet known: redirected to its best relays, in turn.
    let fleet: Vec<SocketAddr> = vec![
        "192.0.2.60:3478".parse().unwrap(),
        "192.0.2.61:3478".parse().unwrap(),
        "192.0.2.62:3478".parse().unwrap(),
    ];
    h.server.set_fleet_alternates(fleet.clone());
    let mut sent_to = Vec::new();
    for port in 3..6 {
        let mut c = Client::rest(&format!("203.0.113.5:{port}"), "carol", T0_UNIX + 3600);
        let reply = c.allocate(&mut h, &[]);
        let msg = c.verify(&reply);
        assert_eq!(error_code(&msg), 300);
        sent_to.push(attr::decode_plain_address(msg.get(attr::ALTERNATE_SERVER).unwrap()).unwrap());
    }
    assert_eq!(sent_to, vec![fleet[0], fleet[1], fleet[0]], "spread over the best two");
    assert_eq!(h.server.stats().redirects.get("capacity"), Some(&3));
    // Below capacity again: served here.
    let refresh = first.request(Method::Refresh, &[lifetime(0)]);
    first.ask(&mut h, &refresh);
    let refresh = second.request(Method::Refresh, &[lifetime(0)]);
    second.ask(&mut h, &refresh);
    let mut later = Client::rest("203.0.113.5:9", "dave", T0_UNIX + 3600);
    let reply = later.allocate(&mut h, &[]);
    assert_eq!(later.verify(&reply).message_type().class, Class::Success);
}
