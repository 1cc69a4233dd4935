//! `call:renegotiate` (an ICE restart's new offer and answer) through the built `signaling`
//! binary with socket.io-client (npm): forwarded between the two devices of an accepted call,
//! refused while the call still rings, after it ended, and to a device that is not in it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::signaling::{call_id, Driver, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(600);

#[test]
fn accepted_parties_renegotiate_and_a_ringing_call_refuses() {
    let s = SignalingBuilder::new("sig_renegotiate").start();
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    d.connect_ok("bob2", &s.url(), &s.token("bob", 600));
    let id = call_id();
    let ack = d.emit(
        "alice",
        "call:initiate",
        json!({"callId": id, "calleeId": "bob", "sdp": {"type": "offer", "sdp": "v=0 o1"}}),
    );
    assert_eq!(ack["state"], "ringing", "{ack}");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);

    // Ringing: there is no answer to renegotiate yet, and nothing reaches bob.
    let restart = json!({"callId": id, "type": "offer", "sdp": {"type": "offer", "sdp": "v=0 restart"}});
    let ack = d.emit("alice", "call:renegotiate", restart.clone());
    assert_eq!(ack, json!({"ok": false, "error": "invalid_state", "callId": id}));
    d.expect_none("bob", "call:renegotiate", QUIET);

    let ack = d.emit("bob", "call:answer", json!({"callId": id, "sdp": {"type": "answer", "sdp": "v=0 a1"}}));
    assert_eq!(ack["state"], "accepted", "{ack}");
    d.expect("alice", "call:answer", EVENT_TIMEOUT);

    // The caller's restart offer reaches the answering device only, and its answer comes back.
    let ack = d.emit("alice", "call:renegotiate", restart);
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "accepted"}));
    let got = d.expect("bob", "call:renegotiate", EVENT_TIMEOUT);
    assert_eq!(
        got,
        json!({"callId": id, "type": "offer", "sdp": {"type": "offer", "sdp": "v=0 restart"}, "from": "alice"})
    );
    d.expect_none("bob2", "call:renegotiate", QUIET);
    let answer = json!({"callId": id, "type": "answer", "sdp": {"type": "answer", "sdp": "v=0 a2"}});
    let ack = d.emit("bob", "call:renegotiate", answer);
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "accepted"}));
    let got = d.expect("alice", "call:renegotiate", EVENT_TIMEOUT);
    assert_eq!(got["type"], "answer");
    assert_eq!(got["from"], "bob");
    assert_eq!(got["sdp"]["sdp"], "v=0 a2");
    // The restart's candidates still go by call:ice-candidate.
    let c = json!({"candidate": "candidate:9 1 udp 1 127.0.0.1 5009 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    assert_eq!(d.emit("alice", "call:ice-candidate", json!({"callId": id, "candidate": c}))["ok"], true);
    assert_eq!(d.expect("bob", "call:ice-candidate", EVENT_TIMEOUT)["candidate"], c);

    // bob's other device is not in the call; a third user is not a party.
    let ack = d.emit("bob2", "call:renegotiate", json!({"callId": id, "type": "offer", "sdp": "v=0"}));
    assert_eq!(ack, json!({"ok": false, "error": "forbidden", "callId": id}));
    d.connect_ok("eve", &s.url(), &s.token("eve", 600));
    let ack = d.emit("eve", "call:renegotiate", json!({"callId": id, "type": "offer", "sdp": "v=0"}));
    assert_eq!(ack, json!({"ok": false, "error": "forbidden", "callId": id}));
    // A malformed one is a bad request.
    let ack = d.emit("alice", "call:renegotiate", json!({"callId": id, "type": "rollback", "sdp": "v=0"}));
    assert_eq!(ack["error"], "bad_request", "{ack}");
    d.expect_none("alice", "call:renegotiate", QUIET);
    d.expect_none("bob", "call:renegotiate", Duration::from_millis(100));

    // After the hang-up it is refused.
    assert_eq!(d.emit("bob", "call:end", json!({"callId": id}))["state"], "ended");
    let ack = d.emit("alice", "call:renegotiate", json!({"callId": id, "type": "offer", "sdp": "v=0"}));
    assert_eq!(ack, json!({"ok": false, "error": "invalid_state", "callId": id}));
}
