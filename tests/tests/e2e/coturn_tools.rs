//! coturn's own test clients (Debian package `coturn`) against the built relay:
//! `turnutils_stunclient` for STUN Binding, and `turnutils_uclient` sending through the relay to
//! `turnutils_peer` (an echo peer) with TURN REST credentials, asserting no packet is lost.
//!
//! A missing tool fails the test with the install command; it is never skipped. One test runs
//! the same load against coturn's `turnserver` so a change in the tools' output format shows up
//! as a harness failure, not as a failure of our server.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::process::{self, ChildGuard, Finished};
use e2e::{require_tool, tail, LogDir, Server, ServerBuilder};

/// Bound on one uclient run (it needs ~5 s for the loads below).
const UCLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn start_peer(peer: SocketAddr, dir: &Path) -> ChildGuard {
    let args = ["-p".into(), peer.port().to_string(), "-L".into(), peer.ip().to_string()];
    e2e::start_turnutils_peer(&args, peer, dir)
}

/// The value after `key=` on the last line containing `marker` and `key=`.
fn last_value(output: &str, marker: &str, key: &str) -> Option<u64> {
    output
        .lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let rest = &l[l.find(&format!("{key}="))? + key.len() + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .next_back()
}

/// The summary of a uclient run: `msz` sessions, totals, lost packets.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    sessions: u64,
    sent: u64,
    received: u64,
    lost: u64,
    channel_binds_ok: usize,
}

/// Parses uclient's closing lines, as printed by coturn 4.6:
/// `start_mclient: msz=4, tot_send_msgs=...` (progress, names the session count),
/// `start_mclient: tot_send_msgs=1200, tot_recv_msgs=1200` and
/// `Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)`.
fn parse_summary(out: &str) -> Option<Summary> {
    // `msz` is the number of sessions still running: the largest value is how many started.
    let sessions = out.lines().filter_map(|l| last_value(l, "start_mclient: msz=", "msz")).max()?;
    let totals = out.lines().rfind(|l| l.contains("start_mclient: tot_send_msgs="))?;
    let sent = last_value(totals, "", "tot_send_msgs")?;
    let received = last_value(totals, "", "tot_recv_msgs")?;
    let lost_line = out.lines().rfind(|l| l.contains("Total lost packets "))?;
    let after = &lost_line[lost_line.find("Total lost packets ")? + "Total lost packets ".len()..];
    let lost = after.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()?;
    // With -v each successful ChannelBind prints "cb response received:" then "success: 0x4...".
    let lines: Vec<&str> = out.lines().collect();
    let channel_binds_ok =
        lines.windows(2).filter(|w| w[0].contains("cb response received") && w[1].contains("success: 0x")).count();
    Some(Summary { sessions, sent, received, lost, channel_binds_ok })
}

/// How uclient moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `-c`: one allocation per client, ChannelBind then ChannelData.
    Channels,
    /// `-c -s`: one allocation per client, Send/Data indications only.
    SendIndications,
    /// No flag: RTP/RTCP allocation pairs (EVEN-PORT and RESERVATION-TOKEN), over channels.
    RtpRtcpPairs,
    /// `-y -c`: clients in pairs send to each other's relayed address (no separate peer): both
    /// ends of every packet are allocations on the server under test.
    ClientToClient,
}

/// How uclient reaches the server (the relay itself is UDP in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    /// `-t`: TURN over TCP to the listening port.
    Tcp,
    /// `-t -S`: TURN over TLS to the TLS port.
    Tls,
}

struct Load {
    clients: u32,
    messages: u32,
    length: u32,
    interval_ms: u32,
}

const LOAD: Load = Load { clients: 4, messages: 300, length: 172, interval_ms: 5 };

/// TLS in a debug build is slow (unoptimised rustls and ring): a lighter load keeps the test
/// about correctness, not about how fast a debug build encrypts on a busy CI machine.
const TLS_LOAD: Load = Load { clients: 2, messages: 100, length: 172, interval_ms: 20 };

impl Transport {
    fn load(self) -> &'static Load {
        match self {
            Transport::Tls => &TLS_LOAD,
            Transport::Udp | Transport::Tcp => &LOAD,
        }
    }
}

/// Runs uclient against `server` with REST auth, through the echo peer at `peer`. An IPv6
/// server address asks for an IPv6 relayed address (`-x`).
fn run_uclient(
    server: SocketAddr,
    secret: &str,
    peer: SocketAddr,
    (mode, transport): (Mode, Transport),
    dir: &Path,
) -> Finished {
    let uclient = require_tool("turnutils_uclient");
    let mut args: Vec<String> = vec!["-v".into()];
    match transport {
        Transport::Udp => {}
        Transport::Tcp => args.push("-t".into()),
        Transport::Tls => args.extend(["-t".into(), "-S".into()]),
    }
    match mode {
        Mode::Channels => args.push("-c".into()),
        Mode::SendIndications => args.extend(["-c".into(), "-s".into()]),
        Mode::RtpRtcpPairs => {}
        Mode::ClientToClient => args.extend(["-y".into(), "-c".into()]),
    }
    if server.is_ipv6() {
        args.push("-x".into());
    }
    if mode != Mode::ClientToClient {
        args.extend(["-e".into(), peer.ip().to_string(), "-r".into(), peer.port().to_string()]);
    }
    args.extend(
        [
            "-p",
            &server.port().to_string(),
            "-W",
            secret,
            "-u",
            "e2e-uclient",
            "-m",
            &transport.load().clients.to_string(),
            "-n",
            &transport.load().messages.to_string(),
            "-l",
            &transport.load().length.to_string(),
            "-z",
            &transport.load().interval_ms.to_string(),
            &server.ip().to_string(),
        ]
        .map(str::to_owned),
    );
    process::run("turnutils_uclient", &uclient, &args, dir, UCLIENT_DEADLINE)
}

/// Checks a uclient run: exit 0, every message of every session echoed, nothing lost, and
/// channels used exactly when the mode says so. Returns a failure description.
fn judge(run: &Finished, (mode, transport): (Mode, Transport)) -> Result<Summary, String> {
    let out = format!("{}\n{}", run.stdout, run.stderr);
    let describe = || {
        format!(
            "turnutils_uclient ({mode:?} over {transport:?}): {} after {:.1?}; output tail:\n{}",
            run.describe_status(),
            run.elapsed,
            tail(&out, 25)
        )
    };
    if !run.success() {
        return Err(describe());
    }
    let Some(s) = parse_summary(&out) else {
        return Err(format!("could not parse the summary. {}", describe()));
    };
    let expected = s.sessions * u64::from(transport.load().messages);
    let channels_ok = match mode {
        Mode::SendIndications => s.channel_binds_ok == 0,
        Mode::Channels | Mode::RtpRtcpPairs | Mode::ClientToClient => s.channel_binds_ok > 0,
    };
    if s.sessions == 0 || s.sent != expected || s.received != s.sent || s.lost != 0 || !channels_ok {
        return Err(format!(
            "expected {expected} messages sent and echoed with 0 lost and {} ChannelBind, got \
             {s:?}. {}",
            if mode == Mode::SendIndications { "no" } else { "successful" },
            describe()
        ));
    }
    Ok(s)
}

/// Starts our server (also on ::1 when `ip` is IPv6, with TLS for [`Transport::Tls`]), an echo
/// peer on `ip`, and judges a uclient run between them.
fn uclient_against_our_server(name: &str, mode: Mode, ip: IpAddr, transport: Transport) {
    let _turn = e2e::exclusive_load();
    let mut builder = ServerBuilder::new(name);
    if ip.is_ipv6() {
        builder = builder.arg("--listening-ip").arg(ip.to_string()).arg("--relay-ip").arg(ip.to_string());
    }
    let cert_dir = LogDir::new(&format!("{name}-cert"));
    if transport == Transport::Tls {
        let (cert, key) = e2e::self_signed_cert(cert_dir.path());
        builder = builder.tls(cert, key);
    }
    let server = builder.start();
    let peer = SocketAddr::new(ip, server.ports().peer_port(0));
    let _peer = start_peer(peer, server.log_dir());
    let port = if transport == Transport::Tls { server.tls_addr().port() } else { server.addr().port() };
    let run = run_uclient(SocketAddr::new(ip, port), server.secret(), peer, (mode, transport), server.log_dir());
    let summary = match judge(&run, (mode, transport)) {
        Ok(s) => s,
        Err(e) => server.fail(&e),
    };
    let mut server = server;
    let running = server.is_running();
    server.check(running, || "the server exited during the uclient run".to_owned());
    eprintln!("{name}: {summary:?} in {:.1?}", run.elapsed);
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn uclient_over_channels_loses_nothing() {
    uclient_against_our_server("uclient_channels", Mode::Channels, V4, Transport::Udp);
}

#[test]
fn uclient_over_send_indications_loses_nothing() {
    uclient_against_our_server("uclient_send_indications", Mode::SendIndications, V4, Transport::Udp);
}

#[test]
fn uclient_client_to_client_loses_nothing() {
    uclient_against_our_server("uclient_client_to_client", Mode::ClientToClient, V4, Transport::Udp);
}

#[test]
fn uclient_over_ipv6_loses_nothing() {
    uclient_against_our_server("uclient_ipv6", Mode::Channels, IpAddr::V6(Ipv6Addr::LOCALHOST), Transport::Udp);
}

#[test]
fn uclient_over_tcp_loses_nothing() {
    uclient_against_our_server("uclient_tcp", Mode::Channels, V4, Transport::Tcp);
}

#[test]
fn uclient_over_tls_loses_nothing() {
    uclient_against_our_server("uclient_tls", Mode::Channels, V4, Transport::Tls);
}

#[test]
fn uclient_rtp_rtcp_allocation_pairs_lose_nothing() {
    uclient_against_our_server("uclient_rtp_rtcp", Mode::RtpRtcpPairs, V4, Transport::Udp);
}

/// The same harness against coturn's `turnserver`: proves the output parser and the load work
/// with the installed coturn, so a failure above is about our server.
#[test]
fn uclient_harness_works_against_coturn_itself() {
    let _turn = e2e::exclusive_load();
    let turnserver = require_tool("turnserver");
    let server = ServerBuilder::new("coturn_reference")
        .program(turnserver)
        .arg("--no-tls")
        .arg("--no-dtls")
        .arg("--no-cli")
        .arg("--no-tcp")
        .arg("--no-tcp-relay")
        .start();
    let peer = SocketAddr::new(V4, server.ports().peer_port(0));
    let _peer = start_peer(peer, server.log_dir());
    for mode in [Mode::Channels, Mode::SendIndications, Mode::ClientToClient] {
        let run = run_uclient(server.addr(), server.secret(), peer, (mode, Transport::Udp), server.log_dir());
        if let Err(e) = judge(&run, (mode, Transport::Udp)) {
            panic!("the uclient harness fails against coturn's own turnserver: {e}");
        }
    }
}

/// A one-socket-per-side UDP forwarder (a minimal NAT): datagrams to `front` leave from
/// `public` towards `server`, and answers come back to whoever last sent to `front`.
struct Forwarder {
    front: SocketAddr,
    public: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(front_port: u16, public_port: u16, server: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind(("127.0.0.1", front_port)).unwrap());
        let public = Arc::new(UdpSocket::bind(("127.0.0.1", public_port)).unwrap());
        for s in [&front, &public] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        // Bounded: each thread also stops on its own after 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        let outbound = {
            let (front, public, stop, client) =
                (Arc::clone(&front), Arc::clone(&public), Arc::clone(&stop), Arc::clone(&client));
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let _ = public.send_to(&buf[..n], server);
                    }
                }
            })
        };
        let inbound = {
            let (front, public, stop, client) =
                (Arc::clone(&front), Arc::clone(&public), Arc::clone(&stop), Arc::clone(&client));
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok((n, from)) = public.recv_from(&mut buf) {
                        let to = *client.lock().unwrap();
                        if let (true, Some(to)) = (from == server, to) {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            })
        };
        Self {
            front: front.local_addr().unwrap(),
            public: public.local_addr().unwrap(),
            stop,
            threads: vec![outbound, inbound],
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The reflexive address stunclient prints: `IPv4. UDP reflexive addr: 127.0.0.1:36568`.
fn reflexive_addr(out: &str) -> Option<SocketAddr> {
    let line = out.lines().find(|l| l.contains("UDP reflexive addr: "))?;
    let addr = line[line.find("UDP reflexive addr: ")? + "UDP reflexive addr: ".len()..].trim();
    // IPv6 comes without brackets: `::1:60168`.
    let (ip, port) = addr.rsplit_once(':')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

/// Runs `turnutils_stunclient -p PORT HOST` against `to` and returns the address it printed.
fn stunclient_mapped(server: &Server, to: SocketAddr) -> SocketAddr {
    let tool = require_tool("turnutils_stunclient");
    let args = ["-p".to_owned(), to.port().to_string(), to.ip().to_string()];
    let run = process::run("turnutils_stunclient", &tool, &args, server.log_dir(), Duration::from_secs(15));
    let out = format!("{}\n{}", run.stdout, run.stderr);
    match (run.success(), reflexive_addr(&out)) {
        (true, Some(addr)) => addr,
        _ => server.fail(&format!(
            "turnutils_stunclient {}: {}; output:\n{}",
            args.join(" "),
            run.describe_status(),
            tail(&out, 20)
        )),
    }
}

#[test]
fn stunclient_gets_its_mapped_address() {
    let server = ServerBuilder::new("stunclient").arg("--listening-ip").arg("::1").start();
    let port = server.addr().port();

    // Directly, over IPv4 and IPv6: stunclient does not print its own port, so check the rest.
    for ip in [V4, IpAddr::V6(Ipv6Addr::LOCALHOST)] {
        let direct = stunclient_mapped(&server, SocketAddr::new(ip, port));
        server.check(direct.ip() == ip && direct.port() != 0 && direct.port() != port, || {
            format!("stunclient to {ip}: reflexive address {direct} is not {ip}:<client port>")
        });
    }

    // Through a forwarder, the server sees a source address we chose: it must report exactly it.
    let fwd = Forwarder::start(server.ports().peer_port(1), server.ports().peer_port(2), server.addr());
    let mapped = stunclient_mapped(&server, fwd.front);
    server.check(mapped == fwd.public, || {
        format!("through the forwarder the client's address is {}, stunclient printed {mapped}", fwd.public)
    });
}

#[test]
fn summary_parser_reads_coturn_output() {
    let out = "\
0: : Total connect time is 0
2: : start_mclient: msz=4, tot_send_msgs=188, tot_recv_msgs=186, tot_send_bytes ~ 22560, tot_recv_bytes ~ 22320
0: : cb response received: 
0: : success: 0x41ee
5: : start_mclient: msz=3, tot_send_msgs=800, tot_recv_msgs=799, tot_send_bytes ~ 96000, tot_recv_bytes ~ 95880
6: : start_mclient: tot_send_msgs=800, tot_recv_msgs=799
6: : start_mclient: tot_send_bytes ~ 96000, tot_recv_bytes ~ 96000
6: : Total lost packets 1 (0.125000%), total send dropped 0 (0.000000%)
";
    assert_eq!(
        parse_summary(out),
        Some(Summary { sessions: 4, sent: 800, received: 799, lost: 1, channel_binds_ok: 1 })
    );
    assert_eq!(parse_summary("ERROR: Cannot complete Allocation"), None);
    assert_eq!(
        reflexive_addr("0: : IPv4. UDP reflexive addr: 127.0.0.1:36568\n"),
        Some("127.0.0.1:36568".parse().unwrap())
    );
    assert_eq!(reflexive_addr("0: : IPv6. UDP reflexive addr: ::1:60168\n"), Some("[::1]:60168".parse().unwrap()));
}
