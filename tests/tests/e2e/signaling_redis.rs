//! Several signaling instances sharing a real `redis-server`: rooms through socketioxide's
//! Redis adapter, call state and ring deadlines in Redis. The caller and callee sit on
//! different instances; one instance is killed (SIGKILL) while a call rings and the ring
//! timeout still fires from the survivor.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::signaling::{call_id, hmac_sha256_hex, Driver, HookSink, Redis, Signaling, SignalingBuilder, EVENT_TIMEOUT};
use e2e::LogDir;
use serde_json::json;

fn pair(logs: &LogDir, redis: &Redis, extra: &[&str]) -> (Signaling, Signaling) {
    let a =
        SignalingBuilder::new("sig_redis_a").args(["--redis-url", &redis.url()]).args(extra.iter().copied()).start();
    let b = SignalingBuilder::new("sig_redis_b")
        .jwt_secret(&a.jwt_secret)
        .turn_secret(&a.turn_secret)
        .args(["--redis-url", &redis.url()])
        .args(extra.iter().copied())
        .start();
    let _ = logs;
    (a, b)
}

#[test]
fn caller_and_callee_on_different_instances() {
    let logs = LogDir::new("sig_redis_call");
    let redis = Redis::start(logs.path());
    let (a, b) = pair(&logs, &redis, &[]);
    assert_eq!(a.get("/readyz", None, &[]).status, 200);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    let id = call_id();
    let ack =
        d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "callType": "audio", "sdp": "offer"}));
    assert_eq!(ack["state"], "ringing", "{ack}");
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["sdp"], "offer");
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "answer"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "answer");
    d.emit("alice", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "ca"}}));
    assert_eq!(d.expect("bob", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "ca");
    d.emit("bob", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "cb"}}));
    assert_eq!(d.expect("alice", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "cb");
    // carol on instance A finds bob busy although his call lives on B's socket.
    d.connect_ok("carol", &a.url(), &a.token("carol", 600));
    let ack = d.emit("carol", "call:initiate", json!({"callId": call_id(), "calleeId": "bob"}));
    assert_eq!(ack["error"], "busy");
    assert_eq!(d.emit("bob", "call:end", json!({"callId": id}))["state"], "ended");
    assert_eq!(d.expect("alice", "call:end", EVENT_TIMEOUT)["reason"], "hangup");
}

#[test]
fn answered_elsewhere_across_instances() {
    let logs = LogDir::new("sig_redis_devices");
    let redis = Redis::start(logs.path());
    let (a, b) = pair(&logs, &redis, &[]);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob-web", &a.url(), &a.token("bob", 600));
    d.connect_ok("bob-phone", &b.url(), &b.token("bob", 600));
    let id = call_id();
    d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    d.expect("bob-web", "call:offer", EVENT_TIMEOUT);
    d.expect("bob-phone", "call:offer", EVENT_TIMEOUT);
    // Both devices answer at once; exactly one wins.
    let r1 = d.emit_nowait("bob-web", "call:answer", json!({"callId": id, "sdp": "web"}));
    let r2 = d.emit_nowait("bob-phone", "call:answer", json!({"callId": id, "sdp": "phone"}));
    let (a1, a2) = (d.ack("bob-web", "call:answer", r1), d.ack("bob-phone", "call:answer", r2));
    let winners = [&a1, &a2].iter().filter(|a| a["ok"] == true).count();
    assert_eq!(winners, 1, "{a1} {a2}");
    let (winner, loser) = if a1["ok"] == true { ("bob-web", "bob-phone") } else { ("bob-phone", "bob-web") };
    assert_eq!(d.expect(loser, "call:answered-elsewhere", EVENT_TIMEOUT)["callId"], id.as_str());
    let sdp = d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"].clone();
    assert_eq!(sdp, if winner == "bob-web" { "web" } else { "phone" });
}

#[test]
fn ring_timeout_fires_after_the_starting_instance_is_killed() {
    let logs = LogDir::new("sig_redis_kill");
    let redis = Redis::start(logs.path());
    let (mut a, b) = pair(&logs, &redis, &["--ring-timeout", "3"]);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    let id = call_id();
    d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    a.kill();
    let started = std::time::Instant::now();
    let cancelled = d.expect("bob", "call:cancelled", Duration::from_secs(10));
    assert_eq!(cancelled, json!({"callId": id, "reason": "no-answer"}));
    assert!(started.elapsed() < Duration::from_secs(6), "fired after {:?}", started.elapsed());
    // bob is free again: a new call to him rings.
    d.connect_ok("carol", &b.url(), &b.token("carol", 600));
    assert_eq!(d.emit("carol", "call:initiate", json!({"callId": call_id(), "calleeId": "bob"}))["state"], "ringing");
}

#[test]
fn readiness_follows_redis() {
    let logs = LogDir::new("sig_redis_ready");
    let mut redis = Redis::start(logs.path());
    let a = SignalingBuilder::new("sig_redis_ready_a").args(["--redis-url", &redis.url()]).start();
    assert_eq!(a.get("/readyz", None, &[]).status, 200);
    redis.stop();
    let mut status = 0;
    for _ in 0..50 {
        status = a.get("/readyz", None, &[]).status;
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, 503);
    assert_eq!(a.get("/healthz", None, &[]).status, 200);
}

#[test]
fn offline_callee_is_pushed_and_gets_the_offer_on_another_instance() {
    let logs = LogDir::new("sig_redis_push");
    let redis = Redis::start(logs.path());
    let sink = HookSink::start(0);
    let secret = "webhook-secret-0123456789";
    let (a, b) = pair(&logs, &redis, &["--webhook-url", &sink.url(), "--webhook-secret", secret]);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    // bob's laptop is online on B but belongs to another user: the check is per user.
    d.connect_ok("carol", &b.url(), &b.token("carol", 600));
    let id = call_id();
    d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    let (headers, body) = sink.next(Duration::from_secs(10)).expect("call.offer webhook");
    assert_eq!(headers.get("x-signature-256").map(String::as_str), Some(hmac_sha256_hex(secret, &body).as_str()));
    let hook: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((hook["event"].as_str(), hook["calleeId"].as_str()), (Some("call.offer"), Some("bob")));
    // The push wakes bob's phone, which lands on instance B: the offer made on A is waiting.
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["callId"], id.as_str());
    // With bob online, a second call to him (after this one ends) is not pushed.
    d.emit("alice", "call:end", json!({"callId": id}));
    let (_, body) = sink.next(Duration::from_secs(10)).expect("call.missed webhook");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["reason"], "caller-cancelled");
    let id2 = call_id();
    d.emit("alice", "call:initiate", json!({"callId": id2, "calleeId": "bob", "sdp": "o2"}));
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert!(sink.next(Duration::from_secs(2)).is_none(), "an online callee was pushed");
}

/// alice on A and bob on B in an accepted call; returns the call id.
fn accepted_call(d: &mut Driver, a: &Signaling, b: &Signaling) -> String {
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    let id = call_id();
    d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["state"], "accepted");
    d.expect("alice", "call:answer", EVENT_TIMEOUT);
    id
}

#[test]
fn crashed_instance_ends_its_calls_for_the_other_side() {
    // SIGKILL runs no disconnect handler: a surviving instance notices the dead node and
    // disconnects its sockets through the state machine (reconnect grace, then call:end).
    let logs = LogDir::new("sig_redis_crash");
    let redis = Redis::start(logs.path());
    let (mut a, b) = pair(&logs, &redis, &["--reconnect-grace", "1"]);
    let mut d = Driver::node(logs.path());
    let id = accepted_call(&mut d, &a, &b);
    a.kill();
    let end = d.expect("bob", "call:end", Duration::from_secs(15));
    assert_eq!(end, json!({"callId": id, "reason": "peer-disconnected", "by": "alice"}));
}

#[test]
fn graceful_shutdown_lets_the_caller_resume_on_another_instance() {
    let logs = LogDir::new("sig_redis_sigterm");
    let redis = Redis::start(logs.path());
    let (a, b) = pair(&logs, &redis, &["--reconnect-grace", "4"]);
    let mut d = Driver::node(logs.path());
    let id = accepted_call(&mut d, &a, &b);
    drop(a); // SIGTERM: sockets closed, their calls enter the reconnect grace
    d.expect_disconnect("alice", EVENT_TIMEOUT);
    d.connect_ok("alice-b", &b.url(), &b.token("alice", 600));
    // The client names its call: its old socket's disconnect may not be recorded yet.
    let ack = d.emit("alice-b", "call:sync", json!({"callIds": [id]}));
    assert_eq!(ack["calls"][0]["callId"], id.as_str(), "{ack}");
    assert_eq!(ack["calls"][0]["thisDevice"], true, "{ack}");
    d.emit("bob", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "after-move"}}));
    assert_eq!(d.expect("alice-b", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "after-move");
    // Past the grace period the call is still up.
    d.expect_none("bob", "call:end", Duration::from_secs(5));
    assert_eq!(d.emit("alice-b", "call:end", json!({"callId": id}))["state"], "ended");
    d.expect("bob", "call:end", EVENT_TIMEOUT);
}

#[test]
fn simultaneous_glare_across_instances_leaves_one_call() {
    let logs = LogDir::new("sig_redis_glare");
    let redis = Redis::start(logs.path());
    let (a, b) = pair(&logs, &redis, &[]);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    for round in 0..5 {
        let (x, y) = (call_id(), call_id());
        let winner = if x < y { x.clone() } else { y.clone() };
        // Both initiate at once, on different instances: the compare-and-set commit serialises
        // them, and whichever order they land in, the lower id survives.
        let rx = d.emit_nowait("alice", "call:initiate", json!({"callId": x, "calleeId": "bob", "sdp": "ox"}));
        let ry = d.emit_nowait("bob", "call:initiate", json!({"callId": y, "calleeId": "alice", "sdp": "oy"}));
        let (ax, ay) = (d.ack("alice", "call:initiate", rx), d.ack("bob", "call:initiate", ry));
        let sync = d.emit("alice", "call:sync", json!({}));
        let calls = sync["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "round {round}: {ax} {ay} {sync}");
        assert_eq!(calls[0]["callId"], winner.as_str(), "round {round}: {ax} {ay} {sync}");
        assert_eq!(calls[0]["state"], "ringing");
        assert_eq!(d.emit("alice", "call:end", json!({"callId": winner}))["ok"], true);
        assert_eq!(d.emit("bob", "call:end", json!({"callId": winner}))["ok"], true);
        let sync = d.emit("bob", "call:sync", json!({}));
        assert!(sync["calls"].as_array().unwrap().is_empty(), "round {round}: {sync}");
    }
}

/// Redis stops while alice and bob are connected to instance A and carol to B, then comes back
/// on the same port, empty (no persistence), without restarting either instance:
/// - during the outage A stays up (`/healthz` 200, `/readyz` 503 "degraded", `signaling_redis_up`
///   0) and calls between its own sockets keep working from memory: one is answered and ended,
///   and one rings on;
/// - once Redis is back the ringing call was handed to Redis (bob answers it and alice hears),
///   and cross-instance delivery is back on the same sockets, never reconnected: alice on A
///   calls carol on B.
#[test]
fn redis_outage_degrades_to_local_calls_and_recovers_without_restart() {
    let logs = LogDir::new("sig_redis_outage");
    let mut redis = Redis::start(logs.path());
    let port = redis.port;
    let (a, b) = pair(&logs, &redis, &["--metrics-listen", "127.0.0.1:0"]);
    let mut d = Driver::node(logs.path());
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &a.url(), &a.token("bob", 600));
    d.connect_ok("carol", &b.url(), &b.token("carol", 600));
    redis.stop();
    assert_eq!(readyz_within(&a, 503, 50), 503, "readiness did not report the outage");
    let ready = a.get("/readyz", None, &[]).json();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(a.get("/healthz", None, &[]).status, 200);
    assert_eq!(a.scrape().value("signaling_redis_up"), 0.0);

    let first = call_id();
    let ack = d.emit("alice", "call:initiate", json!({"callId": first, "calleeId": "bob", "sdp": "o1"}));
    assert_eq!(ack["state"], "ringing", "a call on one instance during the outage: {ack}");
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["sdp"], "o1");
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": first, "sdp": "a1"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a1");
    assert_eq!(d.emit("alice", "call:end", json!({"callId": first}))["state"], "ended");
    assert_eq!(d.expect("bob", "call:end", EVENT_TIMEOUT)["reason"], "hangup");

    let ringing = call_id();
    let ack = d.emit("alice", "call:initiate", json!({"callId": ringing, "calleeId": "bob", "sdp": "o2"}));
    assert_eq!(ack["state"], "ringing", "{ack}");
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["sdp"], "o2");

    let _redis = Redis::start_on(logs.path(), port);
    assert_eq!(readyz_within(&a, 200, 100), 200, "A's readiness did not recover");
    assert_eq!(readyz_within(&b, 200, 100), 200, "B's readiness did not recover");
    assert_eq!(a.scrape().value("signaling_redis_up"), 1.0);
    // The ringing call now lives in Redis (A handed it over): answering goes through the store.
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": ringing, "sdp": "a2"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a2");
    assert_eq!(d.emit("bob", "call:end", json!({"callId": ringing}))["state"], "ended");
    d.expect("alice", "call:end", EVENT_TIMEOUT);

    let across = call_id();
    let ack = d.emit("alice", "call:initiate", json!({"callId": across, "calleeId": "carol", "sdp": "o3"}));
    assert_eq!(ack["state"], "ringing", "{ack}");
    assert_eq!(d.expect("carol", "call:offer", EVENT_TIMEOUT)["sdp"], "o3", "cross-instance delivery did not resume");
    assert_eq!(d.emit("carol", "call:answer", json!({"callId": across, "sdp": "a3"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a3");
}

/// Polls `/readyz` every 100 ms, at most `tries` times, until it answers `want`; the last status.
fn readyz_within(s: &e2e::signaling::Signaling, want: u16, tries: u32) -> u16 {
    let mut status = 0;
    for _ in 0..tries {
        status = s.get("/readyz", None, &[]).status;
        if status == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    status
}
