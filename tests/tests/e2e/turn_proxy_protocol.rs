//! The PROXY protocol behind a real nginx (`deploy/nginx/turn-tls-443.conf`, whose
//! `proxy_protocol on;` writes a v1 header before the TLS bytes): the relay must see each client's
//! own address, not nginx's. Clients connect from 127.0.0.2 and 127.0.0.3 so that they differ from
//! nginx's 127.0.0.1:
//!
//! - XOR-MAPPED-ADDRESS answers the client's address and port;
//! - the per-source connection cap (`--max-connections-per-ip 2`) counts each client, so a third
//!   connection from 127.0.0.2 is refused while 127.0.0.3 still gets in (counting nginx as the
//!   source would refuse both);
//! - a TLS connection straight to the relay without a header is refused;
//! - a header from an address outside `--proxy-protocol-from` is refused, even a valid one.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use e2e::peers;
use e2e::process;
use e2e::{require_program, tail, Server, ServerBuilder};
use serde_json::Value;

use crate::turn_nginx::{fail_with, templated_stream_conf, Nginx};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `tls_binding.py` against `target`; one JSON object per source, in order.
fn tls_bindings(
    server: &Server,
    target: SocketAddr,
    cafile: &Path,
    sources: &[&str],
    header: Option<&str>,
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
        .start();
    let nginx_addr = SocketAddr::new(LOCALHOST, server.ports().peer_port(0));
    // The web upstream is never reached here: every client sends SNI turn.test.
    let (web, strip) = (server.ports().peer_port(1), server.ports().peer_port(2));
    let nginx = Nginx::start(
        server.log_dir(),
        &templated_stream_conf(server.tls_addr().port(), web, strip, nginx_addr.port()),
        nginx_addr,
    );

    let results = tls_bindings(&server, nginx_addr, &cert, &["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"], None);
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

    // Straight to the relay, from a trusted address but without a header: refused.
    let direct = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.1"], None);
    server.check(direct[0].get("error").is_some(), || format!("TLS without a PROXY header was served: {direct:?}"));

    // A valid header from 127.0.0.2, which --proxy-protocol-from does not trust: refused.
    let claim = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 {}", server.tls_addr().port());
    let spoofed = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.2"], Some(&claim));
    server.check(spoofed[0].get("error").is_some(), || {
        format!("a header from an untrusted source was believed: {spoofed:?}")
    });

    // The same header from the trusted address is believed: the check above refused the source,
    // not the header.
    let trusted = tls_bindings(&server, server.tls_addr(), &cert, &["127.0.0.1"], Some(&claim));
    server.check(trusted[0]["mapped"] == "203.0.113.7:40000", || {
        format!("a trusted header was not believed: {trusted:?}")
    });
}
