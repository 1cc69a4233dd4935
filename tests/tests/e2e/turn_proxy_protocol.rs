//! The PROXY protocol behind a real nginx (`deploy/nginx/turn-tls-443.conf`, whose
//! `proxy_protocol on;` writes a v1 header before the TLS bytes): the relay must see each client's
//! own address, not nginx's. Clients connect from 127.0.0.2 and 127.0.0.3 so that they differ from
//! nginx's 127.0.0.1:
//!
//! - XOR-MAPPED-ADDRESS answers the client's address and port;
//! - the per-source connection cap (`--max-connections-per-ip 2`) counts each client, so a third
//!   connection from 127.0.0.2 is refused while 127.0.0.3 still gets in (counting nginx as the
//!   source would refuse both), and so does the allocation cap (`--max-allocations-per-ip 1`);
//! - the session log's "allocation created" line names the client;
//! - a TLS connection straight to the relay without a header is refused;
//! - a header from an address outside `--proxy-protocol-from` is refused, even a valid one.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use e2e::peers;
use e2e::process;
use e2e::{require_program, tail, Server, ServerBuilder};
use serde_json::{json, Value};

use crate::turn_nginx::{fail_with, templated_stream_conf, Nginx};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `tls_binding.py` against `target`; one JSON object per source, in order. `allocate`: each
/// connection also allocates, with a credential of `server`'s.
fn tls_bindings(
    server: &Server,
    target: SocketAddr,
    cafile: &Path,
    sources: &[&str],
    header: Option<&str>,
    allocate: bool,
) -> Vec<Value> {
    let python = require_program("python3", "python3");
    let mut args = vec![
        e2e::clients_dir().join("tls_binding.py").display().to_string(),
        "--server".into(),
        target.to_string(),
        "--server-hostname".into(),
        "turn.test".into(),
        "--cafile".into(),
        cafile.display().to_string(),
    ];
    for s in sources {
        args.extend(["--source".to_owned(), (*s).to_owned()]);
    }
    if let Some(h) = header {
        args.extend(["--proxy-header".to_owned(), h.to_owned()]);
    }
    if allocate {
        let (user, pass) = server.credential("behind-nginx");
        args.extend(["--allocate".to_owned(), format!("{user}:{pass}")]);
    }
    let run = process::run("tls_binding", &python, &args, server.log_dir(), Duration::from_secs(60));
    let line = run.stdout.lines().rfind(|l| l.starts_with('[')).unwrap_or_default().to_owned();
    let results: Vec<Value> = serde_json::from_str(&line).unwrap_or_default();
    server.check(run.success() && results.len() == sources.len(), || {
        format!("tls_binding.py {sources:?}: {}\n{line}\n{}", run.describe_status(), tail(&run.stderr, 15))
    });
    results
}

#[test]
fn behind_nginx_the_relay_sees_each_clients_own_address() {
    let files = e2e::LogDir::new("proxy_protocol-files");
    let (cert, key) = peers::named_cert(files.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
    let server = ServerBuilder::new("proxy_protocol")
        .tls(cert.clone(), key)
        .arg("--proxy-protocol")
        .arg("tls")
        .arg("--proxy-protocol-from")
        .arg("127.0.0.1")
        .arg("--max-connections-per-ip")
        .arg("2")
        .arg("--max-allocations-per-ip")
        .arg("1")
        .start();
    let nginx_addr = SocketAddr::new(LOCALHOST, server.ports().peer_port(0));
    // The web upstream is never reached here: every client sends SNI turn.test.
    let (web, strip) = (server.ports().peer_port(1), server.ports().peer_port(2));
    let nginx = Nginx::start(
        server.log_dir(),
        &templated_stream_conf(server.tls_addr().port(), web, strip, nginx_addr.port()),
        nginx_addr,
    );

    let results =
        tls_bindings(&server, nginx_addr, &cert, &["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"], None, true);
    let summary = serde_json::to_string_pretty(&results).unwrap_or_default();
    eprintln!("through nginx: {summary}");
    for i in [0, 1, 3] {
        // The relay answers the address nginx accepted the client from: the client's own.
        if results[i]["mapped"] != results[i]["source"] {
            fail_with(&server, &nginx, &format!("connection {i}: XOR-MAPPED-ADDRESS is not the client's:\n{summary}"));
        }
    }
    if results[2].get("mapped").is_some() {
        fail_with(&server, &nginx, &format!("a third connection from 127.0.0.2 got past a cap of 2:\n{summary}"));
    }
    // --max-allocations-per-ip 1: the second allocation from 127.0.0.2 is refused (486), the one
    // from 127.0.0.3 is not (with nginx as everybody's source it would be).
    let allocations: Vec<&Value> = [0, 1, 3].iter().map(|&i| &results[i]["allocate"]).collect();
    if allocations != [&json!("ok"), &json!(486), &json!("ok")] {
        fail_with(
            &server,
            &nginx,
            &format!("allocations per source {allocations:?}, expected ok, 486, ok:\n{summary}"),
        );
    }
    // The session log names the client, not nginx.
    let third = results[3]["source"].as_str().unwrap_or_default();
    server.wait_log(&format!("client={third}"), Duration::from_secs(5));

    // Straight to the relay, from a trusted address but without a header: refused.
    let direct = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.1"], None, false);
    server.check(direct[0].get("error").is_some(), || format!("TLS without a PROXY header was served: {direct:?}"));

    // A valid header from 127.0.0.2, which --proxy-protocol-from does not trust: refused.
    let claim = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {}", server.tls_addr().port());
    let spoofed = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.2"], Some(&claim), false);
    server.check(spoofed[0].get("error").is_some(), || {
        format!("a header from an untrusted source was believed: {spoofed:?}")
    });

    // The same header from the trusted address is believed: the check above refused the source,
    // not the header.
    let trusted = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.1"], Some(&claim), false);
    server.check(trusted[0]["mapped"] == "203.0.113.7:40000", || {
        format!("a trusted header was not believed: {trusted:?}")
    });
}
