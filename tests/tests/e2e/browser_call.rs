//! A real browser call through both services: two headless Chromium pages (Debian's `chromium`,
//! driven by `playwright-core` from npm; tests/clients/browser/) fetch `GET /v1/ice-servers` with
//! their own JWTs, connect socket.io-client to the built `signaling` binary, and call each other
//! with `RTCPeerConnection({iceTransportPolicy: "relay"})` through the built `turn-server`: a data
//! channel both ways and a fake microphone, offer/answer/candidates over `call:*` events, then a
//! hang-up. `getStats()` must show a selected pair of two relay candidates on the relay's address
//! and port range, carrying bytes both ways.
//!
//! Twice: over TURN/UDP, and against a relay started with `--no-udp` whose only URL is
//! `?transport=tcp`, so Chromium must relay over TURN/TCP (`relayProtocol: "tcp"`).
//!
//! Loopback: Chromium accepts `turn:127.0.0.1` servers and relay candidates on 127.0.0.1, but by
//! default it enumerates only non-loopback interfaces for its sockets: on a host with an ethernet
//! interface it binds the TURN client socket there and still reaches the relay on 127.0.0.1; in a
//! network namespace with only `lo` it gathers nothing and the call never connects. The driver
//! passes `--allow-loopback-in-peer-connection`, with which the call works in both, so all
//! traffic stays on this machine either way.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::clients_dir;
use e2e::signaling::{require, Signaling, SignalingBuilder};
use e2e::{process, server_binary, stun, tail, ChildGuard, LogDir, PortBlock, ServerBuilder, REALM};
use serde_json::json;

/// The driver's own deadline for the whole call (each wait in a page is at most 30 s).
const DRIVER_DEADLINE: Duration = Duration::from_secs(60);

/// Chromium, node and the npm packages, or a failure saying how to install them.
fn prerequisites() -> (PathBuf, PathBuf) {
    let chromium = require("chromium", "apt-get install -y chromium");
    let node = require("node", "apt-get install -y nodejs npm");
    for package in ["playwright-core", "socket.io-client"] {
        assert!(
            clients_dir().join("node_modules").join(package).is_dir(),
            "{package} is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
        );
    }
    (chromium, node)
}

/// The test page and the socket.io client bundle on 127.0.0.1 (the signaling service serves no
/// files): the page's origin is this server's, so CORS is really exercised.
struct StaticSite {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl StaticSite {
    fn start() -> Self {
        let page = std::fs::read(clients_dir().join("browser").join("call.html")).expect("read call.html");
        let bundle =
            std::fs::read(clients_dir().join("node_modules/socket.io-client/dist/socket.io.min.js")).expect("bundle");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind static site");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, ctype, body): (&str, &str, &[u8]) = match path.split('?').next().unwrap_or("") {
                    "/" => ("200 OK", "text/html; charset=utf-8", &page),
                    "/socket.io.min.js" => ("200 OK", "text/javascript", &bundle),
                    _ => ("404 Not Found", "text/plain", b"not found"),
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\ncache-control: no-store\r\n\
                         connection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(body);
            }
        });
        Self { addr, stop }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A relay started with `--no-udp` (UDP to it is impossible). `ServerBuilder` probes readiness
/// over UDP, so this one is started by hand with the same flags and probed over TCP.
struct TcpOnlyRelay {
    child: ChildGuard,
    addr: SocketAddr,
    ports: PortBlock,
    _logs: LogDir,
}

impl TcpOnlyRelay {
    fn start(name: &str, secret: &str) -> Self {
        let ports = PortBlock::reserve();
        let logs = LogDir::new(name);
        let args: Vec<String> = [
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
            "-r",
            REALM,
            "-p",
            &ports.listen_port().to_string(),
            "--min-port",
            &ports.relay_min().to_string(),
            "--max-port",
            &ports.relay_max().to_string(),
            "--use-auth-secret",
            "--static-auth-secret",
            secret,
            "--allow-loopback-peers",
            "--no-udp",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let child = process::spawn("server", &server_binary(), &args, logs.path(), Duration::from_secs(180));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.listen_port()));
        let mut relay = Self { child, addr, ports, _logs: logs };
        let start = Instant::now();
        loop {
            if let Some(status) = relay.child.exited() {
                panic!("--no-udp relay exited ({status}):\n{}", relay.stderr_tail());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "--no-udp relay not listening:\n{}",
                relay.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // UDP really is impossible: a STUN Binding request over UDP gets no answer.
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        let answer = stun::transact(
            &probe,
            addr,
            &stun::binding_request(stun::transaction_id()),
            Duration::from_millis(100),
            Duration::from_millis(500),
        );
        assert!(answer.is_none(), "a relay started with --no-udp answered over UDP");
        relay
    }

    fn stderr_tail(&self) -> String {
        tail(&self.child.stderr(), 40)
    }
}

impl Drop for TcpOnlyRelay {
    fn drop(&mut self) {
        self.child.stop();
        if std::thread::panicking() {
            eprintln!("--- --no-udp relay stderr:\n{}\n---", self.stderr_tail());
        }
    }
}

/// Where the browsers are told to relay, and what the selected pair must look like.
struct Scenario<'a> {
    name: &'a str,
    relay_addr: SocketAddr,
    relay_ports: (u16, u16),
    secret: &'a str,
    /// `transports` of the `[[relays]]` entry (TOML array).
    transports: &'a str,
    turn_urls: Vec<String>,
    relay_protocol: &'a str,
    hangup_by: &'a str,
}

fn run_call(sc: &Scenario<'_>, (chromium, node): (PathBuf, PathBuf)) {
    let started = Instant::now();
    let site = StaticSite::start();
    let port = sc.relay_addr.port();
    let config = format!(
        "[signaling]\ncors_origins = [\"{origin}\"]\n\n[[relays]]\nhost = \"127.0.0.1\"\nudp_port = {port}\n\
         tcp_port = {port}\ntransports = {transports}\nstun = false\n",
        origin = site.origin(),
        transports = sc.transports
    );
    let signaling: Signaling =
        SignalingBuilder::new(&format!("{}_signaling", sc.name)).turn_secret(sc.secret).config(&config).start();
    let logs = LogDir::new(sc.name);
    let reaper = e2e::browser::ChromiumRun::new();
    let cfg = json!({
        "chromium": chromium,
        "pageUrl": format!("{}/", site.origin()),
        "signalingUrl": signaling.url(),
        "callerToken": signaling.token("alice", 600),
        "calleeToken": signaling.token("bob", 600),
        "calleeId": "bob",
        "media": true,
        "hangupBy": sc.hangup_by,
        "deadlineMs": DRIVER_DEADLINE.as_millis(),
    });
    let (run, result) = reaper.drive(&node, "driver.js", &cfg, logs.path(), DRIVER_DEADLINE);
    let took = started.elapsed();
    let context = || {
        format!(
            "driver {} after {took:.1?}\n--- driver stderr (last 60 lines):\n{}\n--- signaling stderr:\n{}",
            run.describe_status(),
            tail(&run.stderr, 60),
            signaling.stderr_tail()
        )
    };
    assert_eq!(result["ok"], true, "browser call failed: {}\n{}", result["error"], context());
    drop(reaper);
    eprintln!(
        "{}: Chromium {} call done in {took:.1?}; caller's selected local candidate: {} relay over {} via a {} network",
        sc.name,
        result["browserVersion"],
        result["caller"]["stats"]["local"]["candidateType"],
        result["caller"]["stats"]["local"]["relayProtocol"],
        result["caller"]["stats"]["local"]["networkType"]
    );

    let (lo, hi) = sc.relay_ports;
    let users = [("caller", "alice", "callee"), ("callee", "bob", "caller")];
    let call_id = result["caller"]["call"]["callId"].as_str().unwrap().to_owned();
    assert_eq!(result["caller"]["call"]["initiate"], json!({"ok": true, "callId": call_id, "state": "ringing"}));
    assert_eq!(result["caller"]["call"]["offer"]["ok"], true, "{}", result["caller"]["call"]);
    for (role, user, other) in users {
        let r = &result[role];
        let ctx = || format!("{role}: {}\n{}", serde_json::to_string_pretty(r).unwrap_or_default(), context());
        // The ICE config the page fetched (cross-origin, with its own token).
        let ice = &r["setup"]["ice"]["iceServers"];
        assert_eq!(ice.as_array().map(Vec::len), Some(1), "{}", ctx());
        assert_eq!(ice[0]["urls"], json!(sc.turn_urls), "{}", ctx());
        assert!(ice[0]["username"].as_str().unwrap().ends_with(&format!(":{user}")), "{}", ctx());
        // socket.io-client's default: long-polling first (cross-origin, so CORS must be right), then
        // the upgrade to WebSocket.
        assert!(matches!(r["setup"]["transport"].as_str(), Some("polling" | "websocket")), "{}", ctx());
        // The selected pair: relay candidates on both ends, on the relay's address and ports.
        let stats = &r["stats"];
        let (local, remote, pair) = (&stats["local"], &stats["remote"], &stats["pair"]);
        for (which, cand) in [("local", local), ("remote", remote)] {
            assert_eq!(cand["candidateType"], "relay", "{role} {which} candidate\n{}", ctx());
            assert_eq!(cand["address"], "127.0.0.1", "{role} {which} candidate\n{}", ctx());
            let p = cand["port"].as_u64().unwrap();
            assert!(
                (u64::from(lo)..=u64::from(hi)).contains(&p),
                "{role} {which} port {p} not in {lo}-{hi}\n{}",
                ctx()
            );
        }
        assert_eq!(local["relayProtocol"], sc.relay_protocol, "{}", ctx());
        assert!(sc.turn_urls.iter().any(|u| local["url"] == u.as_str()), "{}", ctx());
        // Chromium may report the selected pair "in-progress" while a consent check is in flight:
        // nominated, with answered checks, is what matters.
        assert_eq!(pair["nominated"], true, "{}", ctx());
        assert!(pair["responsesReceived"].as_u64().unwrap_or(0) > 0, "{}", ctx());
        assert!(pair["bytesSent"].as_u64().unwrap() > 0 && pair["bytesReceived"].as_u64().unwrap() > 0, "{}", ctx());
        // Each side's remote candidate is the other's local one.
        assert_eq!(remote["port"], result[other]["stats"]["local"]["port"], "{}", ctx());
        // The fake microphone's audio arrived, and the data channel carried the other's message.
        let st = &r["state"];
        assert_eq!(st["media"], json!(["audio"]), "{}", ctx());
        let inbound = stats["rtp"].as_array().unwrap().iter().find(|s| s["type"] == "inbound-rtp").cloned();
        assert!(inbound.is_some_and(|s| s["packets"].as_u64().unwrap_or(0) > 0), "{}", ctx());
        assert_eq!(st["received"], json!([format!("hello from {other}")]), "{}", ctx());
        assert_eq!(st["errors"], json!([]), "{}", ctx());
        assert_eq!(st["callId"], call_id.as_str(), "{}", ctx());
        // Hang-up: both peer connections and data channels are closed.
        assert_eq!(st["signalingState"], "closed", "{}", ctx());
        assert_eq!(st["connectionState"], "closed", "{}", ctx());
        assert_eq!(st["dcState"], "closed", "{}", ctx());
    }
    let (hanger, hanger_user, other) =
        if sc.hangup_by == "callee" { ("callee", "bob", "caller") } else { ("caller", "alice", "callee") };
    assert_eq!(result[hanger]["hangup"], json!({"ok": true, "callId": call_id, "state": "ended"}));
    assert_eq!(
        result[other]["state"]["ended"],
        json!({"callId": call_id, "reason": "hangup", "by": hanger_user}),
        "{}",
        context()
    );
    assert!(took < Duration::from_secs(100), "the call took {took:?}");
}

#[test]
fn browser_call_over_turn_udp() {
    let tools = prerequisites();
    let relay = ServerBuilder::new("browser_udp_relay").start();
    let port = relay.addr().port();
    run_call(
        &Scenario {
            name: "browser_udp",
            relay_addr: relay.addr(),
            relay_ports: (relay.ports().relay_min(), relay.ports().relay_max()),
            secret: relay.secret(),
            // UDP only: with both transports offered, which relay pair Chromium nominates first is
            // its own timing (a loaded CI machine once picked TCP), and this test proves the UDP
            // relay path; the two-URL config itself is checked by the REST tests.
            transports: "[\"udp\"]",
            turn_urls: vec![format!("turn:127.0.0.1:{port}?transport=udp")],
            relay_protocol: "udp",
            hangup_by: "caller",
        },
        tools,
    );
}

#[test]
fn browser_call_over_turn_tcp_when_udp_is_blocked() {
    let tools = prerequisites();
    let secret = format!("e2e-secret-{:016x}", rand::random::<u64>());
    let relay = TcpOnlyRelay::start("browser_tcp_relay", &secret);
    let port = relay.addr.port();
    run_call(
        &Scenario {
            name: "browser_tcp",
            relay_addr: relay.addr,
            relay_ports: (relay.ports.relay_min(), relay.ports.relay_max()),
            secret: &secret,
            transports: "[\"tcp\"]",
            turn_urls: vec![format!("turn:127.0.0.1:{port}?transport=tcp")],
            relay_protocol: "tcp",
            hangup_by: "callee",
        },
        tools,
    );
}
