//! A second independent client: python-socketio (PyPI) as the callee of a socket.io-client (npm)
//! caller, through a full call, and as a reconnecting caller using `call:sync`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::signaling::{call_id, Driver, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::json;

#[test]
fn python_callee_answers_a_node_caller() {
    let s = SignalingBuilder::new("sig_python").start();
    let mut node = Driver::node(s.log_dir());
    let mut py = Driver::python(s.log_dir());
    node.connect_ok("alice", &s.url(), &s.token("alice", 600));
    py.connect_ok("bob", &s.url(), &s.token("bob", 600));
    let id = call_id();
    let ack = node.emit(
        "alice",
        "call:initiate",
        json!({"callId": id, "calleeId": "bob", "chatId": "c1", "callType": "video"}),
    );
    assert_eq!(ack["state"], "ringing");
    node.emit("alice", "call:offer", json!({"callId": id, "sdp": {"type": "offer", "sdp": "v=0"}}));
    let offer = py.expect("bob", "call:offer", EVENT_TIMEOUT);
    assert_eq!(offer["callId"], id.as_str());
    assert_eq!(offer["callerId"], "alice");
    let ack = py.emit("bob", "call:answer", json!({"callId": id, "sdp": {"type": "answer", "sdp": "v=0"}}));
    assert_eq!(ack, json!({"ok": true, "callId": id, "state": "accepted"}));
    assert_eq!(node.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"]["type"], "answer");
    py.emit("bob", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "py"}}));
    assert_eq!(node.expect("alice", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "py");
    node.emit("alice", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "js"}}));
    assert_eq!(py.expect("bob", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "js");
    assert_eq!(py.emit("bob", "call:end", json!({"callId": id}))["state"], "ended");
    assert_eq!(node.expect("alice", "call:end", EVENT_TIMEOUT)["reason"], "hangup");
    // Errors reach python-socketio as acks too.
    let ack = py.emit("bob", "call:answer", json!({"callId": id}));
    assert_eq!(ack["error"], "bad_request");
}

#[test]
fn python_caller_reconnects_and_syncs() {
    let s = SignalingBuilder::new("sig_python_sync").args(["--reconnect-grace", "5"]).start();
    let mut node = Driver::node(s.log_dir());
    let mut py = Driver::python(s.log_dir());
    py.connect_ok("alice", &s.url(), &s.token("alice", 600));
    node.connect_ok("bob", &s.url(), &s.token("bob", 600));
    let id = call_id();
    py.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    node.expect("bob", "call:offer", EVENT_TIMEOUT);
    node.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}));
    py.expect("alice", "call:answer", EVENT_TIMEOUT);
    py.disconnect("alice");
    py.expect_disconnect("alice", EVENT_TIMEOUT);
    py.connect_ok("alice-again", &s.url(), &s.token("alice", 600));
    let ack = py.emit("alice-again", "call:sync", json!({"callIds": [id]}));
    assert_eq!(ack["calls"][0]["state"], "accepted", "{ack}");
    assert_eq!(ack["calls"][0]["thisDevice"], true);
    node.emit("bob", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "late"}}));
    assert_eq!(py.expect("alice-again", "call:ice-candidate", EVENT_TIMEOUT)["candidate"]["candidate"], "late");
    node.expect_none("bob", "call:end", Duration::from_millis(500));
}
