//! The relay's record in the fleet registry, against a real `redis-server`: with `--redis-url`
//! it appears with its URLs, region, capacity and live load; a drain is published at once; a
//! clean stop removes it; a killed relay's record expires on its own; with Redis stopped the
//! relay keeps relaying and publishes again once Redis is back.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::peers::UdpEcho;
use e2e::signaling::Redis;
use e2e::turn_wire::{Attr, TurnClient, Wire};
use e2e::{LogDir, Server};
use serde_json::Value;
use turn_server::proto::stun::{attr, Method};

const PREFIX: &str = "fleet-e2e";

fn redis_cli(redis: &Redis, dir: &std::path::Path, args: &[&str]) -> String {
    redis.cli(dir, args)
}

/// The record of `id`, once it satisfies `want`, within `within`.
fn wait_record(
    redis: &Redis,
    dir: &std::path::Path,
    id: &str,
    within: Duration,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    let key = format!("{PREFIX}:relay:{id}");
    loop {
        let text = redis_cli(redis, dir, &["GET", &key]);
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if want(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no record of {id} as wanted within {within:?}; last: {text:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A relay in the registry under `PREFIX`, heartbeat every `heartbeat_secs`, draining for up to
/// `drain_secs`, with `extra` lines for its `[turn]` table.
fn relay(
    name: &str,
    redis: &Redis,
    dir: &std::path::Path,
    heartbeat_secs: u64,
    drain_secs: u64,
    extra: &str,
) -> Server {
    e2e::fleet::registered_relay(name, &redis.url(), PREFIX, heartbeat_secs, extra, dir)
        .arg("--drain-timeout")
        .arg(drain_secs.to_string())
        .start()
}

#[test]
fn relays_register_report_load_drain_and_leave() {
    let dir = LogDir::new("fleet_registry");
    let redis = Redis::start(dir.path());
    let mut server = relay("relay-a", &redis, dir.path(), 2, 30, "region = \"eu-test\"\ncapacity = 100\n");
    let id = format!("relay-a.example.test:{}", server.addr().port());

    // Registered with what clients need and where a full relay may send them.
    let record = wait_record(&redis, dir.path(), &id, Duration::from_secs(10), |v| v["id"] == id.as_str());
    let port = server.addr().port();
    assert_eq!(record["urls"][0], format!("turn:relay-a.example.test:{port}?transport=udp"));
    assert_eq!(record["urls"][1], format!("turn:relay-a.example.test:{port}?transport=tcp"));
    assert_eq!(record["stun"], format!("stun:relay-a.example.test:{port}"));
    assert_eq!(record["alternate"], format!("127.0.0.1:{port}"));
    assert_eq!((record["region"].as_str(), record["capacity"].as_u64()), (Some("eu-test"), Some(100)));
    assert_eq!(record["draining"], false);
    let members = redis_cli(&redis, dir.path(), &["ZRANGE", &format!("{PREFIX}:relays"), "0", "-1"]);
    assert!(members.lines().any(|m| m == id), "{id} not in the registry set: {members:?}");
    let ttl: i64 = redis_cli(&redis, dir.path(), &["TTL", &format!("{PREFIX}:relay:{id}")]).parse().unwrap();
    assert!((1..=6).contains(&ttl), "the record expires after three heartbeats (6 s), TTL {ttl}");

    // Live load: an allocation relaying traffic shows up at the next heartbeat.
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let (username, password) = server.credential("fleet");
    let mut client = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    client.allocate(17).unwrap();
    assert!(client.channel_bind(0x4000, echo.addr()).unwrap().is_success());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        client.send_channel_data(0x4000, &[0u8; 1000]).unwrap();
        let _ = client.recv_data(Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(10));
    }
    let loaded = wait_record(&redis, dir.path(), &id, Duration::from_secs(12), |v| v["allocations"] == 1);
    assert!(loaded["relayed_bps"].as_u64().unwrap() > 0, "{loaded}");

    // SIGTERM: the drain is in the registry at once, not at the next heartbeat.
    server.signal_server(libc::SIGTERM);
    let signalled = Instant::now();
    wait_record(&redis, dir.path(), &id, Duration::from_secs(3), |v| v["draining"] == true);
    assert!(signalled.elapsed() < Duration::from_secs(3));
    // The allocation ends, the relay stops and takes its record with it.
    assert!(client.refresh(0).unwrap().is_success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "the relay did not stop after its last allocation");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(redis_cli(&redis, dir.path(), &["EXISTS", &format!("{PREFIX}:relay:{id}")]), "0");
    let members = redis_cli(&redis, dir.path(), &["ZRANGE", &format!("{PREFIX}:relays"), "0", "-1"]);
    assert!(!members.lines().any(|m| m == id), "{id} still in the registry set");
}

#[test]
fn a_killed_relay_expires_and_redis_outages_do_not_stop_relaying() {
    let dir = LogDir::new("fleet_registry_outage");
    let mut redis = Redis::start(dir.path());
    let redis_port = redis.port;
    let server = relay("relay-b", &redis, dir.path(), 1, 0, "");
    let id = format!("relay-b.example.test:{}", server.addr().port());
    wait_record(&redis, dir.path(), &id, Duration::from_secs(10), |v| v["id"] == id.as_str());

    // Redis goes away: relaying goes on.
    redis.stop();
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    let (username, password) = server.credential("fleet");
    let mut client = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    client.allocate(17).unwrap();
    assert!(client.channel_bind(0x4000, echo.addr()).unwrap().is_success());
    for i in 0..20 {
        client.send_channel_data(0x4000, format!("outage {i}").as_bytes()).unwrap();
        server.check(client.recv_data(Duration::from_secs(2)).unwrap().is_some(), || format!("datagram {i} lost"));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Redis back (empty, as after a restart without persistence): the record is rebuilt.
    let redis = Redis::start_on(dir.path(), redis_port);
    let back = wait_record(&redis, dir.path(), &id, Duration::from_secs(20), |v| v["allocations"] == 1);
    assert_eq!(back["draining"], false);

    // Killed without a goodbye: the record expires by its TTL (three heartbeats).
    let ttl: i64 = redis_cli(&redis, dir.path(), &["TTL", &format!("{PREFIX}:relay:{id}")]).parse().unwrap();
    assert!(ttl > 0, "TTL {ttl}");
    let pid = server.server_pid().unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is the relay's own.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
    let killed = Instant::now();
    while redis_cli(&redis, dir.path(), &["EXISTS", &format!("{PREFIX}:relay:{id}")]) != "0" {
        assert!(killed.elapsed() < Duration::from_secs(6), "the dead relay's record outlived its 3 s TTL");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_relay_sends_new_clients_to_a_less_loaded_one() {
    let dir = LogDir::new("fleet_registry_capacity");
    let redis = Redis::start(dir.path());
    let full = relay("relay-full", &redis, dir.path(), 1, 0, "capacity = 1\n");
    let spare = relay("relay-spare", &redis, dir.path(), 1, 0, "capacity = 100\n");
    let spare_id = format!("relay-spare.example.test:{}", spare.addr().port());
    wait_record(&redis, dir.path(), &spare_id, Duration::from_secs(10), |v| v["id"] == spare_id.as_str());

    let (username, password) = full.credential("first");
    let mut first = TurnClient::new(Wire::udp(full.addr()).unwrap(), &username, &password);
    first.allocate(17).unwrap();
    // The full relay learns of the spare one at its next heartbeat (1 s); until then it serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    let redirect = loop {
        let (username, password) = full.credential("newcomer");
        let mut c = TurnClient::new(Wire::udp(full.addr()).unwrap(), &username, &password);
        let reply = c.request(Method::Allocate, &[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]).unwrap();
        if reply.error_code() == Some(300) {
            assert_eq!(reply.integrity_ok, Some(true), "the redirect is integrity-protected");
            break reply.plain_address(attr::ALTERNATE_SERVER).unwrap();
        }
        assert!(reply.is_success(), "{}", reply.describe());
        // Served here (no alternate known yet): give it back and try again shortly.
        assert!(c.refresh(0).unwrap().is_success());
        assert!(Instant::now() < deadline, "the full relay never redirected");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(redirect, spare.addr(), "sent to the relay with room");
    // The client follows the redirect and relays through the spare relay.
    let echo = UdpEcho::start(format!("127.0.0.1:{}", spare.ports().peer_port(0)).parse().unwrap());
    let (username, password) = spare.credential("newcomer");
    let mut moved = TurnClient::new(Wire::udp(redirect).unwrap(), &username, &password);
    moved.allocate(17).unwrap();
    assert!(moved.channel_bind(0x4000, echo.addr()).unwrap().is_success());
    moved.send_channel_data(0x4000, b"via the alternate").unwrap();
    let echoed = moved.recv_data(Duration::from_secs(2)).unwrap();
    assert_eq!(echoed.map(|(_, d)| d), Some(b"via the alternate".to_vec()));
    // The call already on the full relay is untouched.
    assert!(first.refresh(600).unwrap().is_success());
}
