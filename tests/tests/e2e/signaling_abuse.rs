//! The signaling service under abuse from hostile clients on loopback: a WebSocket frame far
//! above the size limit and an oversized polling body (refused from the header, not buffered),
//! a real WebSocket client that stops reading while its peer floods it, direct or upgraded from
//! long-polling (dropped as soon as its send queue is full, well before its heartbeat would;
//! memory bounded; counted), a burst of unauthenticated connections from one address and repeated bad tokens
//! (refused past the per-source limits, idle sessions closed at the CONNECT deadline), and a
//! foreign Origin on both transports (403 before a session exists). Throughout, a legitimate
//! socket.io-client from another loopback address still connects and gets answers.
//!
//! Hostile clients: `tests/clients/abuse.js` on the `ws` package (socket.io-client's own
//! WebSocket client) and raw HTTP here; server memory is VmRSS from /proc, sampled while the
//! abuse runs. Bounds are generous multiples of what the limits allow, far below what the abuse
//! would cost unbounded; nothing here asserts timing.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::signaling::{call_id, http, AbuseClient, Driver, Signaling, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// Runs `f` while a thread samples the service's RSS every 5 ms; returns `f`'s result and the
/// peak RSS in KiB.
fn with_peak_rss<T>(s: &Signaling, f: impl FnOnce() -> T) -> (T, u64) {
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(s.rss_kib());
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Bounded: the closure below is bounded, and so is this loop.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak.fetch_max(s.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    });
    (out, peak.load(Ordering::Relaxed))
}

/// A legitimate client from 127.0.0.1 connects and gets its `call:sync` answered.
fn legit_client_is_served(d: &mut Driver, s: &Signaling, id: &str) {
    d.connect_ok(id, &s.url(), &s.token(id, 600));
    let ack = d.emit(id, "call:sync", json!({}));
    assert_eq!(ack["ok"], true, "{ack}");
    d.disconnect(id);
}

/// The service's sockets gauge, polled until it equals `want` (bounded).
fn wait_sockets(s: &Signaling, want: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let n = s.scrape().value("signaling_sockets_connected");
        if n == want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn oversized_frame_and_polling_body_are_refused_without_buffering() {
    let s = SignalingBuilder::new("sig_abuse_size").start();
    let mut d = Driver::node(s.log_dir());
    let base = s.rss_kib();
    // 12 MiB claimed, under engineioxide's own 16 MiB frame default: only the configured limit
    // (max_message_bytes = 512 KiB) refuses it. Four at once, each held open 3 s.
    let (results, peak) = with_peak_rss(&s, || {
        let mut clients: Vec<AbuseClient> = (0..4)
            .map(|_| {
                let claimed = (12 * MIB).to_string();
                AbuseClient::spawn(s.log_dir(), "frame", &s.url(), "127.0.0.2", &[&claimed, &claimed, "3000"])
            })
            .collect();
        clients.iter_mut().map(|c| c.next(Duration::from_secs(20), "result").expect("frame result")).collect::<Vec<_>>()
    });
    for r in &results {
        assert_eq!(r["closedByServer"], true, "the server kept reading an oversized frame: {r}");
        assert!(r["written"].as_u64().unwrap() < 12 * MIB, "the whole frame was accepted: {r}");
    }
    let grown = peak.saturating_sub(base);
    eprintln!("oversized frames: RSS {base} KiB -> peak {peak} KiB (+{grown} KiB); results {results:?}");
    assert!(grown * 1024 < 8 * MIB, "RSS grew by {grown} KiB while 4 x 12 MiB frames were offered");

    // Polling: a session, then a 12 MiB POST body; the answer is 413 before the body is sent.
    let open = http(s.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[]);
    assert_eq!(open.status, 200, "{open:?}");
    let sid = open.body.split("\"sid\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let mut tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let total = 12 * MIB as usize;
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
         Content-Length: {total}\r\n\r\n",
        s.addr
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'4'; 64 * 1024];
    let mut written = 0;
    while written < total && tcp.write_all(&chunk).is_ok() {
        written += chunk.len();
    }
    let mut resp = vec![0u8; 512];
    let n = tcp.read(&mut resp).unwrap_or(0);
    let status = String::from_utf8_lossy(&resp[..n]).to_string();
    eprintln!("oversized polling body: wrote {written} of {total} bytes, answer {status:?}");
    assert!(status.starts_with("HTTP/1.1 413"), "{status:?}");

    legit_client_is_served(&mut d, &s, "legit");
    assert_eq!(s.get("/healthz", None, &[]).status, 200);
}

/// Heartbeats far apart (60 s + 60 s), so that a drop seen within [`DROP_WITHIN`] comes from
/// the full send queue and not from the heartbeat.
const SLOW_HEARTBEAT: [&str; 4] = ["--heartbeat-interval", "60", "--heartbeat-timeout", "60"];
/// Generous, and far below the 60 s the heartbeat would take.
const DROP_WITHIN: Duration = Duration::from_secs(20);
const DROPPED: &str = "signaling_sockets_dropped_total{reason=\"send_queue_full\"}";

/// An instance for the non-reader tests, with bob (socket.io-client, reading) connected.
fn noread_setup(name: &str) -> (Signaling, Driver) {
    let s = SignalingBuilder::new(name)
        .args(SLOW_HEARTBEAT)
        .args(["--reconnect-grace", "1", "--metrics-listen", "127.0.0.1:0"])
        .start();
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    (s, d)
}

/// bob floods the non-reading caller of call `id` with 48 KiB candidates: 600 of them (28 MiB),
/// far more than the send queue (64 packets) and the socket buffers hold. Returns how long after
/// the flood started the drop counter moved (scraped between windows, then polled up to
/// [`DROP_WITHIN`]) and the service's RSS growth in KiB.
fn flood_non_reader(s: &Signaling, d: &mut Driver, id: &str) -> (Option<Duration>, u64) {
    assert_eq!(s.scrape().value(DROPPED), 0.0, "a socket was dropped before the flood");
    let base = s.rss_kib();
    let candidate = json!({"callId": id, "candidate": {"candidate": "a".repeat(48 * 1024)}});
    let started = Instant::now();
    let (during, peak) = with_peak_rss(s, || {
        let mut dropped_after = None;
        // In windows of 16 unacknowledged events, as a client pacing itself by its acks does; an
        // unpaced burst of 600 would fill bob's own queue with acks and get bob dropped as well.
        for _ in 0..600 / 16 {
            let reqs: Vec<u64> =
                (0..16).map(|_| d.emit_nowait("bob", "call:ice-candidate", candidate.clone())).collect();
            for r in reqs {
                d.ack("bob", "call:ice-candidate", r);
            }
            if dropped_after.is_none() && s.scrape().value(DROPPED) >= 1.0 {
                dropped_after = Some(started.elapsed());
            }
        }
        dropped_after
    });
    let dropped_after = during.or_else(|| {
        while started.elapsed() < DROP_WITHIN {
            if s.scrape().value(DROPPED) >= 1.0 {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    let grown = peak.saturating_sub(base);
    eprintln!("non-reader flood: dropped after {dropped_after:?}; RSS {base} KiB -> peak {peak} KiB (+{grown} KiB)");
    (dropped_after, grown)
}

/// What a dropped non-reader leaves: bob's call ends after the reconnect grace, one socket
/// counted, exactly one drop (bob, who reads, was not dropped), and the service still serves.
fn non_reader_is_gone(s: &Signaling, d: &mut Driver, dropped_after: Option<Duration>, grown_kib: u64) {
    let after = dropped_after.expect("the non-reading socket was not dropped within 20 s");
    assert!(after < DROP_WITHIN, "dropped only after {after:?}");
    assert!(grown_kib * 1024 < 20 * MIB, "RSS grew by {grown_kib} KiB for a client that reads nothing");
    let end = d.expect("bob", "call:end", EVENT_TIMEOUT);
    assert_eq!(end["reason"], "peer-disconnected", "{end}");
    assert_eq!(wait_sockets(s, 1.0, EVENT_TIMEOUT), 1.0, "the non-reading socket is still counted");
    assert_eq!(s.scrape().value(DROPPED), 1.0);
    legit_client_is_served(d, s, "legit");
}

#[test]
fn client_that_stops_reading_is_dropped_at_once_and_memory_stays_bounded() {
    let (s, mut d) = noread_setup("sig_abuse_noread");
    let id = call_id();
    let token = s.token("alice", 600);
    let mut alice = AbuseClient::spawn(s.log_dir(), "noread", &s.url(), "127.0.0.3", &[&token, &id, "bob"]);
    assert!(alice.next(EVENT_TIMEOUT, "connect").is_some(), "the non-reading client did not connect");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "v=0"}))["ok"], true);
    assert!(alice.next(EVENT_TIMEOUT, "paused").is_some(), "the non-reading client never saw the answer");
    assert_eq!(wait_sockets(&s, 2.0, EVENT_TIMEOUT), 2.0);
    let (dropped_after, grown) = flood_non_reader(&s, &mut d, &id);
    non_reader_is_gone(&s, &mut d, dropped_after, grown);
}

#[test]
fn upgraded_client_that_stops_reading_is_dropped_at_once() {
    // socket.io-client's default: long-polling first, then the upgrade to a WebSocket on another
    // TCP connection, which is the one to cut.
    let (s, mut d) = noread_setup("sig_abuse_noread_upgrade");
    let opts = json!({"transports": ["polling", "websocket"]});
    d.connect("alice", &s.url(), Some(&s.token("alice", 600)), opts).expect("alice connects");
    let id = call_id();
    let offer = json!({"callId": id, "calleeId": "bob", "callType": "audio", "sdp": "v=0"});
    assert_eq!(d.emit("alice", "call:initiate", offer)["ok"], true);
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "v=0"}))["ok"], true);
    d.expect("alice", "call:answer", EVENT_TIMEOUT);
    assert_eq!(d.pause("alice"), "websocket");
    let (dropped_after, grown) = flood_non_reader(&s, &mut d, &id);
    non_reader_is_gone(&s, &mut d, dropped_after, grown);
}

#[test]
fn connection_burst_is_refused_past_the_limit_and_idle_sessions_are_closed() {
    let s = SignalingBuilder::new("sig_abuse_burst")
        .args(["--socket-connects-per-ip", "20", "--socket-connect-timeout", "2"])
        .args(["--socket-auth-failures-per-ip", "3", "--metrics-listen", "127.0.0.1:0"])
        .start();
    let mut d = Driver::node(s.log_dir());
    let base = s.rss_kib();
    // 200 WebSockets at once from 127.0.0.4 that never send CONNECT, while a legitimate client
    // from 127.0.0.1 connects and is answered.
    let (result, peak) = with_peak_rss(&s, || {
        let mut burst = AbuseClient::spawn(s.log_dir(), "burst", &s.url(), "127.0.0.4", &["200", "6000"]);
        legit_client_is_served(&mut d, &s, "during");
        burst.next(Duration::from_secs(20), "result").expect("burst result")
    });
    let grown = peak.saturating_sub(base);
    eprintln!("burst: {result}; RSS {base} KiB -> peak {peak} KiB (+{grown} KiB)");
    assert_eq!(result["upgraded"], 20, "{result}");
    assert_eq!(result["refused"]["429"], 180, "{result}");
    assert_eq!(result["closedByServer"], 20, "sessions without CONNECT outlived the deadline: {result}");
    assert!(grown * 1024 < 16 * MIB, "RSS grew by {grown} KiB");
    assert_eq!(wait_sockets(&s, 0.0, EVENT_TIMEOUT), 0.0);

    // Bad tokens from 127.0.0.5: three are checked and refused, then that address is refused
    // before the token is looked at, even with a good one; 127.0.0.1 is not affected.
    let forged = e2e::signaling::hs256_token("not-the-secret-0123", &json!({"sub": "x", "exp": e2e::unix_now() + 60}));
    for i in 0..3 {
        let err = d.connect(&format!("bad{i}"), &s.url(), Some(&forged), json!({"localAddress": "127.0.0.5"}));
        assert!(err.unwrap_err().contains("signature"));
    }
    let err = d.connect("good5", &s.url(), Some(&s.token("eve", 60)), json!({"localAddress": "127.0.0.5"}));
    assert!(err.is_err(), "a source past its failed-auth limit got in");
    let m = s.scrape();
    assert!(m.value("signaling_auth_failures_total{endpoint=\"socket\",reason=\"rate_limited\"}") >= 181.0, "{}", m.0);
    legit_client_is_served(&mut d, &s, "after");
}

#[test]
fn foreign_origin_is_refused_before_a_session_on_both_transports() {
    let s = SignalingBuilder::new("sig_abuse_origin").args(["--cors-origin", "https://app.example"]).start();
    let poll = "/socket.io/?EIO=4&transport=polling";
    let ws = "/socket.io/?EIO=4&transport=websocket";
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let with = |origin: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("Origin", origin)];
        h.extend_from_slice(extra);
        h
    };
    let refused = http(s.addr, "GET", poll, &with("https://evil.example", &[]));
    assert_eq!(refused.status, 403);
    e2e::contract::check("connectRefused", &refused.json());
    assert_eq!(http(s.addr, "GET", ws, &with("https://evil.example", &upgrade)).status, 403);
    // The polling requests of an existing session are checked too.
    let open = http(s.addr, "GET", poll, &with("https://app.example", &[]));
    assert_eq!(open.status, 200, "{open:?}");
    let sid = open.body.split("\"sid\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let next = format!("{poll}&sid={sid}");
    assert_eq!(http(s.addr, "GET", &next, &with("https://evil.example", &[])).status, 403);
    // Allowed: the configured origin, and no Origin (native clients).
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET {ws} HTTP/1.1\r\nHost: {}\r\nOrigin: https://app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        s.addr
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(http(s.addr, "GET", poll, &[]).status, 200);
    // A header token is checked before the upgrade too.
    let bad = [("Authorization", "Bearer x.y.z")];
    let refused = http(s.addr, "GET", poll, &bad);
    assert_eq!(refused.status, 401);
    e2e::contract::check("connectRefused", &refused.json());
}
