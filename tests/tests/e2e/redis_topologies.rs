//! The fleet and the signaling service on the two other Redis topologies, with real servers on
//! loopback: a primary, a replica and a Sentinel (`redis+sentinel://`), then a three-node
//! Cluster (`redis+cluster://`). On each, a relay registers, two signaling instances offer it
//! and carry a call between them (call state in Redis scripts, rooms through pub/sub). Sentinel
//! is then told to fail over: every process follows the new primary without a restart.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::signaling::{call_id, free_port, Driver, Redis, Signaling, SignalingBuilder, EVENT_TIMEOUT};
use e2e::{LogDir, Server};
use serde_json::json;

const PREFIX: &str = "topo-e2e";
const SERVICE: &str = "calls";

fn relay(url: &str, dir: &Path) -> Server {
    e2e::fleet::registered_relay("relay-1", url, PREFIX, 1, "", dir).start()
}

fn signaling(name: &str, url: &str, like: Option<&Signaling>) -> Signaling {
    let config = format!(
        "[[relays]]\nhost = \"static.example.test\"\n[turn]\nregistry_heartbeat_secs = 1\n\
         [signaling]\nredis_url = \"{url}\"\nredis_prefix = \"{PREFIX}\"\nfleet = true\n"
    );
    let mut b = SignalingBuilder::new(name).config(&config);
    if let Some(a) = like {
        b = b.jwt_secret(&a.jwt_secret).turn_secret(&a.turn_secret);
    }
    b.start()
}

/// Polls (bounded) until `sig` offers the registered relay rather than the static one.
fn wait_for_relay(sig: &Signaling, within: Duration) {
    let start = Instant::now();
    loop {
        let resp = sig.get("/v1/ice-servers", Some(&sig.token("alice", 300)), &[]);
        if resp.status == 200 && resp.body.contains("relay-1.example.test") {
            return;
        }
        assert!(start.elapsed() < within, "relay not offered within {within:?}: {}\n{}", resp.body, sig.stderr_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// alice on `a` calls bob on `b`: offer, answer and hang-up cross instances.
fn call_across(d: &mut Driver, a: &Signaling, b: &Signaling) {
    let id = call_id();
    let ack = d.emit("alice", "call:initiate", json!({"callId": id, "calleeId": "bob", "sdp": "o"}));
    assert_eq!(ack["state"], "ringing", "{ack}\nA:\n{}", a.stderr_tail());
    assert_eq!(d.expect("bob", "call:offer", EVENT_TIMEOUT)["callId"], id.as_str(), "B:\n{}", b.stderr_tail());
    assert_eq!(d.emit("bob", "call:answer", json!({"callId": id, "sdp": "a"}))["state"], "accepted");
    assert_eq!(d.expect("alice", "call:answer", EVENT_TIMEOUT)["sdp"], "a");
    assert_eq!(d.emit("alice", "call:end", json!({"callId": id}))["state"], "ended");
    assert_eq!(d.expect("bob", "call:end", EVENT_TIMEOUT)["reason"], "hangup");
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Connections to `redis` other than Sentinel's own and this redis-cli.
fn service_clients(redis: &Redis, dir: &Path) -> usize {
    redis
        .cli(dir, &["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains("name=sentinel-") && !l.contains("cmd=client"))
        .count()
}

#[test]
fn sentinel_failover_is_followed_without_restarts() {
    let logs = LogDir::new("redis_sentinel");
    let dir = logs.path();
    let primary = Redis::start(dir);
    let replica_port = free_port();
    let replica = Redis::start_with(dir, replica_port, &["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let sentinel = Redis::sentinel(dir, SERVICE, primary.port);
    wait_until("Sentinel sees the replica", Duration::from_secs(20), || {
        sentinel.cli(dir, &["SENTINEL", "REPLICAS", SERVICE]).contains(&replica_port.to_string())
    });
    let url = format!("redis+sentinel://127.0.0.1:{}/{SERVICE}", sentinel.port);
    let _relay = relay(&url, dir);
    let a = signaling("topo_sentinel_a", &url, None);
    let b = signaling("topo_sentinel_b", &url, Some(&a));
    wait_for_relay(&a, Duration::from_secs(10));
    let mut d = Driver::node(dir);
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    call_across(&mut d, &a, &b);
    assert!(service_clients(&primary, dir) > 0, "nothing connected to the primary");

    assert_eq!(sentinel.cli(dir, &["SENTINEL", "FAILOVER", SERVICE]), "OK");
    wait_until("Sentinel names the replica primary", Duration::from_secs(20), || {
        sentinel.cli(dir, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]).ends_with(&replica_port.to_string())
    });
    // Every link of the relay and of both instances leaves the demoted primary (the watcher
    // asks Sentinel every 2 s; a READONLY write sends it looking sooner).
    wait_until("all clients move to the new primary", Duration::from_secs(20), || service_clients(&primary, dir) == 0);
    let registry = format!("{PREFIX}:relays");
    wait_until("the relay's record is written on the new primary", Duration::from_secs(10), || {
        !replica.cli(dir, &["ZRANGE", &registry, "0", "-1"]).is_empty()
    });
    for s in [&a, &b] {
        wait_until("readiness after the failover", Duration::from_secs(10), || {
            s.get("/readyz", None, &[]).status == 200
        });
    }
    call_across(&mut d, &a, &b);
    wait_for_relay(&b, Duration::from_secs(5));
}

#[test]
fn cluster_carries_the_registry_the_calls_and_the_rooms() {
    let logs = LogDir::new("redis_cluster");
    let dir = logs.path();
    let nodes: Vec<Redis> = (0..3)
        .map(|i| {
            let port = free_port();
            let conf = dir.join(format!("nodes-{i}.conf")).display().to_string();
            // The cluster bus defaults to port + 10000, which may be taken or out of range.
            let bus = free_port().to_string();
            Redis::start_with(
                dir,
                port,
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--cluster-port", &bus],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    nodes[0].cli(dir, &create);
    wait_until("cluster state ok on every node", Duration::from_secs(20), || {
        nodes.iter().all(|n| n.cli(dir, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    let url = format!("redis+cluster://{}", addrs.join(","));
    let _relay = relay(&url, dir);
    let a = signaling("topo_cluster_a", &url, None);
    let b = signaling("topo_cluster_b", &url, Some(&a));
    wait_for_relay(&a, Duration::from_secs(10));
    wait_for_relay(&b, Duration::from_secs(5));
    let mut d = Driver::node(dir);
    d.connect_ok("alice", &a.url(), &a.token("alice", 600));
    d.connect_ok("bob", &b.url(), &b.token("bob", 600));
    call_across(&mut d, &a, &b);
    // Every key of the service shares one hash tag, so scripts and MGET stay in one slot.
    let registry = format!("{{{PREFIX}}}:relays");
    let owner = nodes
        .iter()
        .find(|n| n.cli(dir, &["CLUSTER", "COUNTKEYSINSLOT", &n.cli(dir, &["CLUSTER", "KEYSLOT", &registry])]) != "0");
    let owner = owner.expect("no node holds the registry under the hash-tagged prefix");
    assert!(!owner.cli(dir, &["ZRANGE", &registry, "0", "-1"]).is_empty());
}
