//! Counters the core keeps about what it did, for metrics. Plain integers on `&mut self`: the core
//! is single-threaded, so counting costs an add, and the driver reads a snapshot when scraped.

use std::collections::BTreeMap;

use super::allocation::{ClientTransport, RelayTransport};
use super::bandwidth::Direction;
use super::server::{EndReason, TrafficSummary};

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Allocations created, by client transport, relay transport and relayed address family.
    pub allocations_created: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    pub allocations_ended: BTreeMap<&'static str, u64>,
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_from_peer: u64,
    pub bytes_from_peer: u64,
    /// Error responses sent, by code (401 challenges included).
    pub refused: BTreeMap<u16, u64>,
    /// Authentication failures by reason (a subset of the 401s).
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Requests that authenticated.
    pub auth_successes: u64,
    /// Allocates refused by a quota, by quota (`user`, `source`, `total`).
    pub quota_refusals: BTreeMap<&'static str, u64>,
    /// Allocates sent elsewhere with 300 Try Alternate, by why (`draining`, `capacity`).
    pub redirects: BTreeMap<&'static str, u64>,
    /// Peers refused by policy, by reason.
    pub peers_refused: BTreeMap<&'static str, u64>,
    /// Answers to unauthenticated requests not sent because the source was over its rate.
    pub unauthenticated_suppressed: u64,
    /// Datagrams dropped by a bandwidth cap, by direction, then by cap (allocation, user).
    pub bandwidth_dropped: [[u64; 2]; 2],
    /// Of the relayed packets above, those the kernel fast path relayed: to peers, from peers.
    pub offloaded_packets: [u64; 2],
}

/// Which bandwidth cap dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapKind {
    Allocation = 0,
    User = 1,
}

impl CapKind {
    pub const ALL: [CapKind; 2] = [CapKind::Allocation, CapKind::User];

    pub fn label(self) -> &'static str {
        match self {
            CapKind::Allocation => "allocation",
            CapKind::User => "user",
        }
    }
}

impl Stats {
    /// Adds another worker's counts to these (the relay's metrics are the sum of its workers').
    pub fn add(&mut self, other: &Stats) {
        fn add_map<K: Ord + Copy>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
            for (k, v) in from {
                *into.entry(*k).or_default() += v;
            }
        }
        add_map(&mut self.allocations_created, &other.allocations_created);
        add_map(&mut self.allocations_ended, &other.allocations_ended);
        self.packets_to_peer += other.packets_to_peer;
        self.bytes_to_peer += other.bytes_to_peer;
        self.packets_from_peer += other.packets_from_peer;
        self.bytes_from_peer += other.bytes_from_peer;
        add_map(&mut self.refused, &other.refused);
        add_map(&mut self.auth_failures, &other.auth_failures);
        self.auth_successes += other.auth_successes;
        add_map(&mut self.quota_refusals, &other.quota_refusals);
        add_map(&mut self.redirects, &other.redirects);
        add_map(&mut self.peers_refused, &other.peers_refused);
        self.unauthenticated_suppressed += other.unauthenticated_suppressed;
        self.offloaded_packets[0] += other.offloaded_packets[0];
        self.offloaded_packets[1] += other.offloaded_packets[1];
        for (into, from) in self.bandwidth_dropped.iter_mut().zip(other.bandwidth_dropped) {
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        }
    }

    pub(crate) fn allocation_created(&mut self, client: ClientTransport, relay: RelayTransport, family: &'static str) {
        let relay = match relay {
            RelayTransport::Udp => "udp",
            RelayTransport::Tcp => "tcp",
        };
        *self.allocations_created.entry((client.as_str(), relay, family)).or_default() += 1;
    }

    pub(crate) fn allocation_ended(&mut self, reason: EndReason) {
        *self.allocations_ended.entry(reason.label()).or_default() += 1;
    }

    pub(crate) fn bandwidth_dropped(&mut self, direction: Direction, cap: CapKind) {
        self.bandwidth_dropped[direction as usize][cap as usize] += 1;
    }

    /// Traffic the kernel fast path relayed, folded in as if the core had relayed it.
    pub(crate) fn offloaded(&mut self, t: TrafficSummary) {
        self.packets_to_peer += t.packets_to_peer;
        self.bytes_to_peer += t.bytes_to_peer;
        self.packets_from_peer += t.packets_from_peer;
        self.bytes_from_peer += t.bytes_from_peer;
        self.offloaded_packets[0] += t.packets_to_peer;
        self.offloaded_packets[1] += t.packets_from_peer;
    }

    pub(crate) fn refused(&mut self, code: u16) {
        *self.refused.entry(code).or_default() += 1;
    }
}
