//! The `/call` page (signaling/src/http/call_page/, built on the web client library
//! clients/web/) in headless Chromium, through the built `signaling` and `turn-server`: the
//! scenarios of issue 17's "What proves it". Each test drives the page the way a person would
//! (tests/clients/browser/callpage.js via e2e::callpage) and reads what the page shows from its
//! data-* attributes; screenshots of each state are checked and kept under
//! `target/e2e-logs/call_page/`.
//!
//! - a relay-only call ("force relay"): audio and video both ways, the selected pair a relay pair
//!   on our relay, hang-up ends both sides;
//! - no answer: the caller reads "No answer." after the ring timeout, the callee's incoming call
//!   closes by itself (and a third user calling the ringing callee reads "busy");
//! - media check: permission denied and no camera each give their message, and no call starts;
//! - a hang-up made while the signaling service is down is queued ("1 queued") and delivered
//!   once a new instance (same Redis) is up;
//! - two instances behind nginx on Redis: the one holding the caller's socket drains, the page
//!   reconnects through nginx to the other and the call goes on (`call:sync`);
//! - ICE restart: two relays in the config, the second up only once the call runs on the first;
//!   the first stops, the page restarts ICE and the call goes on through the second.
//!
//! One browser per test (two contexts), audio only except the first call, to keep Chromium's load
//! on a small machine down. And, without a browser: the vendored socket.io-client bundle the page
//! loads is byte for byte the pinned npm package's.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::callpage::{call_url, CallPages};
use e2e::clients_dir;
use e2e::repo_root;
use e2e::signaling::{free_port, Nginx, Redis, Signaling, SignalingBuilder};
use e2e::{PortBlock, ServerBuilder};
use serde_json::{json, Value};

const CONNECT: Duration = Duration::from_secs(20);
const CALL_UP: Duration = Duration::from_secs(40);

/// `[[relays]]` for relays on these port blocks (TURN over UDP, no STUN: the calls are
/// relay-only anyway).
fn relays_toml(relays: &[&PortBlock]) -> String {
    relays
        .iter()
        .map(|r| {
            let port = r.listen_port();
            format!(
                "[[relays]]\nhost = \"127.0.0.1\"\nudp_port = {port}\ntcp_port = {port}\ntransports = [\"udp\"]\nstun = false\n"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Is `addr` ("127.0.0.1:port") in the relay port range of the relay on `ports`?
fn on_relay(addr: &Value, ports: &PortBlock) -> bool {
    let Some((ip, port)) = addr.as_str().and_then(|a| a.rsplit_once(':')) else { return false };
    let port: u16 = port.parse().unwrap_or(0);
    ip == "127.0.0.1" && (ports.relay_min()..=ports.relay_max()).contains(&port)
}

/// Signs both pages in and waits until both show "connected".
fn open_two(b: &mut CallPages, base_alice: &str, base_bob: &str, s: &Signaling) {
    b.launch("chromium", true);
    for (page, base) in [("alice", base_alice), ("bob", base_bob)] {
        let opened = b.open(page, "chromium", &call_url(base, &s.token(page, 600)), true);
        assert_eq!(opened["status"], 200, "{opened}");
        let csp = opened["headers"]["content-security-policy"].as_str().unwrap_or_default().to_owned();
        assert!(csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"), "{csp}");
        let st = b.wait(page, json!({"body": {"status": "connected"}}), CONNECT);
        assert_eq!(st["tokenInUrl"], false, "the token stays out of the address bar: {st}");
    }
}

/// alice calls bob (force relay on both), bob accepts; both pages in a call on a relay pair.
fn call_and_answer(b: &mut CallPages, video: bool, shots: Option<&str>) -> (Value, Value) {
    for p in ["alice", "bob"] {
        b.check(p, "#force-relay", true);
    }
    b.fill("alice", "#callee", "bob");
    b.check("alice", "#video", video);
    b.click("alice", "#call-btn");
    b.wait("bob", json!({"body": {"incoming": "open", "call": "incoming"}}), CONNECT);
    if let Some(prefix) = shots {
        b.screenshot("alice", &format!("{prefix}_ringing.png"), "Calling bob");
        b.screenshot("bob", &format!("{prefix}_incoming.png"), "alice is calling");
    }
    b.click("bob", "#accept-btn");
    let want = json!({"body": {"call": "in-call"}, "#quality": {"localType": "relay", "remoteType": "relay"}});
    let a = b.wait("alice", want.clone(), CALL_UP);
    let bb = b.wait("bob", want, CALL_UP);
    (a, bb)
}

/// Polls `page` until its live quality shows media sent and received; the state then.
fn media_flowing(b: &mut CallPages, page: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = b.state(page);
        let kbps = |k: &str| st["quality"][k].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if kbps("sendKbps") > 0.0 && kbps("recvKbps") > 0.0 && st["body"]["call"] == "in-call" {
            return st;
        }
        assert!(Instant::now() < deadline, "{page}: no media both ways within {within:?}: {st}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn no_page_errors(st: &Value) {
    assert_eq!(st["cspViolations"], json!([]), "{st}");
    assert_eq!(st["errors"], json!([]), "{st}");
}

#[test]
fn vendored_socket_io_client_is_the_pinned_package() {
    let vendor = repo_root().join("signaling/vendor/socket.io-client");
    let installed = clients_dir().join("node_modules/socket.io-client");
    assert!(installed.is_dir(), "run `npm ci --prefix tests/clients` (tests/run-all.sh does this)");
    let pinned: Value =
        serde_json::from_str(&std::fs::read_to_string(clients_dir().join("package.json")).unwrap()).unwrap();
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(installed.join("package.json")).unwrap()).unwrap();
    let version = std::fs::read_to_string(vendor.join("VERSION")).unwrap();
    assert_eq!(version.trim(), pinned["dependencies"]["socket.io-client"], "VERSION vs tests/clients/package.json");
    assert_eq!(version.trim(), package["version"], "VERSION vs the installed package");
    for (ours, theirs) in [("socket.io.esm.min.js", "dist/socket.io.esm.min.js"), ("LICENSE", "LICENSE")] {
        let a = std::fs::read(vendor.join(ours)).unwrap();
        let b = std::fs::read(installed.join(theirs)).unwrap();
        assert!(a == b, "signaling/vendor/socket.io-client/{ours} differs from the package's {theirs}");
    }
}

#[test]
fn call_page_is_served_whole_and_turns_off() {
    let s = SignalingBuilder::new("cp_served").start();
    // The library is served as it is in the repository (no build step between).
    let lib = std::fs::read_to_string(repo_root().join("clients/web/src/index.js")).unwrap();
    let served = s.get("/call/lib/index.js", None, &[]);
    assert_eq!((served.status, served.body.as_str()), (200, lib.as_str()));
    for path in ["/call", "/call/app.js", "/call/vendor/socket.io.esm.min.js"] {
        let r = s.get(path, None, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-security-policy").is_some_and(|c| c.starts_with("default-src 'none'")), "{path}");
    }
    let off = SignalingBuilder::new("cp_served_off").args(["--no-call-page"]).start();
    let off_cfg = SignalingBuilder::new("cp_served_off_cfg")
        .config(&format!("[signaling]\ncall_page_enabled = false\n\n{}", relays_toml(&[&PortBlock::reserve()])))
        .start();
    for (how, sig) in [("--no-call-page", &off), ("call_page_enabled = false", &off_cfg)] {
        for path in ["/call", "/call/app.js", "/call/lib/index.js", "/call/vendor/socket.io.esm.min.js"] {
            assert_eq!(sig.get(path, None, &[]).status, 404, "{path} with {how}");
        }
        assert_eq!(sig.get("/diag", None, &[]).status, 200, "/diag stays with {how}");
    }
}

#[test]
fn call_page_relay_call_media_both_ways_then_hang_up() {
    let relay = ServerBuilder::new("cp_relay").start();
    let s = SignalingBuilder::new("cp_relay_sig")
        .turn_secret(relay.secret())
        .config(&relays_toml(&[relay.ports()]))
        .start();
    let mut b = CallPages::start("call_page_relay");
    open_two(&mut b, &s.url(), &s.url(), &s);
    b.screenshot("alice", "signed_in.png", "Connected");
    let (a, bob) = call_and_answer(&mut b, true, Some("relay"));
    for st in [&a, &bob] {
        let q = &st["quality"];
        assert!(on_relay(&q["localAddress"], relay.ports()) && on_relay(&q["remoteAddress"], relay.ports()), "{st}");
        assert_eq!(q["relayProtocol"], "udp", "{st}");
    }
    // Each side's remote relay candidate is the other's local one.
    assert_eq!(a["quality"]["remoteAddress"], bob["quality"]["localAddress"]);
    for page in ["alice", "bob"] {
        let st = media_flowing(&mut b, page, CALL_UP);
        let kinds: Vec<&str> =
            st["remoteTracks"].as_array().unwrap().iter().filter_map(|t| t["kind"].as_str()).collect();
        assert!(kinds.contains(&"audio") && kinds.contains(&"video"), "{page}: {st}");
        assert!(st["rttChartSamples"].as_u64().unwrap() >= 1 && st["bitrateChartSamples"].as_u64().unwrap() >= 1);
        assert!(st["pair"].as_str().unwrap().contains("relay"), "{st}");
        no_page_errors(&st);
    }
    b.screenshot("alice", "relay_in_call.png", "relay udp");
    b.click("alice", "#hangup-btn");
    for page in ["alice", "bob"] {
        let st = b.wait(page, json!({"body": {"call": "ended", "endedReason": "hangup"}}), CONNECT);
        assert!(st["remoteTracks"].as_array().unwrap().is_empty(), "{st}");
    }
    b.screenshot("bob", "relay_ended.png", "Call ended.");
}

#[test]
fn call_page_no_answer_on_both_sides() {
    let relay = ServerBuilder::new("cp_noanswer_relay").start();
    let s = SignalingBuilder::new("cp_noanswer_sig")
        .turn_secret(relay.secret())
        .config(&relays_toml(&[relay.ports()]))
        .args(["--ring-timeout", "8"])
        .start();
    let mut b = CallPages::start("call_page_no_answer");
    open_two(&mut b, &s.url(), &s.url(), &s);
    b.open("carol", "chromium", &call_url(&s.url(), &s.token("carol", 600)), true);
    b.wait("carol", json!({"body": {"status": "connected"}}), CONNECT);
    b.fill("alice", "#callee", "bob");
    b.click("alice", "#call-btn");
    b.wait("bob", json!({"body": {"incoming": "open"}}), CONNECT);
    b.wait("alice", json!({"body": {"call": "ringing"}}), CONNECT);
    let started = Instant::now();
    // Meanwhile carol calls bob too: he is ringing already, so she reads "busy".
    b.fill("carol", "#callee", "bob");
    b.click("carol", "#call-btn");
    let carol = b.wait("carol", json!({"body": {"outcome": "busy", "call": ["ended", "idle"]}}), CONNECT);
    assert_eq!(carol["message"], "The other person is busy in another call.", "{carol}");
    b.screenshot("carol", "busy.png", "busy");
    let a = b.wait("alice", json!({"body": {"outcome": "no-answer", "call": ["ended", "idle"]}}), CONNECT);
    let bob = b.wait("bob", json!({"body": {"incoming": "closed", "incomingClosed": "no-answer"}}), CONNECT);
    let rang = started.elapsed();
    assert!(rang > Duration::from_secs(4) && rang < Duration::from_secs(20), "the ring timeout is 8 s: {rang:?}");
    assert_eq!(a["message"], "No answer.", "{a}");
    assert_eq!(bob["incomingHidden"], true, "{bob}");
    b.screenshot("alice", "no_answer_caller.png", "No answer.");
    b.screenshot("bob", "no_answer_callee.png", "Missed call");
}

#[test]
fn call_page_media_check_failures_start_no_call() {
    let s = SignalingBuilder::new("cp_media_sig").args(["--metrics-listen", "127.0.0.1:0"]).start();
    let mut b = CallPages::start("call_page_media");
    b.launch("fake", true);
    b.launch("nodevices", false);
    // Fake devices, but this context was granted nothing: the prompt is denied.
    b.open("denied", "fake", &call_url(&s.url(), &s.token("alice", 600)), false);
    // A browser with no camera or microphone at all (no fake devices on a host with none).
    b.open("nocam", "nodevices", &call_url(&s.url(), &s.token("carol", 600)), true);
    b.open("bob", "fake", &call_url(&s.url(), &s.token("bob", 600)), true);
    for (page, kind, file, words) in [
        ("denied", "permission-denied", "media_permission_denied.png", "denied"),
        ("nocam", "no-device", "media_no_camera.png", "camera"),
    ] {
        b.wait(page, json!({"body": {"status": "connected"}}), CONNECT);
        b.fill(page, "#callee", "bob");
        b.check(page, "#video", true);
        b.click(page, "#call-btn");
        let st = b.wait(page, json!({"body": {"outcome": "media-error", "mediaError": kind, "call": "idle"}}), CONNECT);
        let msg = st["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(words), "{page}: the message should speak of the {words}: {st}");
        assert_eq!(st["messageKind"], "error", "{st}");
        b.screenshot(page, file, st["message"].as_str().unwrap());
    }
    // No call was started: the callee never rang and the service counted none.
    std::thread::sleep(Duration::from_secs(1));
    let bob = b.state("bob");
    assert_eq!(bob["body"]["incoming"], "none", "{bob}");
    assert_eq!(s.scrape().value("signaling_calls_started_total"), 0.0);
}

#[test]
fn call_page_queues_a_hang_up_while_signaling_is_down() {
    let relay = ServerBuilder::new("cp_queue_relay").start();
    let logs = e2e::LogDir::new("call_page_queue_redis");
    let redis = Redis::start(logs.path());
    let port = free_port();
    let builder = SignalingBuilder::new("cp_queue_sig")
        .turn_secret(relay.secret())
        .config(&relays_toml(&[relay.ports()]))
        .args(["--redis-url", &redis.url(), "--reconnect-grace", "30"])
        .port(port);
    let mut s = builder.clone().start();
    let mut b = CallPages::start("call_page_queue");
    open_two(&mut b, &s.url(), &s.url(), &s);
    call_and_answer(&mut b, false, None);
    media_flowing(&mut b, "alice", CALL_UP);

    // The service goes away; both pages see it and keep the call.
    s.kill();
    b.wait("alice", json!({"body": {"status": ["reconnecting", "disconnected"]}}), CONNECT);
    b.click("alice", "#hangup-btn");
    let st = b.wait("alice", json!({"body": {"queue": "1"}}), CONNECT);
    assert_eq!(st["queue"], "1 queued", "{st}");
    b.screenshot("alice", "queued_while_offline.png", "1 queued");
    let bob = b.state("bob");
    assert_ne!(bob["body"]["call"], "ended", "bob cannot know yet: {bob}");

    // A new instance on the same port and Redis: the queued hang-up reaches bob.
    let s2 = builder.start();
    b.wait("alice", json!({"body": {"status": "connected", "queue": "0"}}), Duration::from_secs(40));
    let bob = b.wait("bob", json!({"body": {"call": "ended", "endedReason": "hangup"}}), CONNECT);
    no_page_errors(&bob);
    b.screenshot("alice", "queue_delivered.png", "Connected");
    drop(s2);
}

#[test]
fn call_page_call_survives_its_instance_draining_behind_nginx() {
    let relay = ServerBuilder::new("cp_nginx_relay").start();
    let logs = e2e::LogDir::new("call_page_nginx");
    let redis = Redis::start(logs.path());
    let one = SignalingBuilder::new("cp_nginx_a")
        .turn_secret(relay.secret())
        .config(&relays_toml(&[relay.ports()]))
        .args(["--redis-url", &redis.url(), "--reconnect-grace", "6"]);
    let a = one.clone().start();
    let bsig = SignalingBuilder::new("cp_nginx_b")
        .jwt_secret(&one.jwt_secret)
        .turn_secret(relay.secret())
        .config(&relays_toml(&[relay.ports()]))
        .args(["--redis-url", &redis.url(), "--reconnect-grace", "6"])
        .start();
    // alice reaches the service through nginx, which prefers instance A and falls back to B;
    // bob talks to B directly, so A holds alice's side only.
    let port = free_port();
    let site = format!(
        "map $http_upgrade $conn_upgrade {{ default upgrade; '' ''; }}\n\
         upstream signaling {{ server {a} max_fails=1 fail_timeout=30s; server {b} backup; }}\n\
         server {{\n  listen 127.0.0.1:{port};\n  location / {{\n    proxy_pass http://signaling;\n    \
         proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection $conn_upgrade;\n    \
         proxy_set_header Host $http_host;\n    proxy_buffering off;\n    proxy_read_timeout 75s;\n    \
         proxy_next_upstream error timeout http_502 http_503;\n  }}\n}}\n",
        a = a.addr,
        b = bsig.addr
    );
    let nginx = Nginx::start(logs.path(), &site, port);
    let front = format!("http://127.0.0.1:{}", nginx.port);
    let mut b = CallPages::start("call_page_nginx");
    open_two(&mut b, &front, &bsig.url(), &a);
    call_and_answer(&mut b, false, None);
    media_flowing(&mut b, "alice", CALL_UP);

    // A drains (SIGTERM): alice's socket closes, she reconnects through nginx to B and resyncs.
    a.terminate();
    b.wait("alice", json!({"body": {"status": ["reconnecting", "disconnected"]}}), CONNECT);
    b.screenshot("alice", "nginx_reconnecting.png", "Reconnecting");
    b.wait("alice", json!({"body": {"status": "connected"}}), Duration::from_secs(40));
    // Past the reconnect grace: without call:sync the call would have ended for bob by now.
    std::thread::sleep(Duration::from_secs(8));
    for page in ["alice", "bob"] {
        let st = media_flowing(&mut b, page, CONNECT);
        assert_eq!(st["body"]["call"], "in-call", "{page}: {st}");
    }
    b.screenshot("alice", "nginx_call_survived.png", "Connected");
    b.click("bob", "#hangup-btn");
    b.wait("alice", json!({"body": {"call": "ended", "endedReason": "hangup"}}), CONNECT);
}

#[test]
fn call_page_restarts_ice_through_the_second_relay_when_its_relay_stops() {
    // Both relays are in the ICE config, but the second starts only once the call is up: the
    // call's first gathering can only use the first, so when that one stops no other path is
    // ready, and only an ICE restart (a new gathering, over call:renegotiate) brings it back.
    let first = ServerBuilder::new("cp_ice_relay1").start();
    let second_ports = PortBlock::reserve();
    let s = SignalingBuilder::new("cp_ice_sig")
        .turn_secret(first.secret())
        .config(&relays_toml(&[first.ports(), &second_ports]))
        .start();
    let mut b = CallPages::start("call_page_ice_restart");
    open_two(&mut b, &s.url(), &s.url(), &s);
    let (a, bob) = call_and_answer(&mut b, false, None);
    for st in [&a, &bob] {
        assert!(on_relay(&st["quality"]["localAddress"], first.ports()), "{st}");
    }
    media_flowing(&mut b, "alice", CALL_UP);
    let second = ServerBuilder::new("cp_ice_relay2").secret(first.secret()).start_on(second_ports);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(60);
    for page in ["alice", "bob"] {
        loop {
            let st = b.state(page);
            let q = &st["quality"];
            let moved = on_relay(&q["localAddress"], second.ports()) && on_relay(&q["remoteAddress"], second.ports());
            if moved && st["body"]["call"] == "in-call" {
                break;
            }
            assert!(Instant::now() < deadline, "{page} did not move to the second relay: {st}");
            std::thread::sleep(Duration::from_millis(500));
        }
        let st = media_flowing(&mut b, page, CONNECT);
        no_page_errors(&st);
    }
    // The caller restarts (it makes the new offer); the page counts the library's restarts.
    let st = b.state("alice");
    let restarts: u32 = st["body"]["iceRestarts"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(restarts >= 1, "no ICE restart seen: {st}");
    b.screenshot("alice", "ice_restart_recovered.png", "ICE restart");
    b.click("alice", "#hangup-btn");
    b.wait("bob", json!({"body": {"call": "ended", "endedReason": "hangup"}}), CONNECT);
}
