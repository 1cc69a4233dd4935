//! Counters the core keeps about what it did, for metrics. Plain integers on `&mut self`: the core
//! is single-threaded, so counting costs an add, and the driver reads a snapshot when scraped.

use std::collections::BTreeMap;

use super::allocation::{ClientTransport, RelayTransport};
use super::server::EndReason;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Allocations created, by client transport and relay transport.
    pub allocations_created: BTreeMap<(&'static str, &'static str), u64>,
    pub allocations_ended: BTreeMap<&'static str, u64>,
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_from_peer: u64,
    pub bytes_from_peer: u64,
    /// Error responses sent, by code (401 challenges included).
    pub refused: BTreeMap<u16, u64>,
    /// Authentication failures by reason (a subset of the 401s).
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Peers refused by policy, by reason.
    pub peers_refused: BTreeMap<&'static str, u64>,
    /// Answers to unauthenticated requests not sent because the source was over its rate.
    pub unauthenticated_suppressed: u64,
}

impl Stats {
    pub(crate) fn allocation_created(&mut self, client: ClientTransport, relay: RelayTransport) {
        let relay = match relay {
            RelayTransport::Udp => "udp",
            RelayTransport::Tcp => "tcp",
        };
        *self.allocations_created.entry((client.as_str(), relay)).or_default() += 1;
    }

    pub(crate) fn allocation_ended(&mut self, reason: EndReason) {
        *self.allocations_ended.entry(reason.label()).or_default() += 1;
    }

    pub(crate) fn refused(&mut self, code: u16) {
        *self.refused.entry(code).or_default() += 1;
    }
}
