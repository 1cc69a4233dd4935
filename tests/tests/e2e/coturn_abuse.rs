//! coturn's own abuse modes against the relay: `turnutils_uclient -N` (negative tests), `-R`
//! (negative protocol tests: malformed requests) and `-O` (DOS mode: connect, allocate, leave)
//! run while a legitimate client relays through the relay. The legitimate client must not lose a
//! datagram, the relay must keep answering, and once the abandoned allocations expire its
//! allocation count is back to zero and its memory back near where it started.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::peers::UdpEcho;
use e2e::turn_wire::{TurnClient, Wire};
use e2e::{process, require_tool, Server, ServerBuilder};

/// Abandoned allocations live this long, so the test can watch them go.
const LIFETIME_SECS: u64 = 5;

fn active_allocations(metrics_port: u16) -> u64 {
    e2e::prometheus::sum(&e2e::prometheus::scrape(metrics_port), "turn_allocations_active")
}

fn uclient(server: &Server, peer: SocketAddr, mode: &str, clients: u32) -> process::ChildGuard {
    let args: Vec<String> = [
        mode,
        "-W",
        server.secret(),
        "-u",
        "abuser",
        "-e",
        &peer.ip().to_string(),
        "-r",
        &peer.port().to_string(),
        "-m",
        &clients.to_string(),
        "-n",
        "50",
        "-c",
        "-p",
        &server.addr().port().to_string(),
        &server.addr().ip().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // -R waits for answers to requests it broke on purpose and never ends by itself (against
    // coturn too): every run is bounded and stopped when the legitimate traffic is done.
    process::spawn(mode, &require_tool("turnutils_uclient"), &args, server.log_dir(), Duration::from_secs(30))
}

#[test]
fn uclient_negative_and_flood_modes_leave_legitimate_calls_and_memory_intact() {
    let _load = e2e::exclusive_load();
    let mut server = ServerBuilder::new("coturn_abuse")
        .arg("--max-allocate-lifetime")
        .arg(LIFETIME_SECS.to_string())
        .prometheus()
        .start();
    let metrics_port = server.metrics_port();
    let peer_addr: SocketAddr = format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap();
    let peer_args = ["-L".to_owned(), "127.0.0.1".to_owned(), "-p".to_owned(), peer_addr.port().to_string()];
    let _peer = e2e::start_turnutils_peer(&peer_args, peer_addr, server.log_dir());
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(4)).parse().unwrap());

    // The legitimate call, set up before the abuse starts; memory measured once it is running.
    let (username, password) = server.credential("legit");
    let mut legit = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    legit.allocate(17).unwrap();
    assert!(legit.channel_bind(0x4000, echo.addr()).unwrap().is_success());
    let rss_before = server.rss_kib().unwrap();

    let mut abusers = vec![uclient(&server, peer_addr, "-O", 30), uclient(&server, peer_addr, "-N", 5)];
    abusers.push(uclient(&server, peer_addr, "-R", 5));
    let until = Instant::now() + Duration::from_secs(4);
    let mut sent = 0u32;
    while Instant::now() < until {
        let payload = format!("legit {sent}");
        legit.send_channel_data(0x4000, payload.as_bytes()).unwrap();
        let echoed = legit.recv_data(Duration::from_secs(2)).unwrap();
        server.check(echoed.is_some_and(|(_, d)| d == payload.as_bytes()), || {
            format!("the legitimate call lost datagram {sent} during the abuse")
        });
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // The flood did reach the relay.
    let during = active_allocations(metrics_port);
    for mut a in abusers {
        a.stop();
    }
    assert!(server.is_running(), "the relay died under abuse");
    assert!(during > 1, "the flood made no allocations ({during}): it did not run");

    // Abandoned allocations expire; only the legitimate one (refreshed) stays.
    let deadline = Instant::now() + Duration::from_secs(LIFETIME_SECS + 10);
    loop {
        assert!(legit.refresh(LIFETIME_SECS as u32).unwrap().is_success());
        let left = active_allocations(metrics_port);
        if left == 1 {
            break;
        }
        server.check(Instant::now() < deadline, || format!("{left} allocations still open after the abuse"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_after = server.rss_kib().unwrap();
    eprintln!(
        "{sent} legitimate round trips; {during} allocations during the flood; RSS {rss_before} -> {rss_after} KiB"
    );
    server.check(rss_after < rss_before + 4 * 1024, || {
        format!("memory grew from {rss_before} KiB to {rss_after} KiB and stayed")
    });
    legit.send_channel_data(0x4000, b"after").unwrap();
    assert!(legit.recv_data(Duration::from_secs(2)).unwrap().is_some(), "the call relays after the abuse");
}
