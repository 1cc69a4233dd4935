//! Prometheus text exposition of the relay's counters (coturn's `--prometheus`, port 9641), on a
//! separate local listener so scrapes never share a socket with TURN traffic.

use std::fmt::Write as _;

use tokio::net::TcpListener;

use super::http::Response;

use std::collections::BTreeMap;

use crate::proto::allocation::relay_family;
use crate::proto::stats::Stats;
use crate::proto::{ClientTransport, Server};

/// Counters only the control plane knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverGauges {
    /// Configuration reloads (SIGHUP or admin) applied and refused.
    pub reloads_ok: u64,
    pub reloads_invalid: u64,
}

/// What one worker counts, in a form that crosses threads and adds up over the workers.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub stats: Stats,
    /// Allocations by client transport and relayed family.
    pub active: BTreeMap<(&'static str, &'static str), u64>,
    /// Allocations of each worker, by its name, in worker order.
    pub per_worker: Vec<(String, u64)>,
    /// Relay-wide (the ledger's), so not summed.
    pub ports_in_use: usize,
    pub draining: bool,
    /// Open TCP and TLS client connections: (tcp, tls).
    pub stream_connections: (usize, usize),
    /// Channels are mirrored into the kernel fast path.
    pub offload_active: bool,
}

impl Sample {
    pub fn of(worker: &str, server: &Server, stream_connections: (usize, usize)) -> Self {
        let mut active = BTreeMap::new();
        for a in server.allocations() {
            *active.entry((a.tuple.transport.as_str(), relay_family(&a.relays))).or_default() += 1;
        }
        Sample {
            stats: server.stats().clone(),
            active,
            per_worker: vec![(worker.to_owned(), server.allocation_count() as u64)],
            ports_in_use: server.ports_in_use(),
            draining: server.is_draining(),
            stream_connections,
            offload_active: server.offload_enabled(),
        }
    }

    /// The sum of the workers' samples, in worker order.
    pub fn total(samples: Vec<Sample>) -> Sample {
        let mut total = Sample::default();
        for s in samples {
            total.stats.add(&s.stats);
            for (k, v) in s.active {
                *total.active.entry(k).or_default() += v;
            }
            total.per_worker.extend(s.per_worker);
            total.ports_in_use = total.ports_in_use.max(s.ports_in_use);
            total.draining |= s.draining;
            total.offload_active |= s.offload_active;
            total.stream_connections.0 += s.stream_connections.0;
            total.stream_connections.1 += s.stream_connections.1;
        }
        total
    }
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
pub fn render(sample: &Sample, driver: DriverGauges) -> String {
    let s = &sample.stats;
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    let mut active: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for t in [ClientTransport::Udp, ClientTransport::Tcp, ClientTransport::Tls] {
        for f in ["ipv4", "ipv6", "dual"] {
            active.insert((t.as_str(), f), 0);
        }
    }
    for (k, v) in &sample.active {
        *active.entry(*k).or_default() += v;
    }
    let active = active.into_iter().map(|((t, f), v)| (format!("transport=\"{t}\",family=\"{f}\""), v));
    family(
        o,
        "turn_allocations_active",
        "gauge",
        "Allocations that exist now, by client transport and relayed family.",
        active,
    );
    let created = s
        .allocations_created
        .iter()
        .map(|((c, r, f), v)| (format!("transport=\"{c}\",relay_transport=\"{r}\",family=\"{f}\""), *v));
    family(
        o,
        "turn_allocations_created_total",
        "counter",
        "Allocations created, by client transport, relay transport and relayed address family.",
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
    family(
        o,
        "turn_offload_active",
        "gauge",
        "1 when channel data is relayed by the kernel fast path (eBPF at TC ingress).",
        [(String::new(), u64::from(sample.offload_active))],
    );
    family(
        o,
        "turn_offloaded_packets_total",
        "counter",
        "Of turn_relayed_packets_total, the datagrams the kernel fast path relayed, by direction.",
        directions(s.offloaded_packets[0], s.offloaded_packets[1]),
    );
    let refused = s.refused.iter().map(|(c, v)| (format!("code=\"{c}\""), *v));
    family(o, "turn_responses_refused_total", "counter", "Error responses sent, by STUN error code.", refused);
    let auth = s.auth_failures.iter().map(|(r, v)| (format!("reason=\"{r}\""), *v));
    family(o, "turn_auth_failures_total", "counter", "Failed authentications, by reason.", auth);
    let redirects =
        ["draining", "capacity"].map(|r| (format!("reason=\"{r}\""), s.redirects.get(r).copied().unwrap_or(0)));
    family(
        o,
        "turn_redirects_total",
        "counter",
        "Allocates sent to another relay with 300 Try Alternate, by why.",
        redirects,
    );
    family(o, "turn_auth_successes_total", "counter", "Requests that authenticated.", one(s.auth_successes));
    let quotas =
        ["user", "source", "total"].map(|q| (format!("quota=\"{q}\""), s.quota_refusals.get(q).copied().unwrap_or(0)));
    family(o, "turn_quota_refusals_total", "counter", "Allocates refused by a quota, by quota.", quotas);
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
        one(sample.ports_in_use),
    );
    let workers = sample.per_worker.iter().map(|(name, n)| (format!("worker=\"{name}\""), *n));
    family(
        o,
        "turn_worker_allocations",
        "gauge",
        "Allocations each worker thread holds (clients are spread over workers by address and port).",
        workers,
    );
    family(
        o,
        "turn_stream_connections",
        "gauge",
        "Open TCP and TLS client connections.",
        [
            ("transport=\"tcp\"".to_owned(), sample.stream_connections.0 as u64),
            ("transport=\"tls\"".to_owned(), sample.stream_connections.1 as u64),
        ],
    );
    let dropped = crate::proto::bandwidth::Direction::ALL.into_iter().flat_map(|d| {
        crate::proto::stats::CapKind::ALL.into_iter().map(move |c| {
            (format!("direction=\"{}\",cap=\"{}\"", d.label(), c.label()), s.bandwidth_dropped[d as usize][c as usize])
        })
    });
    family(
        o,
        "turn_bandwidth_dropped_packets_total",
        "counter",
        "Datagrams dropped by a bandwidth cap (max_bps per allocation, user_max_bps per user).",
        dropped,
    );
    family(
        o,
        "turn_draining",
        "gauge",
        "1 while the relay drains after SIGTERM: new allocations are redirected or refused.",
        one(u64::from(sample.draining)),
    );
    let reloads =
        [("result=\"ok\"".to_owned(), driver.reloads_ok), ("result=\"invalid\"".to_owned(), driver.reloads_invalid)];
    family(
        o,
        "turn_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or admin), applied or refused as invalid.",
        reloads,
    );
    out
}

/// Serves `/metrics` and `/healthz` until the task is dropped. `snapshot` renders the current text.
pub async fn serve(listener: TcpListener, snapshot: impl Fn() -> String + 'static) {
    super::http::serve(listener, move |request| match request.path.as_str() {
        "/metrics" => Response { content_type: "text/plain; version=0.0.4", ..Response::text(200, snapshot()) },
        "/healthz" => Response::text(200, "ok\n"),
        _ => Response::text(404, "not found\n"),
    })
    .await;
}
