//! The signaling side of the fleet, against a real `redis-server`, three built relays writing
//! their registry records and two signaling instances reading them: every relay is offered,
//! load and the caller's region order them, a killed relay leaves within its TTL, a draining one
//! at once, and with Redis stopped the last read keeps being served (`/readyz` degraded) until
//! `fleet_stale_secs`, then `[[relays]]`; once Redis is back the registry is read again.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::fleet::{self, turn_hosts, wait_hosts};
use e2e::signaling::{Redis, Signaling, SignalingBuilder};
use e2e::turn_wire::{TurnClient, Wire};
use e2e::{LogDir, Server};
use serde_json::Value;

const PREFIX: &str = "fleet-sig-e2e";

fn relay(n: u32, region: &str, redis: &Redis, dir: &Path) -> Server {
    fleet::relay(n, region, redis, PREFIX, dir)
}

fn signaling(name: &str, redis: &Redis, stale_secs: u64) -> Signaling {
    SignalingBuilder::new(name)
        .config(&fleet::signaling_config(redis, PREFIX, stale_secs))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .start()
}

fn readyz(sig: &Signaling) -> (u16, Value) {
    let r = sig.get("/readyz", None, &[]);
    (r.status, r.json())
}

fn wait_readyz(sig: &Signaling, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, body) = readyz(sig);
        if want(&body) {
            return body;
        }
        assert!(start.elapsed() < within, "readyz not as wanted within {within:?}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn allocation(server: &Server, user: &str) -> TurnClient {
    let (username, password) = server.credential(user);
    let mut client = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    client.allocate(17).unwrap();
    client
}

#[test]
fn ice_configs_follow_the_fleet() {
    let dir = LogDir::new("fleet_signaling");
    let mut redis = Redis::start(dir.path());
    let redis_port = redis.port;
    let r1 = relay(1, "eu", &redis, dir.path());
    let r2 = relay(2, "eu", &redis, dir.path());
    let r3 = relay(3, "us", &redis, dir.path());
    let a = signaling("fleet-sig-a", &redis, 60);
    // B gives up on a stale cache after 2 s, A keeps it for 60 s.
    let b = signaling("fleet-sig-b", &redis, 2);

    // All three, least loaded first and the id breaking ties: the same order on both instances.
    let all = ["relay-1", "relay-2", "relay-3"];
    wait_hosts(&a, "", &[], &all, Duration::from_secs(10));
    wait_hosts(&b, "", &[], &all, Duration::from_secs(10));
    let m = a.scrape();
    assert_eq!(m.value("signaling_fleet_relays{state=\"healthy\"}"), 3.0, "{}", m.0);
    assert!(m.value("signaling_fleet_served_total{source=\"registry\"}") >= 1.0, "{}", m.0);
    // Static until the relays' first heartbeat reached Redis; from now on the registry alone.
    let static_served = m.value("signaling_fleet_served_total{source=\"static\"}");
    let (status, body) = readyz(&a);
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
    assert_eq!((body["fleet"]["state"].as_str(), body["fleet"]["healthy"].as_u64()), (Some("ok"), Some(3)));

    // Four allocations on relay-1 (capacity 10): new configs go to the others first.
    let load: Vec<TurnClient> = (0..4).map(|i| allocation(&r1, &format!("load{i}"))).collect();
    wait_hosts(&a, "", &[], &["relay-2", "relay-3", "relay-1"], Duration::from_secs(8));
    wait_hosts(&b, "", &[], &["relay-2", "relay-3", "relay-1"], Duration::from_secs(8));

    // The caller's region before load: the nginx header, or ?region= (which wins).
    assert_eq!(turn_hosts(&a, "", &[("X-Client-Region", "us")]), ["relay-3", "relay-2", "relay-1"]);
    assert_eq!(turn_hosts(&a, "", &[("X-Client-Region", "eu")]), ["relay-2", "relay-1", "relay-3"]);
    assert_eq!(turn_hosts(&b, "?region=us", &[("X-Client-Region", "eu")]), ["relay-3", "relay-2", "relay-1"]);

    assert_eq!(a.scrape().value("signaling_fleet_served_total{source=\"static\"}"), static_served);

    // Redis stops: A serves its last read (degraded), B falls back to [[relays]] after 2 s.
    redis.stop();
    let body = wait_readyz(&a, Duration::from_secs(5), |v| v["fleet"]["state"] == "degraded");
    assert_eq!(body["fleet"]["source"], "cache", "{body}");
    assert_eq!(turn_hosts(&a, "", &[]), ["relay-2", "relay-3", "relay-1"]);
    wait_hosts(&b, "", &[], &["static"], Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(3));
    // Older than the relays' TTL by now, and still served: judged as of the read.
    assert_eq!(turn_hosts(&a, "", &[]), ["relay-2", "relay-3", "relay-1"]);
    let m = a.scrape();
    assert!(m.value("signaling_fleet_served_total{source=\"cache\"}") >= 2.0, "{}", m.0);
    assert!(m.value("signaling_redis_errors_total{component=\"fleet\"}") >= 1.0, "{}", m.0);
    assert!(b.scrape().value("signaling_fleet_served_total{source=\"static\"}") >= 1.0);
    assert!(b.stderr_tail().contains("serving [[relays]]"), "B says it fell back:\n{}", b.stderr_tail());

    // Redis back on its port, empty: the relays republish, both instances read it again.
    let redis = Redis::start_on(dir.path(), redis_port);
    wait_readyz(&a, Duration::from_secs(10), |v| v["fleet"]["state"] == "ok" && v["fleet"]["healthy"] == 3);
    wait_hosts(&b, "", &[], &["relay-2", "relay-3", "relay-1"], Duration::from_secs(10));
    assert_eq!(readyz(&a).1["fleet"]["source"], "registry");

    // SIGTERM on relay-2 with a call on it: out of new configs at once (well within its 3 s TTL,
    // since it keeps its record fresh while draining), though it relays on.
    let _call = allocation(&r2, "caller");
    r2.signal_server(libc::SIGTERM);
    let took = wait_hosts(&a, "", &[], &["relay-3", "relay-1"], Duration::from_secs(3));
    assert!(took < Duration::from_secs(3), "{took:?}");
    let start = Instant::now();
    while a.scrape().value("signaling_fleet_relays{state=\"draining\"}") != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(5), "draining relay not counted");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGKILL on relay-3: no goodbye, gone once its record expires (3 heartbeats of 1 s, plus
    // one registry read).
    let pid = r3.server_pid().unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is the relay's own.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
    wait_hosts(&a, "", &[], &["relay-1"], Duration::from_secs(6));
    wait_hosts(&b, "", &[], &["relay-1"], Duration::from_secs(6));
    drop(load);
    drop(redis);
}
