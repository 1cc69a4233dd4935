//! NAT traversal through the relay: two ICE agents, each behind its own symmetric NAT, built from
//! network namespaces this test creates (iproute2, iptables) and deletes on drop.
//!
//! ```text
//!  client A 10.210.11.2 ── nat-a ── 10.210.1.2 ─┐                 ┌─ 10.210.2.2 ── nat-b ── client B 10.210.12.2
//!                   (lan 10.210.11.1)           └── public ───────┘           (lan 10.210.12.1)
//!                                                   relay 10.210.0.1 (alt 10.210.0.2), routes between the NATs
//! ```
//!
//! Each NAT masquerades UDP with `--random-fully` (a new random port per destination:
//! endpoint-dependent mapping) and drops every inbound packet conntrack does not already know
//! (address-and-port-dependent filtering). The test first shows the mapping really is symmetric
//! (two Binding requests from one socket of client A, to the relay's two addresses, see two
//! different mapped ports), then runs aioice twice between the clients: with STUN only the direct
//! path must fail, with TURN the agents must connect over a relayed pair and exchange datagrams.
//! A second, independent client (webrtc-rs `turn`, its sockets created inside the client
//! namespaces) shows the same: the clients' reflexive addresses are unreachable from each other,
//! their allocations relay datagrams both ways. Addresses exist only in this run's namespaces.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::netns::{self, NetNs};
use e2e::{stun, tail, Server, ServerBuilder};
use webrtc_util::Conn as _;

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 1);
const RELAY_ALT: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 2);
const NAT_A_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 2);
const NAT_B_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 210, 2, 2);
const CLIENT_A: Ipv4Addr = Ipv4Addr::new(10, 210, 11, 2);
/// RFC 5780's alternate port, outside every port block (whose relay range starts at the listening
/// port + 1, the default alternate port).
const ALT_PORT: u16 = 3479;

/// The namespaces of the module docs; all deleted on drop (the iptables rules live in them).
struct Topology {
    public: NetNs,
    nat_a: NetNs,
    nat_b: NetNs,
    client_a: NetNs,
    client_b: NetNs,
}

/// Symmetric NAT for UDP in `nat`: masquerade with a random port per flow out of `wan`, and only
/// conntrack-known traffic in from `wan`.
fn symmetric_nat(nat: &NetNs, wan: &str) {
    let rules: [&[&str]; 6] = [
        &["-t", "nat", "-A", "POSTROUTING", "-o", wan, "-p", "udp", "-j", "MASQUERADE", "--random-fully"],
        &["-A", "FORWARD", "-i", wan, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        &["-A", "FORWARD", "-i", wan, "-j", "DROP"],
        &["-A", "INPUT", "-i", wan, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        &["-A", "INPUT", "-i", wan, "-j", "DROP"],
        &["-A", "OUTPUT", "-o", wan, "-p", "icmp", "--icmp-type", "port-unreachable", "-j", "DROP"],
    ];
    for rule in rules {
        nat.exec("iptables", rule);
    }
    nat.sysctl("net.ipv4.ip_forward", "1");
}

impl Topology {
    fn build() -> Self {
        let group = netns::new_group();
        let t = Topology {
            public: NetNs::create(&group, "public"),
            nat_a: NetNs::create(&group, "nat-a"),
            nat_b: NetNs::create(&group, "nat-b"),
            client_a: NetNs::create(&group, "client-a"),
            client_b: NetNs::create(&group, "client-b"),
        };
        // The public segment: the relay's namespace routes between the two NATs' WAN links.
        netns::veth(&t.public, "p-a", "10.210.1.1/24", &t.nat_a, "wan", "10.210.1.2/24");
        netns::veth(&t.public, "p-b", "10.210.2.1/24", &t.nat_b, "wan", "10.210.2.2/24");
        t.public.ip(&["addr", "add", "10.210.0.1/32", "dev", "lo"]);
        t.public.ip(&["addr", "add", "10.210.0.2/32", "dev", "lo"]);
        t.public.sysctl("net.ipv4.ip_forward", "1");
        netns::veth(&t.nat_a, "lan", "10.210.11.1/24", &t.client_a, "c0", "10.210.11.2/24");
        netns::veth(&t.nat_b, "lan", "10.210.12.1/24", &t.client_b, "c0", "10.210.12.2/24");
        t.nat_a.ip(&["route", "add", "default", "via", "10.210.1.1"]);
        t.nat_b.ip(&["route", "add", "default", "via", "10.210.2.1"]);
        t.client_a.ip(&["route", "add", "default", "via", "10.210.11.1"]);
        t.client_b.ip(&["route", "add", "default", "via", "10.210.12.1"]);
        symmetric_nat(&t.nat_a, "wan");
        symmetric_nat(&t.nat_b, "wan");
        t
    }
}

/// The relay in the public namespace, with RFC 5780's alternate address.
fn start_relay(t: &Topology, name: &str, secret: &str) -> Server {
    ServerBuilder::new(name)
        .secret(secret)
        .ip(RELAY)
        .refuse_loopback_peers()
        .arg("--alt-listening-ip")
        .arg(RELAY_ALT.to_string())
        .arg("--alt-listening-port")
        .arg(ALT_PORT.to_string())
        // Every address of this test is private, refused as a peer by default: open exactly the
        // test's range.
        .arg("--allowed-peer-ip")
        .arg("10.210.0.0/16")
        .arg("-v")
        .start_in(&t.public)
}

/// One aioice agent in a client namespace, talking JSON lines over stdin/stdout; killed (its
/// whole process group) on drop, and bounded by `timeout` in any case.
struct Agent {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: std::path::PathBuf,
}

impl Agent {
    fn spawn(name: &str, ns: &NetNs, python: &Path, args: &[String], dir: &Path) -> Self {
        let script = e2e::clients_dir().join("ice_aioice.py");
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(e2e::require_program("timeout", "coreutils"))
            .args(["-k", "5", "90"])
            .arg(e2e::require_program("ip", "iproute2"))
            .args(["netns", "exec", ns.name()])
            .arg(python)
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { name: name.to_owned(), child, stdin, lines, stderr }
    }

    /// The next JSON line within `within`, or a failure naming the agent and its stderr.
    fn next(&self, within: Duration) -> serde_json::Value {
        match self.lines.recv_timeout(within) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}\n{}", self.name, self.stderr_tail())),
            Err(e) => panic!("{}: no line within {within:?} ({e})\n{}", self.name, self.stderr_tail()),
        }
    }

    fn send(&mut self, line: &str) {
        // The agent may already have exited (a failed run); what it printed tells why.
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    fn stderr_tail(&self) -> String {
        format!("--- {} stderr:\n{}", self.name, tail(&std::fs::read_to_string(&self.stderr).unwrap_or_default(), 30))
    }

    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the group is the child's own.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// One agent's candidates ("local" line) and its outcome ("result" line).
type Outcome = (serde_json::Value, serde_json::Value);

/// Runs the two agents, relaying their candidates, and returns what each printed.
fn ice_run(t: &Topology, label: &str, extra: &[String], dir: &Path) -> (Outcome, Outcome) {
    let python = e2e::peers::aioice_python();
    let args = |role: &str| {
        let mut a = vec!["--role".to_owned(), role.to_owned()];
        a.extend_from_slice(extra);
        a
    };
    let mut a = Agent::spawn(&format!("{label}-a"), &t.client_a, &python, &args("controlling"), dir);
    let mut b = Agent::spawn(&format!("{label}-b"), &t.client_b, &python, &args("controlled"), dir);
    let gather = Duration::from_secs(20);
    let local_a = a.next(gather);
    let local_b = b.next(gather);
    for (agent, local) in [(&a, &local_a), (&b, &local_b)] {
        assert_eq!(
            local["type"],
            "local",
            "{}: expected its candidates, got {local}\n{}",
            agent.name,
            agent.stderr_tail()
        );
    }
    eprintln!("{label}: A candidates {}\n{label}: B candidates {}", local_a["candidates"], local_b["candidates"]);
    a.send(&local_b.to_string());
    b.send(&local_a.to_string());
    let connect = Duration::from_secs(40);
    let result_a = a.next(connect);
    let result_b = b.next(connect);
    a.send("close");
    b.send("close");
    let _ = a.wait(Duration::from_secs(10));
    let _ = b.wait(Duration::from_secs(10));
    eprintln!("{label}: A {result_a}\n{label}: B {result_b}");
    ((local_a, result_a), (local_b, result_b))
}

/// Whether an agent gathered a server-reflexive candidate on `public` (its NAT's address).
fn has_srflx_on(local: &serde_json::Value, public: Ipv4Addr) -> bool {
    let needle = format!(" {public} ");
    local["candidates"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c.as_str().is_some_and(|c| c.contains(&needle) && c.contains("typ srflx"))))
}

#[test]
fn two_clients_behind_symmetric_nats_connect_only_through_the_relay() {
    let started = Instant::now();
    // Fail early, with the install command, when aioice is missing.
    e2e::peers::aioice_python();
    let topology = Topology::build();
    let logs = e2e::LogDir::new("turn_nat_symmetric");
    let secret = format!("e2e-secret-{:016x}", rand::random::<u64>());
    let relay = start_relay(&topology, "turn_nat_symmetric_relay", &secret);
    let primary = relay.addr();
    let alternate = SocketAddr::new(IpAddr::V4(RELAY_ALT), ALT_PORT);

    // The NAT is symmetric: one client socket, two destinations, two different mapped ports.
    let socket = topology.client_a.run(|| UdpSocket::bind((CLIENT_A, 0))).unwrap();
    let mut mapped = Vec::new();
    for server in [primary, alternate, primary] {
        let r = stun::transact(
            &socket,
            server,
            &stun::binding_request(stun::transaction_id()),
            Duration::from_millis(500),
            Duration::from_secs(5),
        );
        let m = r.and_then(|r| r.xor_mapped_address);
        let m = m.unwrap_or_else(|| relay.fail(&format!("no Binding answer from {server} through NAT A")));
        mapped.push(m);
    }
    eprintln!("client A {} mapped as {mapped:?} by {primary}, {alternate}, {primary}", socket.local_addr().unwrap());
    relay.check(mapped.iter().all(|m| m.ip() == IpAddr::V4(NAT_A_PUBLIC)), || {
        format!("mapped addresses {mapped:?} must all be on NAT A's public address {NAT_A_PUBLIC}")
    });
    relay.check(mapped[0].port() != mapped[1].port(), || {
        format!("NAT A is not symmetric: {primary} and {alternate} both saw port {}", mapped[0].port())
    });
    relay.check(mapped[0] == mapped[2], || {
        format!("NAT A changed the mapping of one flow: {} then {}", mapped[0], mapped[2])
    });
    drop(socket);

    // Run 1: STUN only. Both agents learn their srflx candidates, but the mappings are for the
    // relay only and each NAT drops what the other agent sends: ICE must fail.
    let t1 = Instant::now();
    let drops_before = nat_drops(&topology.nat_a) + nat_drops(&topology.nat_b);
    let (a, b) = ice_run(&topology, "stun-only", &["--stun".to_owned(), primary.to_string()], logs.path());
    for (name, (local, r), public) in [("A", &a, NAT_A_PUBLIC), ("B", &b, NAT_B_PUBLIC)] {
        relay.check(has_srflx_on(local, public), || {
            format!("agent {name} must have gathered a srflx candidate on {public}, got {local}")
        });
        relay.check(r["type"] == "result" && r["ok"] == false, || {
            format!("agent {name} with STUN only must fail to connect (the direct path), got {r}")
        });
    }
    // The agents did try the direct pairs: their checks reached the other NAT and were dropped.
    let drops = nat_drops(&topology.nat_a) + nat_drops(&topology.nat_b) - drops_before;
    relay.check(drops > 0, || {
        "the NATs dropped no packet during the STUN-only run: no direct check was tried".to_owned()
    });
    eprintln!("stun-only: the NATs dropped {drops} connectivity-check packets");
    let stun_only = t1.elapsed();

    // Run 2: with TURN (UDP, a REST credential): the agents connect over a relayed pair.
    let t2 = Instant::now();
    let (user, pass) = e2e::rest_credential(&secret, "symmetric", 3600);
    let extra = [
        "--stun".to_owned(),
        primary.to_string(),
        "--turn".to_owned(),
        primary.to_string(),
        "--username".to_owned(),
        user,
        "--password".to_owned(),
        pass,
    ];
    let (a, b) = ice_run(&topology, "turn", &extra, logs.path());
    for (name, (_, r)) in [("A", &a), ("B", &b)] {
        relay.check(r["type"] == "result" && r["ok"] == true, || {
            format!("agent {name} with TURN must connect and exchange datagrams, got {r}")
        });
        relay.check(r["local_type"] == "relay" || r["remote_type"] == "relay", || {
            format!("agent {name}'s nominated pair must be relayed, got {r}")
        });
        relay.check(r["received"].as_array().is_some_and(|v| v.len() == 5), || {
            format!("agent {name} must receive all 5 datagrams, got {r}")
        });
    }
    eprintln!(
        "timings: stun-only run {:.1?} (failed as required), turn run {:.1?}, total {:.1?}",
        stun_only,
        t2.elapsed(),
        started.elapsed()
    );
    drop(relay);
}

/// Packets the `INPUT` and `FORWARD` DROP rules of a NAT namespace have dropped so far.
fn nat_drops(nat: &NetNs) -> u64 {
    let mut total = 0;
    for chain in ["INPUT", "FORWARD"] {
        let out = nat.exec("iptables", &["-n", "-v", "-x", "-L", chain]);
        total += out
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("DROP"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// The next datagram on a webrtc-rs relayed conn within 5 s, skipping B's "permission" datagram:
/// it usually dies at A's allocation (no permission yet), but may be relayed after A's own
/// CreatePermission when the two race inside the relay.
async fn recv_skipping_permission(conn: &impl webrtc_util::Conn) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    loop {
        let got = tokio::time::timeout_at(deadline, conn.recv_from(&mut buf)).await;
        let got = got.ok().and_then(Result::ok).map(|(n, from)| (buf[..n].to_vec(), from));
        if !matches!(&got, Some((data, _)) if data == b"permission") {
            return got;
        }
    }
}

/// A webrtc-rs `turn` client whose socket lives in `ns` (created there, used from anywhere).
async fn webrtc_client(
    ns: &NetNs,
    local: Ipv4Addr,
    server: SocketAddr,
    user: &str,
    pass: &str,
) -> turn::client::Client {
    let std_socket = ns.run(|| UdpSocket::bind((local, 0))).unwrap();
    std_socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: user.to_owned(),
        password: pass.to_owned(),
        realm: String::new(),
        software: "e2e-nat-symmetric".to_owned(),
        rto_in_ms: 0,
        conn: std::sync::Arc::new(socket),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    client
}

/// The second, independent client: webrtc-rs `turn` in each client namespace. Plain UDP between
/// the two clients' STUN-learned (server-reflexive) addresses is dropped by the NATs; the same
/// clients' allocations relay datagrams both ways.
#[test]
fn webrtc_rs_clients_behind_symmetric_nats_relay_but_cannot_reach_each_other_directly() {
    let started = Instant::now();
    let topology = Topology::build();
    let secret = format!("e2e-secret-{:016x}", rand::random::<u64>());
    let relay = start_relay(&topology, "turn_nat_symmetric_webrtc_relay", &secret);
    let primary = relay.addr();
    let client_b_ip = Ipv4Addr::new(10, 210, 12, 2);

    // Direct path: each socket learns its mapping from the relay, then the two send to each
    // other's mapped address. The symmetric NATs drop all of it (and count it).
    let sock_a = topology.client_a.run(|| UdpSocket::bind((CLIENT_A, 0))).unwrap();
    let sock_b = topology.client_b.run(|| UdpSocket::bind((client_b_ip, 0))).unwrap();
    let mapped = |s: &UdpSocket| {
        stun::transact(
            s,
            primary,
            &stun::binding_request(stun::transaction_id()),
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
        .and_then(|r| r.xor_mapped_address)
        .unwrap_or_else(|| relay.fail("no Binding answer through a NAT"))
    };
    let (mapped_a, mapped_b) = (mapped(&sock_a), mapped(&sock_b));
    let drops_before = nat_drops(&topology.nat_a) + nat_drops(&topology.nat_b);
    for _ in 0..5 {
        sock_a.send_to(b"direct from A", mapped_b).unwrap();
        sock_b.send_to(b"direct from B", mapped_a).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut buf = [0u8; 256];
    for (who, s) in [("A", &sock_a), ("B", &sock_b)] {
        s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        let got = s.recv_from(&mut buf).ok().map(|(n, from)| (buf[..n].to_vec(), from));
        relay.check(got.is_none(), || {
            format!("client {who} got {got:?} over the direct path through two symmetric NATs")
        });
    }
    let drops = nat_drops(&topology.nat_a) + nat_drops(&topology.nat_b) - drops_before;
    relay.check(drops >= 10, || format!("the NATs dropped {drops} packets of the 10 sent directly, expected all 10"));
    eprintln!("direct path {mapped_a} <-> {mapped_b}: nothing arrived, the NATs dropped {drops} packets");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (ua, pa) = e2e::rest_credential(&secret, "webrtc-a", 3600);
        let (ub, pb) = e2e::rest_credential(&secret, "webrtc-b", 3600);
        let alice = webrtc_client(&topology.client_a, CLIENT_A, primary, &ua, &pa).await;
        let bob = webrtc_client(&topology.client_b, client_b_ip, primary, &ub, &pb).await;
        let op = Duration::from_secs(10);
        let srflx_a = tokio::time::timeout(op, alice.send_binding_request()).await.unwrap();
        relay.check(srflx_a.as_ref().is_ok_and(|a| a.ip() == IpAddr::V4(NAT_A_PUBLIC)), || {
            format!("webrtc-rs Binding from client A: {srflx_a:?}, expected {NAT_A_PUBLIC}:<port>")
        });
        let relay_a = tokio::time::timeout(op, alice.allocate())
            .await
            .unwrap()
            .unwrap_or_else(|e| relay.fail(&format!("A: Allocate: {e}")));
        let relay_b = tokio::time::timeout(op, bob.allocate())
            .await
            .unwrap()
            .unwrap_or_else(|e| relay.fail(&format!("B: Allocate: {e}")));
        let (addr_a, addr_b) = (relay_a.local_addr().unwrap(), relay_b.local_addr().unwrap());
        relay.check(addr_a.ip() == IpAddr::V4(RELAY) && addr_b.ip() == IpAddr::V4(RELAY), || {
            format!("relayed addresses {addr_a}, {addr_b} must be on {RELAY}")
        });
        // B's first send installs B's permission for A's relayed address (the datagram itself is
        // dropped at A's allocation, which has no permission yet); then both ways work.
        tokio::time::timeout(op, relay_b.send_to(b"permission", addr_a)).await.unwrap().unwrap();
        for i in 0..5u8 {
            let msg = [b'a', i];
            tokio::time::timeout(op, relay_a.send_to(&msg, addr_b)).await.unwrap().unwrap();
            let got = recv_skipping_permission(&relay_b).await;
            relay.check(got == Some((msg.to_vec(), addr_a)), || {
                format!("B got {got:?} for A's datagram {i} via {addr_a}")
            });
            let msg = [b'b', i];
            tokio::time::timeout(op, relay_b.send_to(&msg, addr_a)).await.unwrap().unwrap();
            let got = recv_skipping_permission(&relay_a).await;
            relay.check(got == Some((msg.to_vec(), addr_b)), || {
                format!("A got {got:?} for B's datagram {i} via {addr_b}")
            });
        }
        eprintln!("webrtc-rs: A {srflx_a:?} relayed {addr_a} <-> B relayed {addr_b}: 5 datagrams each way");
        let _ = tokio::time::timeout(op, alice.close()).await;
        let _ = tokio::time::timeout(op, bob.close()).await;
    });
    eprintln!("timings: webrtc-rs test {:.1?}", started.elapsed());
    drop(relay);
}
