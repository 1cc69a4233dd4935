//! The kernel fast path (`--offload tc`) through the built relay: channel data relayed by the
//! eBPF program both ways, counted in the metrics and the session log although userspace never
//! saw it; withdrawn by the core the moment a check stops holding (permission expiry, a refused
//! peer, a dropped user); between network namespaces over veth, IPv4 and IPv6, with full
//! checksums; and nothing left relaying after SIGKILL.
//!
//! `--offload tc` (not `auto`) so a relay that cannot load the program fails the test instead of
//! quietly passing in userspace. Needs root, as CI runs. The helpers here serve offload_xdp.rs
//! too: the same checks on `--offload xdp` relays, each in a network namespace of its own.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use e2e::netns::{self, NetNs};
use e2e::turn_wire::{self, TurnClient, Wire};
use e2e::{process, prometheus, require_program, PortBlock, Server, ServerBuilder};

const CHANNEL: u16 = 0x4000;
/// Generous: the first datagram over veth waits for neighbour discovery, and CI runs every test at once.
const WAIT: Duration = Duration::from_secs(8);

/// Where a test's relay, client and peer live: on the host, where the TC relays of every test
/// share lo, or in a network namespace of their own (an XDP relay needs lo's one XDP slot).
pub(super) enum Place {
    Host,
    Own(NetNs),
}

impl Place {
    /// A fresh namespace with only lo, up.
    pub(super) fn own() -> Place {
        Place::Own(NetNs::create(&netns::new_group(), "relay"))
    }

    /// Runs `f` where the test lives: sockets it creates stay there.
    pub(super) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match self {
            Place::Host => f(),
            Place::Own(ns) => ns.run(f),
        }
    }

    pub(super) fn start(&self, builder: ServerBuilder) -> Server {
        match self {
            Place::Host => builder.start(),
            Place::Own(ns) => builder.start_in(ns),
        }
    }

    pub(super) fn scrape(&self, server: &Server) -> String {
        self.run(|| prometheus::scrape(server.metrics_port()))
    }

    /// A UDP socket on `ip`, an ephemeral port.
    pub(super) fn udp(&self, ip: &str) -> UdpSocket {
        let ip: IpAddr = ip.parse().unwrap();
        self.run(|| UdpSocket::bind(SocketAddr::new(ip, 0))).unwrap()
    }

    /// Checks that no receiver here counted a UDP checksum error. Only in a namespace of the
    /// test's own: the host's counters are every test's.
    pub(super) fn no_checksum_errors(&self, server: &Server) {
        if let Place::Own(ns) = self {
            let errors = checksum_errors(ns);
            server.check(errors == 0, || format!("{errors} UDP checksum errors counted by the receivers"));
        }
    }
}

/// A relay with the kernel fast path at `hook` (`tc` or `xdp`).
pub(super) fn offloading(hook: &str, name: &str, ip: &str) -> ServerBuilder {
    ServerBuilder::new(name).ip(ip.parse::<IpAddr>().unwrap()).prometheus().arg("--offload").arg(hook)
}

/// A client with an allocation and `CHANNEL` bound to `peer`; returns it and its relayed address.
pub(super) fn bound_client(server: &Server, user: &str, peer: SocketAddr) -> (TurnClient, SocketAddr) {
    let (u, p) = server.credential(user);
    let local = SocketAddr::new(server.addr().ip(), 0);
    let mut client = TurnClient::new(Wire::udp_from(local, server.addr()).unwrap(), &u, &p);
    let alloc = allocate(&mut client, server);
    let reply = client.channel_bind(CHANNEL, peer).unwrap();
    server.check(reply.is_success(), || format!("ChannelBind to {peer}: {}", reply.describe()));
    (client, alloc.relayed)
}

/// A UDP allocation of the server's own family.
fn allocate(client: &mut TurnClient, server: &Server) -> turn_wire::Allocation {
    let alloc = if server.addr().is_ipv6() { client.allocate_ipv6() } else { client.allocate(turn_wire::UDP) };
    alloc.unwrap_or_else(|e| server.fail(&format!("Allocate: {e}")))
}

fn recv(socket: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

/// Payload `i`: sizes from 1 byte up, odd and even, every byte depending on `i`.
fn payload(i: usize) -> Vec<u8> {
    (0..1 + (i * 37) % 1200).map(|j| (i * 7 + j) as u8).collect()
}

/// `n` datagrams each way over the channel, checked byte for byte.
pub(super) fn exchange(server: &Server, client: &mut TurnClient, peer: &UdpSocket, relayed: SocketAddr, n: usize) {
    for i in 0..n {
        let data = payload(i);
        client.send_channel_data(CHANNEL, &data).unwrap();
        let got = recv(peer, WAIT);
        server.check(got.as_ref() == Some(&(data.clone(), relayed)), || {
            format!("datagram {i} ({} bytes) to the peer: got {:?}", data.len(), got.map(|(d, f)| (d.len(), f)))
        });
        peer.send_to(&data, relayed).unwrap();
        let back = client.recv_data(WAIT).unwrap();
        server.check(back == Some((None, data.clone())), || {
            format!("datagram {i} ({} bytes) from the peer came back as {back:?}", data.len())
        });
    }
}

/// One datagram each way over the channel, neither of which may arrive (`after` says why).
pub(super) fn nothing_passes(
    server: &Server,
    client: &mut TurnClient,
    peer: &UdpSocket,
    relayed: SocketAddr,
    after: &str,
) {
    client.send_channel_data(CHANNEL, b"must not pass").unwrap();
    peer.send_to(b"must not pass", relayed).unwrap();
    let leaked = recv(peer, Duration::from_millis(700));
    server.check(leaked.is_none(), || format!("the peer got {leaked:?} after {after}"));
    let back = client.recv_data(Duration::from_millis(300)).unwrap();
    server.check(back.is_none(), || format!("the client got {back:?} after {after}"));
}

/// `(relayed, offloaded)` packets of one direction in a scrape.
pub(super) fn packets(body: &str, direction: &str) -> (u64, u64) {
    let series = |name: &str| prometheus::sample(body, &format!("{name}{{direction=\"{direction}\"}}")).unwrap_or(0);
    (series("turn_relayed_packets_total"), series("turn_offloaded_packets_total"))
}

/// Client, relay and peer on lo at `ip`: everything relayed both ways by the program at `hook`,
/// counted, intact.
pub(super) fn relays_in_the_kernel(place: &Place, hook: &str, ip: &str, name: &str) {
    let server = place.start(offloading(hook, name, ip));
    server.wait_log("kernel fast path on", WAIT);
    let peer = place.udp(ip);
    let (mut client, relayed) = place.run(|| bound_client(&server, "alice", peer.local_addr().unwrap()));
    const N: usize = 64;
    exchange(&server, &mut client, &peer, relayed, N);
    let body = place.scrape(&server);
    assert_eq!(prometheus::sample(&body, "turn_offload_active"), Some(1));
    // Every relayed datagram went through the program: userspace relayed none of them (counted
    // from a fresh relay: nothing before).
    all_offloaded(&server, hook, "", &body, N as u64);
    place.no_checksum_errors(&server);
    // The session log counts what the kernel relayed.
    client.refresh(0).unwrap();
    server.wait_log(&format!("sent_packets={N} "), WAIT);
    server.wait_log(&format!("received_packets={N} "), WAIT);
}

#[test]
fn channel_data_is_relayed_in_the_kernel_both_ways_and_counted_ipv4() {
    relays_in_the_kernel(&Place::Host, "tc", "127.0.0.1", "offload_v4");
}

#[test]
fn channel_data_is_relayed_in_the_kernel_both_ways_and_counted_ipv6() {
    relays_in_the_kernel(&Place::Host, "tc", "::1", "offload_v6");
}

#[test]
fn permission_expiry_stops_kernel_relaying_within_its_lifetime() {
    permission_expiry_stops_kernel_relaying(&Place::Host, "tc", "offload_permission");
}

pub(super) fn permission_expiry_stops_kernel_relaying(place: &Place, hook: &str, name: &str) {
    let dir = e2e::LogDir::new(name);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[turn]\npermission_lifetime_secs = 3\n").unwrap();
    let server = place.start(offloading(hook, name, "127.0.0.1").arg("--config").arg(config.display().to_string()));
    let peer = place.udp("127.0.0.1");
    let (mut client, relayed) = place.run(|| bound_client(&server, "alice", peer.local_addr().unwrap()));
    let bound_at = Instant::now();
    exchange(&server, &mut client, &peer, relayed, 1);
    // The permission (3 s) ends before the channel (600 s): nothing passes after it, either way.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(bound_at.elapsed()) + Duration::from_millis(100));
    nothing_passes(&server, &mut client, &peer, relayed, "the permission expired");
    assert_eq!(packets(&place.scrape(&server), "to_peer"), (1, 1));
    // A new permission lets the bound channel back into the kernel.
    let reply = client.create_permission(peer.local_addr().unwrap()).unwrap();
    server.check(reply.is_success(), || format!("CreatePermission: {}", reply.describe()));
    exchange(&server, &mut client, &peer, relayed, 1);
    assert_eq!(packets(&place.scrape(&server), "to_peer"), (2, 2));
}

#[test]
fn a_channel_to_a_refused_peer_never_reaches_the_kernel() {
    let server = offloading("tc", "offload_refused", "127.0.0.1").refuse_loopback_peers().start();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (u, p) = server.credential("mallory");
    let mut client = TurnClient::new(Wire::udp(server.addr()).unwrap(), &u, &p);
    let alloc = client.allocate(turn_wire::UDP).unwrap();
    let reply = client.channel_bind(CHANNEL, peer.local_addr().unwrap()).unwrap();
    assert_eq!(reply.error_code(), Some(403), "{}", reply.describe());
    client.send_channel_data(CHANNEL, b"to a loopback peer").unwrap();
    peer.send_to(b"from a loopback peer", alloc.relayed).unwrap();
    let leaked = recv(&peer, Duration::from_millis(500));
    server.check(leaked.is_none(), || format!("the refused peer got {leaked:?}"));
    let body = server.scrape();
    assert_eq!((packets(&body, "to_peer"), packets(&body, "from_peer")), ((0, 0), (0, 0)));
}

#[test]
fn a_dropped_users_traffic_stops_at_once() {
    const TOKEN: &str = "e2e-offload-admin-token-0123456789";
    let admin = PortBlock::reserve();
    let port = admin.listen_port().to_string();
    let server = offloading("tc", "offload_drop", "127.0.0.1")
        .arg("--admin-port")
        .arg(&port)
        .arg("--admin-token")
        .arg(TOKEN)
        .start();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut client, relayed) = bound_client(&server, "eve", peer.local_addr().unwrap());
    exchange(&server, &mut client, &peer, relayed, 3);
    let url = format!("http://127.0.0.1:{port}");
    let args: Vec<String> =
        ["admin", "--url", &url, "--token", TOKEN, "drop", "eve"].iter().map(|s| (*s).to_owned()).collect();
    let dropped = process::run("admin", &e2e::server_binary(), &args, server.log_dir(), Duration::from_secs(30));
    server.check(dropped.success(), || format!("admin drop eve: {}\n{}", dropped.stdout, dropped.stderr));
    // At once: the very next datagrams, either way, go nowhere.
    nothing_passes(&server, &mut client, &peer, relayed, "eve was dropped");
    assert_eq!(packets(&server.scrape(), "to_peer"), (3, 3));
}

#[test]
fn sigkill_leaves_no_program_relaying() {
    sigkill_leaves_nothing_relaying(&Place::Host, "tc", "offload_sigkill", |_| {});
}

/// SIGKILL takes the program with the process; `attached` checks, before and after the kill,
/// whether the hook still shows it (its argument says which is expected).
pub(super) fn sigkill_leaves_nothing_relaying(place: &Place, hook: &str, name: &str, attached: impl Fn(bool)) {
    let bpftool = require_program("bpftool", "bpftool");
    let server = place.start(offloading(hook, name, "127.0.0.1"));
    server.wait_log("kernel fast path on", WAIT);
    let log = server.stderr_tail();
    let id = log
        .split("program_id=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| server.fail("no program_id in the startup log"));
    let show = |dir: &std::path::Path| {
        let args = vec!["prog".to_owned(), "show".to_owned(), "id".to_owned(), id.to_string()];
        process::run("bpftool", &bpftool, &args, dir, Duration::from_secs(10)).success()
    };
    server.check(show(server.log_dir()), || format!("bpftool does not show program {id}"));
    attached(true);
    let peer = place.udp("127.0.0.1");
    let (mut client, relayed) = place.run(|| bound_client(&server, "alice", peer.local_addr().unwrap()));
    exchange(&server, &mut client, &peer, relayed, 2);
    server.signal_server(libc::SIGKILL);
    // The TCX links went with the process's file descriptors, and the program with its last link.
    let start = Instant::now();
    while show(server.log_dir()) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.check(!show(server.log_dir()), || format!("program {id} outlived the relay by 10 s"));
    attached(false);
    client.send_channel_data(CHANNEL, b"after the kill").unwrap();
    let leaked = recv(&peer, Duration::from_millis(500));
    server.check(leaked.is_none(), || format!("the peer got {leaked:?} after the relay was killed"));
}

/// client ── veth ── relay ── veth ── peer, IPv4 and IPv6, each in its namespace; the client and
/// peer send full checksums (TX checksum offload off), so a checksum the program got wrong is a
/// datagram the receiver drops and counts. Forwarding stays off in the relay's namespace, as on
/// most relays. GRO is on at the client's and peer's ends: a native XDP redirect into a veth
/// needs NAPI on its other end (the TC program does not care).
struct VethTopology {
    client: NetNs,
    relay: NetNs,
    peer: NetNs,
}

impl VethTopology {
    fn build() -> Self {
        let group = netns::new_group();
        let t = VethTopology {
            client: NetNs::create(&group, "client"),
            relay: NetNs::create(&group, "relay"),
            peer: NetNs::create(&group, "peer"),
        };
        netns::veth(&t.client, "c0", "10.201.1.2/24", &t.relay, "r-c", "10.201.1.1/24");
        netns::veth(&t.relay, "r-p", "10.201.2.1/24", &t.peer, "p0", "10.201.2.2/24");
        for (ns, dev, addr) in [
            (&t.client, "c0", "fd01:1::2/64"),
            (&t.relay, "r-c", "fd01:1::1/64"),
            (&t.relay, "r-p", "fd01:2::1/64"),
            (&t.peer, "p0", "fd01:2::2/64"),
        ] {
            ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
        }
        t.client.ip(&["route", "add", "default", "via", "10.201.1.1"]);
        t.client.ip(&["-6", "route", "add", "default", "via", "fd01:1::1"]);
        t.peer.ip(&["route", "add", "default", "via", "10.201.2.1"]);
        t.peer.ip(&["-6", "route", "add", "default", "via", "fd01:2::1"]);
        for (ns, dev) in [(&t.client, "c0"), (&t.peer, "p0")] {
            ns.exec("ethtool", &["-K", dev, "tx", "off", "gro", "on"]);
        }
        t
    }
}

/// UDP checksum errors counted in `ns` (`/proc/net/snmp` and `snmp6`, through /proc/thread-self:
/// /proc/net is /proc/self/net, the namespace of the process's main thread, not this one's).
fn checksum_errors(ns: &NetNs) -> u64 {
    ns.run(|| {
        let v4 = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
        let mut lines = v4.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let v4 = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "InCsumErrors")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0);
        let v6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap_or_default();
        let v6 = v6
            .lines()
            .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        v4 + v6
    })
}

/// The scrape after `exchange_once` went through the kernel: after one call the fast path's counts
/// grew by `per_exchange` each way (or WAIT passed: the caller's check then says what happened).
/// Until a relay has sent to a neighbour once, XDP has no MAC for it and leaves its datagrams to
/// userspace (which makes the kernel resolve it) until the next-hop refresh, a second later.
fn once_offloaded(scrape: &dyn Fn() -> String, mut exchange_once: impl FnMut(), per_exchange: u64) -> String {
    let offloaded = |body: &str| (packets(body, "to_peer").1, packets(body, "from_peer").1);
    let start = Instant::now();
    loop {
        let before = offloaded(&scrape());
        exchange_once();
        let body = scrape();
        let after = offloaded(&body);
        if (after.0 >= before.0 + per_exchange && after.1 >= before.1 + per_exchange) || start.elapsed() > WAIT {
            return body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Between the scrapes `before` and `after`, `want` datagrams were relayed each way, all of them
/// by the kernel.
fn all_offloaded(server: &Server, label: &str, before: &str, after: &str, want: u64) {
    for direction in ["to_peer", "from_peer"] {
        let ((relayed_before, offloaded_before), (relayed, offloaded)) =
            (packets(before, direction), packets(after, direction));
        let (relayed, offloaded) = (relayed - relayed_before, offloaded - offloaded_before);
        server.check(relayed == want && offloaded == want, || {
            format!("{label} {direction}: {relayed} relayed, {offloaded} by the kernel; want {want} and {want}")
        });
    }
}

/// Each family, and a client of one family with a peer of the other (a relay with an address of
/// each family: the kernel translates both ways, as the core would).
#[test]
fn relays_between_namespaces_over_veth_each_family_and_across_them_with_full_checksums() {
    relays_over_veth("tc");
}

/// The relay between two veths, IPv4 then IPv6 (and, at TC, across the two), the program at
/// `hook`. The counts are taken once a datagram each way went through the kernel
/// ([`once_offloaded`]).
pub(super) fn relays_over_veth(hook: &str) {
    let t = VethTopology::build();
    let mut rows = vec![
        ("ipv4", "10.201.1.1", None, "10.201.2.2", "10.201.2.0/24"),
        ("ipv6", "fd01:1::1", None, "fd01:2::2", "fd01:2::/64"),
    ];
    // Only the TC program translates between families (XDP leaves that to userspace).
    if hook == "tc" {
        rows.push(("ipv4 client, ipv6 peer", "10.201.1.1", Some("fd01:1::1"), "fd01:2::2", "fd01:2::/64"));
        rows.push(("ipv6 client, ipv4 peer", "fd01:1::1", Some("10.201.1.1"), "10.201.2.2", "10.201.2.0/24"));
    }
    for (i, (family, server_ip, other_relay_ip, peer_ip, allowed)) in rows.into_iter().enumerate() {
        let mut builder = offloading(hook, &format!("offload_{hook}_veth_{i}"), server_ip).refuse_loopback_peers();
        if let Some(ip) = other_relay_ip {
            builder = builder.arg("--relay-ip").arg(ip);
        }
        let server = builder.arg("--allowed-peer-ip").arg(allowed).start_in(&t.relay);
        let peer_addr = SocketAddr::new(peer_ip.parse().unwrap(), 40_000);
        let peer = t.peer.run(|| UdpSocket::bind(peer_addr)).unwrap();
        let (u, p) = server.credential("alice");
        let wire = t.client.run(|| Wire::udp(server.addr())).unwrap();
        let mut client = TurnClient::new(wire, &u, &p);
        // The relayed address of the peer's family.
        let alloc = if peer_addr.is_ipv6() { client.allocate_ipv6() } else { client.allocate(turn_wire::UDP) };
        let alloc = alloc.unwrap_or_else(|e| server.fail(&format!("{family}: Allocate: {e}")));
        let reply = client.channel_bind(CHANNEL, peer_addr).unwrap();
        server.check(reply.is_success(), || format!("{family} ChannelBind: {}", reply.describe()));
        let scrape = || t.relay.run(|| prometheus::scrape(server.metrics_port()));
        let before = once_offloaded(&scrape, || exchange(&server, &mut client, &peer, alloc.relayed, 1), 1);
        const N: usize = 48;
        exchange(&server, &mut client, &peer, alloc.relayed, N);
        all_offloaded(&server, family, &before, &scrape(), N as u64);
    }
    for (role, ns) in [("client", &t.client), ("peer", &t.peer)] {
        assert_eq!(checksum_errors(ns), 0, "UDP checksum errors in the {role} namespace");
    }
}

/// Both parties of a call relayed by one relay (`iceTransportPolicy: "relay"` on both sides):
/// each client's peer is the other's relayed address. The kernel turns one client's ChannelData
/// into the other's in one pass, IPv4 and IPv6, with the clients in their own namespaces as on
/// the Internet (before, IPv4 from a device to the relay's own address was dropped).
#[test]
fn relay_to_relay_calls_are_relayed_in_the_kernel() {
    relay_to_relay_calls("tc");
}

/// [`relay_to_relay_calls_are_relayed_in_the_kernel`] at `hook`. The counts are taken once a
/// datagram each way went through the kernel ([`once_offloaded`]).
pub(super) fn relay_to_relay_calls(hook: &str) {
    let t = VethTopology::build();
    for (family, relay_ip) in [("ipv4", "10.201.1.1"), ("ipv6", "fd01:1::1")] {
        // The relay's own address is a peer only where a rule names it exactly.
        let server = offloading(hook, &format!("offload_{hook}_hairpin_{family}"), relay_ip)
            .refuse_loopback_peers()
            .arg("--allowed-peer-ip")
            .arg(relay_ip)
            .start_in(&t.relay);
        let join = |ns: &NetNs, user: &str| {
            let (u, p) = server.credential(user);
            let wire = ns.run(|| Wire::udp(server.addr())).unwrap();
            let mut client = TurnClient::new(wire, &u, &p);
            let alloc = allocate(&mut client, &server);
            (client, alloc.relayed)
        };
        let (mut alice, alice_relayed) = join(&t.client, "alice");
        let (mut bob, bob_relayed) = join(&t.peer, "bob");
        for (client, channel, peer) in [(&mut alice, CHANNEL, bob_relayed), (&mut bob, CHANNEL + 1, alice_relayed)] {
            let reply = client.channel_bind(channel, peer).unwrap();
            server.check(reply.is_success(), || format!("{family} ChannelBind to {peer}: {}", reply.describe()));
        }
        let mut clients = [alice, bob];
        let mut exchange = |n: usize| {
            for i in 0..n {
                let data = payload(i);
                for (from, who) in [(0, "alice -> bob"), (1, "bob -> alice")] {
                    clients[from].send_channel_data(CHANNEL + from as u16, &data).unwrap();
                    let got = clients[1 - from].recv_data(WAIT).unwrap();
                    server.check(got == Some((None, data.clone())), || {
                        format!("{family} {who}: datagram {i} ({} bytes) came as {got:?}", data.len())
                    });
                }
            }
        };
        let scrape = || t.relay.run(|| prometheus::scrape(server.metrics_port()));
        // One exchange is a datagram each way through each allocation: two per direction.
        let before = once_offloaded(&scrape, || exchange(1), 2);
        const N: usize = 32;
        exchange(N);
        // Each datagram left one allocation and reached the other: 2N each way in all.
        all_offloaded(&server, family, &before, &scrape(), 2 * N as u64);
    }
}

/// Root with CAP_BPF and CAP_NET_ADMIN (and CAP_SYS_ADMIN and CAP_PERFMON, which would stand in
/// for them) taken out of its bounding set, as a relay started without the unit's capabilities:
/// `tc` refuses to start and names them; `auto` says so in one line and relays in userspace.
#[test]
fn without_its_capabilities_tc_refuses_and_auto_relays_in_userspace() {
    const DROP: [&str; 5] = ["--bounding-set", "-bpf,-net_admin,-sys_admin,-perfmon", "--inh-caps", "-all", "--"];
    const NAMED: &str = "lacks CAP_BPF and CAP_NET_ADMIN";
    let setpriv = require_program("setpriv", "util-linux");
    let binary = e2e::server_binary().display().to_string();
    let dir = e2e::LogDir::new("offload_no_caps");
    let check = |mode: &str| {
        let mut args: Vec<String> = DROP.iter().map(|s| s.to_string()).collect();
        args.push(binary.clone());
        let flags =
            ["--check-config", "--use-auth-secret", "--static-auth-secret", "no-caps-secret", "--offload", mode];
        args.extend(flags.map(String::from));
        process::run("turn-server-without-caps", &setpriv, &args, dir.path(), Duration::from_secs(30))
    };
    let tc = check("tc");
    assert!(!tc.success() && tc.output().contains(NAMED), "{}", tc.output());
    let auto = check("auto");
    assert!(
        auto.success() && auto.stdout.contains("offload: unavailable") && auto.stdout.contains(NAMED),
        "{}",
        auto.output()
    );

    // The relay itself, through a wrapper that drops them before it runs.
    let wrapper = dir.path().join("turn-server-without-caps");
    let script = format!("#!/bin/sh\nexec {} {} {binary} \"$@\"\n", setpriv.display(), DROP.join(" "));
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server =
        ServerBuilder::new("offload_no_caps").prometheus().program(wrapper).arg("--drain-timeout").arg("0").start();
    server.wait_log("kernel fast path off, relaying in userspace: kernel offload is not permitted", WAIT);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (mut client, relayed) = bound_client(&server, "alice", peer.local_addr().unwrap());
    const N: usize = 8;
    exchange(&server, &mut client, &peer, relayed, N);
    let body = server.scrape();
    assert_eq!(prometheus::sample(&body, "turn_offload_active"), Some(0));
    for direction in ["to_peer", "from_peer"] {
        let (relayed, offloaded) = packets(&body, direction);
        server.check(relayed == N as u64 && offloaded == 0, || {
            format!("{direction}: {relayed} relayed, {offloaded} by the kernel; want {N} and 0")
        });
    }
}

#[test]
fn check_config_says_whether_the_fast_path_loads() {
    let dir = e2e::LogDir::new("offload_check_config");
    let run = |args: &[&str]| {
        let mut all = vec!["--check-config", "--use-auth-secret", "--static-auth-secret", "check-config-secret"];
        all.extend_from_slice(args);
        e2e::turn_server_cli(&all, dir.path())
    };
    // As root (CI): the program loads, and nothing stays attached after the check.
    let tc = run(&["--offload", "tc"]);
    assert!(tc.success(), "{}", tc.output());
    assert!(tc.stdout.contains("offload: available"), "{}", tc.stdout);
    let off = run(&["--offload", "off"]);
    assert!(off.success() && off.stdout.contains("offload: off"), "{}", off.output());
    // XDP is only loaded, not attached: lo's one XDP slot may belong to a running relay.
    let xdp = run(&["--offload", "xdp"]);
    assert!(xdp.success(), "{}", xdp.output());
    assert!(xdp.stdout.contains("offload: available: channel data will be relayed at XDP"), "{}", xdp.stdout);
}
