//! The attacker's suite: what someone holding one valid TURN credential (or none) can try against
//! the relay over real sockets, and what must come of it. Every denied peer form is refused and
//! a canary listener on loopback receives nothing; integrity and nonce edge cases; malformed
//! messages of every kind leave the relay serving; unauthenticated answers stay small and rate
//! limited; quotas are reached and released.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use e2e::turn_wire::{Attr, TurnClient, Wire};
use e2e::{stun, Server, ServerBuilder};
use turn_server::proto::stun::{attr, Method};

/// A listener that must never hear anything: the relay is not allowed to reach it.
struct Canary {
    socket: UdpSocket,
}

impl Canary {
    fn bind(addr: &str) -> Self {
        let socket = UdpSocket::bind(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        Canary { socket }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Everything that reached it so far, waiting briefly for stragglers.
    fn heard(&self) -> Vec<SocketAddr> {
        let mut buf = [0u8; 2048];
        let mut from = Vec::new();
        while let Ok((_, addr)) = self.socket.recv_from(&mut buf) {
            from.push(addr);
        }
        from
    }
}

/// A dual-stack allocation (relays on 127.0.0.1 and ::1) so IPv6 peer forms reach the policy.
fn dual_stack_client(server: &Server, user: &str) -> TurnClient {
    let (username, password) = server.credential(user);
    let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    let reply = c
        .request(
            Method::Allocate,
            &[
                Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]),
                Attr::Raw(attr::ADDITIONAL_ADDRESS_FAMILY, vec![attr::FAMILY_IPV6, 0, 0, 0]),
            ],
        )
        .unwrap();
    assert!(reply.is_success(), "dual-stack Allocate: {}", reply.describe());
    let relayed = reply.attrs.iter().filter(|(code, _)| *code == attr::XOR_RELAYED_ADDRESS).count();
    assert_eq!(relayed, 2, "expected an IPv4 and an IPv6 relayed address");
    c
}

fn relay_refusing_loopback() -> Server {
    ServerBuilder::new("attacker").refuse_loopback_peers().arg("--relay-ip").arg("::1").start()
}

#[test]
fn every_denied_peer_form_is_refused_and_nothing_reaches_the_canary() {
    let server = relay_refusing_loopback();
    let canary = Canary::bind("127.0.0.1:0");
    let canary6 = UdpSocket::bind(format!("[::1]:{}", canary.port())).ok();
    let port = canary.port();
    let forms = [
        // IPv4: loopback, unspecified, private, CGNAT, link-local (cloud metadata), multicast,
        // broadcast, documentation, and this relay's own address and port.
        "127.0.0.1",
        "127.0.0.2",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.51.100.1",
        // IPv6 and every IPv4-in-IPv6 form of loopback: mapped, compatible, NAT64 (well-known and
        // local-use prefixes), 6to4; Teredo whole; link-local, unique-local, multicast.
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ];
    let mut client = dual_stack_client(&server, "mallory");
    for (i, form) in forms.iter().enumerate() {
        let ip: std::net::IpAddr = form.parse().unwrap();
        let peer = SocketAddr::new(ip, port);
        let permission = client.create_permission(peer).unwrap();
        server.check(permission.error_code() == Some(403), || {
            format!("CreatePermission to {peer}: {} (want 403)", permission.describe())
        });
        let channel = 0x4000 + u16::try_from(i).unwrap();
        let bind = client.channel_bind(channel, peer).unwrap();
        server
            .check(bind.error_code() == Some(403), || format!("ChannelBind to {peer}: {} (want 403)", bind.describe()));
        // Send indications and ChannelData are dropped silently: the canary is the judge.
        client.send_indication(peer, b"canary?").unwrap();
        client.send_channel_data(channel, b"canary?").unwrap();
    }
    // The relay's own listening and relay ports are no peers either, even with loopback opened
    // for a test (tests/tests/e2e/turn_client.rs covers the allow-list side).
    let own = SocketAddr::new("127.0.0.1".parse().unwrap(), server.addr().port());
    assert_eq!(client.create_permission(own).unwrap().error_code(), Some(403));
    client.send_indication(own, b"loop?").unwrap();

    let heard = canary.heard();
    assert!(heard.is_empty(), "the canary heard {heard:?}");
    if let Some(c6) = canary6 {
        c6.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 64];
        assert!(c6.recv_from(&mut buf).is_err(), "the IPv6 canary heard something");
    }
    // The relay still serves: a Binding from a fresh socket is answered.
    assert!(stun_binding(&server).is_some());
}

#[test]
fn rfc6062_connect_to_a_denied_peer_is_refused() {
    let server = ServerBuilder::new("attacker_connect").refuse_loopback_peers().start();
    let canary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    canary.set_nonblocking(true).unwrap();
    let (username, password) = server.credential("mallory");
    let mut c = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &username, &password);
    c.allocate(e2e::turn_wire::TCP).unwrap();
    for form in ["127.0.0.1", "169.254.169.254", "10.1.2.3"] {
        let peer = SocketAddr::new(form.parse().unwrap(), canary.local_addr().unwrap().port());
        let reply = c.connect(peer).unwrap();
        server.check(reply.error_code() == Some(403), || format!("Connect to {peer}: {}", reply.describe()));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(canary.accept().is_err(), "the canary was connected to");
}

fn stun_binding(server: &Server) -> Option<stun::Response> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let request = stun::binding_request(stun::transaction_id());
    stun::transact(&socket, server.addr(), &request, Duration::from_millis(500), Duration::from_secs(3))
}

#[test]
fn attributes_after_message_integrity_are_ignored_and_tampering_is_401() {
    let server = ServerBuilder::new("attacker_integrity").start();
    let (username, password) = server.credential("mallory");
    let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    c.allocate(17).unwrap();
    // A LIFETIME of 0 after MESSAGE-INTEGRITY would delete the allocation if it were trusted.
    let lifetime = |secs: u32| Attr::Raw(attr::LIFETIME, secs.to_be_bytes().to_vec());
    let (tid, msg) = c.build_signed(Method::Refresh, &[lifetime(600)], true, &[lifetime(0)]);
    let reply = c.transact_raw(tid, &msg).unwrap();
    assert!(reply.is_success(), "{}", reply.describe());
    assert_eq!(reply.u32_attr(attr::LIFETIME), Some(600), "the LIFETIME after integrity was used");
    assert!(c.refresh(600).unwrap().is_success(), "the allocation must still exist");

    // One flipped bit in the signed part: 401, and the allocation is untouched. FINGERPRINT is
    // taken off (it is optional) so that it is the integrity check that catches the change.
    let (tid, mut msg) = c.build_signed(Method::Refresh, &[lifetime(0)], true, &[]);
    msg.truncate(msg.len() - 8);
    let len = u16::from_be_bytes([msg[2], msg[3]]) - 8;
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    let lifetime_value = 20 + 4 + 3; // header, LIFETIME's type and length, then its last byte
    msg[lifetime_value] ^= 0x01;
    let reply = c.transact_raw(tid, &msg).unwrap();
    assert_eq!(reply.error_code(), Some(401), "{}", reply.describe());
    assert!(c.refresh(600).unwrap().is_success());

    // A broken FINGERPRINT: not a STUN message for us; no answer at all.
    let (tid, mut msg) = c.build_signed(Method::Refresh, &[lifetime(0)], true, &[]);
    let last = msg.len() - 1;
    msg[last] ^= 0xFF;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket.send_to(&msg, server.addr()).unwrap();
    let mut buf = [0u8; 1024];
    assert!(socket.recv_from(&mut buf).is_err(), "a message with a bad FINGERPRINT was answered");
    let _ = tid;
}

#[test]
fn nonces_are_bound_to_the_client_address_and_expire() {
    let dir = e2e::LogDir::new("attacker-nonce-files");
    let config = e2e::peers::write_file(dir.path(), "config.toml", "[turn]\nnonce_lifetime_secs = 2\n");
    let server = ServerBuilder::new("attacker_nonce").arg("--config").arg(config.display().to_string()).start();
    let (username, password) = server.credential("mallory");
    let mut first = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    first.allocate(17).unwrap();

    // The same credentials and nonce, replayed from another source address: 438.
    let mut elsewhere =
        TurnClient::new(Wire::udp_from("127.0.0.2:0".parse().unwrap(), server.addr()).unwrap(), &username, &password);
    elsewhere.share_credentials_of(&first);
    let allocate = [Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])];
    let (tid, msg) = elsewhere.build_signed(Method::Allocate, &allocate, true, &[]);
    let reply = elsewhere.transact_raw(tid, &msg).unwrap();
    assert_eq!(reply.error_code(), Some(438), "a nonce minted for 127.0.0.1 worked from 127.0.0.2");

    // After the nonce lifetime: 438 with a fresh nonce, which then works.
    std::thread::sleep(Duration::from_millis(2600));
    let refresh = [Attr::Raw(attr::LIFETIME, 600u32.to_be_bytes().to_vec())];
    let (tid, msg) = first.build_signed(Method::Refresh, &refresh, true, &[]);
    let reply = first.transact_raw(tid, &msg).unwrap();
    assert_eq!(reply.error_code(), Some(438), "{}", reply.describe());
    assert!(reply.get(attr::NONCE).is_some(), "438 must carry a fresh NONCE");
    assert!(first.refresh(600).unwrap().is_success(), "the fresh nonce works");
}

#[test]
fn credentials_expiring_ten_years_ahead_are_refused() {
    let server = ServerBuilder::new("attacker_lifetime").start();
    let username = format!("{}:mallory", e2e::unix_now() + 10 * 365 * 86_400);
    let password = e2e::rest_password(server.secret(), &username);
    let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    let reply = c.request(Method::Allocate, &[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]).unwrap();
    assert_eq!(reply.error_code(), Some(401), "{}", reply.describe());
}

/// Hand-made bytes no parser should trust.
fn malformed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let header = |typ: u16, len: u16| {
        let mut h = Vec::new();
        h.extend_from_slice(&typ.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        h.extend_from_slice(&[7u8; 12]);
        h
    };
    cases.push(("empty", Vec::new()));
    cases.push(("one byte", vec![0]));
    cases.push(("truncated header", header(0x0001, 0)[..19].to_vec()));
    cases.push(("length past the end", header(0x0003, 400)));
    cases.push(("length not a multiple of 4", {
        let mut m = header(0x0003, 2);
        m.extend_from_slice(&[0, 0]);
        m
    }));
    cases.push(("attribute length past the message", {
        let mut m = header(0x0003, 8);
        m.extend_from_slice(&[0x00, 0x19, 0xFF, 0xF0, 17, 0, 0, 0]);
        m
    }));
    cases.push(("zero-length USERNAME with integrity-sized garbage", {
        let mut m = header(0x0003, 28);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x00]);
        m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        m.extend_from_slice(&[0xAA; 20]);
        m
    }));
    cases.push(("wrong magic cookie", {
        let mut m = header(0x0001, 0);
        m[4] = 0;
        m
    }));
    cases.push(("response class sent to the server", header(0x0103, 0)));
    cases.push(("unknown method", header(0x0FFF & !0x0110, 0)));
    cases.push(("ChannelData longer than the datagram", vec![0x40, 0x00, 0xFF, 0xFF, 1, 2, 3]));
    cases.push(("ChannelData on an unbound channel", vec![0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4]));
    cases.push(("reserved channel range", vec![0x80, 0x00, 0x00, 0x00]));
    cases.push(("64 KiB of 0xFF", vec![0xFF; 65_000]));
    cases.push(("many tiny attributes", {
        let mut m = header(0x0001, 4 * 2000);
        for _ in 0..2000 {
            m.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
        }
        m
    }));
    cases
}

#[test]
fn malformed_messages_are_dropped_and_the_relay_keeps_serving() {
    let server = ServerBuilder::new("attacker_malformed").start();
    let before = server.rss_kib();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    for _ in 0..20 {
        for (what, bytes) in malformed_inputs() {
            socket.send_to(&bytes, server.addr()).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
    // Anything answered must be a well-formed STUN error or success, never an echo of garbage.
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        assert!(stun::parse(&buf[..n]).is_some(), "the relay answered with something that is not STUN");
    }
    // Over TCP as well: garbage framing closes the connection, the listener stays.
    for (_, bytes) in malformed_inputs() {
        if let Ok(mut s) = std::net::TcpStream::connect(server.addr()) {
            let _ = std::io::Write::write_all(&mut s, &bytes);
        }
    }
    let mut server = server;
    assert!(server.is_running(), "the relay died");
    assert!(stun_binding(&server).is_some(), "the relay stopped answering");
    let (username, password) = server.credential("legit");
    let mut legit = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    assert!(legit.allocate(17).is_ok(), "a legitimate client is still served");
    if let (Some(before), Some(after)) = (before, server.rss_kib()) {
        eprintln!("RSS before {before} KiB, after 300 malformed datagrams and 15 TCP connections {after} KiB");
        assert!(after < before + 8 * 1024, "memory grew from {before} to {after} KiB");
    }
}

#[test]
fn unauthenticated_answers_are_small_and_rate_limited() {
    let server = ServerBuilder::new("attacker_amplification").start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // Sizes: the request an attacker spoofs against what the relay would send the victim.
    let binding = stun::binding_request(stun::transaction_id());
    let allocate = stun::unauthenticated_allocate(stun::transaction_id());
    let mut buf = [0u8; 2048];
    let mut answer_len = |request: &[u8]| {
        socket.send_to(request, server.addr()).unwrap();
        socket.recv_from(&mut buf).map(|(n, _)| n).unwrap()
    };
    let binding_answer = answer_len(&binding);
    let allocate_answer = answer_len(&allocate);
    eprintln!(
        "Binding: {} B -> {binding_answer} B; unauthenticated Allocate: {} B -> {allocate_answer} B",
        binding.len(),
        allocate.len()
    );
    assert!(binding_answer <= 3 * binding.len(), "Binding amplifies {binding_answer}/{}", binding.len());
    // The 401 carries what a challenge needs and no more: ERROR-CODE, REALM ("e2e.test"), a
    // 32-byte NONCE and PASSWORD-ALGORITHMS, without FINGERPRINT (the request had none) or
    // SOFTWARE. It was 116 bytes before; coturn 4.6.1's is 96 (with SOFTWARE, but no
    // PASSWORD-ALGORITHMS, so no SHA-256 for RFC 8489 clients).
    assert_eq!(allocate.len(), 28);
    let expected =
        20 + (4 + 4 + "Unauthorized".len()) + (4 + e2e::REALM.len().next_multiple_of(4)) + (4 + 32) + (4 + 8);
    assert_eq!(allocate_answer, expected, "the 401 challenge to a 28-byte Allocate");
    assert_eq!(allocate_answer, 100);

    // A flood of unauthenticated Allocates from one source: at most the per-source rate (50/s by
    // default, with a burst of twice that) is answered.
    let flood = Instant::now();
    for _ in 0..500 {
        socket.send_to(&stun::unauthenticated_allocate(stun::transaction_id()), server.addr()).unwrap();
    }
    let sent_for = flood.elapsed();
    let mut answered = 0u64;
    while socket.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let allowed = 100 + 50 * u64::try_from(sent_for.as_millis()).unwrap() / 1000 + 1;
    eprintln!("500 unauthenticated Allocates in {sent_for:?}: {answered} answered (at most {allowed})");
    assert!(answered <= allowed, "{answered} of 500 answered, at most {allowed} allowed");
    // Authenticated clients are not held back by someone else's flood.
    let (username, password) = server.credential("legit");
    let mut legit = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    assert!(legit.allocate(17).is_ok());
}

#[test]
fn quotas_are_reached_and_released() {
    let server = ServerBuilder::new("attacker_quota")
        .arg("--user-quota")
        .arg("2")
        .arg("--max-allocations-per-ip")
        .arg("3")
        .prometheus()
        .start();
    let metrics_port = server.metrics_port();
    let allocate = |user: &str, from: &str| {
        let (username, password) = server.credential(user);
        let mut c =
            TurnClient::new(Wire::udp_from(from.parse().unwrap(), server.addr()).unwrap(), &username, &password);
        let reply = c.request(Method::Allocate, &[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]).unwrap();
        (c, reply)
    };
    let (mut a1, r) = allocate("mallory", "127.0.0.1:0");
    assert!(r.is_success());
    let (_a2, r) = allocate("mallory", "127.0.0.1:0");
    assert!(r.is_success());
    let (_a3, r) = allocate("mallory", "127.0.0.1:0");
    assert_eq!(r.error_code(), Some(486), "user quota: {}", r.describe());
    // Another user from the same address: the per-source cap (3) is the limit now.
    let (_b1, r) = allocate("trudy", "127.0.0.1:0");
    assert!(r.is_success());
    let (_b2, r) = allocate("trudy", "127.0.0.1:0");
    assert_eq!(r.error_code(), Some(486), "per-source cap: {}", r.describe());
    // Over TCP the same address is served by another worker (the stream worker): the cap is
    // still the one count for the address.
    let (username, password) = server.credential("eve");
    let mut over_tcp = TurnClient::new(Wire::tcp(server.addr()).unwrap(), &username, &password);
    let r = over_tcp.request(Method::Allocate, &[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]).unwrap();
    assert_eq!(r.error_code(), Some(486), "per-source cap across transports: {}", r.describe());
    // From another source address the same user is still capped by the user quota...
    let (_c1, r) = allocate("mallory", "127.0.0.3:0");
    assert_eq!(r.error_code(), Some(486));
    // ...until one of their allocations is released.
    assert!(a1.refresh(0).unwrap().is_success());
    let (_c2, r) = allocate("mallory", "127.0.0.3:0");
    assert!(r.is_success(), "the released quota is usable again: {}", r.describe());
    // Each refusal is counted under the quota that made it.
    let metrics = e2e::prometheus::scrape(metrics_port);
    assert!(metrics.contains("turn_quota_refusals_total{quota=\"user\"} 2\n"), "{metrics}");
    assert!(metrics.contains("turn_quota_refusals_total{quota=\"source\"} 2\n"), "{metrics}");
}
