//! The programs (TC and XDP) proven on real packets: a loopback topology (client, relay and peer
//! on one host) and a routed one (client, relay and peer namespaces joined by veth pairs), IPv4
//! and IPv6, each in fresh network namespaces. They need root; elsewhere they say so and pass.
#![allow(clippy::unwrap_used)]

mod netns;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use aya::programs::tc::{SchedClassifier, TcAttachType};
use netns::{have, Netns};

use super::{probe, Counters, Hook, Offload, OffloadError, Route};

const WAIT: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(200);
const CHANNEL: u16 = 0x4001;
/// Odd, even, word-aligned and not, around the 512-byte chunks the program sums PARTIAL skbs in.
const SIZES: &[usize] = &[0, 1, 2, 3, 5, 7, 64, 255, 511, 512, 513, 1000, 1025, 1399];

/// The offload, or None (after saying why) where this kernel or process cannot have it.
fn load_or_skip(hook: Hook, interfaces: &[&str]) -> Option<Offload> {
    let names: Vec<String> = interfaces.iter().map(|s| s.to_string()).collect();
    match Offload::load(hook, &names) {
        Ok(offload) => Some(offload),
        Err(e @ (OffloadError::NotBuilt(_) | OffloadError::NotPermitted(_) | OffloadError::Unsupported(_))) => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("loading the offload: {e}"),
    }
}

fn udp(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn payload(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut msg = channel.to_be_bytes().to_vec();
    msg.extend_from_slice(&(data.len() as u16).to_be_bytes());
    msg.extend_from_slice(data);
    msg
}

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) =
        sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("{:?} received nothing: {e}", sock.local_addr()));
    buf.truncate(n);
    (buf, from)
}

fn assert_quiet(sock: &UdpSocket, who: &str) {
    sock.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0u8; 2048];
    if let Ok((n, from)) = sock.recv_from(&mut buf) {
        panic!("{who} got {n} bytes from {from} that the kernel should have relayed");
    }
    sock.set_read_timeout(Some(WAIT)).unwrap();
}

/// The four sockets of one relayed channel.
struct Ends {
    client: UdpSocket,
    server: UdpSocket,
    relay: UdpSocket,
    peer: UdpSocket,
}

impl Ends {
    fn route(&self) -> Route {
        Route {
            client: self.client.local_addr().unwrap(),
            server: self.server.local_addr().unwrap(),
            relay: self.relay.local_addr().unwrap(),
            peer: self.peer.local_addr().unwrap(),
            channel: CHANNEL,
        }
    }

    /// Every size both ways through the kernel; returns what the counters should say.
    fn relay_all(&self) -> Counters {
        let mut want = Counters::default();
        for (i, &size) in SIZES.iter().enumerate() {
            let data = payload(size, i as u8);
            self.relayed_to_peer(&data, &mut want);
            self.relayed_to_client(&data, &mut want);
        }
        assert_quiet(&self.server, "the server socket");
        assert_quiet(&self.relay, "the relay socket");
        want
    }

    /// `data` from the client reaches the peer through the kernel.
    fn relayed_to_peer(&self, data: &[u8], want: &mut Counters) {
        let (r, size) = (self.route(), data.len());
        self.client.send_to(&channel_data(CHANNEL, data), r.server).unwrap();
        let (got, from) = recv(&self.peer);
        assert_eq!((from, got.len()), (r.relay, size), "client -> peer, {size} bytes");
        assert!(got == data, "client -> peer payload of {size} bytes changed");
        want.to_peer_packets += 1;
        want.to_peer_bytes += size as u64;
    }

    /// `data` from the peer reaches the client through the kernel.
    fn relayed_to_client(&self, data: &[u8], want: &mut Counters) {
        let (r, size) = (self.route(), data.len());
        self.peer.send_to(data, r.relay).unwrap();
        let (got, from) = recv(&self.client);
        assert_eq!(from, r.server, "peer -> client, {size} bytes");
        assert!(got == channel_data(CHANNEL, data), "peer -> client of {size} bytes");
        want.from_peer_packets += 1;
        want.from_peer_bytes += size as u64;
    }

    /// Sends `msg` from the client and expects it, unchanged, at the userspace server socket.
    fn client_reaches_userspace(&self, msg: &[u8], what: &str) {
        let r = self.route();
        self.client.send_to(msg, r.server).unwrap();
        let (got, from) = recv(&self.server);
        assert_eq!((got.as_slice(), from), (msg, r.client), "{what}");
    }

    fn peer_reaches_userspace(&self, msg: &[u8], what: &str) {
        let r = self.route();
        self.peer.send_to(msg, r.relay).unwrap();
        let (got, from) = recv(&self.relay);
        assert_eq!((got.as_slice(), from), (msg, r.peer), "{what}");
    }
}

/// How many of our programs are attached at `dev` in the namespace: at TCX ingress, or at XDP.
fn attached(hook: Hook, ns: &Netns, dev: &str) -> usize {
    match hook {
        Hook::Tc => ns.run(|| {
            let (_, programs) = SchedClassifier::query_tcx(dev, TcAttachType::Ingress).unwrap();
            programs.iter().filter(|p| p.name_as_str() == Some("turn_relay")).count()
        }),
        // One XDP program per interface (and mode): `ip -d link` names it.
        Hook::Xdp => ns.exec(&["ip", "-d", "-o", "link", "show", "dev", dev]).matches("name turn_relay_xdp").count(),
    }
}

/// Makes an IPv4 socket send without a UDP checksum (a zero check field).
fn no_checksum(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: SO_NO_CHECK takes an int; the pointer and length describe `one`, which outlives
    // the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
}

/// Client, relay and peer on one host: what local senders make is CHECKSUM_PARTIAL (lo's tx
/// checksum offload is fixed on), or, with `zero_checksums`, IPv4 with no UDP checksum.
fn loopback(hook: Hook, ip: &str, zero_checksums: bool) {
    let Some(ns) = Netns::new("lo") else { return };
    let ip: IpAddr = ip.parse().unwrap();
    let Some((offload, ends)) = ns.run(|| {
        let offload = load_or_skip(hook, &["lo"])?;
        Some((offload, Ends { client: udp(ip), server: udp(ip), relay: udp(ip), peer: udp(ip) }))
    }) else {
        return;
    };
    if zero_checksums {
        no_checksum(&ends.client);
        no_checksum(&ends.peer);
    }
    assert_eq!(attached(hook, &ns, "lo"), 1);
    let errors_before = ns.udp_counter("InCsumErrors");
    let route = ends.route();
    let slot = offload.install(&route).unwrap();
    assert_eq!(offload.read(slot).unwrap(), Counters::default());

    let want = ends.relay_all();
    assert_eq!(offload.read(slot).unwrap(), want);

    // What the program must leave alone reaches the userspace sockets as it was.
    let data = payload(40, 9);
    ends.client_reaches_userspace(&channel_data(0x4002, &data), "an unbound channel");
    let mut long = channel_data(CHANNEL, &data);
    long[3] += 1;
    ends.client_reaches_userspace(&long, "a length field one too large");
    let mut padded = channel_data(CHANNEL, &data[..39]);
    padded.push(0);
    ends.client_reaches_userspace(&padded, "a padded ChannelData message");
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    ends.client_reaches_userspace(&stun, "a STUN Binding request");
    let stranger = ns.run(|| udp(ip));
    stranger.send_to(&data, route.relay).unwrap();
    let (got, from) = recv(&ends.relay);
    assert_eq!((got, from), (data.clone(), stranger.local_addr().unwrap()), "unknown peer");
    assert_eq!(offload.read(slot).unwrap(), want, "passed packets must not count");

    assert_eq!(offload.remove(&route, slot).unwrap(), want);
    ends.client_reaches_userspace(&channel_data(CHANNEL, &data), "after remove, client");
    ends.peer_reaches_userspace(&data, "after remove, peer");
    assert_eq!(ns.udp_counter("InCsumErrors"), errors_before, "UDP checksum errors");

    drop(offload);
    assert_eq!(attached(hook, &ns, "lo"), 0, "detached on drop");
}

#[test]
fn loopback_ipv4_relays_both_ways() {
    loopback(Hook::Tc, "127.0.0.1", false);
}

#[test]
fn loopback_ipv6_relays_both_ways() {
    loopback(Hook::Tc, "::1", false);
}

#[test]
fn loopback_ipv4_without_udp_checksums() {
    loopback(Hook::Tc, "127.0.0.1", true);
}

#[test]
fn xdp_loopback_ipv4_relays_both_ways() {
    loopback(Hook::Xdp, "127.0.0.1", false);
}

#[test]
fn xdp_loopback_ipv6_relays_both_ways() {
    loopback(Hook::Xdp, "::1", false);
}

#[test]
fn xdp_loopback_ipv4_without_udp_checksums() {
    loopback(Hook::Xdp, "127.0.0.1", true);
}

/// A client of one family and a peer of the other on one host: what goes to the IPv6 end is
/// translated in the kernel; what goes to the IPv4 end is for this host and may not be (see
/// deliverable() in relay.bpf.c), so userspace relays it. The IPv4 end sends with or without a
/// UDP checksum.
fn loopback_translated(client_v4: bool, zero_checksums: bool) {
    let Some(ns) = Netns::new("lo") else { return };
    let (v4, v6): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
    let (near, far) = if client_v4 { (v4, v6) } else { (v6, v4) };
    let Some((offload, ends)) = ns.run(|| {
        let offload = load_or_skip(Hook::Tc, &["lo"])?;
        Some((offload, Ends { client: udp(near), server: udp(near), relay: udp(far), peer: udp(far) }))
    }) else {
        return;
    };
    if zero_checksums {
        no_checksum(if client_v4 { &ends.client } else { &ends.peer });
    }
    let errors_before = ns.udp_counter("InCsumErrors");
    let slot = offload.install(&ends.route()).unwrap();
    let mut want = Counters::default();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = payload(size, i as u8);
        if client_v4 {
            ends.relayed_to_peer(&data, &mut want);
            ends.peer_reaches_userspace(&data, "IPv6 peer -> IPv4 client on this host");
        } else {
            ends.relayed_to_client(&data, &mut want);
            ends.client_reaches_userspace(&channel_data(CHANNEL, &data), "IPv6 client -> IPv4 peer on this host");
        }
    }
    assert_eq!(offload.read(slot).unwrap(), want);
    assert_eq!(ns.udp_counter("InCsumErrors"), errors_before, "UDP checksum errors");
}

#[test]
fn loopback_translates_an_ipv4_client_to_an_ipv6_peer() {
    loopback_translated(true, false);
    loopback_translated(true, true);
}

#[test]
fn loopback_translates_an_ipv6_client_to_an_ipv4_peer() {
    loopback_translated(false, false);
    loopback_translated(false, true);
}

#[test]
fn veth_relays_between_namespaces() {
    veth(Hook::Tc, true);
}

/// Forwarding on: the FIB lookup gives the egress and both MACs.
#[test]
fn xdp_veth_relays_between_namespaces_with_forwarding() {
    veth(Hook::Xdp, true);
}

/// Forwarding off, as on most relays: the egress from the relay's route lookup, the MACs from
/// the neighbour table (next_hop.rs).
#[test]
fn xdp_veth_relays_between_namespaces_without_forwarding() {
    veth(Hook::Xdp, false);
}

/// client ns --veth-- relay ns --veth-- peer ns: 10.201.1.0/24 and fd00:1::/64 on the client's
/// side (relay .1, client .2), 10.201.2.0/24 and fd00:2::/64 on the peer's.
fn veth_topology() -> Option<(Netns, Netns, Netns)> {
    let (Some(client), Some(relay), Some(peer)) = (Netns::new("c"), Netns::new("r"), Netns::new("p")) else {
        return None;
    };
    if !have("ethtool") {
        eprintln!("skipped: ethtool is not installed (apt-get install ethtool)");
        return None;
    }
    relay.ip(&["link", "add", "rc", "type", "veth", "peer", "name", "cr", "netns", &client.name]);
    relay.ip(&["link", "add", "rp", "type", "veth", "peer", "name", "pr", "netns", &peer.name]);
    for (ns, dev, v4, v6) in [
        (&relay, "rc", "10.201.1.1/24", "fd00:1::1/64"),
        (&relay, "rp", "10.201.2.1/24", "fd00:2::1/64"),
        (&client, "cr", "10.201.1.2/24", "fd00:1::2/64"),
        (&peer, "pr", "10.201.2.2/24", "fd00:2::2/64"),
    ] {
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    for (ns, gw4, gw6) in [(&client, "10.201.1.1", "fd00:1::1"), (&peer, "10.201.2.1", "fd00:2::1")] {
        ns.ip(&["route", "add", "default", "via", gw4]);
        ns.ip(&["-6", "route", "add", "default", "via", gw6]);
    }
    Some((client, relay, peer))
}

fn udp_at(ns: &Netns, ip: &str) -> UdpSocket {
    let ip: IpAddr = ip.parse().unwrap();
    ns.run(|| udp(ip))
}

/// Client, server, relay and peer sockets at `[c, s, r, p]`, the server and relay in `relay`.
fn ends_in(client: &Netns, relay: &Netns, peer: &Netns, [c, s, r, p]: [&str; 4]) -> Ends {
    Ends { client: udp_at(client, c), server: udp_at(relay, s), relay: udp_at(relay, r), peer: udp_at(peer, p) }
}

/// Checksums in full, as datagrams from a NIC arrive (not PARTIAL, which the program relays
/// only to this host).
fn tx_checksums_off(ends: &[(&Netns, &str)]) {
    for (ns, dev) in ends {
        ns.exec(&["ethtool", "-K", dev, "tx", "off"]);
    }
}

/// The program on both of the relay's veths.
fn veth(hook: Hook, forwarding: bool) {
    let Some((client, relay, peer)) = veth_topology() else { return };
    // bpf_fib_lookup answers FWD_DISABLED on an ingress device that does not forward.
    if forwarding {
        relay.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    }
    // A native XDP redirect into a veth needs NAPI on its other end: XDP or GRO there.
    for (ns, dev) in [(&client, "cr"), (&peer, "pr")] {
        ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
    }

    let Some(offload) = relay.run(|| load_or_skip(hook, &["rc", "rp"])) else { return };
    if hook == Hook::Xdp {
        // veth runs XDP in its driver: the frames below never become skbs on the relay.
        let native = [("rc", super::XdpMode::Native), ("rp", super::XdpMode::Native)];
        assert_eq!(offload.xdp_modes().collect::<Vec<_>>(), native);
    }
    let mut rows = vec![
        ("IPv4", ["10.201.1.2", "10.201.1.1", "10.201.2.1", "10.201.2.2"]),
        ("IPv6", ["fd00:1::2", "fd00:1::1", "fd00:2::1", "fd00:2::2"]),
    ];
    // Only the TC program translates between families (XDP leaves that to userspace).
    if hook == Hook::Tc {
        rows.push(("IPv4 to IPv6", ["10.201.1.2", "10.201.1.1", "fd00:2::1", "fd00:2::2"]));
        rows.push(("IPv6 to IPv4", ["fd00:1::2", "fd00:1::1", "10.201.2.1", "10.201.2.2"]));
    }
    for (family, addrs) in rows {
        let ends = ends_in(&client, &relay, &peer, addrs);
        let route = ends.route();
        // XDP writes MACs the kernel has resolved (the FIB's neighbour, or the table read at
        // install): a datagram from the relay to each side resolves them first.
        ends.relay.send_to(b"hello", route.peer).unwrap();
        ends.server.send_to(b"hello", route.client).unwrap();
        recv(&ends.peer);
        recv(&ends.client);
        // In the relay's namespace: install looks routes and neighbours up where it runs.
        let slot = relay.run(|| offload.install(&route)).unwrap();
        for (ns, dev) in [(&client, "cr"), (&peer, "pr")] {
            ns.exec(&["ethtool", "-K", dev, "tx", "on"]);
        }
        // Local senders with tx offload leave the checksum PARTIAL; such a datagram would
        // leave through a device with csum_start pointing at the wrong place, so the program
        // hands it to userspace.
        let data = payload(100, 1);
        ends.client_reaches_userspace(&channel_data(CHANNEL, &data), &format!("{family} PARTIAL client"));
        ends.peer_reaches_userspace(&data, &format!("{family} PARTIAL peer"));
        assert_eq!(offload.read(slot).unwrap(), Counters::default());

        // With tx offload off the senders checksum in full, as datagrams from a NIC arrive;
        // the receivers verify what the program wrote.
        tx_checksums_off(&[(&client, "cr"), (&peer, "pr")]);
        if hook == Hook::Xdp {
            // Without XDP or GRO at a veth's other end the kernel would drop a native redirect
            // into it: the program leaves those datagrams to userspace instead, from the
            // refresh that sees it.
            let refresh = || {
                std::thread::sleep(super::next_hop::REFRESH_EVERY);
                relay.run(|| offload.refresh());
            };
            for (ns, dev) in [(&client, "cr"), (&peer, "pr")] {
                ns.exec(&["ethtool", "-K", dev, "gro", "off"]);
            }
            refresh();
            ends.client_reaches_userspace(&channel_data(CHANNEL, &data), &format!("{family} no NAPI at the peer"));
            ends.peer_reaches_userspace(&data, &format!("{family} no NAPI at the client"));
            assert_eq!(offload.read(slot).unwrap(), Counters::default());
            for (ns, dev) in [(&client, "cr"), (&peer, "pr")] {
                ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
            }
            refresh();
        }
        let (client_errors, peer_errors) = (client.udp_counter("InCsumErrors"), peer.udp_counter("InCsumErrors"));
        let (client_in, peer_in) = (client.udp_counter("InDatagrams"), peer.udp_counter("InDatagrams"));
        let want = ends.relay_all();
        assert_eq!(offload.read(slot).unwrap(), want, "{family} counters");
        assert_eq!(client.udp_counter("InCsumErrors"), client_errors, "{family} client");
        assert_eq!(peer.udp_counter("InCsumErrors"), peer_errors, "{family} peer");
        let n = SIZES.len() as u64;
        assert_eq!(client.udp_counter("InDatagrams"), client_in + n, "{family} client");
        assert_eq!(peer.udp_counter("InDatagrams"), peer_in + n, "{family} peer");

        assert_eq!(offload.remove(&route, slot).unwrap(), want);
        ends.client_reaches_userspace(&channel_data(CHANNEL, &data), &format!("{family} after remove"));
        ends.peer_reaches_userspace(&data, &format!("{family} after remove"));
    }
    let attached = |dev| attached(hook, &relay, dev);
    assert_eq!((attached("rc"), attached("rp")), (1, 1));
    drop(offload);
    assert_eq!((attached("rc"), attached("rp")), (0, 0), "detached on drop");
}

/// A remote client and a peer on the relay's host (an SFU beside the relay, say), forwarding
/// off as on most relays. IPv6 to the peer goes through the kernel; IPv4 to the peer is for this
/// host from a device, which IPv4 input routing would drop as a martian (the source is the
/// relay's own address), so userspace relays it; what the local peer sends back is PARTIAL and
/// bound for a device: userspace too. Nothing may be lost.
#[test]
fn veth_a_peer_on_the_relay_host() {
    let Some((client, relay, _peer)) = veth_topology() else { return };
    tx_checksums_off(&[(&client, "cr")]);
    let Some(offload) = relay.run(|| load_or_skip(Hook::Tc, &["rc", "lo"])) else { return };
    for (family, c, s, r, p) in [
        ("IPv4", "10.201.1.2", "10.201.1.1", "10.201.2.1", "10.201.1.1"),
        ("IPv6", "fd00:1::2", "fd00:1::1", "fd00:2::1", "fd00:1::1"),
    ] {
        let ends = ends_in(&client, &relay, &relay, [c, s, r, p]);
        let route = ends.route();
        // In the relay's namespace: the egress hints are looked up where it runs.
        let slot = relay.run(|| offload.install(&route)).unwrap();
        let mut want = Counters::default();
        for (i, &size) in SIZES.iter().enumerate() {
            let data = payload(size, i as u8);
            if family == "IPv6" {
                ends.relayed_to_peer(&data, &mut want);
            } else {
                ends.client_reaches_userspace(&channel_data(CHANNEL, &data), "IPv4 client -> peer on the host");
            }
            ends.peer_reaches_userspace(&data, &format!("{family} peer on the host -> client"));
        }
        assert_eq!(offload.remove(&route, slot).unwrap(), want, "{family} counters");
    }
}

/// Both parties of a call relayed by this relay, each from its own namespace, forwarding off:
/// each one's peer is the other's relayed address, and the program turns a client's ChannelData
/// straight into ChannelData for the other client (the other channel number), counted for both
/// allocations. Without that, IPv4 would reach the relay's IP input from a device with the
/// relay's own source address and be dropped as a martian.
#[test]
fn veth_relay_to_relay_in_one_pass() {
    relay_to_relay(Hook::Tc);
}

#[test]
fn xdp_veth_relay_to_relay_in_one_pass() {
    relay_to_relay(Hook::Xdp);
}

fn relay_to_relay(hook: Hook) {
    let Some((a_ns, relay, b_ns)) = veth_topology() else { return };
    tx_checksums_off(&[(&a_ns, "cr"), (&b_ns, "pr")]);
    // A native XDP redirect into a veth needs NAPI on its other end: XDP or GRO there.
    for (ns, dev) in [(&a_ns, "cr"), (&b_ns, "pr")] {
        ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
    }
    let Some(offload) = relay.run(|| load_or_skip(hook, &["rc", "rp"])) else { return };
    const OTHER: u16 = 0x4abc;
    for (family, a, b, server_a, server_b) in [
        ("IPv4", "10.201.1.2", "10.201.2.2", "10.201.1.1", "10.201.2.1"),
        ("IPv6", "fd00:1::2", "fd00:2::2", "fd00:1::1", "fd00:2::1"),
    ] {
        let (a, b) = (udp_at(&a_ns, a), udp_at(&b_ns, b));
        let (sa, sb) = (udp_at(&relay, server_a), udp_at(&relay, server_b));
        let (ra, rb) = (udp_at(&relay, server_a), udp_at(&relay, server_b));
        let addr = |s: &UdpSocket| s.local_addr().unwrap();
        let route_a =
            Route { client: addr(&a), server: addr(&sa), relay: addr(&ra), peer: addr(&rb), channel: CHANNEL };
        let route_b = Route { client: addr(&b), server: addr(&sb), relay: addr(&rb), peer: addr(&ra), channel: OTHER };
        // XDP writes MACs the kernel has resolved: a datagram from the relay to each client
        // resolves them first (install reads the neighbour table).
        for (from, to) in [(&sa, &a), (&sb, &b)] {
            from.send_to(b"hello", addr(to)).unwrap();
            recv(to);
        }
        let slot_a = relay.run(|| offload.install(&route_a)).unwrap();
        let slot_b = relay.run(|| offload.install(&route_b)).unwrap();
        let (mut want_a, mut want_b) = (Counters::default(), Counters::default());
        for (i, &size) in SIZES.iter().enumerate() {
            let data = payload(size, i as u8);
            a.send_to(&channel_data(CHANNEL, &data), route_a.server).unwrap();
            let (got, from) = recv(&b);
            assert_eq!(from, route_b.server, "{family} a -> b, {size} bytes");
            assert!(got == channel_data(OTHER, &data), "{family} a -> b, {size} bytes, on b's channel");
            b.send_to(&channel_data(OTHER, &data), route_b.server).unwrap();
            let (got, from) = recv(&a);
            assert_eq!(from, route_a.server, "{family} b -> a, {size} bytes");
            assert!(got == channel_data(CHANNEL, &data), "{family} b -> a, {size} bytes, on a's channel");
            for want in [&mut want_a, &mut want_b] {
                want.to_peer_packets += 1;
                want.to_peer_bytes += size as u64;
                want.from_peer_packets += 1;
                want.from_peer_bytes += size as u64;
            }
        }
        for (sock, who) in [(&sa, "a's server"), (&sb, "b's server"), (&ra, "a's relay"), (&rb, "b's relay")] {
            assert_quiet(sock, &format!("{family} {who} socket"));
        }
        assert_eq!(offload.remove(&route_a, slot_a).unwrap(), want_a, "{family} a's counters");
        assert_eq!(offload.remove(&route_b, slot_b).unwrap(), want_b, "{family} b's counters");
    }
    for (ns, who) in [(&a_ns, "a"), (&b_ns, "b")] {
        assert_eq!(ns.udp_counter("InCsumErrors"), 0, "UDP checksum errors at {who}");
    }
}

#[test]
fn probe_loads_and_leaves_nothing_attached() {
    let Some(ns) = Netns::new("probe") else { return };
    match ns.run(|| probe(Hook::Tc)) {
        Ok(()) => {}
        Err(e @ (OffloadError::NotBuilt(_) | OffloadError::NotPermitted(_) | OffloadError::Unsupported(_))) => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("probe: {e}"),
    }
    assert_eq!(attached(Hook::Tc, &ns, "lo"), 0, "probe left its program on lo");
}

#[test]
fn xdp_probe_loads_and_attaches_nothing() {
    let Some(ns) = Netns::new("xprobe") else { return };
    match ns.run(|| probe(Hook::Xdp)) {
        Ok(()) => {}
        Err(e @ (OffloadError::NotBuilt(_) | OffloadError::NotPermitted(_) | OffloadError::Unsupported(_))) => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("probe: {e}"),
    }
    assert_eq!(attached(Hook::Xdp, &ns, "lo"), 0, "probe left its program on lo");
}

/// One XDP program per interface: a second relay is refused with a reason, the first goes on.
#[test]
fn xdp_a_second_program_on_an_interface_is_refused() {
    let Some(ns) = Netns::new("xtwo") else { return };
    let Some(first) = ns.run(|| load_or_skip(Hook::Xdp, &["lo"])) else { return };
    match ns.run(|| Offload::load(Hook::Xdp, &["lo".to_string()])) {
        Err(OffloadError::Interface(why)) => assert!(why.contains("already has an XDP program"), "{why}"),
        other => panic!("a second XDP program on lo: {other:?}"),
    }
    assert_eq!(first.xdp_modes().collect::<Vec<_>>(), [("lo", super::XdpMode::Generic)]);
    assert_eq!(attached(Hook::Xdp, &ns, "lo"), 1);
}

#[test]
fn install_refuses_mixed_families_and_repeats() {
    let Some(ns) = Netns::new("refuse") else { return };
    let Some(offload) = ns.run(|| load_or_skip(Hook::Tc, &["lo"])) else { return };
    let mut route = Route {
        client: "127.0.0.1:1000".parse().unwrap(),
        server: "127.0.0.1:3478".parse().unwrap(),
        relay: "127.0.0.1:50000".parse().unwrap(),
        peer: "[::1]:7".parse().unwrap(),
        channel: CHANNEL,
    };
    assert!(matches!(offload.install(&route), Err(OffloadError::FamilyMismatch(_))));
    route.relay = "127.0.0.1:50000".parse().unwrap();
    route.peer = "127.0.0.1:7".parse().unwrap();
    let slot = offload.install(&route).unwrap();
    assert!(matches!(offload.install(&route), Err(OffloadError::AlreadyInstalled)));
    assert_eq!(offload.remove(&route, slot).unwrap(), Counters::default());
    assert!(matches!(offload.read(slot), Err(OffloadError::UnknownSlot(_))));
    let again = offload.install(&route).unwrap();
    assert_eq!(offload.read(again).unwrap(), Counters::default());
}
