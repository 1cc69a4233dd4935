//! deploy/fleet/nginx.conf for real: the shipped file, with only what must differ on a test
//! machine replaced (the two upstream addresses, the listen port, the certificate and the GeoIP
//! database paths), in a real nginx with Debian's geoip2 module, in front of two signaling
//! instances reading three relays' records from a real `redis-server`:
//!
//! - the database (a MaxMind DB written by `e2e::mmdb`: 127.0.0.2 in EU, 127.0.0.3 in NA,
//!   127.0.0.4 in AS) is read by nginx, and its map's region goes to signaling in
//!   `X-Client-Region`: over HTTPS from 127.0.0.2 the eu-west relay is offered first, from
//!   127.0.0.3 the us-east one, from an address the database or the map does not know none;
//! - a client's own `X-Client-Region` never reaches signaling (nginx always sets it, and drops
//!   it when its map has no region), though signaling would follow it if it did;
//! - `ip_hash` keeps one client network on one instance; with that instance stopped, nginx
//!   answers from the other (`proxy_next_upstream`).
//!
//! Loopback only; /etc/nginx is not touched (e2e::signaling::Nginx).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use e2e::fleet::{self, hosts_of, turn_hosts, wait_hosts};
use e2e::repo_root;
use e2e::signaling::{free_port, https_get, Nginx, Redis, Signaling, SignalingBuilder};
use e2e::LogDir;

const PREFIX: &str = "fleet-nginx-e2e";
const GEOIP2_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_geoip2_module.so";
/// Client source addresses: in the database as EU, NA and AS; 127.0.0.1 is not in it.
const EU: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NA: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const AS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const UNKNOWN: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// relay-1 is in a region no continent maps to, so the order without a region (least loaded,
/// then id: all idle) differs from both regional orders.
const NO_REGION: [&str; 3] = ["relay-1", "relay-2", "relay-3"];
const EU_FIRST: [&str; 3] = ["relay-2", "relay-1", "relay-3"];
const NA_FIRST: [&str; 3] = ["relay-3", "relay-1", "relay-2"];
const SERVED: &str = "signaling_fleet_served_total{source=\"registry\"}";

/// `site` with each `from` (which must occur exactly once, or the file changed shape and this
/// test must follow it) replaced.
fn replace_once(site: &str, replacements: &[(&str, String)]) -> String {
    let mut out = site.to_owned();
    for (from, to) in replacements {
        assert_eq!(
            out.matches(from).count(),
            1,
            "deploy/fleet/nginx.conf should contain `{from}` once: update this test to the file's new shape"
        );
        out = out.replace(from, to);
    }
    out
}

fn signaling(name: &str, config: &str, jwt_secret: &str) -> Signaling {
    SignalingBuilder::new(name).config(config).jwt_secret(jwt_secret).args(["--metrics-listen", "127.0.0.1:0"]).start()
}

struct Front {
    nginx: Nginx,
    ca: std::path::PathBuf,
    token: String,
}

impl Front {
    /// The relay hosts of `/v1/ice-servers` through nginx over HTTPS, from source `from`.
    fn hosts(&self, from: Ipv4Addr, headers: &[(&str, &str)]) -> Vec<String> {
        let auth = format!("Bearer {}", self.token);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let url = format!("https://127.0.0.1:{}/v1/ice-servers", self.nginx.port);
        let r = https_get(IpAddr::V4(from), &url, &self.ca, &all);
        assert_eq!(r.status, 200, "from {from}: {}\nnginx error log:\n{}", r.body, self.nginx.error_log());
        hosts_of(&r.json())
    }
}

#[test]
fn nginx_maps_the_client_region_by_geoip_and_fails_over_between_instances() {
    assert!(
        Path::new(GEOIP2_MODULE).is_file(),
        "{GEOIP2_MODULE} not found: install Debian's libnginx-mod-http-geoip2 (tests/run-all.sh does)"
    );
    let dir = LogDir::new("fleet_nginx_geoip");
    let redis = Redis::start(dir.path());
    let _relays = [
        fleet::relay(1, "ap-south", &redis, PREFIX, dir.path()),
        fleet::relay(2, "eu-west", &redis, PREFIX, dir.path()),
        fleet::relay(3, "us-east", &redis, PREFIX, dir.path()),
    ];
    // As deploy/fleet/signaling.example.toml: behind nginx, trusting its X-Real-IP.
    let config = fleet::signaling_config(&redis, PREFIX, 60) + "trust_proxy_headers = true\n";
    let jwt = format!("jwt-{:016x}", rand::random::<u64>());
    let mut instances = [signaling("fleet-nginx-a", &config, &jwt), signaling("fleet-nginx-b", &config, &jwt)];
    for sig in &instances {
        wait_hosts(sig, "", &[], &NO_REGION, Duration::from_secs(10));
    }
    // Directly, the header orders the relays: what nginx lets through of it matters.
    assert_eq!(turn_hosts(&instances[0], "", &[("X-Client-Region", "us-east")]), NA_FIRST);
    assert_eq!(turn_hosts(&instances[1], "", &[("X-Client-Region", "eu-west")]), EU_FIRST);

    let db = dir.path().join("test-country.mmdb");
    let networks = [(EU, 32, "EU"), (NA, 32, "NA"), (AS, 32, "AS")];
    std::fs::write(&db, e2e::mmdb::continents(&networks, "e2e: loopback sources by continent")).unwrap();
    let (cert, key) = e2e::self_signed_cert(dir.path());
    let path = repo_root().join("deploy/fleet/nginx.conf");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let port = free_port();
    let site = replace_once(
        &shipped,
        &[
            ("geoip2 /usr/share/GeoIP/dbip-country-lite.mmdb {", format!("geoip2 {} {{", db.display())),
            ("server 10.0.0.31:8080 ", format!("server {} ", instances[0].addr)),
            ("server 10.0.0.32:8080 ", format!("server {} ", instances[1].addr)),
            ("listen 443 ssl", format!("listen 127.0.0.1:{port} ssl")),
            ("/etc/letsencrypt/live/messenger.example.org/fullchain.pem", cert.display().to_string()),
            ("/etc/letsencrypt/live/messenger.example.org/privkey.pem", key.display().to_string()),
        ],
    );
    let nginx = Nginx::start_with(dir.path(), &format!("load_module {GEOIP2_MODULE};"), &site, port);
    let front = Front { nginx, ca: cert, token: instances[0].token("alice", 300) };
    let before = instances.each_ref().map(|s| s.scrape().value(SERVED));

    // The source address decides, through the database and the map.
    assert_eq!(front.hosts(EU, &[]), EU_FIRST, "from {EU} (EU -> eu-west)");
    assert_eq!(front.hosts(NA, &[]), NA_FIRST, "from {NA} (NA -> us-east)");
    assert_eq!(front.hosts(AS, &[]), NO_REGION, "from {AS}: AS is in no region of the map");
    assert_eq!(front.hosts(UNKNOWN, &[]), NO_REGION, "from {UNKNOWN}: not in the database");
    // A client's own header is replaced, or dropped where the map gives no region.
    assert_eq!(front.hosts(EU, &[("X-Client-Region", "us-east")]), EU_FIRST);
    assert_eq!(front.hosts(UNKNOWN, &[("X-Client-Region", "us-east")]), NO_REGION);
    let sent = 6.0;

    // ip_hash (the first three octets of IPv4): every 127.0.0.x client on one instance.
    let after = instances.each_ref().map(|s| s.scrape().value(SERVED));
    let delta = [after[0] - before[0], after[1] - before[1]];
    assert!(delta.contains(&sent) && delta.contains(&0.0), "requests per instance through nginx: {delta:?}");
    let (busy, other) = if delta[0] == sent { (0, 1) } else { (1, 0) };

    // That instance stops (SIGTERM, as systemctl stop): nginx answers from the other.
    instances[busy].terminate();
    assert!(instances[busy].wait_exit(Duration::from_secs(15)).is_some(), "signaling did not exit after SIGTERM");
    let other_before = instances[other].scrape().value(SERVED);
    assert_eq!(front.hosts(NA, &[]), NA_FIRST, "from {NA} with one instance stopped");
    assert_eq!(front.hosts(EU, &[("X-Client-Region", "us-east")]), EU_FIRST, "from {EU} with one instance stopped");
    assert_eq!(instances[other].scrape().value(SERVED) - other_before, 2.0, "answered by the remaining instance");
    drop(front);
    drop(redis);
}
