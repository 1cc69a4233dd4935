//! `GET /v1/ice-servers` of the built `signaling` binary: the credential it returns opens an
//! allocation on the real `turn-server` (and stops working once expired), several relays are
//! listed, JWT and API-key auth and their failures, CORS, Cache-Control, rate limits, health.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::client::TurnClient;
use e2e::process;
use e2e::repo_root;
use e2e::signaling::{hs256_token, require, Signaling, SignalingBuilder};
use e2e::{unix_now, ServerBuilder};
use serde_json::{json, Value};

fn ice(s: &Signaling, token: &str) -> Value {
    let r = s.get("/v1/ice-servers", Some(token), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    e2e::contract::check("iceServers", &r.json());
    r.json()
}

fn turn_entry(body: &Value) -> (String, String, Vec<String>) {
    let turn =
        body["iceServers"].as_array().unwrap().iter().find(|s| s.get("username").is_some()).expect("a TURN entry");
    let urls = turn["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
    (turn["username"].as_str().unwrap().to_owned(), turn["credential"].as_str().unwrap().to_owned(), urls)
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_allocates_on_the_real_relay_and_expires() {
    let relay = ServerBuilder::new("sig_rest_relay").start();
    let port = relay.addr().port();
    let urls = [
        format!("stun:127.0.0.1:{port}"),
        format!("turn:127.0.0.1:{port}?transport=udp"),
        format!("turn:127.0.0.1:{port}?transport=tcp"),
    ];
    let mut args = Vec::new();
    for u in &urls {
        args.extend(["--turn-url".to_owned(), u.clone()]);
    }
    let s = SignalingBuilder::new("sig_rest").turn_secret(relay.secret()).args(args.clone()).start();
    let token = s.token("alice", 600);
    let body = ice(&s, &token);
    assert_eq!(body["iceServers"][0], json!({"urls": [urls[0]]}));
    let (username, password, turn_urls) = turn_entry(&body);
    assert_eq!(turn_urls, vec![urls[1].clone(), urls[2].clone()]);
    assert!(username.ends_with(":alice"), "{username}");
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    let now = unix_now();
    assert!(expiry >= now + 86_400 - 5, "expiry {expiry} vs now {now}");
    assert_eq!(body["ttl"].as_u64().unwrap(), expiry - body["serverTime"].as_u64().unwrap() / 1000);
    assert_eq!(body["call"]["ringTimeoutSecs"], 45);
    assert_eq!(body["call"]["heartbeatIntervalSecs"], 25);
    assert_eq!(body["call"]["heartbeatTimeoutSecs"], 20);
    let expires_at = humantime_parse(body["expiresAt"].as_str().unwrap());
    assert_eq!(expires_at, expiry);
    // Same bucket, same credential.
    assert_eq!(turn_entry(&ice(&s, &token)).1, password);

    let client = TurnClient::connect(relay.addr(), &username, &password).await;
    let allocation = client.allocate().await;
    assert!(
        allocation.is_ok(),
        "Allocate with the issued credential failed: {:?}\n{}",
        allocation.err(),
        relay.stderr_tail()
    );
    client.close().await;

    // A credential with a 2 s lifetime (no bucket rounding) stops working once expired.
    let short = SignalingBuilder::new("sig_rest_short")
        .turn_secret(relay.secret())
        .args(args)
        .args(["--credential-ttl", "4", "--credential-bucket", "0"])
        .start();
    let (username, password, _) = turn_entry(&ice(&short, &short.token("bob", 600)));
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    let wait = expiry.saturating_sub(unix_now()) + 1;
    assert!(wait <= 6, "credential lifetime {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let client = TurnClient::connect(relay.addr(), &username, &password).await;
    let refused = client.allocate().await;
    assert!(refused.is_err(), "an expired credential was accepted");
    client.close().await;
}

/// `2026-11-25T08:00:00Z` -> unix seconds (no library: days from civil).
fn humantime_parse(s: &str) -> u64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) as u64
}

#[test]
fn several_relays_are_listed() {
    let s = SignalingBuilder::new("sig_rest_relays")
        .args([
            "--turn-url",
            "turn:relay-a.example:3478?transport=udp",
            "--turn-url",
            "turns:relay-a.example:443?transport=tcp",
            "--turn-url",
            "stun:relay-b.example:3478",
            "--turn-url",
            "turn:relay-b.example:3478?transport=tcp",
        ])
        .start();
    let body = ice(&s, &s.token("u1", 60));
    let all: Vec<Vec<String>> = body["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect())
        .collect();
    assert_eq!(
        all,
        vec![
            vec![
                "turn:relay-a.example:3478?transport=udp".to_owned(),
                "turns:relay-a.example:443?transport=tcp".to_owned()
            ],
            vec!["stun:relay-b.example:3478".to_owned()],
            vec!["turn:relay-b.example:3478?transport=tcp".to_owned()],
        ]
    );
}

fn expect_401(s: &Signaling, token: Option<&str>, needle: &str) {
    let r = s.get("/v1/ice-servers", token, &[]);
    assert_eq!(r.status, 401, "token {token:?}: {}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    e2e::contract::check("httpError", &body);
    assert_eq!(body["error"], "unauthorized");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(needle), "expected {needle:?} in {message:?}");
}

#[test]
fn jwt_failures_are_401_with_a_json_reason() {
    let s = SignalingBuilder::new("sig_rest_jwt")
        .args(["--jwt-issuer", "https://m.example", "--jwt-audience", "calls"])
        .start();
    let now = unix_now();
    let good = json!({"sub": "alice", "iss": "https://m.example", "aud": "calls", "exp": now + 60});
    let sign = |claims: &Value| hs256_token(&s.jwt_secret, claims);
    assert_eq!(ice(&s, &sign(&good))["iceServers"].as_array().unwrap().len(), 1);
    expect_401(&s, None, "missing");
    expect_401(&s, Some("garbage"), "malformed");
    expect_401(&s, Some(&hs256_token("some-other-secret-123", &good)), "signature");
    let mut c = good.clone();
    c["exp"] = json!(now - 10);
    expect_401(&s, Some(&sign(&c)), "expired");
    let mut c = good.clone();
    c["nbf"] = json!(now + 120);
    expect_401(&s, Some(&sign(&c)), "not yet valid");
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    expect_401(&s, Some(&sign(&c)), "issuer");
    let mut c = good.clone();
    c["aud"] = json!("other");
    expect_401(&s, Some(&sign(&c)), "audience");
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("sub");
    expect_401(&s, Some(&sign(&c)), "user id");
    // alg=none: unsigned.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", base64_url(good.to_string().as_bytes()));
    expect_401(&s, Some(&none), "");
    // Basic auth is not a bearer token.
    let r = s.get("/v1/ice-servers", None, &[("Authorization", "Basic YTpi")]);
    assert_eq!(r.status, 401);
}

fn base64_url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[test]
fn rs256_tokens_signed_by_openssl() {
    let openssl = require("openssl", "apt-get install -y openssl");
    let keys = repo_root().join("signaling").join("testdata");
    let s = SignalingBuilder::new("sig_rest_rs256")
        .args(["--jwt-public-key", keys.join("rsa-public.pem").to_str().unwrap()])
        .start();
    let claims = json!({"sub": "rsa-user", "exp": unix_now() + 60});
    let input =
        format!("{}.{}", base64_url(br#"{"alg":"RS256","typ":"JWT"}"#), base64_url(claims.to_string().as_bytes()));
    let dir = s.log_dir().to_path_buf();
    std::fs::write(dir.join("input"), &input).unwrap();
    let run = process::run(
        "openssl",
        &openssl,
        &[
            "dgst",
            "-sha256",
            "-sign",
            keys.join("rsa-private.pem").to_str().unwrap(),
            "-out",
            dir.join("sig").to_str().unwrap(),
            dir.join("input").to_str().unwrap(),
        ]
        .map(str::to_owned),
        &dir,
        Duration::from_secs(10),
    );
    assert!(run.success(), "openssl: {}", run.stderr);
    let token = format!("{input}.{}", base64_url(&std::fs::read(dir.join("sig")).unwrap()));
    let (username, _, _) = turn_entry(&ice(&s, &token));
    assert!(username.ends_with(":rsa-user"));
    // The same token signed with another key (the EC test key) does not verify.
    let run = process::run(
        "openssl-ec",
        &openssl,
        &[
            "dgst",
            "-sha256",
            "-sign",
            keys.join("ec-private.pem").to_str().unwrap(),
            "-out",
            dir.join("sig2").to_str().unwrap(),
            dir.join("input").to_str().unwrap(),
        ]
        .map(str::to_owned),
        &dir,
        Duration::from_secs(10),
    );
    assert!(run.success(), "openssl: {}", run.stderr);
    let forged = format!("{input}.{}", base64_url(&std::fs::read(dir.join("sig2")).unwrap()));
    expect_401(&s, Some(&forged), "signature");
}

#[test]
fn api_key_names_the_user_in_the_query() {
    let key = "server-to-server-key-0123456789";
    let s = SignalingBuilder::new("sig_rest_api_key").args(["--api-key", key]).start();
    let r = s.get("/v1/ice-servers?user=bob", Some(key), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(turn_entry(&r.json()).0.ends_with(":bob"));
    let r = s.get("/v1/ice-servers", Some(key), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("user"));
    expect_401(&s, Some("server-to-server-key-WRONG"), "");
}

#[test]
fn cors_for_configured_origins_only() {
    let s = SignalingBuilder::new("sig_rest_cors").args(["--cors-origin", "https://app.example"]).start();
    let preflight = |origin: &str| {
        e2e::signaling::http(
            s.addr,
            "OPTIONS",
            "/v1/ice-servers",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
        )
    };
    let ok = preflight("https://app.example");
    assert!(ok.status == 200 || ok.status == 204, "{ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(ok.header("access-control-allow-headers").unwrap_or_default().contains("authorization"));
    let evil = preflight("https://evil.example");
    assert_eq!(evil.header("access-control-allow-origin"), None, "{evil:?}");
    let r = s.get("/v1/ice-servers", Some(&s.token("a", 60)), &[("Origin", "https://app.example")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    // Socket.IO long-polling (socket.io-client's default first transport) from that page too.
    let poll_path = "/socket.io/?EIO=4&transport=polling";
    let poll = e2e::signaling::http(s.addr, "GET", poll_path, &[("Origin", "https://app.example")]);
    assert_eq!(poll.header("access-control-allow-origin"), Some("https://app.example"), "{poll:?}");
    let preflight = e2e::signaling::http(
        s.addr,
        "OPTIONS",
        poll_path,
        &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")],
    );
    assert!(preflight.status == 200 || preflight.status == 204, "{preflight:?}");
}

#[test]
fn rate_limits_per_user_and_per_ip() {
    let s =
        SignalingBuilder::new("sig_rest_rate").args(["--rate-limit-per-user", "3", "--rate-limit-per-ip", "6"]).start();
    let alice = s.token("alice", 60);
    for _ in 0..3 {
        assert_eq!(s.get("/v1/ice-servers", Some(&alice), &[]).status, 200);
    }
    let r = s.get("/v1/ice-servers", Some(&alice), &[]);
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.json()["error"], "rate_limited");
    e2e::contract::check("httpError", &r.json());
    // Another user from the same address: allowed until the per-IP limit (6 requests so far
    // counted 4), then refused.
    let bob = s.token("bob", 60);
    assert_eq!(s.get("/v1/ice-servers", Some(&bob), &[]).status, 200);
    assert_eq!(s.get("/v1/ice-servers", Some(&bob), &[]).status, 200);
    assert_eq!(s.get("/v1/ice-servers", Some(&bob), &[]).status, 429);
}

#[test]
fn health_and_readiness() {
    let s = SignalingBuilder::new("sig_rest_health").start();
    let h = s.get("/healthz", None, &[]);
    assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
    let r = s.get("/readyz", None, &[]);
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));
}
