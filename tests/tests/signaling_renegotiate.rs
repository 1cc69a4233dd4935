//! `call:renegotiate` (the ICE restart of an accepted call) driven by socket.io-client against the
//! built `signaling` binary: an offer from the caller reaches the answering device only and its
//! answer comes back, the callee's other device and a stranger are refused, and outside an
//! accepted call it is refused as invalid_state. The driver checks every payload against
//! signaling/contract/, so this also keeps the event's contract true.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::signaling::{call_id, Driver, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(600);

#[test]
fn renegotiate_goes_between_the_two_devices_of_an_accepted_call() {
    let s = SignalingBuilder::new("sig_renegotiate").start();
    let mut d = Driver::node(s.log_dir());
    d.connect_ok("alice", &s.url(), &s.token("alice", 600));
    d.connect_ok("bob", &s.url(), &s.token("bob", 600));
    d.connect_ok("bob-tablet", &s.url(), &s.token("bob", 600));
    d.connect_ok("eve", &s.url(), &s.token("eve", 600));
    let id = call_id();
    let offer = json!({"type": "offer", "sdp": "v=0 first"});
    let ack = d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": offer}));
    assert_eq!(ack["state"], "ringing", "{ack}");
    d.expect("bob", "call:offer", EVENT_TIMEOUT);
    // Ringing: nothing to renegotiate yet.
    let restart = json!({"callId": id, "type": "offer", "sdp": {"type": "offer", "sdp": "v=0 restart"}});
    assert_eq!(d.emit("alice", "call:renegotiate", restart.clone())["error"], "invalid_state");
    assert_eq!(
        d.emit("bob", "call:answer", json!({"callId": id, "sdp": {"type": "answer", "sdp": "v=0"}}))["ok"],
        true
    );
    d.expect("alice", "call:answer", EVENT_TIMEOUT);

    let ack = d.emit("alice", "call:renegotiate", restart);
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "accepted"}));
    let got = d.expect("bob", "call:renegotiate", EVENT_TIMEOUT);
    assert_eq!(
        got,
        json!({"callId": id, "type": "offer", "sdp": {"type": "offer", "sdp": "v=0 restart"}, "from": "alice"})
    );
    d.expect_none("bob-tablet", "call:renegotiate", QUIET);
    let answer = json!({"callId": id, "type": "answer", "sdp": {"type": "answer", "sdp": "v=0 restarted"}});
    assert_eq!(d.emit("bob", "call:renegotiate", answer)["state"], "accepted");
    assert_eq!(d.expect("alice", "call:renegotiate", EVENT_TIMEOUT)["type"], "answer");

    // Only the two devices in the call: not the callee's other one, not another user.
    let other = json!({"callId": id, "type": "offer", "sdp": "v=0 other"});
    assert_eq!(d.emit("bob-tablet", "call:renegotiate", other.clone())["error"], "forbidden");
    assert_eq!(d.emit("eve", "call:renegotiate", other)["error"], "forbidden");
    // A bad type is refused before anything else (the driver checks the contract agrees).
    let bad = json!({"callId": id, "type": "pranswer", "sdp": "v=0"});
    assert_eq!(d.emit("alice", "call:renegotiate", bad)["error"], "bad_request");
    d.expect_none("alice", "call:renegotiate", QUIET);

    assert_eq!(d.emit("bob", "call:end", json!({"callId": id}))["state"], "ended");
    d.expect("alice", "call:end", EVENT_TIMEOUT);
    let late = json!({"callId": id, "type": "offer", "sdp": "v=0 late"});
    assert_eq!(d.emit("alice", "call:renegotiate", late)["error"], "invalid_state");
}
