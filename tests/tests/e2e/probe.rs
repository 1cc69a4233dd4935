//! `turn-server probe` against a running relay: every transport passes with the right secret and
//! a trusted CA, and a wrong secret or a closed port fails with a hint and a non-zero exit code,
//! so the probe can serve in monitoring.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{process, ServerBuilder};

fn run_probe(server: &e2e::Server, args: &[String]) -> process::Finished {
    let program = e2e::server_binary();
    let mut all = vec!["probe".to_owned(), "--timeout".into(), "3s".into()];
    all.extend_from_slice(args);
    process::run("probe", &program, &all, server.log_dir(), Duration::from_secs(60))
}

#[test]
fn probe_checks_every_transport_and_explains_failures() {
    let dir = e2e::LogDir::new("probe-files");
    let (cert, key) = e2e::self_signed_cert(dir.path());
    let server = ServerBuilder::new("probe").tls(cert, key).start();
    let (addr, tls) = (server.addr(), server.tls_addr());
    let urls = [
        format!("stun:{addr}"),
        format!("turn:{addr}?transport=udp"),
        format!("turn:{addr}?transport=tcp"),
        format!("turns:{tls}?transport=tcp"),
    ];
    // The test certificate is self-signed, which webpki will not take as its own anchor: skip
    // verification here, and check below that verification is on by default.
    let mut args = vec!["--secret".to_owned(), server.secret().to_owned(), "--insecure".into()];
    for u in &urls {
        args.extend(["--url".to_owned(), u.clone()]);
    }
    args.push("--json".into());
    let run = run_probe(&server, &args);
    server
        .check(run.success(), || format!("probe failed ({}):\n{}\n{}", run.describe_status(), run.stdout, run.stderr));
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = report.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (row, url) in rows.iter().zip(&urls) {
        assert_eq!(row["url"], url.as_str());
        assert_eq!(row["ok"], true, "{row}");
        assert_eq!(row["mapped"].as_str().unwrap().split(':').next(), Some("127.0.0.1"));
        if !url.starts_with("stun:") {
            let relayed = row["relayed"].as_str().unwrap();
            let port: u16 = relayed.rsplit(':').next().unwrap().parse().unwrap();
            assert!((server.ports().relay_min()..=server.ports().relay_max()).contains(&port), "{relayed}");
        }
    }

    // A wrong secret: exit 1, and the table says what to check.
    let bad = run_probe(&server, &["--secret".into(), "wrong".into(), "--url".into(), urls[2].clone()]);
    assert!(!bad.success(), "a failing probe must exit non-zero");
    assert!(bad.stdout.contains("FAIL") && bad.stdout.contains("secret mismatch or clock skew"), "{}", bad.stdout);

    // Verification is on by default: the system CAs do not vouch for the test certificate.
    let untrusted = run_probe(&server, &["--secret".into(), server.secret().into(), "--url".into(), urls[3].clone()]);
    assert!(!untrusted.success() && untrusted.stdout.contains("TLS failed"), "{}", untrusted.stdout);

    // A port nobody listens on.
    let closed = format!("turn:127.0.0.1:{}?transport=tcp", server.ports().peer_port(7));
    let refused = run_probe(&server, &["--secret".into(), server.secret().into(), "--url".into(), closed]);
    assert!(!refused.success() && refused.stdout.contains("nothing listens"), "{}", refused.stdout);
}

#[test]
fn probe_checks_what_the_signaling_service_hands_out() {
    let relay = ServerBuilder::new("probe_signaling_relay").start();
    let port = relay.addr().port();
    let mut args = Vec::new();
    for u in [
        format!("stun:127.0.0.1:{port}"),
        format!("turn:127.0.0.1:{port}?transport=udp"),
        format!("turn:127.0.0.1:{port}?transport=tcp"),
    ] {
        args.extend(["--turn-url".to_owned(), u]);
    }
    let signaling =
        e2e::signaling::SignalingBuilder::new("probe_signaling").turn_secret(relay.secret()).args(args).start();
    let base = format!("http://{}", signaling.addr);
    let token = signaling.token("alice", 600);
    let run = run_probe(&relay, &["--signaling".into(), base.clone(), "--token".into(), token, "--json".into()]);
    relay.check(run.success(), || format!("probe via signaling failed:\n{}\n{}", run.stdout, run.stderr));
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report.as_array().map(Vec::len), Some(3), "{report}");
    assert!(report.as_array().unwrap().iter().all(|r| r["ok"] == true), "{report}");
    // A bad token: the signaling service's 401 is reported and the probe fails.
    let bad = run_probe(&relay, &["--signaling".into(), base, "--token".into(), "not-a-jwt".into()]);
    assert!(!bad.success() && bad.stderr.contains("401"), "{}", bad.stderr);
}
