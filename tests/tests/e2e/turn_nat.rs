//! NAT: RFC 5780 behaviour discovery with coturn's `turnutils_stunclient -f`, and a relay behind
//! a real 1:1 NAT built from network namespaces, told its public address with `--external-ip`.
//!
//! The NAT topology (all addresses exist only inside namespaces this test creates and deletes):
//!
//! ```text
//!   client 10.200.2.2 ──┐                         ┌── relay 10.200.1.2 (private)
//!                       ├── nat: 10.200.2.1 ──────┤   turn-server -X 10.200.2.1/10.200.1.2
//!   peer   10.200.3.2 ──┘   (public, DNAT to      │
//!                            10.200.1.2; SNAT back)
//! ```
//!
//! The nat namespace routes between three links and rewrites with iptables: anything addressed
//! to 10.200.2.1 goes to 10.200.1.2 (DNAT), and what the relay sends out leaves as 10.200.2.1
//! (SNAT). The client must be told XOR-RELAYED-ADDRESS 10.200.2.1:port, and a peer that sends
//! there must reach the client, and see the relay's answers come from that same address.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use e2e::netns::{self, NetNs};
use e2e::peers::TcpEcho;
use e2e::process;
use e2e::turn_wire::{self, TurnClient, Wire};
use e2e::{require_tool, tail, Server, ServerBuilder};
use turn_server::proto::stun::attr;

/// `Response origin: : 127.0.0.2:20097` and `Other addr: : 127.0.0.2:20097` lines of stunclient.
fn addresses_after(out: &str, label: &str) -> Vec<SocketAddr> {
    out.lines()
        .filter_map(|l| {
            let rest = l[l.find(label)? + label.len()..].trim_start_matches([':', ' ']);
            rest.trim().parse().ok()
        })
        .collect()
}

#[test]
fn stunclient_rfc5780_gets_answers_from_the_alternate_address() {
    // The alternate port defaults to the listening port + 1: the first port of the block's relay
    // range, unused here since this test makes no allocation.
    let server = ServerBuilder::new("rfc5780").arg("--alt-listening-ip").arg("127.0.0.2").start();
    let primary = server.addr();
    let alternate = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), primary.port() + 1);
    let tool = require_tool("turnutils_stunclient");
    let args = ["-f".to_owned(), "-p".to_owned(), primary.port().to_string(), primary.ip().to_string()];
    let run = process::run("turnutils_stunclient", &tool, &args, server.log_dir(), Duration::from_secs(20));
    let out = format!("{}\n{}", run.stdout, run.stderr);
    let describe = || format!("stunclient -f: {}; output:\n{}", run.describe_status(), tail(&out, 30));
    server.check(run.success(), describe);
    let origins = addresses_after(&out, "Response origin:");
    let others = addresses_after(&out, "Other addr:");
    // The first response comes from the primary address, the ones to CHANGE-REQUEST from the
    // alternate address and port; every response names the alternate as OTHER-ADDRESS.
    server.check(origins.contains(&primary) && origins.contains(&alternate), || {
        format!("RESPONSE-ORIGIN values {origins:?} must include {primary} and {alternate}. {}", describe())
    });
    server.check(!others.is_empty() && others.iter().all(|o| *o == alternate), || {
        format!("OTHER-ADDRESS values {others:?} must all be {alternate}. {}", describe())
    });
    let reflexive = addresses_after(&out, "UDP reflexive addr:");
    server.check(!reflexive.is_empty() && reflexive.iter().all(|r| r.ip() == primary.ip()), || {
        format!("reflexive addresses {reflexive:?} must be on {}. {}", primary.ip(), describe())
    });
}

const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 1);
const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 200, 3, 2);

/// Four namespaces wired as in the module docs; all deleted on drop.
struct NatTopology {
    relay: NetNs,
    nat: NetNs,
    client: NetNs,
    peer: NetNs,
}

impl NatTopology {
    fn build() -> Self {
        let group = netns::new_group();
        let t = NatTopology {
            relay: NetNs::create(&group, "relay"),
            nat: NetNs::create(&group, "nat"),
            client: NetNs::create(&group, "client"),
            peer: NetNs::create(&group, "peer"),
        };
        netns::veth(&t.nat, "n-relay", "10.200.1.1/24", &t.relay, "r0", "10.200.1.2/24");
        netns::veth(&t.nat, "n-client", "10.200.2.1/24", &t.client, "c0", "10.200.2.2/24");
        netns::veth(&t.nat, "n-peer", "10.200.3.1/24", &t.peer, "p0", "10.200.3.2/24");
        t.relay.ip(&["route", "add", "default", "via", "10.200.1.1"]);
        t.client.ip(&["route", "add", "default", "via", "10.200.2.1"]);
        t.peer.ip(&["route", "add", "default", "via", "10.200.3.1"]);
        t.nat.sysctl("net.ipv4.ip_forward", "1");
        // 1:1 NAT: the public address is the relay's, both ways.
        let public = PUBLIC.to_string();
        let private = PRIVATE.to_string();
        t.nat.exec(
            "iptables",
            &["-t", "nat", "-A", "PREROUTING", "-d", &public, "-j", "DNAT", "--to-destination", &private],
        );
        t.nat.exec(
            "iptables",
            &["-t", "nat", "-A", "POSTROUTING", "-s", &private, "-j", "SNAT", "--to-source", &public],
        );
        t
    }
}

/// The relay inside the `relay` namespace, on its private address.
fn start_relay(t: &NatTopology, name: &str, external_ip: &str, secret: &str) -> Server {
    ServerBuilder::new(name)
        .secret(secret)
        .ip(PRIVATE)
        .refuse_loopback_peers()
        .arg("--external-ip")
        .arg(external_ip)
        // Peers live in a private range, refused by default.
        .arg("--allowed-peer-ip")
        .arg("10.200.3.0/24")
        .arg("-v")
        .start_in(&t.relay)
}

/// Receives one datagram on `socket` within 5 s.
fn recv_one(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

#[test]
fn external_ip_public_slash_private_behind_one_to_one_nat() {
    external_ip_behind_one_to_one_nat("external_ip_pair", &format!("{PUBLIC}/{PRIVATE}"));
}

/// `-X PUBLIC` alone applies to every relay address (the relay has only the private one).
#[test]
fn external_ip_public_only_behind_one_to_one_nat() {
    external_ip_behind_one_to_one_nat("external_ip_public", &PUBLIC.to_string());
}

fn external_ip_behind_one_to_one_nat(name: &str, external_ip: &str) {
    let topology = NatTopology::build();
    let secret = format!("e2e-secret-{:016x}", rand::random::<u64>());
    let relay = start_relay(&topology, name, external_ip, &secret);
    let server = SocketAddr::new(IpAddr::V4(PUBLIC), relay.addr().port());
    let (relay_min, relay_max) = (relay.ports().relay_min(), relay.ports().relay_max());
    let (user, pass) = e2e::rest_credential(&secret, "natted", 3600);

    // The client reaches the relay only through the NAT's public address.
    let wire = topology.client.run(|| Wire::udp(server)).unwrap();
    let mut client = TurnClient::new(wire, &user, &pass);
    let deadline = Instant::now() + Duration::from_secs(5);
    let binding = loop {
        match client.binding() {
            Ok(r) => break r,
            Err(e) if Instant::now() >= deadline => relay.fail(&format!("Binding to {server} through the NAT: {e}")),
            Err(_) => {}
        }
    };
    let mapped = binding.xor_address(attr::XOR_MAPPED_ADDRESS);
    relay.check(mapped.is_some_and(|m| m.ip() == IpAddr::V4(CLIENT)), || {
        format!("Binding through the NAT returned XOR-MAPPED-ADDRESS {mapped:?}, expected {CLIENT}:<port>")
    });

    // Allocate: the relayed address is the public one, on a port of the range.
    let alloc =
        client.allocate(turn_wire::UDP).unwrap_or_else(|e| relay.fail(&format!("Allocate through the NAT: {e}")));
    relay.check(
        alloc.relayed.ip() == IpAddr::V4(PUBLIC) && (relay_min..=relay_max).contains(&alloc.relayed.port()),
        || format!("XOR-RELAYED-ADDRESS is {}, expected {PUBLIC}:<{relay_min}-{relay_max}>", alloc.relayed),
    );

    // A peer in its own namespace reaches the client through the public relayed address.
    let peer_addr = SocketAddr::new(IpAddr::V4(PEER), 40000);
    let peer = topology.peer.run(|| UdpSocket::bind(peer_addr)).unwrap();
    let reply = client.create_permission(peer_addr).unwrap();
    relay.check(reply.is_success(), || format!("CreatePermission for {peer_addr}: {}", reply.describe()));
    peer.send_to(b"peer to client", alloc.relayed).unwrap();
    let got = client.recv_data(Duration::from_secs(5)).unwrap();
    relay.check(got == Some((Some(peer_addr), b"peer to client".to_vec())), || {
        format!("the client got {got:?} for the peer's datagram to {}", alloc.relayed)
    });

    // And the relay's datagrams reach the peer from that same public address (SNAT).
    client.send_indication(peer_addr, b"client to peer").unwrap();
    let got = recv_one(&peer);
    relay.check(got == Some((b"client to peer".to_vec(), alloc.relayed)), || {
        format!("the peer got {got:?}, expected the Send indication's data from {}", alloc.relayed)
    });
    let reply = client.channel_bind(0x4000, peer_addr).unwrap();
    relay.check(reply.is_success(), || format!("ChannelBind: {}", reply.describe()));
    client.send_channel_data(0x4000, b"over a channel").unwrap();
    let got = recv_one(&peer);
    relay.check(got == Some((b"over a channel".to_vec(), alloc.relayed)), || {
        format!("the peer got {got:?} over the channel")
    });
    peer.send_to(b"channel back", alloc.relayed).unwrap();
    let got = client.recv_data(Duration::from_secs(5)).unwrap();
    relay.check(got == Some((None, b"channel back".to_vec())), || {
        format!("the client got {got:?} instead of ChannelData")
    });

    // A TCP allocation (RFC 6062) through the NAT: announced on the public address, and the peer
    // sees the relay's connection come from it.
    let echo = topology.peer.run(|| TcpEcho::start(SocketAddr::new(IpAddr::V4(PEER), 40001)));
    let wire = topology.client.run(|| Wire::tcp(server)).unwrap();
    let mut control = TurnClient::new(wire, &user, &pass);
    let tcp_alloc = control.allocate(turn_wire::TCP).unwrap_or_else(|e| relay.fail(&format!("TCP Allocate: {e}")));
    relay.check(tcp_alloc.relayed.ip() == IpAddr::V4(PUBLIC), || {
        format!("TCP allocation's XOR-RELAYED-ADDRESS is {}, expected {PUBLIC}:<port>", tcp_alloc.relayed)
    });
    let reply = control.create_permission(echo.addr()).unwrap();
    relay.check(reply.is_success(), || format!("CreatePermission (TCP): {}", reply.describe()));
    let reply = control.connect(echo.addr()).unwrap();
    relay.check(reply.is_success(), || {
        format!("Connect to the TCP peer {} through the NAT: {}", echo.addr(), reply.describe())
    });
    let id = reply.u32_attr(attr::CONNECTION_ID).unwrap_or_else(|| relay.fail("Connect success without CONNECTION-ID"));
    let accepted = echo.wait_accepted(1, Duration::from_secs(2));
    relay.check(accepted == vec![tcp_alloc.relayed], || {
        format!("the TCP peer accepted {accepted:?}, expected one connection from {}", tcp_alloc.relayed)
    });
    let wire = topology.client.run(|| Wire::tcp(server)).unwrap();
    let mut data = TurnClient::new(wire, &user, &pass);
    data.share_credentials_of(&control);
    let reply = data.connection_bind(id).unwrap();
    relay.check(reply.is_success(), || format!("ConnectionBind: {}", reply.describe()));
    let (mut stream, mut got) = data.into_wire().into_tcp().unwrap();
    stream.write_all(b"raw bytes through a 1:1 NAT").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    while got.len() < 27 {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    relay.check(got == b"raw bytes through a 1:1 NAT", || {
        format!("echo over the TCP relay: {:?}", String::from_utf8_lossy(&got))
    });
    eprintln!("through the NAT: UDP relayed {}, TCP relayed {}", alloc.relayed, tcp_alloc.relayed);
    drop(relay);
}
