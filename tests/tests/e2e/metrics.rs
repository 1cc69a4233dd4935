//! `--prometheus`: the relay serves its counters in Prometheus text format on a local port, and
//! they move with what clients do (allocations, relayed traffic, authentication failures).
#![allow(clippy::unwrap_used)]

use e2e::prometheus::{get as scrape, sample};
use e2e::turn_wire::{TurnClient, Wire};
use e2e::ServerBuilder;

#[test]
fn metrics_follow_what_clients_do() {
    let server = ServerBuilder::new("metrics").prometheus().start();
    let metrics_port = server.metrics_port();
    let probe = |secret: &str| server.probe(secret, "udp");
    let good = probe(server.secret());
    server.check(good.success(), || format!("a good probe passes:\n{}\n{}", good.stdout, good.stderr));
    assert!(!probe("not-the-secret").success(), "a bad secret fails");

    let (status, body) = scrape(metrics_port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let created =
        sample(&body, "turn_allocations_created_total{transport=\"udp\",relay_transport=\"udp\",family=\"ipv4\"}");
    server.check(created == Some(1), || format!("allocations created: {created:?}\n{body}"));
    assert_eq!(sample(&body, "turn_allocations_ended_total{reason=\"deleted\"}"), Some(1), "{body}");
    assert_eq!(sample(&body, "turn_allocations_active{transport=\"udp\",family=\"ipv4\"}"), Some(0), "{body}");
    assert_eq!(sample(&body, "turn_stream_connections{transport=\"tls\"}"), Some(0), "{body}");
    assert_eq!(sample(&body, "turn_draining"), Some(0), "{body}");
    assert!(sample(&body, "turn_relayed_packets_total{direction=\"to_peer\"}") >= Some(1), "{body}");
    assert!(sample(&body, "turn_relayed_bytes_total{direction=\"from_peer\"}") >= Some(1), "{body}");
    assert_eq!(sample(&body, "turn_auth_failures_total{reason=\"bad_integrity\"}"), Some(1), "{body}");
    // Every sample belongs to a family declared with TYPE just before it.
    let mut declared = String::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared = rest.split_whitespace().next().unwrap().to_owned();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, declared, "sample outside its family: {line}");
        }
    }
    // A live allocation shows in the gauge under its transport and family.
    let (username, password) = server.credential("gauge");
    let mut live = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    live.allocate(17).unwrap();
    let body = scrape(metrics_port, "/metrics").1;
    assert_eq!(sample(&body, "turn_allocations_active{transport=\"udp\",family=\"ipv4\"}"), Some(1), "{body}");
    assert_eq!(sample(&body, "turn_allocations_active{transport=\"tcp\",family=\"ipv4\"}"), Some(0), "{body}");
    assert_eq!(scrape(metrics_port, "/healthz").0, "HTTP/1.1 200 OK");
    assert_eq!(scrape(metrics_port, "/other").0, "HTTP/1.1 404 Not Found");
}
