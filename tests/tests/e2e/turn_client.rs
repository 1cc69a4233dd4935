//! The webrtc-rs `turn` client (the one webrtc-rs peers use) against the built relay: REST
//! credentials, data both ways through two allocations over Send indications and channels,
//! authentication failures, and the peer-address policy.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use e2e::client::{self, method, stun_packet, ClassKey, Packet, Relay, TurnClient};
use e2e::{stun, Server, ServerBuilder};

/// Bound on waiting for one relayed datagram on loopback.
const RECV_WITHIN: Duration = Duration::from_secs(5);

/// How long a datagram that must NOT arrive is waited for.
const SILENCE: Duration = Duration::from_millis(700);

async fn allocate(server: &Server, client: &TurnClient, who: &str) -> Relay {
    match client.allocate().await {
        Ok(relay) => relay,
        Err(e) => server.fail(&format!("{who}: Allocate failed: {e}\n{who}'s packets: {}", client.stats.summary())),
    }
}

fn relayed_addr(server: &Server, relay: &Relay) -> SocketAddr {
    let addr = relay.local_addr().expect("relay local_addr");
    let ports = server.ports();
    server.check(
        addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) && (ports.relay_min()..=ports.relay_max()).contains(&addr.port()),
        || {
            format!(
                "XOR-RELAYED-ADDRESS {addr} is not 127.0.0.1 within --min-port {} --max-port {}",
                ports.relay_min(),
                ports.relay_max()
            )
        },
    );
    addr
}

/// Deterministic bytes for round `round` from `side`, in sizes that exercise padding (1, 2, 3
/// bytes past a multiple of 4) up to a typical media packet.
fn payload(side: u8, round: usize) -> Vec<u8> {
    const SIZES: [usize; 10] = [1, 2, 3, 4, 5, 7, 100, 333, 1000, 1200];
    let len = SIZES[round % SIZES.len()];
    let mut x = u32::from(side).wrapping_mul(0x9E37_79B9).wrapping_add(u32::try_from(round).unwrap());
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_be_bytes()[0]
        })
        .collect()
}

/// Receives the next datagram that is not in `ignore`, or fails the test.
async fn expect_datagram(server: &Server, relay: &Relay, who: &str, ignore: &[&[u8]]) -> (Vec<u8>, SocketAddr) {
    loop {
        match client::recv_from(relay, RECV_WITHIN).await {
            Some((data, _)) if ignore.contains(&data.as_slice()) => continue,
            Some(got) => return got,
            None => server.fail(&format!("{who} received nothing through its relay within {RECV_WITHIN:?}")),
        }
    }
}

async fn send(server: &Server, relay: &Relay, data: &[u8], to: SocketAddr, who: &str) {
    if let Err(e) = client::send_to(relay, data, to).await {
        server.fail(&format!("{who}: send_to {to} failed: {e}"));
    }
}

#[tokio::test]
async fn two_allocations_relay_data_both_ways_over_channels() {
    let server = ServerBuilder::new("relay_both_ways").start();
    let (ua, pa) = server.credential("alice");
    let (ub, pb) = server.credential("bob");
    let alice = TurnClient::connect(server.addr(), &ua, &pa).await;
    let bob = TurnClient::connect(server.addr(), &ub, &pb).await;
    let relay_a = allocate(&server, &alice, "alice").await;
    let relay_b = allocate(&server, &bob, "bob").await;
    let addr_a = relayed_addr(&server, &relay_a);
    let addr_b = relayed_addr(&server, &relay_b);
    server.check(addr_a != addr_b, || format!("two allocations got the same relayed address {addr_a}"));

    // Each first send blocks on CreatePermission. Bob's permission (for 127.0.0.1) exists before
    // Alice sends, so Alice's primer must reach Bob; Bob's primer may or may not reach Alice
    // (her permission did not exist yet), so she ignores it if it shows up.
    const PRIMER_A: &[u8] = b"primer from alice";
    const PRIMER_B: &[u8] = b"primer from bob";
    send(&server, &relay_b, PRIMER_B, addr_a, "bob").await;
    send(&server, &relay_a, PRIMER_A, addr_b, "alice").await;
    let (got, from) = expect_datagram(&server, &relay_b, "bob", &[]).await;
    server.check(got == PRIMER_A && from == addr_a, || {
        format!("bob expected alice's primer from {addr_a}, got {got:?} from {from}")
    });

    // Ping-pong: the first rounds go as Send/Data indications while the client's ChannelBind is
    // in flight, the rest as ChannelData.
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        let ping = payload(b'a', round);
        send(&server, &relay_a, &ping, addr_b, "alice").await;
        let (got, from) = expect_datagram(&server, &relay_b, "bob", &[]).await;
        server.check(got == ping && from == addr_a, || {
            format!(
                "round {round}: bob got {} bytes from {from}, expected {} bytes from {addr_a} \
                 (first bytes got {:02x?} want {:02x?})",
                got.len(),
                ping.len(),
                &got[..got.len().min(8)],
                &ping[..ping.len().min(8)]
            )
        });
        let pong = payload(b'b', round);
        send(&server, &relay_b, &pong, addr_a, "bob").await;
        let (got, from) = expect_datagram(&server, &relay_a, "alice", &[PRIMER_B]).await;
        server.check(got == pong && from == addr_b, || {
            format!(
                "round {round}: alice got {} bytes from {from}, expected {} bytes from {addr_b}",
                got.len(),
                pong.len()
            )
        });
    }

    for (who, c) in [("alice", &alice), ("bob", &bob)] {
        let s = &c.stats;
        let bound = s.received(stun_packet(method::CHANNEL_BIND, ClassKey::Success));
        let sent_cd = s.sent(Packet::ChannelData);
        let recv_cd = s.received(Packet::ChannelData);
        let sent_ind = s.sent(stun_packet(method::SEND, ClassKey::Indication));
        server.check(bound >= 1 && sent_cd >= 1 && recv_cd >= 1 && sent_ind >= 1, || {
            format!(
                "{who}: expected a successful ChannelBind, then ChannelData both ways (and Send \
                 indications before it): ChannelBind successes={bound}, ChannelData sent={sent_cd} \
                 received={recv_cd}, Send indications={sent_ind}\n{who}'s packets: {}",
                s.summary()
            )
        });
    }
    alice.close().await;
    bob.close().await;
}

/// An allocation with a bad credential: the client's first (anonymous) Allocate gets the 401
/// challenge, and the authenticated retry must get 401 too.
async fn assert_allocate_unauthorized(server: &Server, username: &str, password: &str) {
    let c = TurnClient::connect(server.addr(), username, password).await;
    match c.allocate().await {
        Ok(relay) => server.fail(&format!(
            "Allocate with username {username:?} succeeded (relayed {:?}); expected 401",
            relay.local_addr()
        )),
        Err(e) => {
            let allocate_401s =
                c.stats.error_responses().iter().filter(|&&(m, code)| m == method::ALLOCATE && code == 401).count();
            server.check(e.contains("401") && allocate_401s == 2, || {
                format!(
                    "expected the authenticated Allocate to fail with 401, got error {e:?}; \
                     packets: {}",
                    c.stats.summary()
                )
            });
        }
    }
    c.close().await;
}

#[tokio::test]
async fn wrong_password_gets_401() {
    let server = ServerBuilder::new("wrong_password").start();
    let (username, password) = server.credential("mallory");
    let mut wrong = password.clone();
    wrong.replace_range(0..1, if password.starts_with('A') { "B" } else { "A" });
    assert_allocate_unauthorized(&server, &username, &wrong).await;
    // The same username signed with another secret is refused too.
    let other = e2e::rest_password("not-the-secret", &username);
    assert_allocate_unauthorized(&server, &username, &other).await;
}

#[tokio::test]
async fn expired_rest_username_gets_401() {
    let server = ServerBuilder::new("expired_username").start();
    // Correctly signed, but its expiry is an hour in the past.
    let (username, password) = e2e::rest_credential(server.secret(), "eve", -3600);
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(expiry < e2e::unix_now(), "test credential is not expired");
    assert_allocate_unauthorized(&server, &username, &password).await;
}

#[tokio::test]
async fn static_user_allocates_and_wrong_static_password_gets_401() {
    let server = ServerBuilder::new("static_user").without_secret().arg("--user").arg("carol:wonderland").start();
    let c = TurnClient::connect(server.addr(), "carol", "wonderland").await;
    let relay = allocate(&server, &c, "carol").await;
    relayed_addr(&server, &relay);
    c.close().await;
    assert_allocate_unauthorized(&server, "carol", "wonderlant").await;
    assert_allocate_unauthorized(&server, "dave", "wonderland").await;
}

/// Creating a permission for `peer` must be refused with 403.
async fn assert_permission_refused(server: &Server, peer: SocketAddr) {
    let (u, p) = server.credential("alice");
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    let relay = allocate(server, &c, "alice").await;
    match client::send_to(&relay, b"should not be relayed", peer).await {
        Ok(()) => server.fail(&format!(
            "CreatePermission for loopback peer {peer} succeeded; expected 403 \
             (packets: {})",
            c.stats.summary()
        )),
        Err(e) => {
            let refused = c.stats.error_responses().contains(&(method::CREATE_PERMISSION, 403));
            server.check(e.contains("403") && refused, || {
                format!("expected CreatePermission to fail with 403, got {e:?}; packets: {}", c.stats.summary())
            });
        }
    }
    c.close().await;
}

#[tokio::test]
async fn loopback_peer_refused_with_403_by_default() {
    let server = ServerBuilder::new("loopback_refused").refuse_loopback_peers().start();
    // The relayed address of another allocation on this server is a loopback address.
    let (u, p) = server.credential("bob");
    let bob = TurnClient::connect(server.addr(), &u, &p).await;
    let relay_b = allocate(&server, &bob, "bob").await;
    let addr_b = relayed_addr(&server, &relay_b);
    assert_permission_refused(&server, addr_b).await;
    // And any other loopback address.
    assert_permission_refused(&server, "127.0.0.1:9".parse().unwrap()).await;
    bob.close().await;
}

#[tokio::test]
async fn denied_peer_ip_overrides_allow_loopback() {
    let server = ServerBuilder::new("denied_peer_ip").arg("--denied-peer-ip").arg("127.0.0.0-127.255.255.255").start();
    assert_permission_refused(&server, "127.0.0.1:9".parse().unwrap()).await;
}

/// A plain UDP socket as the peer: data from it is dropped until the client creates a
/// permission, then flows both ways with the relayed address as the visible source.
async fn relay_to_plain_peer(server: &Server, peer_ip: Ipv4Addr) {
    let peer_port = server.ports().peer_port(0);
    let peer = tokio::net::UdpSocket::bind((peer_ip, peer_port)).await.expect("bind peer socket");
    let peer_addr = peer.local_addr().unwrap();
    let (u, p) = server.credential("alice");
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    let relay = allocate(server, &c, "alice").await;
    let relay_addr = relayed_addr(server, &relay);

    // No permission yet: the server must drop what the peer sends.
    peer.send_to(b"too early", relay_addr).await.unwrap();
    if let Some((data, from)) = client::recv_from(&relay, SILENCE).await {
        server.fail(&format!("data from {from} reached the client before any permission existed: {data:?}"));
    }

    send(server, &relay, b"hello peer", peer_addr, "alice").await;
    let mut buf = [0u8; 2048];
    let (n, from) = match tokio::time::timeout(RECV_WITHIN, peer.recv_from(&mut buf)).await {
        Ok(Ok(got)) => got,
        _ => server.fail(&format!("peer {peer_addr} received nothing from the relay within {RECV_WITHIN:?}")),
    };
    server.check(&buf[..n] == b"hello peer" && from == relay_addr, || {
        format!(
            "peer got {:?} from {from}, expected \"hello peer\" from the relayed address \
             {relay_addr}",
            &buf[..n]
        )
    });
    peer.send_to(b"hello client", relay_addr).await.unwrap();
    let (data, from) = expect_datagram(server, &relay, "alice", &[]).await;
    server.check(data == b"hello client" && from == peer_addr, || {
        format!(
            "client got {data:?} from {from}, expected \"hello client\" from {peer_addr} \
             (\"too early\" must have been dropped, not queued)"
        )
    });
    c.close().await;
}

#[tokio::test]
async fn peer_without_permission_is_dropped_then_relayed_once_permitted() {
    let server = ServerBuilder::new("permission_gate").start();
    relay_to_plain_peer(&server, Ipv4Addr::LOCALHOST).await;
}

/// `--allowed-peer-ip` opens a range of the built-in deny list. The peer is on 127.0.0.2, a
/// loopback address that is not one of the server's own (it listens and relays on 127.0.0.1).
#[tokio::test]
async fn allowed_peer_ip_opens_a_denied_range() {
    let peer_ip = Ipv4Addr::new(127, 0, 0, 2);
    let server = ServerBuilder::new("allowed_peer_ip")
        .refuse_loopback_peers()
        .arg("--allowed-peer-ip")
        .arg(peer_ip.to_string())
        .start();
    relay_to_plain_peer(&server, peer_ip).await;
    // Only that address: its neighbour stays refused.
    assert_permission_refused(&server, "127.0.0.3:9".parse().unwrap()).await;
}

#[tokio::test]
async fn user_quota_refuses_second_allocation_with_486() {
    let server = ServerBuilder::new("user_quota").arg("--user-quota").arg("1").start();
    let (u, p) = server.credential("alice");
    let first = TurnClient::connect(server.addr(), &u, &p).await;
    let _relay = allocate(&server, &first, "alice #1").await;
    let second = TurnClient::connect(server.addr(), &u, &p).await;
    match second.allocate().await {
        Ok(_) => server.fail("a second allocation for the same user succeeded with --user-quota 1"),
        Err(e) => server.check(e.contains("486"), || {
            format!("expected 486 Allocation Quota Reached, got {e:?}; packets: {}", second.stats.summary())
        }),
    }
    // Another user is not affected.
    let (u2, p2) = server.credential("bob");
    let other = TurnClient::connect(server.addr(), &u2, &p2).await;
    let _relay_b = allocate(&server, &other, "bob").await;
    for c in [first, second, other] {
        c.close().await;
    }
}

#[tokio::test]
async fn binding_reports_the_source_address() {
    let server = ServerBuilder::new("binding").start();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();
    let tid = stun::transaction_id();
    let response = stun::transact(
        &socket,
        server.addr(),
        &stun::binding_request(tid),
        Duration::from_millis(200),
        Duration::from_secs(3),
    );
    let Some(response) = response else { server.fail("no answer to a Binding request") };
    server.check(response.class == stun::Class::Success && response.xor_mapped_address == Some(local), || {
        format!("Binding from {local}: expected success with XOR-MAPPED-ADDRESS {local}, got {response:?}")
    });
    // The webrtc-rs client agrees.
    let (u, p) = server.credential("alice");
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    let mapped = tokio::time::timeout(client::OP_TIMEOUT, c.client.send_binding_request())
        .await
        .expect("binding request timed out")
        .expect("binding request failed");
    server.check(mapped == c.local, || format!("webrtc-rs client: mapped {mapped}, expected {}", c.local));
    c.close().await;
}

#[tokio::test]
async fn no_stun_ignores_binding_but_still_relays() {
    let server = ServerBuilder::new("no_stun").arg("--no-stun").probe_with_allocate().start();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let response = stun::transact(
        &socket,
        server.addr(),
        &stun::binding_request(stun::transaction_id()),
        Duration::from_millis(300),
        Duration::from_millis(1500),
    );
    if let Some(r) = response {
        server.check(r.class != stun::Class::Success, || {
            format!("--no-stun server answered a Binding request with success: {r:?}")
        });
    }
    let (u, p) = server.credential("alice");
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    let relay = allocate(&server, &c, "alice").await;
    relayed_addr(&server, &relay);
    c.close().await;
}

#[tokio::test]
async fn total_quota_refuses_allocations_beyond_it_with_508() {
    let server = ServerBuilder::new("total_quota").arg("--total-quota").arg("2").start();
    let mut clients = Vec::new();
    let mut relays = Vec::new();
    for user in ["alice", "bob"] {
        let (u, p) = server.credential(user);
        let c = TurnClient::connect(server.addr(), &u, &p).await;
        relays.push(allocate(&server, &c, user).await);
        clients.push(c);
    }
    let (u, p) = server.credential("carol");
    let third = TurnClient::connect(server.addr(), &u, &p).await;
    match third.allocate().await {
        Ok(_) => server.fail("a third allocation succeeded with --total-quota 2"),
        Err(e) => server.check(e.contains("508"), || {
            format!("expected 508 Insufficient Capacity, got {e:?}; packets: {}", third.stats.summary())
        }),
    }
    clients.push(third);
    for c in clients {
        c.close().await;
    }
}

#[tokio::test]
async fn max_allocate_lifetime_caps_the_granted_lifetime() {
    let server = ServerBuilder::new("max_lifetime").arg("--max-allocate-lifetime").arg("120").start();
    let (u, p) = server.credential("alice");
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    let _relay = allocate(&server, &c, "alice").await;
    let lifetimes = c.stats.allocate_lifetimes();
    server.check(lifetimes.len() == 1 && (1..=120).contains(&lifetimes[0]), || {
        format!("expected one Allocate success with 0 < LIFETIME <= 120, got {lifetimes:?}")
    });
    c.close().await;
}
