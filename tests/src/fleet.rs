//! Helpers of the fleet tests (`tests/tests/e2e/fleet_*.rs`): built relays that register in a real
//! Redis under a key prefix, the signaling config that reads that registry, and the relay order
//! of one `/v1/ice-servers` answer.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::signaling::{Redis, Signaling};
use crate::{Server, ServerBuilder};

/// The `[[relays]]` fallback host of [`signaling_config`] (`static` in [`hosts_of`]).
pub const STATIC_HOST: &str = "static.example.test";

/// A relay that registers in the Redis at `redis_url` under `prefix` as public host
/// `<name>.example.test`, heartbeat every `heartbeat_secs`, with `turn_extra` lines in its `[turn]`
/// table (its config file goes to `dir`): add flags, then start it.
pub fn registered_relay(
    name: &str,
    redis_url: &str,
    prefix: &str,
    heartbeat_secs: u64,
    turn_extra: &str,
    dir: &Path,
) -> ServerBuilder {
    let text = format!(
        "[turn]\nregistry_heartbeat_secs = {heartbeat_secs}\n{turn_extra}[signaling]\nredis_prefix = \"{prefix}\"\n"
    );
    let config = crate::peers::write_file(dir, &format!("{name}.toml"), &text);
    ServerBuilder::new(name)
        .arg("--config")
        .arg(config.display().to_string())
        .arg("--redis-url")
        .arg(redis_url)
        .arg("--public-host")
        .arg(format!("{name}.example.test"))
}

/// Relay `n` (public host `relay-<n>.example.test`) in `region`, registered in `redis` under
/// `prefix` with a 1 s heartbeat, capacity 10, drain timeout 30 s.
pub fn relay(n: u32, region: &str, redis: &Redis, prefix: &str, dir: &Path) -> Server {
    registered_relay(&format!("relay-{n}"), &redis.url(), prefix, 1, "", dir)
        .arg("--region")
        .arg(region)
        .arg("--capacity")
        .arg("10")
        .arg("--drain-timeout")
        .arg("30")
        .start()
}

/// A signaling config reading the registry of `prefix` in `redis` (three relays an answer, the
/// region from `X-Client-Region`, rate limits out of the way), with [`STATIC_HOST`] as
/// `[[relays]]`. `[signaling]` is its last table: lines appended go into it.
pub fn signaling_config(redis: &Redis, prefix: &str, stale_secs: u64) -> String {
    format!(
        "[[relays]]\nhost = \"{STATIC_HOST}\"\n\
         [turn]\nregistry_heartbeat_secs = 1\n\
         [signaling]\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"\nfleet = true\nfleet_relays = 3\n\
         region_header = \"X-Client-Region\"\nfleet_stale_secs = {stale_secs}\n\
         rate_limit_per_user = 100000\nrate_limit_per_ip = 100000\n",
        redis.url()
    )
}

/// The hosts (less `.example.test`) of the TURN entries of one `/v1/ice-servers` answer, in
/// order, after checking that every TURN entry carries the same credential and each relay's
/// STUN entry precedes it.
pub fn hosts_of(body: &Value) -> Vec<String> {
    let servers = body["iceServers"].as_array().unwrap_or_else(|| panic!("no iceServers: {body}"));
    let mut hosts = Vec::new();
    let mut credential: Option<(Value, Value)> = None;
    let mut last_stun: Option<String> = None;
    for s in servers {
        let first = s["urls"][0].as_str().unwrap_or_else(|| panic!("no urls: {s}")).to_owned();
        let host = first.split(':').nth(1).unwrap_or_else(|| panic!("no host in {first}")).to_owned();
        if first.starts_with("stun:") {
            assert!(s.get("username").is_none(), "{s}");
            last_stun = Some(host);
            continue;
        }
        assert!(first.starts_with("turn:"), "{s}");
        assert_eq!(last_stun.take().as_deref(), Some(host.as_str()), "STUN entry before each TURN entry: {body}");
        let cred = (s["username"].clone(), s["credential"].clone());
        assert!(cred.0.is_string() && cred.1.is_string(), "{s}");
        if let Some(c) = &credential {
            assert_eq!(c, &cred, "one credential for every relay: {body}");
        }
        credential = Some(cred);
        hosts.push(host.trim_end_matches(".example.test").to_owned());
    }
    hosts
}

/// [`hosts_of`] the answer of `sig` itself (no proxy) for a fresh token.
pub fn turn_hosts(sig: &Signaling, query: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let token = sig.token("alice", 300);
    let resp = sig.get(&format!("/v1/ice-servers{query}"), Some(&token), headers);
    assert_eq!(resp.status, 200, "{}", resp.body);
    hosts_of(&resp.json())
}

/// Polls [`turn_hosts`] until it is `want` (bounded), returning how long it took.
pub fn wait_hosts(sig: &Signaling, query: &str, headers: &[(&str, &str)], want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = turn_hosts(sig, query, headers);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "wanted {want:?} within {within:?}, got {got:?}\nsignaling stderr:\n{}",
            sig.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
