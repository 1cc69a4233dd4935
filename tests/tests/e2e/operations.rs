//! Running the relay in production, against the built binary: SIGTERM drains (the live flow keeps
//! relaying, new Allocates get 300 with ALTERNATE-SERVER or 508, the process exits when the last
//! allocation ends or at the drain timeout), the admin interface through `turn-server admin`
//! (list, drop a user, config without secrets, reload, a wrong token refused), and the
//! bandwidth cap (`--max-bps`) dropping what exceeds the rate, counted in the metrics.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::peers::UdpEcho;
use e2e::prometheus::{sample, scrape};
use e2e::turn_wire::{Attr, TurnClient, Wire};
use e2e::{process, PortBlock, Server, ServerBuilder};
use turn_server::proto::stun::{attr, Method};

const CHANNEL: u16 = 0x4000;
const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// A client with an allocation and a channel to `peer`.
fn client_with_channel(server: &Server, user: &str, peer: SocketAddr) -> TurnClient {
    let (username, password) = server.credential(user);
    let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    c.allocate(17).unwrap();
    let bound = c.channel_bind(CHANNEL, peer).unwrap();
    assert!(bound.is_success(), "ChannelBind: {}", bound.describe());
    c
}

/// Sends one datagram over the channel and waits for the echo.
fn round_trip(c: &mut TurnClient, payload: &[u8]) -> bool {
    c.send_channel_data(CHANNEL, payload).unwrap();
    matches!(c.recv_data(Duration::from_secs(2)), Ok(Some((_, data))) if data == payload)
}

/// An Allocate from a fresh client; the raw reply (an error is not a failure here).
fn fresh_allocate(server: &Server, user: &str) -> e2e::turn_wire::Reply {
    let (username, password) = server.credential(user);
    let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    c.request(Method::Allocate, &[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]).unwrap()
}

/// Waits for the process to exit; returns how long it took.
fn wait_exit(server: &mut Server, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if !server.is_running() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sigterm_drains_live_flows_and_redirects_new_allocations() {
    let spare = PortBlock::reserve();
    let alternate: SocketAddr = format!("127.0.0.1:{}", spare.peer_port(0)).parse().unwrap();
    let mut server = ServerBuilder::new("drain")
        .arg("--drain-timeout")
        .arg("30")
        .arg("--alternate-server")
        .arg(alternate.to_string())
        .start();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let mut live = client_with_channel(&server, "live", echo.addr());
    assert!(round_trip(&mut live, b"before"));

    server.signal_server(libc::SIGTERM);
    server.wait_log("draining", Duration::from_secs(10));
    // The call in progress carries on...
    for i in 0..10 {
        let payload = format!("during drain {i}");
        server.check(round_trip(&mut live, payload.as_bytes()), || format!("datagram {i} lost while draining"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...while a new one is sent to the alternate relay, in an authenticated 300.
    let reply = fresh_allocate(&server, "newcomer");
    assert_eq!(reply.error_code(), Some(300), "{}", reply.describe());
    assert_eq!(reply.plain_address(attr::ALTERNATE_SERVER), Some(alternate));
    assert_eq!(reply.integrity_ok, Some(true), "the redirect is integrity-protected");
    assert!(server.is_running());

    // The last allocation ends: the relay stops without waiting for the timeout.
    assert!(live.refresh(0).unwrap().is_success());
    let took = wait_exit(&mut server, Duration::from_secs(10));
    server.check(took.is_some(), || "still running after its last allocation ended".into());
    assert!(server.stderr_tail().contains("drained"), "{}", server.stderr_tail());
}

#[test]
fn drain_timeout_stops_a_relay_that_still_has_allocations() {
    // Long enough that the checks below fit inside it on a loaded machine.
    const TIMEOUT: Duration = Duration::from_secs(6);
    let mut server =
        ServerBuilder::new("drain_timeout").arg("--drain-timeout").arg(TIMEOUT.as_secs().to_string()).start();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let mut live = client_with_channel(&server, "live", echo.addr());
    let signalled = Instant::now();
    server.signal_server(libc::SIGTERM);
    server.wait_log("draining", Duration::from_secs(10));
    assert!(round_trip(&mut live, b"still relayed"));
    // No alternate configured: 508.
    assert_eq!(fresh_allocate(&server, "newcomer").error_code(), Some(508));
    let took = wait_exit(&mut server, TIMEOUT + Duration::from_secs(10));
    let elapsed = signalled.elapsed();
    server.check(took.is_some(), || "did not stop at the drain timeout".into());
    assert!(elapsed >= TIMEOUT, "stopped after {elapsed:?}, before the {TIMEOUT:?} timeout");
    assert!(server.stderr_tail().contains("drain timeout passed"), "{}", server.stderr_tail());
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let mut server = ServerBuilder::new("drain_twice").arg("--drain-timeout").arg("30").start();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let mut live = client_with_channel(&server, "live", echo.addr());
    server.signal_server(libc::SIGTERM);
    server.wait_log("draining", Duration::from_secs(10));
    // The first signal alone does not end it (a listener registered late would see it again).
    std::thread::sleep(Duration::from_millis(500));
    assert!(round_trip(&mut live, b"still draining"), "the drain ended on its own first signal");
    server.signal_server(libc::SIGTERM);
    let took = wait_exit(&mut server, Duration::from_secs(5));
    server.check(took.is_some(), || "a second SIGTERM must stop the drain".into());
    assert!(server.stderr_tail().contains("second signal"), "{}", server.stderr_tail());
}

#[test]
fn sigint_stops_at_once_even_with_allocations() {
    let mut server = ServerBuilder::new("drain_sigint").arg("--drain-timeout").arg("30").start();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let _live = client_with_channel(&server, "live", echo.addr());
    server.signal_server(libc::SIGINT);
    let took = wait_exit(&mut server, Duration::from_secs(5));
    server.check(took.is_some(), || "SIGINT must not drain".into());
}

fn admin(server: &Server, port: u16, token: &str, args: &[&str]) -> e2e::Finished {
    let mut all: Vec<String> = ["admin", "--url", &format!("http://127.0.0.1:{port}"), "--token", token]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    all.extend(args.iter().map(|s| (*s).to_owned()));
    process::run("admin", &e2e::server_binary(), &all, server.log_dir(), Duration::from_secs(30))
}

fn admin_json(server: &Server, port: u16, args: &[&str]) -> serde_json::Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let out = admin(server, port, ADMIN_TOKEN, &with_json);
    server.check(out.success(), || format!("admin {args:?} failed:\n{}\n{}", out.stdout, out.stderr));
    serde_json::from_str(&out.stdout).unwrap()
}

fn users_listed(value: &serde_json::Value) -> Vec<String> {
    let mut users: Vec<String> =
        value["allocations"].as_array().unwrap().iter().map(|a| a["user"].as_str().unwrap().to_owned()).collect();
    users.sort();
    users
}

#[test]
fn admin_interface_lists_drops_shows_config_and_reloads() {
    let spare = PortBlock::reserve();
    let port = spare.peer_port(0);
    let dir = e2e::LogDir::new("admin-files");
    let path = dir.path().join("config.toml");
    let config = |max_bps: u64| {
        format!(
            "realm = \"e2e.test\"\n[auth]\nsecrets = [\"admin-test-secret\"]\n[turn]\nallow_loopback_peers = true\n\
             admin_port = {port}\nadmin_token = \"{ADMIN_TOKEN}\"\nmax_bps = {max_bps}\n"
        )
    };
    std::fs::write(&path, config(0)).unwrap();
    let server = ServerBuilder::new("admin").without_secret().arg("--config").arg(path.display().to_string()).start();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let credential = |user: &str| {
        let username = format!("{}:{user}", e2e::unix_now() + 3600);
        let password = e2e::rest_password("admin-test-secret", &username);
        (username, password)
    };
    let connect = |user: &str| {
        let (u, p) = credential(user);
        let mut c = TurnClient::new(Wire::udp(server.addr()).unwrap(), &u, &p);
        c.allocate(17).unwrap();
        assert!(c.channel_bind(CHANNEL, echo.addr()).unwrap().is_success());
        c
    };
    let mut alice = connect("alice");
    let mut bob = connect("bob");
    for _ in 0..5 {
        assert!(round_trip(&mut alice, &[7u8; 100]));
    }
    assert!(round_trip(&mut bob, b"bob"));

    let listed = admin_json(&server, port, &["list"]);
    assert_eq!(users_listed(&listed), vec!["alice", "bob"]);
    let alice_row = listed["allocations"].as_array().unwrap().iter().find(|a| a["user"] == "alice").unwrap().clone();
    assert_eq!(alice_row["bytes_to_peer"], 500, "{alice_row}");
    assert_eq!(alice_row["bytes_from_peer"], 500, "{alice_row}");
    let alice_port = alice.wire().local_addr().unwrap().port();
    assert_eq!(alice_row["client"], format!("127.0.0.1:{alice_port}"), "{alice_row}");
    assert_eq!(alice_row["transport"], "udp");
    let only_bob = admin_json(&server, port, &["list", "--user", "bob"]);
    assert_eq!(users_listed(&only_bob), vec!["bob"]);
    let table = admin(&server, port, ADMIN_TOKEN, &["list"]);
    assert!(
        table.success() && table.stdout.contains("alice") && table.stdout.contains("2 allocation(s)"),
        "{}",
        table.stdout
    );

    let refused = admin(&server, port, "not-the-admin-token-at-all", &["list"]);
    assert!(!refused.success(), "a wrong token must fail");
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);

    let dropped = admin(&server, port, ADMIN_TOKEN, &["drop", "alice"]);
    assert!(dropped.success() && dropped.stdout.contains("dropped 1 allocation(s) of alice"), "{}", dropped.stdout);
    assert_eq!(users_listed(&admin_json(&server, port, &["list"])), vec!["bob"]);
    assert_eq!(alice.refresh(600).unwrap().error_code(), Some(437), "alice's allocation is gone");
    assert!(round_trip(&mut bob, b"bob still relays"));
    server.wait_log("dropped by an operator", Duration::from_secs(10));

    let shown = admin_json(&server, port, &["config"]);
    let text = shown["config"].as_str().unwrap();
    assert!(text.contains("allow_loopback_peers = true"), "{text}");
    assert!(!text.contains("admin-test-secret") && !text.contains(ADMIN_TOKEN), "secrets leaked:\n{text}");
    assert_eq!(shown["allocations"], 1);
    assert_eq!(shown["draining"], false);

    // Reload through the admin interface: the new cap shows in the effective config.
    std::fs::write(&path, config(50_000)).unwrap();
    let reloaded = admin(&server, port, ADMIN_TOKEN, &["reload"]);
    assert!(reloaded.success() && reloaded.stdout.contains("configuration reloaded"), "{}", reloaded.stdout);
    assert!(admin_json(&server, port, &["config"])["config"].as_str().unwrap().contains("max_bps = 50000"));
    // A broken file is refused and named; what runs stays.
    std::fs::write(&path, "realm = [").unwrap();
    let broken = admin(&server, port, ADMIN_TOKEN, &["reload"]);
    assert!(!broken.success() && broken.stderr.contains("422"), "{}\n{}", broken.stdout, broken.stderr);
    assert!(round_trip(&mut bob, b"after a refused reload"));

    // The CLI finds the interface and token from the relay's own config file.
    std::fs::write(&path, config(50_000)).unwrap();
    let args: Vec<String> =
        ["admin", "--config", &path.display().to_string(), "--json", "list"].iter().map(|s| (*s).to_owned()).collect();
    let from_config = process::run("admin", &e2e::server_binary(), &args, server.log_dir(), Duration::from_secs(30));
    assert!(from_config.success(), "{}\n{}", from_config.stdout, from_config.stderr);
}

#[test]
fn max_bps_drops_what_exceeds_the_rate_and_counts_it() {
    const RATE: u64 = 20_000;
    const BURST: u64 = 65_536;
    let server = ServerBuilder::new("max_bps").arg("--max-bps").arg(RATE.to_string()).prometheus().start();
    let metrics_port = server.metrics_port();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let mut c = client_with_channel(&server, "capped", echo.addr());
    let payload = [1u8; 1000];
    let started = Instant::now();
    for i in 0..300 {
        c.send_channel_data(CHANNEL, &payload).unwrap();
        // Paced, so the kernel's socket buffers do not drop what the cap should decide on.
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let reached = echo.datagrams();
    // What may pass: the burst, plus what the rate refills while sending (and a datagram's slack).
    let allowed = (BURST + RATE * u64::try_from(elapsed.as_millis()).unwrap() / 1000) / 1000 + 1;
    server.check(reached <= allowed, || format!("{reached} datagrams passed, at most {allowed} may"));
    server.check(reached >= 60, || format!("only {reached} datagrams passed; the burst alone allows 65"));
    let body = scrape(metrics_port);
    let dropped =
        sample(&body, "turn_bandwidth_dropped_packets_total{direction=\"to_peer\",cap=\"allocation\"}").unwrap_or(0);
    server
        .check(dropped >= 150 && dropped + reached <= 300, || format!("{dropped} dropped, {reached} passed:\n{body}"));
    assert_eq!(sample(&body, "turn_relayed_packets_total{direction=\"to_peer\"}"), Some(reached), "{body}");
}
