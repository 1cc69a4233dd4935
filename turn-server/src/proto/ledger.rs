//! What the workers of one relay share. Each worker's core owns its allocations, permissions and
//! channels, so nothing on the data path locks; the ledger holds only what must be one figure for
//! the whole relay (relay ports, the per-user, per-source and total quotas, the nonce key) and is
//! locked only
//! while an allocation opens or ends, never per datagram. A user's bandwidth allowance is shared
//! too, as a lock of that user's own (`UserBuckets`), so workers never wait on each other's users.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::bandwidth::DirectionalBuckets;
use super::config::{Quotas, RelayIp, ServerConfig};
use super::ports::PortPool;

pub struct Ledger {
    nonce_key: [u8; 32],
    state: Mutex<State>,
}

pub(crate) struct State {
    /// Relay ports per relay IP: a port one worker holds is never offered to another.
    pub(crate) ports: HashMap<IpAddr, PortPool>,
    /// Allocations per quota user, relay-wide (a user's clients may be served by several workers).
    users: HashMap<String, u32>,
    /// Allocations per client IP, relay-wide: one address's UDP clients share a datagram worker,
    /// but its TCP and TLS clients are the stream worker's.
    sources: HashMap<IpAddr, u32>,
    allocations: usize,
    /// Bandwidth allowances of users under a per-user cap, while they hold allocations.
    buckets: HashMap<String, UserBuckets>,
}

/// One user's bandwidth allowance, shared by the workers serving the user's allocations.
pub type UserBuckets = Arc<Mutex<DirectionalBuckets>>;

/// A quota an Allocate would exceed: the error code and the quota's name (a metrics label).
pub type QuotaExceeded = (u16, &'static str);

impl Ledger {
    /// `nonce_key`: the key every worker mints and checks nonces with, so a nonce stays valid
    /// whichever worker sees the client's next request.
    pub fn new(cfg: &ServerConfig, nonce_key: [u8; 32]) -> Self {
        Self::with_ports(&cfg.relay_ips, cfg.min_port, cfg.max_port, nonce_key)
    }

    fn with_ports(relay_ips: &[RelayIp], min_port: u16, max_port: u16, nonce_key: [u8; 32]) -> Self {
        let ports = relay_ips.iter().map(|r| (r.bind, PortPool::new(min_port, max_port))).collect();
        Ledger {
            nonce_key,
            state: Mutex::new(State {
                ports,
                users: HashMap::new(),
                sources: HashMap::new(),
                allocations: 0,
                buckets: HashMap::new(),
            }),
        }
    }

    pub fn nonce_key(&self) -> [u8; 32] {
        self.nonce_key
    }

    /// Nothing in the state can be left half-updated by a panic (each change is one statement),
    /// so a poisoned lock is still sound to use.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more allocation of `user` from client address `source` if the quotas allow it;
    /// checked and counted under one lock, so two workers cannot both take the last place. Give it
    /// back with [`Ledger::release`].
    pub fn claim(&self, user: &str, source: IpAddr, quotas: &Quotas) -> Result<(), QuotaExceeded> {
        let mut state = self.lock();
        let from_source = state.sources.get(&source).copied().unwrap_or(0);
        if quotas.per_source > 0 && from_source >= quotas.per_source {
            return Err((486, "source"));
        }
        if quotas.total > 0 && state.allocations >= quotas.total as usize {
            return Err((508, "total"));
        }
        let held = state.users.get(user).copied().unwrap_or(0);
        if quotas.per_user > 0 && held >= quotas.per_user {
            return Err((486, "user"));
        }
        state.allocations += 1;
        *state.users.entry(user.to_owned()).or_insert(0) += 1;
        *state.sources.entry(source).or_insert(0) += 1;
        Ok(())
    }

    pub fn release(&self, user: &str, source: IpAddr) {
        let mut state = self.lock();
        state.allocations = state.allocations.saturating_sub(1);
        if let Some(count) = state.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                state.users.remove(user);
                state.buckets.remove(user);
            }
        }
        if let Some(count) = state.sources.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                state.sources.remove(&source);
            }
        }
    }

    /// `user`'s allowance under a per-user cap of `rate` bytes/s, made full on first use.
    pub fn user_buckets(&self, user: &str, now: Instant, rate: u64) -> UserBuckets {
        let mut state = self.lock();
        match state.buckets.get(user) {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(Mutex::new(DirectionalBuckets::new(now, rate)));
                state.buckets.insert(user.to_owned(), b.clone());
                b
            }
        }
    }

    /// Allocations relay-wide, every worker's.
    pub fn allocations(&self) -> usize {
        self.lock().allocations
    }

    /// Relay ports held relay-wide, by allocations and reservations.
    pub fn ports_in_use(&self) -> usize {
        self.lock().ports.values().map(PortPool::in_use).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn quotas(per_user: u32, total: u32) -> Quotas {
        Quotas { per_user, total, ..Quotas::default() }
    }

    #[test]
    fn claims_count_relay_wide_and_release_gives_back() {
        let ledger = Ledger::with_ports(&[], 0, 0, [0; 32]);
        let q = quotas(2, 3);
        assert_eq!(ledger.claim("alice", HERE, &q), Ok(()));
        assert_eq!(ledger.claim("alice", HERE, &q), Ok(()));
        assert_eq!(ledger.claim("alice", HERE, &q), Err((486, "user")));
        assert_eq!(ledger.claim("bob", HERE, &q), Ok(()));
        assert_eq!(ledger.claim("carol", HERE, &q), Err((508, "total")));
        assert_eq!(ledger.allocations(), 3);
        ledger.release("alice", HERE);
        assert_eq!(ledger.claim("alice", HERE, &q), Ok(()));
        for user in ["alice", "alice", "bob"] {
            ledger.release(user, HERE);
        }
        assert_eq!(ledger.allocations(), 0);
        let state = ledger.lock();
        assert!(state.users.is_empty() && state.sources.is_empty(), "released claims leave no entry behind");
    }

    #[test]
    fn the_per_source_quota_counts_every_workers_allocations_from_that_address() {
        // Two claims from one address, as the datagram worker (UDP) and the stream worker (TCP)
        // would make them: the ledger is the one count both see.
        let ledger = Ledger::with_ports(&[], 0, 0, [0; 32]);
        let q = Quotas { per_source: 2, ..Quotas::default() };
        assert_eq!(ledger.claim("alice", HERE, &q), Ok(()));
        assert_eq!(ledger.claim("bob", HERE, &q), Ok(()));
        assert_eq!(ledger.claim("carol", HERE, &q), Err((486, "source")));
        assert_eq!(ledger.claim("carol", THERE, &q), Ok(()), "another address has its own count");
        ledger.release("bob", HERE);
        assert_eq!(ledger.claim("carol", HERE, &q), Ok(()));
    }

    #[test]
    fn unlimited_quotas_only_count() {
        let ledger = Ledger::with_ports(&[], 0, 0, [0; 32]);
        for _ in 0..100 {
            assert_eq!(ledger.claim("alice", HERE, &quotas(0, 0)), Ok(()));
        }
        assert_eq!(ledger.allocations(), 100);
    }
}
