//! deploy/nginx/signaling.conf in front of the built `signaling` binary, in a real nginx (run in
//! the foreground with a generated config in a temp dir; /etc/nginx is not touched): a Socket.IO
//! call through `/calls/socket.io/` (WebSocket and long-polling) and the ICE config through `/v1/`.
#![allow(clippy::unwrap_used)]

use e2e::repo_root;
use e2e::signaling::{call_id, free_port, http, Driver, Nginx, SignalingBuilder, EVENT_TIMEOUT};
use serde_json::json;

#[test]
fn call_through_nginx() {
    let s = SignalingBuilder::new("sig_nginx").args(["--trust-proxy-headers"]).start();
    let site = std::fs::read_to_string(repo_root().join("deploy/nginx/signaling.conf")).unwrap();
    let port = free_port();
    // The shipped file, with only the listen port and the upstream address replaced.
    let adapted = site
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("server 127.0.0.1:8080;", &format!("server {};", s.addr));
    assert_ne!(adapted, site);
    assert!(adapted.contains(&format!("server {};", s.addr)) && adapted.contains(&format!("listen 127.0.0.1:{port};")));
    let nginx = Nginx::start(s.log_dir(), &adapted, port);
    let base = format!("http://127.0.0.1:{}", nginx.port);

    // REST through /v1/.
    let token = s.token("alice", 600);
    let auth = format!("Bearer {token}");
    let r = http(([127, 0, 0, 1], nginx.port).into(), "GET", "/v1/ice-servers", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}\nnginx error log:\n{}", r.body, nginx.error_log());
    assert!(r.json()["iceServers"].is_array());
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // A call through /calls/socket.io/: alice on WebSocket, bob on long-polling.
    let mut d = Driver::node(s.log_dir());
    let path = json!({"path": "/calls/socket.io"});
    d.connect("alice", &base, Some(&token), path.clone()).unwrap();
    let mut polling = path.clone();
    polling["transports"] = json!(["polling"]);
    d.connect("bob", &base, Some(&s.token("bob", 600)), polling).unwrap();
    let id = call_id();
    assert_eq!(
        d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}))["state"],
        "ringing"
    );
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["sdp"], "o");
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a");
    d.emit("alice", "call:ice-candidate", json!({"callId": id, "candidate": {"candidate": "x"}}));
    d.expect("bob", "call:ice-candidate", EVENT_TIMEOUT);
    assert_eq!(d.emit("bob", "call:end", json!({"callId": id}))["state"], "ended");
    d.expect("alice", "call:end", EVENT_TIMEOUT);
    // alice used WebSocket only: nginx logs the upgraded request (101) once it closes.
    d.disconnect("alice");
    d.expect_disconnect("alice", EVENT_TIMEOUT);
    let log = s.log_dir().join("nginx/logs/access.log");
    let upgraded = |access: &str| {
        access.lines().any(|l| l.contains("/calls/socket.io/?EIO=4&transport=websocket") && l.contains(" 101 "))
    };
    let mut access = String::new();
    for _ in 0..50 {
        access = std::fs::read_to_string(&log).unwrap_or_default();
        if upgraded(&access) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(upgraded(&access), "no WebSocket upgrade in the access log:\n{access}");
}
