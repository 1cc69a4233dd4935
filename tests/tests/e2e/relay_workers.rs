//! `--relay-threads`: UDP is served by several datagram worker threads (`turn-udp-N`, with no
//! runtime), each with its own listening and relay sockets. Clients are spread over them by
//! address and port, so one host's 5-tuples spread over every worker; each worker relays its
//! clients' traffic both ways; quotas hold for the relay as a whole; metrics and the admin
//! interface see every worker, the stream worker included.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use e2e::peers::UdpEcho;
use e2e::prometheus::{get as scrape, sample};
use e2e::turn_wire::{TurnClient, Wire, UDP};
use e2e::ServerBuilder;

const WORKERS: usize = 3;

/// The worker the relay's steering program picks for datagrams from `client` (the same function
/// as turn-server's `net::steering::socket_index`): the IPv4 address XOR the port, modulo the
/// workers.
fn worker_of(client: SocketAddr, workers: usize) -> usize {
    let IpAddr::V4(ip) = client.ip() else { panic!("IPv4 clients only here") };
    ((u32::from(ip) ^ u32::from(client.port())) % workers as u32) as usize
}

/// A client from `ip` on a free port the steering sends to worker `worker` of `workers`.
fn client_on(server: &e2e::Server, ip: &str, worker: usize, workers: usize, user: &str) -> TurnClient {
    let (username, password) = server.credential(user);
    let ip: IpAddr = ip.parse().unwrap();
    let wire = (20_000..60_000u16)
        .map(|port| SocketAddr::new(ip, port))
        .filter(|local| worker_of(*local, workers) == worker)
        .find_map(|local| Wire::udp_from(local, server.addr()).ok())
        .expect("a free port for that worker");
    TurnClient::new(wire, &username, &password)
}

#[test]
fn clients_spread_over_workers_relay_both_ways_and_quotas_stay_relay_wide() {
    let server = ServerBuilder::new("relay_workers")
        .arg("--relay-threads")
        .arg(WORKERS.to_string())
        .arg("--user-quota")
        .arg("1")
        .prometheus()
        .start();
    let metrics_port = server.metrics_port();
    // The first worker answers STUN while the pool still starts the others (and the kernel fast
    // path loads before them): the relay says when all are up.
    server.wait_log(&format!("relaying UDP on {WORKERS} worker threads"), Duration::from_secs(10));
    let pid = server.server_pid().unwrap();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    let worker_threads = threads.iter().filter(|c| c.starts_with("turn-udp-")).count();
    server.check(worker_threads == WORKERS, || format!("threads: {threads:?}"));

    let peer = UdpEcho::start("127.0.0.1:0".parse().unwrap());
    // Six clients, all from one address, 127.0.0.2, on ports the steering sends two to each
    // worker: everyone behind one NAT address is served by every core.
    let mut clients: Vec<TurnClient> =
        (0..6).map(|i| client_on(&server, "127.0.0.2", i % WORKERS, WORKERS, &format!("u{i}"))).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.allocate(UDP).unwrap_or_else(|e| server.fail(&format!("client {i}: Allocate: {e}")));
        c.create_permission(peer.addr()).unwrap();
        c.channel_bind(0x4000, peer.addr()).unwrap();
    }
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let payload = format!("client {i} round {round}");
            c.send_channel_data(0x4000, payload.as_bytes()).unwrap();
            let echoed = c.recv_data(Duration::from_secs(3)).unwrap();
            server.check(echoed.as_ref().map(|(_, d)| d.as_slice()) == Some(payload.as_bytes()), || {
                format!("client {i} round {round}: echo {echoed:?}")
            });
        }
    }

    let body = scrape(metrics_port, "/metrics").1;
    let per_worker: Vec<Option<u64>> =
        (0..WORKERS).map(|w| sample(&body, &format!("turn_worker_allocations{{worker=\"udp-{w}\"}}"))).collect();
    server
        .check(per_worker.iter().all(|n| *n == Some(2)), || format!("allocations per worker: {per_worker:?}\n{body}"));
    // The stream worker (TCP and TLS clients) is counted too, and holds none of these.
    assert_eq!(sample(&body, "turn_worker_allocations{worker=\"streams\"}"), Some(0), "{body}");
    assert_eq!(sample(&body, "turn_allocations_active{transport=\"udp\",family=\"ipv4\"}"), Some(6), "{body}");
    assert_eq!(sample(&body, "turn_relay_ports_in_use"), Some(6), "{body}");
    assert!(sample(&body, "turn_relayed_packets_total{direction=\"from_peer\"}") >= Some(18), "{body}");

    // The user quota (1) is the relay's: a second allocation of the same user from a 5-tuple
    // that another worker serves is refused.
    let mut first = client_on(&server, "127.0.0.8", 0, WORKERS, "shared");
    first.allocate(UDP).unwrap();
    let mut second = client_on(&server, "127.0.0.8", 1, WORKERS, "shared");
    let refused = second.allocate(UDP);
    server.check(refused.as_ref().is_err_and(|e| e.contains("486")), || format!("second allocation: {refused:?}"));
    let body = scrape(metrics_port, "/metrics").1;
    assert_eq!(sample(&body, "turn_quota_refusals_total{quota=\"user\"}"), Some(1), "{body}");
    // Given back on the worker that held it, the place is free on the other.
    first.refresh(0).unwrap();
    second.allocate(UDP).unwrap_or_else(|e| server.fail(&format!("after the first ended: {e}")));
}

/// A datagram worker has no runtime: its timers are the timeout of its `epoll_wait`. Allocations
/// on two workers expire on time although no datagram arrives to wake either thread, and the
/// relay ports come back.
#[test]
fn allocations_expire_on_the_datagram_workers_own_timers() {
    let dir = e2e::LogDir::new("relay-workers-expiry-files");
    let config = e2e::peers::write_file(
        dir.path(),
        "config.toml",
        "[turn]\ndefault_allocate_lifetime_secs = 2\nmax_allocate_lifetime_secs = 2\n",
    );
    let server = ServerBuilder::new("relay_workers_expiry")
        .arg("--config")
        .arg(config.display().to_string())
        .arg("--relay-threads")
        .arg("2")
        .prometheus()
        .start();
    let metrics_port = server.metrics_port();
    // One client per worker, both from 127.0.0.2.
    let mut clients: Vec<TurnClient> =
        (0..2).map(|w| client_on(&server, "127.0.0.2", w, 2, &format!("e{w}"))).collect();
    for c in &mut clients {
        let a = c.allocate(UDP).unwrap_or_else(|e| server.fail(&format!("Allocate: {e}")));
        assert_eq!(a.lifetime, Some(2));
    }
    let body = scrape(metrics_port, "/metrics").1;
    assert_eq!(sample(&body, "turn_relay_ports_in_use"), Some(2), "{body}");
    for w in 0..2 {
        assert_eq!(sample(&body, &format!("turn_worker_allocations{{worker=\"udp-{w}\"}}")), Some(1), "{body}");
    }

    // Lifetime 2 s, timers at most 0.5 s late: gone by 3.5 s. Nothing is sent meanwhile, not even
    // a scrape: a scrape wakes each worker, which then runs its due timers, so only a scrape
    // after the deadline shows what the wait's timeout did on its own.
    std::thread::sleep(Duration::from_millis(3500));
    let body = scrape(metrics_port, "/metrics").1;
    server.check(sample(&body, "turn_relay_ports_in_use") == Some(0), || format!("ports still held:\n{body}"));
    for w in 0..2 {
        assert_eq!(sample(&body, &format!("turn_worker_allocations{{worker=\"udp-{w}\"}}")), Some(0), "{body}");
    }
}
