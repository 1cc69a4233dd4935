//! Prometheus text exposition of the relay's counters (coturn's `--prometheus`, port 9641), on a
//! separate local listener so scrapes never share a socket with TURN traffic.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proto::Server;

/// Gauges only the driver knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverGauges {
    pub stream_connections: usize,
}

/// One metric family: its header, then `(labels, value)` samples (`labels` like `a="b"` or empty).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn one(value: impl TryInto<u64>) -> Vec<(String, u64)> {
    vec![(String::new(), value.try_into().unwrap_or(u64::MAX))]
}

/// Renders every metric in the text format (version 0.0.4).
pub fn render(server: &Server, driver: DriverGauges) -> String {
    let s = server.stats();
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    family(o, "turn_allocations_active", "gauge", "Allocations that currently exist.", one(server.allocation_count()));
    let created =
        s.allocations_created.iter().map(|((c, r), v)| (format!("transport=\"{c}\",relay_transport=\"{r}\""), *v));
    family(
        o,
        "turn_allocations_created_total",
        "counter",
        "Allocations created, by client and relay transport.",
        created,
    );
    let ended = s.allocations_ended.iter().map(|(r, v)| (format!("reason=\"{r}\""), *v));
    family(o, "turn_allocations_ended_total", "counter", "Allocations ended, by reason.", ended);
    let directions = |to: u64, from: u64| {
        vec![("direction=\"to_peer\"".to_owned(), to), ("direction=\"from_peer\"".to_owned(), from)]
    };
    family(
        o,
        "turn_relayed_packets_total",
        "counter",
        "Datagrams relayed, by direction.",
        directions(s.packets_to_peer, s.packets_from_peer),
    );
    family(
        o,
        "turn_relayed_bytes_total",
        "counter",
        "Application bytes relayed, by direction.",
        directions(s.bytes_to_peer, s.bytes_from_peer),
    );
    let refused = s.refused.iter().map(|(c, v)| (format!("code=\"{c}\""), *v));
    family(o, "turn_responses_refused_total", "counter", "Error responses sent, by STUN error code.", refused);
    let auth = s.auth_failures.iter().map(|(r, v)| (format!("reason=\"{r}\""), *v));
    family(o, "turn_auth_failures_total", "counter", "Failed authentications, by reason.", auth);
    let peers = s.peers_refused.iter().map(|(r, v)| (format!("reason=\"{r}\""), *v));
    family(o, "turn_peers_refused_total", "counter", "Peers refused by the peer policy, by reason.", peers);
    family(
        o,
        "turn_unauthenticated_suppressed_total",
        "counter",
        "Answers to unauthenticated requests withheld because the source exceeded its rate.",
        one(s.unauthenticated_suppressed),
    );
    family(
        o,
        "turn_relay_ports_in_use",
        "gauge",
        "Relay ports held by allocations and reservations.",
        one(server.ports_in_use()),
    );
    family(
        o,
        "turn_stream_connections",
        "gauge",
        "Open TCP and TLS client connections.",
        one(driver.stream_connections),
    );
    out
}

/// Serves `/metrics` and `/healthz` until the task is dropped. `snapshot` renders the current text.
pub async fn serve(listener: TcpListener, snapshot: impl Fn() -> String + 'static) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let body = snapshot();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, body)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: String) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let path = std::str::from_utf8(line).unwrap_or_default().split_whitespace().nth(1).unwrap_or_default();
    let (status, kind, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
