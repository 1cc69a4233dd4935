//! Prometheus metrics of one instance (`prometheus-client`, OpenMetrics text on
//! `signaling.metrics_listen`). Call outcomes are counted from the state machine's committed
//! [`Transition`]s in the engine, so with several instances on Redis every transition is counted
//! once, by the instance that applied it: sum over instances for the service's totals. Gauges
//! (sockets, Redis up, draining) are per instance.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::calls::{CallState, Transition};

/// How a call that rang ended up; each call gets exactly one.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// A callee device answered.
    answered,
    /// The callee declined.
    rejected,
    /// The callee was in another call.
    busy,
    /// Nobody answered within the ring timeout.
    no_answer,
    /// The caller hung up, dropped or lost a glare before an answer.
    cancelled,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabel {
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: &'static str,
}

/// Where an authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEndpoint {
    /// `GET /v1/ice-servers`.
    Http,
    /// The Socket.IO handshake.
    Socket,
}

/// Which Redis user failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisComponent {
    /// The call-state store (reads, commits, deadline claims, pings).
    Store,
    /// The Socket.IO adapter (cross-instance emits and socket lookups).
    Adapter,
    /// The instance registry (heartbeats, reaping).
    Nodes,
    /// The relays' registry read for ICE configs.
    Fleet,
}

impl RedisComponent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Adapter => "adapter",
            Self::Nodes => "nodes",
            Self::Fleet => "fleet",
        }
    }
}

/// Every metric of the instance.
pub struct Metrics {
    registry: Registry,
    calls_started: Counter,
    calls: Family<OutcomeLabel, Counter>,
    calls_ended: Family<ReasonLabel, Counter>,
    ring_seconds: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    call_seconds: Histogram,
    sockets: Gauge,
    sockets_dropped: Family<DropLabel, Counter>,
    redis_up: Gauge,
    redis_errors: Family<ComponentLabel, Counter>,
    ice_requests: Family<ResultLabel, Counter>,
    auth_failures: Family<AuthLabel, Counter>,
    draining: Gauge,
    fleet_relays: Family<StateLabel, Gauge>,
    fleet_served: Family<SourceLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Ring times: a ring timeout is 45 s by default, answers mostly come within 2-20 s.
fn ring_histogram() -> Histogram {
    Histogram::new([0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family (so each appears in a scrape from the start, at zero).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let calls_started = Counter::default();
        let calls = Family::<OutcomeLabel, Counter>::default();
        let calls_ended = Family::<ReasonLabel, Counter>::default();
        let ring_seconds = Family::<OutcomeLabel, Histogram, fn() -> Histogram>::new_with_constructor(ring_histogram);
        // Calls last seconds to hours.
        let call_seconds =
            Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_200.0, 1_800.0, 3_600.0, 7_200.0]);
        let sockets = Gauge::default();
        let sockets_dropped = Family::<DropLabel, Counter>::default();
        // Present at zero from the start, so an alert on its rate needs no absent() clause.
        drop(sockets_dropped.get_or_create(&DropLabel { reason: "send_queue_full" }));
        let redis_up = Gauge::default();
        let redis_errors = Family::<ComponentLabel, Counter>::default();
        let ice_requests = Family::<ResultLabel, Counter>::default();
        let auth_failures = Family::<AuthLabel, Counter>::default();
        let draining = Gauge::default();
        let fleet_relays = Family::<StateLabel, Gauge>::default();
        let fleet_served = Family::<SourceLabel, Counter>::default();
        registry.register("signaling_calls_started", "Calls initiated (ringing).", calls_started.clone());
        registry.register(
            "signaling_calls",
            "Calls by how the ringing ended: answered, rejected, busy, no_answer, cancelled.",
            calls.clone(),
        );
        registry.register("signaling_calls_ended", "Answered calls that ended, by reason.", calls_ended.clone());
        registry.register_with_unit(
            "signaling_call_ring_duration",
            "Time from call:initiate until answered, rejected, no answer or cancelled, by outcome.",
            Unit::Seconds,
            ring_seconds.clone(),
        );
        registry.register_with_unit(
            "signaling_call_duration",
            "Time from the answer to the end of answered calls.",
            Unit::Seconds,
            call_seconds.clone(),
        );
        registry.register(
            "signaling_sockets_connected",
            "Socket.IO sockets connected to this instance.",
            sockets.clone(),
        );
        registry.register(
            "signaling_sockets_dropped",
            "Sockets this instance closed itself, by reason: send_queue_full (a send found socket_send_queue packets waiting).",
            sockets_dropped.clone(),
        );
        registry.register(
            "signaling_redis_up",
            "1 when the call store answered the last check (each scrape pings it), 0 otherwise; always 1 without Redis.",
            redis_up.clone(),
        );
        registry.register("signaling_redis_errors", "Failed Redis operations, by component.", redis_errors.clone());
        registry.register(
            "signaling_ice_config_requests",
            "GET /v1/ice-servers requests, by result.",
            ice_requests.clone(),
        );
        registry.register(
            "signaling_auth_failures",
            "Refused credentials, by endpoint (http, socket) and reason.",
            auth_failures.clone(),
        );
        registry.register(
            "signaling_draining",
            "1 while this instance drains after SIGTERM (readyz answers 503).",
            draining.clone(),
        );
        registry.register(
            "signaling_fleet_relays",
            "Relays in the registry as of the last read, by state: healthy, draining, stale (not updated within three heartbeats).",
            fleet_relays.clone(),
        );
        registry.register(
            "signaling_fleet_served",
            "ICE configs by where their relays came from: registry (latest read), cache (Redis unreachable, last read), static ([[relays]]).",
            fleet_served.clone(),
        );
        Self {
            registry,
            calls_started,
            calls,
            calls_ended,
            ring_seconds,
            call_seconds,
            sockets,
            sockets_dropped,
            redis_up,
            redis_errors,
            ice_requests,
            auth_failures,
            draining,
            fleet_relays,
            fleet_served,
        }
    }

    /// Counts one committed transition.
    pub fn transition(&self, t: &Transition) {
        let outcome = match (t.from, t.to) {
            (None, CallState::Ringing) => {
                self.calls_started.inc();
                None
            }
            (None, CallState::Busy) => Some(Outcome::busy),
            // The refused side of a glare: it never rang.
            (None, CallState::Cancelled) => Some(Outcome::cancelled),
            (Some(CallState::Ringing), CallState::Accepted) => Some(Outcome::answered),
            (Some(CallState::Ringing), CallState::Rejected) => Some(Outcome::rejected),
            (Some(CallState::Ringing), CallState::NoAnswer) => Some(Outcome::no_answer),
            (Some(CallState::Ringing), CallState::Cancelled) => Some(Outcome::cancelled),
            (Some(CallState::Accepted), CallState::Ended) => {
                let reason = t.reason.as_deref().unwrap_or("unknown").replace('-', "_");
                self.calls_ended.get_or_create(&ReasonLabel { reason }).inc();
                if let Some(ms) = t.talking_ms {
                    self.call_seconds.observe(ms as f64 / 1000.0);
                }
                None
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            let label = OutcomeLabel { outcome };
            self.calls.get_or_create(&label).inc();
            if let Some(ms) = t.ringing_ms {
                self.ring_seconds.get_or_create(&label).observe(ms as f64 / 1000.0);
            }
        }
    }

    /// A socket joined (`+1`) or left (`-1`) this instance.
    pub fn socket_delta(&self, delta: i64) {
        self.sockets.inc_by(delta);
    }

    /// This instance closed a socket; `reason` is [`crate::socket::DropReason::as_str`].
    pub fn socket_dropped(&self, reason: &'static str) {
        self.sockets_dropped.get_or_create(&DropLabel { reason }).inc();
    }

    /// The result of the latest Redis check.
    pub fn redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// A failed Redis operation.
    pub fn redis_error(&self, component: RedisComponent) {
        self.redis_errors.get_or_create(&ComponentLabel { component: component.as_str() }).inc();
    }

    /// One `/v1/ice-servers` answer: `ok`, `unauthorized`, `bad_request`, `rate_limited`.
    pub fn ice_request(&self, result: &'static str) {
        self.ice_requests.get_or_create(&ResultLabel { result }).inc();
    }

    /// One refused credential; `reason` is [`crate::auth::AuthError::reason`] or `origin`.
    pub fn auth_failure(&self, endpoint: AuthEndpoint, reason: &'static str) {
        let endpoint = match endpoint {
            AuthEndpoint::Http => "http",
            AuthEndpoint::Socket => "socket",
        };
        self.auth_failures.get_or_create(&AuthLabel { endpoint, reason }).inc();
    }

    /// What the latest registry read found.
    pub fn fleet_relays(&self, healthy: usize, draining: usize, stale: usize) {
        for (state, n) in [("healthy", healthy), ("draining", draining), ("stale", stale)] {
            self.fleet_relays.get_or_create(&StateLabel { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One ICE config served in fleet mode, by `Source::as_str`.
    pub fn fleet_served(&self, source: &'static str) {
        self.fleet_served.get_or_create(&SourceLabel { source }).inc();
    }

    /// Draining started.
    pub fn draining(&self) {
        self.draining.set(1);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A counter's current value, for tests: `signaling_calls_total{outcome="answered"}`.
    #[cfg(test)]
    pub(crate) fn calls_of(&self, outcome: Outcome) -> u64 {
        self.calls.get_or_create(&OutcomeLabel { outcome }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: Option<CallState>, to: CallState, ringing_ms: Option<u64>, reason: Option<&str>) -> Transition {
        Transition {
            call_id: "c".into(),
            from,
            to,
            reason: reason.map(str::to_owned),
            ringing_ms,
            talking_ms: (to == CallState::Ended).then_some(90_000),
        }
    }

    #[test]
    fn transitions_are_counted_by_outcome_with_ring_times() {
        let m = Metrics::new();
        m.transition(&t(None, CallState::Ringing, None, None));
        m.transition(&t(Some(CallState::Ringing), CallState::Accepted, Some(2_500), None));
        m.transition(&t(Some(CallState::Accepted), CallState::Ended, None, Some("peer-disconnected")));
        m.transition(&t(None, CallState::Busy, None, Some("busy")));
        m.transition(&t(Some(CallState::Ringing), CallState::NoAnswer, Some(45_000), Some("no-answer")));
        // A write that changes no state (a disconnect's grace) is never a transition, and a
        // ringing -> ringing one would count nothing either.
        m.transition(&t(Some(CallState::Ringing), CallState::Ringing, None, None));
        assert_eq!(m.calls_of(Outcome::answered), 1);
        assert_eq!(m.calls_of(Outcome::busy), 1);
        assert_eq!(m.calls_of(Outcome::no_answer), 1);
        assert_eq!(m.calls_of(Outcome::rejected), 0);
        let text = m.render();
        for line in [
            "signaling_calls_started_total 1",
            "signaling_calls_total{outcome=\"answered\"} 1",
            "signaling_calls_ended_total{reason=\"peer_disconnected\"} 1",
            "signaling_call_ring_duration_seconds_count{outcome=\"answered\"} 1",
            "signaling_call_ring_duration_seconds_bucket{le=\"3.0\",outcome=\"answered\"} 1",
            "signaling_call_ring_duration_seconds_bucket{le=\"2.0\",outcome=\"answered\"} 0",
            "signaling_call_ring_duration_seconds_sum{outcome=\"no_answer\"} 45.0",
            "signaling_call_duration_seconds_count 1",
            "signaling_sockets_connected 0",
            "signaling_sockets_dropped_total{reason=\"send_queue_full\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("outcome=\"busy\"} 1\nsignaling_call_ring"), "busy never rang");
    }

    #[test]
    fn gauges_and_labelled_counters() {
        let m = Metrics::new();
        m.socket_delta(1);
        m.socket_delta(1);
        m.socket_delta(-1);
        m.socket_dropped("send_queue_full");
        m.redis_up(true);
        m.redis_error(RedisComponent::Store);
        m.ice_request("ok");
        m.auth_failure(AuthEndpoint::Socket, "expired");
        let text = m.render();
        for line in [
            "signaling_sockets_connected 1",
            "signaling_sockets_dropped_total{reason=\"send_queue_full\"} 1",
            "signaling_redis_up 1",
            "signaling_redis_errors_total{component=\"store\"} 1",
            "signaling_ice_config_requests_total{result=\"ok\"} 1",
            "signaling_auth_failures_total{endpoint=\"socket\",reason=\"expired\"} 1",
            "signaling_draining 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
