//! The signaling service's ICE diagnostics page (`GET /diag`) in a real browser: the built
//! `turn-server` (UDP and TCP, loopback peers allowed) and the built `signaling` with a
//! `[[relays]]` entry for it (STUN + TURN/UDP + TURN/TCP URLs). Headless Chromium (driven by
//! tests/clients/browser/diag.js, playwright-core, same flags as browser_call.rs) opens
//! `/diag#token=<jwt>`; the page fetches `/v1/ice-servers` with that token and gathers
//! candidates against every URL in its own `RTCPeerConnection`. The table must show relay
//! candidates on 127.0.0.1 in the relay's port range for the TURN URLs, none for the STUN URL;
//! a screenshot is saved (and kept as `target/e2e-logs/diag_page.png`). Against an instance
//! whose REST secret is not the relay's, the TURN rows show no relay candidate and name the 401
//! (kept as `diag_page_wrong_secret.png`). Instances with `--no-diag` or `diag_enabled = false`
//! answer 404.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use e2e::browser::{is_png, open_diag_page as open_page};
use e2e::clients_dir;
use e2e::signaling::{require, SignalingBuilder};
use e2e::ServerBuilder;
use serde_json::{json, Value};

#[test]
fn diag_page_gathers_relay_candidates_and_can_be_disabled() {
    let started = Instant::now();
    let chromium = require("chromium", "apt-get install -y chromium");
    let node = require("node", "apt-get install -y nodejs npm");
    assert!(
        clients_dir().join("node_modules").join("playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
    );

    let relay = ServerBuilder::new("diag_relay").start();
    let port = relay.addr().port();
    let (lo, hi) = (relay.ports().relay_min(), relay.ports().relay_max());
    let config = format!(
        "[[relays]]\nhost = \"127.0.0.1\"\nudp_port = {port}\ntcp_port = {port}\ntransports = [\"udp\", \"tcp\"]\n\
         stun = true\n"
    );
    let signaling = SignalingBuilder::new("diag_signaling").turn_secret(relay.secret()).config(&config).start();

    // Plain HTTP first: the page and its assets, with the headers the page relies on.
    let page = signaling.get("/diag", None, &[]);
    assert_eq!(page.status, 200, "GET /diag: {}", signaling.stderr_tail());
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").unwrap_or_default().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "CSP: {csp}");
    assert_eq!(signaling.get("/diag.js", None, &[]).status, 200);
    assert_eq!(signaling.get("/diag.css", None, &[]).status, 200);
    // The data behind it still needs a token.
    assert_eq!(signaling.get("/v1/ice-servers", None, &[]).status, 401);

    let (result, logs, run_ctx) = open_page(&signaling, "diag_page", &chromium, &node);
    let took = started.elapsed();
    let ctx = || format!("after {took:.1?}\n{run_ctx}\n--- signaling stderr:\n{}", signaling.stderr_tail());
    let screenshot = logs.path().join("diag.png");
    assert_eq!(result["ok"], true, "diag page run failed: {}\n{}", result["error"], ctx());
    assert_eq!(result["bodyState"], "done", "{}", ctx());
    assert_eq!(result["httpStatus"], 200, "{}", ctx());
    assert_eq!(result["cspViolations"], json!([]), "{}", ctx());
    assert_eq!(result["tokenInUrlQuery"], false, "{}", ctx());

    // The screenshot: a real PNG of a real page, kept beside the logs for people to look at.
    let (w, h, size) = is_png(&screenshot).unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
    assert!(w >= 800 && h >= 300 && size > 10_000, "screenshot {w}x{h}, {size} bytes\n{}", ctx());
    let kept = logs.path().parent().unwrap().join("diag_page.png");
    std::fs::copy(&screenshot, &kept).expect("keep the screenshot");

    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    let row = |url: &str| {
        rows.iter().find(|r| r["server"] == url).cloned().unwrap_or_else(|| panic!("no row for {url}\n{}", ctx()))
    };
    let stun_url = format!("stun:127.0.0.1:{port}");
    let turn_urls = [format!("turn:127.0.0.1:{port}?transport=udp"), format!("turn:127.0.0.1:{port}?transport=tcp")];
    assert_eq!(rows.len(), 3, "one row per URL\n{}", ctx());

    let stun = row(&stun_url);
    assert_eq!(stun["kind"], "stun", "{}", ctx());
    assert_eq!(stun["state"], "complete", "{}", ctx());
    assert_eq!(stun["relay"], 0, "the STUN row has no relay candidate\n{}", ctx());

    for url in &turn_urls {
        let turn = row(url);
        assert_eq!(turn["kind"], "turn", "{}", ctx());
        assert_eq!(turn["state"], "complete", "{url}\n{}", ctx());
        assert_eq!(turn["ok"], "true", "{url}\n{}", ctx());
        let n = turn["relay"].as_u64().unwrap_or(0);
        assert!(n >= 1, "{url}: no relay candidate\n{}", ctx());
        let addrs: Vec<&str> = turn["relayAddresses"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(addrs.len() as u64, n, "{}", ctx());
        // "127.0.0.1:PORT/udp": the relay address, in the relay's range. Chromium relays UDP
        // even over TURN/TCP (RFC 6062 TCP allocations are not used by browsers).
        let on_relay = addrs.iter().filter(|a| {
            let Some((ip, rest)) = a.split_once(':') else { return false };
            let p: u16 = rest.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            ip == "127.0.0.1" && (lo..=hi).contains(&p)
        });
        assert!(on_relay.count() >= 1, "{url}: no relay candidate on 127.0.0.1:{lo}-{hi}: {addrs:?}\n{}", ctx());
    }
    eprintln!(
        "diag page: Chromium {}, {} in {took:.1?}; rows: {}; screenshot {w}x{h} ({size} bytes) kept at {}",
        result["browserVersion"],
        result["status"],
        rows.iter()
            .map(|r| format!(
                "{} host={} srflx={} relay={} {:?}",
                r["server"], r["host"], r["srflx"], r["relay"], r["relayAddresses"]
            ))
            .collect::<Vec<_>>()
            .join("; "),
        kept.display()
    );

    // An instance whose REST secret is not the relay's: the TURN rows get no relay candidate and
    // say why; the STUN row (no credential) is unaffected.
    let wrong = SignalingBuilder::new("diag_signaling_wrong_secret")
        .turn_secret("not-the-relays-secret")
        .config(&config)
        .start();
    let (bad, bad_logs, bad_ctx) = open_page(&wrong, "diag_page_wrong_secret", &chromium, &node);
    let bad_ctx = || format!("{bad_ctx}\n--- signaling stderr:\n{}", wrong.stderr_tail());
    assert_eq!(bad["ok"], true, "diag page run failed: {}\n{}", bad["error"], bad_ctx());
    assert_eq!(bad["bodyState"], "done", "{}", bad_ctx());
    let bad_png = bad_logs.path().join("diag.png");
    is_png(&bad_png).unwrap_or_else(|e| panic!("{e}\n{}", bad_ctx()));
    std::fs::copy(&bad_png, kept.with_file_name("diag_page_wrong_secret.png")).expect("keep the screenshot");
    let bad_rows = bad["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(bad_rows.len(), 3, "{}", bad_ctx());
    for r in &bad_rows {
        let is_turn = r["kind"] == "turn";
        assert_eq!(r["relay"], 0, "{}", bad_ctx());
        if is_turn {
            assert_eq!(r["ok"], "false", "{}", bad_ctx());
            let hint = r["hint"].as_str().unwrap_or_default();
            // Chromium reports the relay's 401 as an icecandidateerror, which the hint names.
            assert!(hint.starts_with("no relay candidate: credential rejected (401)"), "{hint}\n{}", bad_ctx());
        }
    }
    eprintln!(
        "wrong secret: {}; hints: {}",
        bad["status"],
        bad_rows.iter().map(|r| format!("{} -> {}", r["server"], r["hint"])).collect::<Vec<_>>().join("; ")
    );

    // A second instance with the page turned off.
    let off = SignalingBuilder::new("diag_signaling_off")
        .turn_secret(relay.secret())
        .config(&config)
        .args(["--no-diag"])
        .start();
    for path in ["/diag", "/diag.js", "/diag.css"] {
        assert_eq!(off.get(path, None, &[]).status, 404, "{path} with --no-diag");
    }
    let ok = off.get("/v1/ice-servers", Some(&off.token("diag-operator", 60)), &[]);
    assert_eq!(ok.status, 200, "the API still works with --no-diag");
    // And through the config key too.
    let off_cfg = SignalingBuilder::new("diag_signaling_off_cfg")
        .turn_secret(relay.secret())
        .config(&format!("[signaling]\ndiag_enabled = false\n\n{config}"))
        .start();
    assert_eq!(off_cfg.get("/diag", None, &[]).status, 404, "/diag with diag_enabled = false");
}
