//! The fleet registry both binaries agree on: each relay started with `turn.redis_url` keeps a
//! record of itself in Redis (what clients should be told, where it is, how loaded it is), and
//! the signaling service builds ICE configs from the live records. Only the model and the key
//! names live here (no IO), so the writer and the reader cannot drift apart.

use serde::{Deserialize, Serialize};

/// One relay as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayRecord {
    /// Stable for the life of the process: `<public host>:<listening port>`.
    pub id: String,
    /// `turn:`/`turns:` URLs clients use, one per transport offered.
    pub urls: Vec<String>,
    /// The plain STUN URL, when STUN is served.
    pub stun: Option<String>,
    /// Operator's region label (e.g. `eu-west`); empty when unset.
    pub region: String,
    /// Where a relay over capacity may send clients with 300 Try Alternate: an IP address and
    /// the UDP listening port (ALTERNATE-SERVER carries an address, not a name).
    pub alternate: Option<std::net::SocketAddr>,
    /// Allocations it takes at most (`turn.capacity`); 0 = not stated.
    pub capacity: u32,
    pub allocations: u64,
    /// Relayed bits per second, both directions, over the last heartbeat interval.
    pub relayed_bps: u64,
    /// Share of one core the process used over the last interval (1.0 = one core busy).
    pub cpu: f64,
    /// Set at once when the relay starts to drain: hand it out no more.
    pub draining: bool,
    /// Unix seconds when written; with the record's TTL it tells a reader how fresh it is.
    pub updated_at: u64,
}

impl RelayRecord {
    /// Load as a fraction of capacity, for ordering relays; relays without a stated capacity
    /// are ordered by allocation count instead (as if their capacity were 10 000).
    pub fn load(&self) -> f64 {
        let capacity = if self.capacity == 0 { 10_000.0 } else { f64::from(self.capacity) };
        self.allocations as f64 / capacity
    }

    /// Whether it is at or over its stated capacity.
    pub fn is_full(&self) -> bool {
        self.capacity > 0 && self.allocations >= u64::from(self.capacity)
    }
}

/// The sorted set of relay ids, scored by the unix time their record expires.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}:relays")
}

/// The JSON record of relay `id`, written with a TTL.
pub fn record_key(prefix: &str, id: &str) -> String {
    format!("{prefix}:relay:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(capacity: u32, allocations: u64) -> RelayRecord {
        RelayRecord {
            id: "turn1.example.org:3478".into(),
            urls: vec!["turn:turn1.example.org:3478?transport=udp".into()],
            stun: Some("stun:turn1.example.org:3478".into()),
            region: "eu".into(),
            alternate: Some("198.51.100.7:3478".parse().unwrap_or_else(|_| unreachable!())),
            capacity,
            allocations,
            relayed_bps: 1_000_000,
            cpu: 0.25,
            draining: false,
            updated_at: 1_800_000_000,
        }
    }

    #[test]
    fn load_and_fullness() {
        assert!((record(100, 50).load() - 0.5).abs() < 1e-9);
        assert!(record(100, 100).is_full());
        assert!(!record(0, 1_000_000).is_full(), "no stated capacity is never full");
        assert!(record(0, 100).load() < record(1000, 100).load());
    }

    #[test]
    fn keys_and_json_round_trip() {
        assert_eq!(registry_key("calls"), "calls:relays");
        assert_eq!(record_key("calls", "a:1"), "calls:relay:a:1");
        let r = record(10, 3);
        let json = serde_json::to_string(&r).unwrap_or_default();
        let back: RelayRecord = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(back, r);
    }
}
