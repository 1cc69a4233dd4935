//! The signaling service in operation: Prometheus counters that move with real socket.io-client
//! calls (answered, rejected, busy, cancelled, no-answer, ended), the sockets gauge, ICE config
//! and auth counters; `Type=notify` against a real unix datagram socket (READY only once it
//! serves, WATCHDOG, STOPPING, no READY when Redis is unreachable); and the SIGTERM drain:
//! `/readyz` 503, `server:shutdown` to the client, a transport close that socket.io-client's own
//! reconnection follows to the next instance on the same address.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::notify::NotifySocket;
use e2e::signaling::{
    call_id, free_port, http, signaling_binary, Driver, Metrics, Signaling, SignalingBuilder, EVENT_TIMEOUT,
};
use serde_json::{json, Value};

/// Polls `/metrics` until `series` reaches `want` (bounded), returning the last scrape.
fn until(s: &Signaling, series: &str, want: f64) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = s.scrape();
        if m.value(series) == want {
            return m;
        }
        assert!(Instant::now() < deadline, "{series} is {} (want {want}):\n{}", m.value(series), m.0);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn initiate(d: &mut Driver, from: &str, to: &str) -> (String, Value) {
    let id = call_id();
    let ack = d.emit(
        from,
        "call:initiate",
        json!({"callId": id, "calleeId": to, "chatId": "chat", "callType": "audio", "sdp": {"type": "offer", "sdp": "v=0"}}),
    );
    (id, ack)
}

#[test]
fn metrics_follow_real_calls() {
    let s =
        SignalingBuilder::new("ops-metrics").args(["--metrics-listen", "127.0.0.1:0", "--ring-timeout", "2"]).start();
    let m = s.scrape();
    for zero in [
        "signaling_calls_started_total",
        "signaling_calls_total{outcome=\"answered\"}",
        "signaling_sockets_connected",
        "signaling_draining",
    ] {
        assert_eq!(m.value(zero), 0.0, "{zero}");
    }
    assert!(m.0.contains("# TYPE signaling_call_ring_duration_seconds histogram"), "{}", m.0);
    assert_eq!(m.value("signaling_redis_up"), 1.0, "the in-memory store is always up");

    let mut d = Driver::node(s.log_dir());
    for u in ["alice", "bob", "carol"] {
        d.connect_ok(u, &s.url(), &s.token(u, 600));
    }
    until(&s, "signaling_sockets_connected", 3.0);

    // Answered, then busy for a third caller, then hung up.
    let (c1, ack) = initiate(&mut d, "alice", "bob");
    assert_eq!(ack["state"], "ringing", "{ack}");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    let ack = d.emit("bob", "call:answer", json!({"callId": c1, "sdp": {"type": "answer", "sdp": "v=0"}}));
    assert_eq!(ack["state"], "accepted", "{ack}");
    until(&s, "signaling_calls_total{outcome=\"answered\"}", 1.0);
    let (_, ack) = initiate(&mut d, "carol", "bob");
    assert_eq!(ack["error"], "busy", "{ack}");
    until(&s, "signaling_calls_total{outcome=\"busy\"}", 1.0);
    assert_eq!(d.emit("alice", "call:end", json!({"callId": c1}))["state"], "ended");
    until(&s, "signaling_calls_ended_total{reason=\"hangup\"}", 1.0);

    // Rejected.
    let (c2, _) = initiate(&mut d, "alice", "bob");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(d.emit("bob", "call:reject", json!({"callId": c2}))["state"], "rejected");
    until(&s, "signaling_calls_total{outcome=\"rejected\"}", 1.0);

    // Cancelled by the caller.
    let (c3, _) = initiate(&mut d, "alice", "bob");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(d.emit("alice", "call:end", json!({"callId": c3}))["state"], "cancelled");
    until(&s, "signaling_calls_total{outcome=\"cancelled\"}", 1.0);

    // Nobody answers within the 2 s ring timeout.
    let (c4, _) = initiate(&mut d, "alice", "bob");
    let na = d.expect("alice", "call:no-answer", Duration::from_secs(8));
    assert_eq!(na["callId"], c4.as_str());
    let m = until(&s, "signaling_calls_total{outcome=\"no_answer\"}", 1.0);
    assert_eq!(m.value("signaling_calls_started_total"), 4.0, "busy never rang:\n{}", m.0);
    assert_eq!(m.value("signaling_call_ring_duration_seconds_count{outcome=\"no_answer\"}"), 1.0);
    assert!(m.value("signaling_call_ring_duration_seconds_sum{outcome=\"no_answer\"}") >= 2.0, "{}", m.0);
    assert_eq!(m.value("signaling_call_ring_duration_seconds_count{outcome=\"answered\"}"), 1.0);
    assert_eq!(m.value("signaling_call_duration_seconds_count"), 1.0);
    // Each outcome exactly once: nothing counted twice by the socket layer.
    for o in ["answered", "rejected", "busy", "cancelled", "no_answer"] {
        assert_eq!(m.value(&format!("signaling_calls_total{{outcome=\"{o}\"}}")), 1.0, "{o}:\n{}", m.0);
    }

    // ICE config requests and refused credentials, over HTTP and on the socket handshake.
    assert_eq!(s.get("/v1/ice-servers", Some(&s.token("alice", 600)), &[]).status, 200);
    let forged = e2e::signaling::hs256_token("another-secret-entirely", &json!({"sub": "x", "exp": 4_000_000_000u64}));
    assert_eq!(s.get("/v1/ice-servers", Some(&forged), &[]).status, 401);
    assert_eq!(s.get("/v1/ice-servers", None, &[]).status, 401);
    assert!(d.connect("late", &s.url(), Some(&s.token("late", -60)), json!({})).is_err());
    let m = s.scrape();
    assert_eq!(m.value("signaling_ice_config_requests_total{result=\"ok\"}"), 1.0, "{}", m.0);
    assert_eq!(m.value("signaling_ice_config_requests_total{result=\"unauthorized\"}"), 2.0, "{}", m.0);
    assert_eq!(m.value("signaling_auth_failures_total{endpoint=\"http\",reason=\"bad_signature\"}"), 1.0, "{}", m.0);
    assert_eq!(m.value("signaling_auth_failures_total{endpoint=\"http\",reason=\"missing\"}"), 1.0, "{}", m.0);
    assert_eq!(m.value("signaling_auth_failures_total{endpoint=\"socket\",reason=\"expired\"}"), 1.0, "{}", m.0);

    // A refused handshake never counted as a socket; leaving ones are subtracted.
    d.disconnect("carol");
    until(&s, "signaling_sockets_connected", 2.0);
}

fn signaling_command(port: u16, notify: &NotifySocket) -> Command {
    let mut cmd = Command::new(signaling_binary());
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--jwt-secret", "notify-test-jwt-secret-0123"])
        .args(["--static-auth-secret", "s", "--turn-url", "turn:127.0.0.1:3478?transport=udp"])
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits for `child` to exit, killing it after `within`.
fn reap(child: &mut std::process::Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn notifies_ready_once_serving_then_watchdog_and_stopping() {
    let mut socket = NotifySocket::bind("signaling").unwrap();
    let port = free_port();
    let mut child = signaling_command(port, &socket).spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let ready = socket.wait_for("READY=1", Duration::from_secs(15));
    // READY means serving: /readyz answers at once, without any retry.
    let readyz = ready.then(|| http(([127, 0, 0, 1], port).into(), "GET", "/readyz", &[]).status);
    let ok = ready
        && socket.wait_for("WATCHDOG=1", Duration::from_secs(2))
        && socket.wait_for("WATCHDOG=1", Duration::from_secs(2))
        && {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            socket.wait_for("STOPPING=1", Duration::from_secs(5))
        };
    let status = reap(&mut child, Duration::from_secs(15));
    assert!(ok, "notifications seen: {:?}", socket.seen);
    assert_eq!(readyz, Some(200));
    assert!(status.is_some_and(|s| s.success()), "SIGTERM must end signaling cleanly: {status:?}");
}

#[test]
fn no_ready_when_redis_is_unreachable_at_start() {
    let mut socket = NotifySocket::bind("noredis").unwrap();
    // A port nobody listens on: connection refused at once.
    let dead = free_port();
    let mut child = signaling_command(free_port(), &socket)
        .args(["--redis-url", &format!("redis://127.0.0.1:{dead}/0")])
        .spawn()
        .unwrap();
    let status = reap(&mut child, Duration::from_secs(20));
    let ready = socket.wait_for("READY=1", Duration::from_millis(200));
    assert!(status.is_some_and(|s| !s.success()), "signaling must fail to start without Redis: {status:?}");
    assert!(!ready, "READY=1 sent without Redis: {:?}", socket.seen);
}

#[test]
fn sigterm_drains_and_socket_io_client_reconnects_to_the_next_instance() {
    let port = free_port();
    let b = SignalingBuilder::new("ops-drain-a").port(port).args(["--drain-timeout", "6"]);
    let jwt = b.jwt_secret.clone();
    let mut a = b.start();
    let mut d = Driver::node(a.log_dir());
    let token = a.token("alice", 600);
    let first = d
        .connect("alice", &a.url(), Some(&token), json!({"reconnection": true}))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert_eq!(a.get("/readyz", None, &[]).status, 200);

    a.terminate();
    // While it drains it still answers, with 503, so a load balancer stops routing to it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut readyz = Vec::new();
    while Instant::now() < deadline {
        match std::net::TcpStream::connect_timeout(&a.addr, Duration::from_millis(200)) {
            Ok(_) => {
                let r = a.get("/readyz", None, &[]);
                readyz.push(r.status);
                if r.status == 503 {
                    assert_eq!(r.json()["status"], "draining");
                    break;
                }
            }
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(readyz.last(), Some(&503), "readyz during the drain: {readyz:?}");
    let notice = d.expect("alice", "server:shutdown", Duration::from_secs(5));
    assert_eq!(notice, json!({"reason": "shutdown", "reconnect": true}));
    // A transport close, not "io server disconnect": socket.io-client reconnects by itself.
    assert_eq!(d.expect_disconnect("alice", Duration::from_secs(5)), "transport close");
    let status = a.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "drained instance must exit cleanly: {status:?}");
    // Its disconnect reached the state machine (starting any call's grace) before the exit.
    let log = a.stderr_tail();
    assert!(log.contains("socket disconnected user=alice") && log.contains("stopped unfinished=0"), "{log}");

    // The next instance takes the address (as a restarted unit or the next nginx upstream would).
    let b = SignalingBuilder::new("ops-drain-b").port(port).jwt_secret(&jwt).start();
    let again =
        d.wait_for(Duration::from_secs(20), "reconnect of alice", |v| v["id"] == "alice" && v["type"] == "connect");
    assert_ne!(again["sid"].as_str(), Some(first.as_str()), "a new session on the new instance");
    let ack = d.emit("alice", "call:sync", json!({}));
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(b.get("/readyz", None, &[]).status == 200);
}
