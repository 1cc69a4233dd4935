//! Mirroring channels into the kernel fast path: installed only while every check holds,
//! withdrawn the moment one stops holding, and the fast path's counts folded back.

use super::*;

const BIND: [u8; 4] = [0x40, 0x01, 0, 0];

fn offloading() -> Harness {
    let mut cfg = config();
    cfg.peer_policy = PeerPolicy::new(PeerPolicyConfig::default());
    let mut h = Harness::new(cfg);
    h.server.enable_offload(h.now());
    h
}

/// Allocates and binds channel 0x4001 to PEER; returns the bound relay address.
fn bound(h: &mut Harness, c: &mut Client) -> SocketAddr {
    let advertised = relayed(&c.allocated(h, &[]))[0];
    let bind = peer_request(c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert_eq!(c.ask(h, &bind).message_type().class, Class::Success);
    SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port())
}

fn route(c: &Client, relay: SocketAddr) -> ChannelRoute {
    ChannelRoute { tuple: c.tuple, relay, peer: PEER.parse().unwrap(), number: 0x4001 }
}

#[test]
fn nothing_is_offered_until_the_driver_has_a_fast_path() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = bound(&mut h, &mut c);
    assert!(h.offloads().is_empty());
    // Enabled later (the program loaded after the workers started): live channels are offered.
    h.server.enable_offload(h.now());
    assert_eq!(h.offloads(), vec![OffloadCommand::Install(route(&c, relay))]);
}

#[test]
fn a_channel_is_installed_before_its_success_response_leaves() {
    let mut h = offloading();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert!(h.server.handle_client(h.now(), c.tuple, &bind).is_none());
    // The client may send ChannelData the moment it reads the response: the route must be there.
    assert!(matches!(h.server.poll_output(), Output::Offload(OffloadCommand::Install(r)) if r.number == 0x4001));
    assert!(matches!(h.server.poll_output(), Output::Transmit(_)));
    // A refresh of the same binding installs nothing twice.
    let again = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert_eq!(c.ask(&mut h, &again).message_type().class, Class::Success);
    assert!(h.offloads().is_empty());
}

#[test]
fn the_route_goes_when_its_permission_expires_and_returns_with_a_new_one() {
    let mut h = offloading();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = bound(&mut h, &mut c);
    let r = route(&c, relay);
    assert_eq!(h.offloads(), vec![OffloadCommand::Install(r)]);
    // The permission (300 s) ends before the channel (600 s): the timer is brought forward to it.
    let permission_end = Instant::EPOCH + Duration::from_secs(300);
    assert_eq!(h.timeout(), Some(permission_end));
    h.advance(Duration::from_secs(299));
    assert!(h.offloads().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.offloads(), vec![OffloadCommand::Remove(r)], "withdrawn the instant it expires");
    // A new permission for the peer lets the still-bound channel back in.
    let perm = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    assert_eq!(c.ask(&mut h, &perm).message_type().class, Class::Success);
    assert_eq!(h.offloads(), vec![OffloadCommand::Install(r)]);
}

#[test]
fn a_refreshed_permission_keeps_the_route_until_the_channel_ends() {
    let mut h = offloading();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = bound(&mut h, &mut c);
    h.offloads();
    for _ in 0..2 {
        h.advance(Duration::from_secs(200));
        let perm = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
        assert_eq!(c.ask(&mut h, &perm).message_type().class, Class::Success);
        let refresh = c.request(Method::Refresh, &[lifetime(600)]);
        assert_eq!(c.ask(&mut h, &refresh).message_type().class, Class::Success);
        assert!(h.offloads().is_empty(), "at {:?}", h.elapsed);
    }
    h.advance(Duration::from_secs(199));
    assert!(h.offloads().is_empty());
    // The channel itself (bound at 0 s for 600 s) was not refreshed; its permission was.
    h.advance(Duration::from_secs(1));
    assert_eq!(h.offloads(), vec![OffloadCommand::Remove(route(&c, relay))]);
}

#[test]
fn every_end_of_an_allocation_withdraws_its_routes_first() {
    for how in ["lifetime 0", "drop user", "expiry"] {
        let mut h = offloading();
        let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
        let relay = bound(&mut h, &mut c);
        h.offloads();
        h.events();
        match how {
            "lifetime 0" => {
                let req = c.request(Method::Refresh, &[lifetime(0)]);
                assert_eq!(c.ask(&mut h, &req).message_type().class, Class::Success);
            }
            "drop user" => assert_eq!(h.drop_user("bob"), 1),
            _ => {
                // Keep the permission alive so the allocation's own expiry is what ends it.
                h.advance(Duration::from_secs(250));
                let perm = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
                c.ask(&mut h, &perm);
                h.advance(Duration::from_secs(350));
            }
        }
        assert_eq!(h.offloads(), vec![OffloadCommand::Remove(route(&c, relay))], "{how}");
        assert!(h.events().iter().any(|e| matches!(e, Event::AllocationEnded { .. })), "{how}");
    }
}

#[test]
fn a_reload_withdraws_routes_to_refused_peers_and_under_a_new_cap() {
    let mut cfg = config();
    cfg.peer_policy = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..PeerPolicyConfig::default() });
    let mut h = Harness::new(cfg.clone());
    h.server.enable_offload(h.now());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let bind = peer_request(&mut c, Method::ChannelBind, "127.0.0.1:9", &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert_eq!(c.ask(&mut h, &bind).message_type().class, Class::Success);
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x02, 0, 0])]);
    assert_eq!(c.ask(&mut h, &bind).message_type().class, Class::Success);
    assert_eq!(h.offloads().len(), 2);
    // Loopback peers are refused from now on: that route goes, the other stays.
    assert!(h.server.reload(h.now(), config()).is_empty());
    let gone = h.offloads();
    assert!(matches!(gone[..], [OffloadCommand::Remove(r)] if r.peer.ip().is_loopback()), "{gone:?}");
    // A bandwidth cap is enforced per datagram in userspace: the other route comes out too.
    let mut capped = config();
    capped.bandwidth.per_user = 1_000_000;
    h.server.reload(h.now(), capped);
    assert!(matches!(h.offloads()[..], [OffloadCommand::Remove(r)] if r.number == 0x4002));
    // And goes back once the cap is lifted.
    h.server.reload(h.now(), config());
    assert!(matches!(h.offloads()[..], [OffloadCommand::Install(r)] if r.number == 0x4002));
}

#[test]
fn a_refused_peer_never_reaches_the_fast_path() {
    let mut h = offloading();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let bind = peer_request(&mut c, Method::ChannelBind, "10.1.2.3:9", &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert_eq!(error_code(&c.ask(&mut h, &bind)), 403);
    assert!(h.offloads().is_empty());
}

#[test]
fn stream_clients_stay_in_userspace() {
    let mut h = offloading();
    let mut tcp = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    tcp.tuple.transport = ClientTransport::Tcp;
    bound(&mut h, &mut tcp);
    assert!(h.offloads().is_empty(), "TCP client");
}

#[test]
fn a_relay_of_the_other_family_is_offloaded_too() {
    // An IPv6 client relaying to an IPv4 peer: the kernel translates, as the core does.
    let mut h = offloading();
    let mut v6 = Client::rest("[2001:db8::5]:1", "bob", T0_UNIX + 3600);
    v6.tuple.server = "[2001:db8::10]:3478".parse().unwrap();
    let ipv4 = (attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]);
    let advertised = relayed(&v6.allocated(&mut h, &[ipv4]))[0];
    let bind = peer_request(&mut v6, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, BIND.to_vec())]);
    assert_eq!(v6.ask(&mut h, &bind).message_type().class, Class::Success);
    let relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    assert_eq!(h.offloads(), vec![OffloadCommand::Install(route(&v6, relay))]);
}

#[test]
fn offloaded_counts_reach_the_session_log_and_the_metrics() {
    let mut h = offloading();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    bound(&mut h, &mut c);
    assert!(h.relay(c.tuple, &channel_data(0x4001, b"abc")).is_some(), "userspace still relays what reaches it");
    let t = TrafficSummary { packets_to_peer: 10, bytes_to_peer: 1000, packets_from_peer: 7, bytes_from_peer: 700 };
    h.server.offloaded_traffic(&c.tuple, t);
    let s = h.server.stats();
    assert_eq!((s.packets_to_peer, s.bytes_to_peer, s.packets_from_peer), (11, 1003, 7));
    assert_eq!(s.offloaded_packets, [10, 7]);
    h.events();
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    c.ask(&mut h, &req);
    let ended = h.events().into_iter().find_map(|e| match e {
        Event::AllocationEnded { traffic, .. } => Some(traffic),
        _ => None,
    });
    assert_eq!(ended.map(|t| (t.packets_to_peer, t.bytes_from_peer)), Some((11, 700)));
    // After the end only the relay-wide figures can take the last counts.
    h.server.offloaded_traffic(&c.tuple, TrafficSummary { packets_to_peer: 1, ..TrafficSummary::default() });
    assert_eq!(h.server.stats().packets_to_peer, 12);
}
