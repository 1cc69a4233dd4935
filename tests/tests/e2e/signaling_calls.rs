//! Calls driven by socket.io-client (npm) against the built `signaling` binary: the full
//! offer/answer/candidates/end flow, reject, busy, glare, no-answer, answered-elsewhere with two
//! devices, reconnect within the grace period (and without), the pending offer for a device
//! that connects late, the push webhook, auth on connect, and bad input.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::signaling::{call_id, hmac_sha256_hex, Driver, HookSink, Signaling, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(600);

fn start(name: &str, extra: &[&str]) -> Signaling {
    SignalingBuilder::new(name).args(extra.iter().copied()).start()
}

/// alice calls bob (one device each, both connected); returns the call id after bob got the offer.
fn ring(d: &mut Driver, s: &Signaling) -> String {
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    let id = call_id();
    let ack = d.emit(
        "alice",
        "call:initiate",
        json!({"callId": id, "calleeId": "bob", "chatId": "chat-7", "callType": "video"}),
    );
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "ringing"}));
    let ack = d.emit("alice", "call:offer", json!({"callId": id, "sdp": {"type": "offer", "sdp": "v=0 offer"}}));
    assert_eq!(ack["ok"], true, "{ack}");
    let offer = d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(offer["callId"], id.as_str());
    assert_eq!(offer["callerId"], "alice");
    assert_eq!(offer["chatId"], "chat-7");
    assert_eq!(offer["callType"], "video");
    assert_eq!(offer["sdp"]["sdp"], "v=0 offer");
    id
}

#[test]
fn full_call_offer_answer_candidates_end() {
    let s = start("sig_full_call", &[]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": {"type": "answer", "sdp": "v=0 answer"}}));
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "accepted"}));
    let answer = d.expect("alice", "call:answer", EVENT_TIMEOUT);
    assert_eq!(answer, json!({"callId": id, "sdp": {"type": "answer", "sdp": "v=0 answer"}}));
    for (from, to, cand) in [
        ("alice", "bob", "candidate:1 1 udp 1 127.0.0.1 5000 typ host"),
        ("bob", "alice", "candidate:2 1 udp 1 127.0.0.1 5001 typ host"),
    ] {
        let c = json!({"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0});
        let ack = d.emit(from, "call:ice-candidate", json!({"callId": id, "candidate": c}));
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(d.expect(to, "call:ice-candidate", EVENT_TIMEOUT), json!({"callId": id, "candidate": c}));
    }
    let ack = d.emit("alice", "call:end", json!({"callId": id}));
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "ended"}));
    let end = d.expect("bob", "call:end", EVENT_TIMEOUT);
    assert_eq!(end["callId"], id.as_str());
    assert_eq!(end["reason"], "hangup");
    // A duplicate end is acknowledged and changes nothing.
    assert_eq!(d.emit("bob", "call:end", json!({"callId": id}))["ok"], true);
    d.expect_none("alice", "call:end", QUIET);
    // Both are free again: bob can call alice.
    let id2 = call_id();
    assert_eq!(
        d.emit("bob", "call:initiate", json!({"callId": id2, "calleeId": "alice", "sdp": "o"}))["state"],
        "ringing"
    );
    assert_eq!(d.expect("alice", "call:offer", EVENT_TIMEOUT)["callId"], id2.as_str());
}

#[test]
fn reject() {
    let s = start("sig_reject", &[]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    assert_eq!(d.emit("bob", "call:reject", json!({"callId": id}))["state"], "rejected");
    let r = d.expect("alice", "call:reject", EVENT_TIMEOUT);
    assert_eq!(r["callId"], id.as_str());
    // Late answer after reject: refused, nobody hears anything.
    let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": "late"}));
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"], "invalid_state");
    d.expect_none("alice", "call:answer", QUIET);
}

#[test]
fn busy_callee() {
    let s = start("sig_busy", &[]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}));
    d.connect_ok("carol", &s.url(), &s.token("carol", 600));
    let id2 = call_id();
    let ack = d.emit("carol", "call:initiate", json!({"callId": id2, "calleeId": "bob", "sdp": "o"}));
    assert_eq!(ack, json!({"ok": false, "error": "busy", "callId": id2}));
    assert_eq!(d.expect("carol", "call:busy", EVENT_TIMEOUT)["callId"], id2.as_str());
    d.expect_none("bob", "call:offer", QUIET);
}

#[test]
fn glare_resolves_to_one_call() {
    let s = start("sig_glare", &[]);
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    // Fixed ids so the winner is known: the lower id wins.
    let (low, high) = ("00000000-0000-4000-8000-000000000001", "ffffffff-0000-4000-8000-000000000002");
    assert_eq!(
        d.emit("alice", "call:initiate", json!({"callId": high, "calleeId": "bob", "sdp": "oa"}))["state"],
        "ringing"
    );
    let ack = d.emit("bob", "call:initiate", json!({"callId": low, "calleeId": "alice", "sdp": "ob"}));
    assert_eq!(ack["state"], "ringing", "{ack}");
    let c = d.expect("alice", "call:cancelled", EVENT_TIMEOUT);
    assert_eq!(c, json!({"callId": high, "reason": "glare", "replacedBy": low}));
    assert_eq!(d.expect("alice", "call:offer", EVENT_TIMEOUT)["callId"], low);
    // The reverse order: the later initiate loses and is told which call won.
    let s2 = start("sig_glare2", &[]);
    let mut d2 = Driver::node(s2.log_dir());
    d2.connect_ok("alice", &s2.url(), &s2.token("alice", 600));
    d2.connect_ok("bob", &s2.url(), &s2.token("bob", 600));
    d2.emit("alice", "call:initiate", json!({"callId": low, "calleeId": "bob", "sdp": "oa"}));
    let ack = d2.emit("bob", "call:initiate", json!({"callId": high, "calleeId": "alice", "sdp": "ob"}));
    assert_eq!(ack, json!({"ok": false, "error": "glare", "callId": high, "winner": low}));
    assert_eq!(d2.emit("bob", "call:answer", json!({"callId": low, "sdp": "a"}))["state"], "accepted");
}

#[test]
fn no_answer_after_the_ring_timeout() {
    let s = start("sig_no_answer", &["--ring-timeout", "2"]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    let started = std::time::Instant::now();
    assert_eq!(d.expect("alice", "call:no-answer", Duration::from_secs(6)), json!({"callId": id}));
    let cancelled = d.expect("bob", "call:cancelled", EVENT_TIMEOUT);
    assert_eq!(cancelled, json!({"callId": id, "reason": "no-answer"}));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "no-answer after {took:?}");
    // The call is freed: answering now is refused.
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["error"], "invalid_state");
}

#[test]
fn answered_elsewhere_with_two_devices() {
    let s = start("sig_two_devices", &[]);
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("bob-phone", &s.url(), &s.token("bob", 600));
    let id = ring(&mut d, &s); // connects "bob" as bob's second device
    assert_eq!(d.expect("bob-phone", "call:offer", EVENT_TIMEOUT)["callId"], id.as_str());
    assert_eq!(d.emit("bob-phone", "call:answer", json!({"callId": id, "sdp": "a1"}))["state"], "accepted");
    assert_eq!(d.expect("bob", "call:answered-elsewhere", EVENT_TIMEOUT), json!({"callId": id}));
    d.expect_none("bob-phone", "call:answered-elsewhere", QUIET);
    let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a2"}));
    assert_eq!(ack["error"], "answered_elsewhere");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a1");
    d.expect_none("alice", "call:answer", QUIET);
}

#[test]
fn reconnect_within_grace_keeps_the_call() {
    let s = start("sig_reconnect", &["--reconnect-grace", "3"]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}));
    d.expect("alice", "call:answer", EVENT_TIMEOUT);
    d.disconnect("alice");
    d.expect_disconnect("alice", EVENT_TIMEOUT);
    std::thread::sleep(Duration::from_secs(1));
    d.connect_ok("alice2", &s.url(), &s.token("alice", 600));
    let ack = d.emit("alice2", "call:sync", json!({}));
    assert_eq!(ack["ok"], true);
    let calls = ack["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{ack}");
    assert_eq!(calls[0]["callId"], id.as_str());
    assert_eq!(calls[0]["state"], "accepted");
    assert_eq!(calls[0]["role"], "caller");
    assert_eq!(calls[0]["peerId"], "bob");
    assert_eq!(calls[0]["thisDevice"], true);
    // Past the grace period the call still stands, and candidates reach the new socket.
    std::thread::sleep(Duration::from_secs(3));
    d.expect_none("bob", "call:end", Duration::from_millis(200));
    d.emit("bob", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "c"}}));
    assert_eq!(d.expect("alice2", "call:ice-candidate", EVENT_TIMEOUT)["callId"], id.as_str());
}

#[test]
fn no_reconnect_ends_the_call_for_the_peer() {
    let s = start("sig_grace_expiry", &["--reconnect-grace", "2"]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}));
    d.disconnect("bob");
    let end = d.expect("alice", "call:end", Duration::from_secs(6));
    assert_eq!(end, json!({"callId": id, "reason": "peer-disconnected", "by": "bob"}));
}

#[test]
fn late_device_gets_the_pending_offer_and_offline_callee_is_pushed() {
    let secret = "webhook-secret-0123456789";
    let sink = HookSink::start(1); // the first attempt fails: delivery must retry
    let s =
        start("sig_late_device", &["--webhook-url", &sink.url(), "--webhook-secret", secret, "--ring-timeout", "3"]);
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    let id = call_id();
    d.emit(
        "alice",
        "call:initiate",
        json!({"callId": id, "calleeId": "bob", "chatId": "c9", "callType": "audio", "sdp": "o"}),
    );
    // bob has no device: the backend is asked to push.
    let (headers, body) = sink.next(Duration::from_secs(8)).expect("call.offer webhook");
    assert_eq!(headers.get("x-signature-256").map(String::as_str), Some(hmac_sha256_hex(secret, &body).as_str()));
    let hook: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(hook["event"], "call.offer");
    assert_eq!(hook["callId"], id.as_str());
    assert_eq!(hook["calleeId"], "bob");
    // bob's phone wakes and connects: the offer arrives at once.
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    let offer = d.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(offer["callId"], id.as_str());
    assert_eq!(offer["sdp"], "o");
    // Nobody answers: a missed-call hook.
    let (_, body) = sink.next(Duration::from_secs(10)).expect("call.missed webhook");
    let hook: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(hook["event"], "call.missed");
    assert_eq!(hook["reason"], "no-answer");
}

#[test]
fn handshake_auth_and_origin() {
    let s = start("sig_handshake", &["--cors-origin", "https://app.example"]);
    let mut d = Driver::node(s.log_dir());
    let err = d.connect("none", &s.url(), None, json!({})).unwrap_err();
    assert!(err.contains("missing bearer token"), "{err}");
    let err = d.connect("expired", &s.url(), Some(&s.token("alice", -60)), json!({})).unwrap_err();
    assert!(err.contains("expired"), "{err}");
    let forged =
        e2e::signaling::hs256_token("another-secret-0123", &json!({"sub": "alice", "exp": e2e::unix_now() + 60}));
    let err = d.connect("forged", &s.url(), Some(&forged), json!({})).unwrap_err();
    assert!(err.contains("signature"), "{err}");
    let err = d
        .connect("evil", &s.url(), Some(&s.token("alice", 60)), json!({"headers": {"Origin": "https://evil.example"}}))
        .unwrap_err();
    // Refused at the HTTP upgrade (403, before any session: signaling_abuse.rs checks the
    // status), which socket.io-client reports as a transport error.
    assert!(err.contains("websocket error"), "{err}");
    d.connect("web", &s.url(), Some(&s.token("alice", 60)), json!({"headers": {"Origin": "https://app.example"}}))
        .unwrap();
    // Native clients send the token as a header instead of the auth payload.
    let header = format!("Bearer {}", s.token("bob", 60));
    d.connect("native", &s.url(), None, json!({"headers": {"Authorization": header}})).unwrap();
    // The query string is never read.
    let url = format!("{}?token={}", s.url(), s.token("carol", 60));
    assert!(d.connect("query", &url, None, json!({})).is_err());
    // Long-polling works too (the transport clients fall back to).
    d.connect("polling", &s.url(), Some(&s.token("dave", 60)), json!({"transports": ["polling"]})).unwrap();
}

#[test]
fn socket_is_disconnected_when_its_token_expires() {
    let s = start("sig_token_expiry", &[]);
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 2));
    let e = d.expect("alice", "call:error", Duration::from_secs(6));
    assert_eq!(e["error"], "token_expired");
    d.expect_disconnect("alice", Duration::from_secs(3));
}

#[test]
fn bad_input_gets_error_acks_and_does_not_disturb_other_calls() {
    let s = start("sig_bad_input", &["--max-event-bytes", "4096"]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    d.connect_ok("eve", &s.url(), &s.token("eve", 600));
    let cases = [
        ("call:answer", json!({"callId": id}), "bad_request"),
        ("call:answer", json!({"sdp": "x"}), "bad_request"),
        ("call:end", json!("just a string"), "bad_request"),
        ("call:offer", json!({"callId": "not a valid id!", "sdp": "x"}), "bad_request"),
        ("call:initiate", json!({"callId": call_id(), "calleeId": "eve"}), "self_call"),
        ("call:answer", json!({"callId": id, "sdp": "x".repeat(5000)}), "payload_too_large"),
        ("call:end", json!({"callId": id}), "forbidden"),
        ("call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "x"}}), "forbidden"),
        ("call:answer", json!({"callId": call_id(), "sdp": "x"}), "not_found"),
    ];
    for (event, data, code) in cases {
        let ack = d.emit("eve", event, data.clone());
        assert_eq!(ack["ok"], false, "{event} {data}: {ack}");
        assert_eq!(ack["error"], code, "{event} {data}: {ack}");
        assert_eq!(d.expect("eve", "call:error", EVENT_TIMEOUT)["error"], code);
    }
    // An event name the service does not handle gets an error ack (not a silent drop).
    for event in ["call:bogus", "chat:typing"] {
        let ack = d.emit("eve", event, json!({"callId": id}));
        assert_eq!(ack, json!({"ok": false, "error": "unknown_event"}), "{event}");
    }
    // The call eve poked at is untouched.
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a");
}

#[test]
fn events_up_to_the_engine_limit_get_payload_too_large_and_keep_their_connection() {
    // Defaults: max_event_bytes 64 KiB, max_message_bytes (the engine's limit) 512 KiB.
    let s = start("sig_engine_limit", &[]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    for size in [70_000, 300_000, 500_000] {
        let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": "x".repeat(size)}));
        assert_eq!(ack["error"], "payload_too_large", "{size}-byte answer: {ack}");
        assert_eq!(d.expect("bob", "call:error", EVENT_TIMEOUT)["error"], "payload_too_large");
    }
    // Still connected and still in the call: a real answer goes through.
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a");
    // Above the engine's limit the message is not read: the connection is closed. (A candidate
    // of the contract's shape, so only its size is wrong.)
    let candidate = json!({"candidate": "x".repeat(600_000), "sdpMid": "0", "sdpMLineIndex": 0});
    d.emit_nowait("bob", "call:ice-candidate", json!({"callId": id, "candidate": candidate}));
    let why = d.expect_disconnect("bob", Duration::from_secs(10));
    eprintln!("600 kB event over a 512 KiB engine limit: bob disconnected ({why})");

    // The engine limit is configurable: at 200 kB a 300 kB event closes the connection, while
    // one under it still gets its answer.
    let s = start("sig_engine_limit_flag", &["--max-message-bytes", "200000"]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": "x".repeat(150_000)}));
    assert_eq!(ack["error"], "payload_too_large", "{ack}");
    d.emit_nowait("bob", "call:answer", json!({"callId": id, "sdp": "x".repeat(300_000)}));
    d.expect_disconnect("bob", Duration::from_secs(10));
}

#[test]
fn retried_initiate_is_idempotent() {
    let s = start("sig_idempotent", &[]);
    let mut d = Driver::node(s.log_dir());
    let id = ring(&mut d, &s);
    let ack = d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob"}));
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "ringing"}));
    d.expect_none("bob", "call:offer", QUIET);
}

#[test]
fn back_to_back_events_keep_their_order() {
    // The messenger emits call:initiate and call:offer without waiting for the first ack.
    let s = start("sig_order", &[]);
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    for _ in 0..5 {
        let id = call_id();
        let r1 = d.emit_nowait("alice", "call:initiate", json!({"callId": id, "calleeId": "bob"}));
        let r2 = d.emit_nowait("alice", "call:offer", json!({"callId": id, "sdp": "o"}));
        let r3 = d.emit_nowait("alice", "call:end", json!({"callId": id}));
        assert_eq!(d.ack("alice", "call:initiate", r1)["state"], "ringing");
        assert_eq!(d.ack("alice", "call:offer", r2)["ok"], true);
        assert_eq!(d.ack("alice", "call:end", r3)["state"], "cancelled");
        assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["callId"], id.as_str());
        assert_eq!(d.expect("bob", "call:cancelled", EVENT_TIMEOUT)["callId"], id.as_str());
    }
}
