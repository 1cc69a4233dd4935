//! What the workers of one relay share. Each worker's core owns its allocations, permissions and
//! channels, so nothing on the data path locks; the ledger holds only what must be one figure for
//! the whole relay (relay ports, EVEN-PORT reservations, the per-user, per-source and total quotas,
//! the nonce key) and is locked only for a few map updates while an allocation starts or ends or a
//! reservation is made or claimed: never per datagram, never across a bind (a port is reserved
//! here, bound by the driver, then kept or given back). A user's bandwidth allowance is shared
//! too, lock-free (`UserBuckets`), and handed to each of the user's allocations once, at Allocate;
//! so is the per-source limit on answers to unauthenticated requests (`SourceLimiter`), since one
//! host's 5-tuples are spread over every datagram worker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
// The one lock of the core, allowed here on purpose: the ledger is the table every worker thread
// must agree on (a port one worker holds is never offered to another, a quota's last place goes to
// one claimant, a reservation token is claimed once). Its critical sections are a few map updates,
// taken when an allocation or a reservation starts or ends, never per datagram and never across a bind (ports are reserved here, bound by the driver
// afterwards, and released here if the bind fails).
#[allow(clippy::disallowed_types)]
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::Rng;

use super::bandwidth::SharedBuckets;
use super::config::{Quotas, RelayIp, ServerConfig};
use super::ports::PortPool;
use super::ratelimit::SourceLimiter;
use super::stun::ErrorCode;
use crate::proto::time::Instant;

pub struct Ledger {
    nonce_key: [u8; 32],
    /// Answers to unauthenticated requests per source, relay-wide and lock-free.
    unauthenticated: SourceLimiter,
    #[allow(clippy::disallowed_types)]
    state: Mutex<State>,
}

struct State {
    /// Relay ports per relay IP: a port one worker holds is never offered to another.
    ports: HashMap<IpAddr, PortPool>,
    /// Allocations per quota user, relay-wide (a user's clients may be served by several workers).
    users: HashMap<String, u32>,
    /// Allocations per client IP, relay-wide: one address's UDP 5-tuples are spread over the
    /// datagram workers, and its TCP and TLS clients are the stream worker's.
    sources: HashMap<IpAddr, u32>,
    allocations: usize,
    /// EVEN-PORT reservations by token: the port held for the pair's second Allocate, which may
    /// reach any worker (steering spreads one host's 5-tuples), so any worker claims it, once.
    reservations: HashMap<u64, Reservation>,
    /// Bandwidth allowances of users, while they hold allocations; each allocation keeps a handle,
    /// so the data path never comes back here.
    buckets: HashMap<String, UserBuckets>,
}

/// A port held by EVEN-PORT's R bit until an Allocate with the token claims it or it expires.
struct Reservation {
    addr: SocketAddr,
    expires: Instant,
}

/// One user's bandwidth allowance, shared lock-free by the workers serving the user's allocations.
pub type UserBuckets = Arc<SharedBuckets>;

/// A quota an Allocate would exceed: the error and the quota's name (a metrics label).
pub type QuotaExceeded = (ErrorCode, &'static str);

impl Ledger {
    /// `nonce_key`: the key every worker mints and checks nonces with, so a nonce stays valid
    /// whichever worker sees the client's next request.
    pub fn new(cfg: &ServerConfig, nonce_key: [u8; 32]) -> Self {
        let ledger = Self::with_ports(&cfg.relay_ips, cfg.min_port, cfg.max_port, nonce_key);
        ledger.unauthenticated.set_rate(cfg.unauthenticated_rate);
        ledger
    }

    #[allow(clippy::disallowed_types)]
    fn with_ports(relay_ips: &[RelayIp], min_port: u16, max_port: u16, nonce_key: [u8; 32]) -> Self {
        let ports = relay_ips.iter().map(|r| (r.bind, PortPool::new(min_port, max_port))).collect();
        Ledger {
            nonce_key,
            unauthenticated: SourceLimiter::new(0),
            state: Mutex::new(State {
                ports,
                users: HashMap::new(),
                sources: HashMap::new(),
                allocations: 0,
                reservations: HashMap::new(),
                buckets: HashMap::new(),
            }),
        }
    }

    pub fn nonce_key(&self) -> [u8; 32] {
        self.nonce_key
    }

    /// The relay's one limit on answers to unauthenticated requests, per source address.
    pub fn unauthenticated(&self) -> &SourceLimiter {
        &self.unauthenticated
    }

    /// Nothing in the state can be left half-updated by a panic (each change is one statement),
    /// so a poisoned lock is still sound to use.
    #[allow(clippy::disallowed_types)]
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more allocation of `user` from client address `source` if the quotas allow it,
    /// and hands out the user's bandwidth allowance for the allocation to keep. Checked and counted
    /// under one lock, so two workers cannot both take the last place. Give it back with
    /// [`Ledger::release`].
    pub fn claim(
        &self,
        user: &str,
        source: IpAddr,
        quotas: &Quotas,
        now: Instant,
    ) -> Result<UserBuckets, QuotaExceeded> {
        let mut state = self.lock();
        let from_source = state.sources.get(&source).copied().unwrap_or(0);
        if quotas.per_source > 0 && from_source >= quotas.per_source {
            return Err((ErrorCode::AllocationQuotaReached, "source"));
        }
        if quotas.total > 0 && state.allocations >= quotas.total as usize {
            return Err((ErrorCode::InsufficientCapacity, "total"));
        }
        let held = state.users.get(user).copied().unwrap_or(0);
        if quotas.per_user > 0 && held >= quotas.per_user {
            return Err((ErrorCode::AllocationQuotaReached, "user"));
        }
        state.allocations += 1;
        *state.users.entry(user.to_owned()).or_insert(0) += 1;
        *state.sources.entry(source).or_insert(0) += 1;
        let buckets = state.buckets.entry(user.to_owned()).or_insert_with(|| Arc::new(SharedBuckets::new(now)));
        Ok(buckets.clone())
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

    /// Picks a free port of `ip`'s range and holds it (with `pair`, its successor too) until
    /// [`Ledger::release_port`]: reserved before the driver binds it, so no other worker picks it
    /// meanwhile and nothing stays locked during the bind. `exclude`: ports that failed to bind.
    pub fn reserve_port(
        &self,
        ip: IpAddr,
        rng: &mut impl Rng,
        even: bool,
        pair: bool,
        exclude: &[u16],
    ) -> Result<u16, ErrorCode> {
        let mut state = self.lock();
        let pool = state.ports.get_mut(&ip).ok_or(ErrorCode::AddressFamilyNotSupported)?;
        let port = pool.pick(rng, even, pair, exclude).ok_or(ErrorCode::InsufficientCapacity)?;
        pool.take(port);
        if pair {
            pool.take(port + 1);
        }
        Ok(port)
    }

    pub fn release_port(&self, addr: SocketAddr) {
        release_port_in(&mut self.lock(), addr);
    }

    /// Keeps `addr` (a port already held through [`Ledger::reserve_port`]) for whoever presents
    /// the returned token before `expires`, on any worker. The token is drawn from `rng` until it
    /// is one no live reservation has.
    pub fn hold_reservation(&self, rng: &mut impl Rng, addr: SocketAddr, expires: Instant) -> u64 {
        let mut state = self.lock();
        let mut token: u64 = rng.gen();
        while state.reservations.contains_key(&token) {
            token = rng.gen();
        }
        state.reservations.insert(token, Reservation { addr, expires });
        token
    }

    /// Claims the reservation `token` names: its port, now the claimant's to bind and, in the
    /// end, to release. `None` for an unknown, claimed or expired token (an expired one's port is
    /// given back here, whether or not its worker's timer has run yet).
    pub fn claim_reservation(&self, token: u64, now: Instant) -> Option<SocketAddr> {
        let mut state = self.lock();
        let r = state.reservations.remove(&token)?;
        if r.expires <= now {
            release_port_in(&mut state, r.addr);
            return None;
        }
        Some(r.addr)
    }

    /// The timer of the worker that made reservation `token`: if it is still unclaimed and due,
    /// its port goes back to the pool.
    pub fn expire_reservation(&self, token: u64, now: Instant) {
        let mut state = self.lock();
        if state.reservations.get(&token).is_some_and(|r| r.expires <= now) {
            if let Some(r) = state.reservations.remove(&token) {
                release_port_in(&mut state, r.addr);
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

fn release_port_in(state: &mut State, addr: SocketAddr) {
    if let Some(pool) = state.ports.get_mut(&addr.ip()) {
        pool.release(addr.port());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::EPOCH;
    const ERR_USER: QuotaExceeded = (ErrorCode::AllocationQuotaReached, "user");
    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn quotas(per_user: u32, total: u32) -> Quotas {
        Quotas { per_user, total, ..Quotas::default() }
    }

    #[test]
    fn claims_count_relay_wide_and_release_gives_back() {
        let ledger = Ledger::with_ports(&[], 0, 0, [0; 32]);
        let q = quotas(2, 3);
        assert_eq!(ledger.claim("alice", HERE, &q, T0).map(drop), Ok(()));
        assert_eq!(ledger.claim("alice", HERE, &q, T0).map(drop), Ok(()));
        assert_eq!(ledger.claim("alice", HERE, &q, T0).map(drop), Err(ERR_USER));
        assert_eq!(ledger.claim("bob", HERE, &q, T0).map(drop), Ok(()));
        assert_eq!(ledger.claim("carol", HERE, &q, T0).map(drop), Err((ErrorCode::InsufficientCapacity, "total")));
        assert_eq!(ledger.allocations(), 3);
        ledger.release("alice", HERE);
        assert_eq!(ledger.claim("alice", HERE, &q, T0).map(drop), Ok(()));
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
        assert_eq!(ledger.claim("alice", HERE, &q, T0).map(drop), Ok(()));
        assert_eq!(ledger.claim("bob", HERE, &q, T0).map(drop), Ok(()));
        assert_eq!(ledger.claim("carol", HERE, &q, T0).map(drop), Err((ErrorCode::AllocationQuotaReached, "source")));
        assert_eq!(ledger.claim("carol", THERE, &q, T0).map(drop), Ok(()), "another address has its own count");
        ledger.release("bob", HERE);
        assert_eq!(ledger.claim("carol", HERE, &q, T0).map(drop), Ok(()));
    }

    #[test]
    fn a_reservation_is_claimed_once_however_many_workers_race_for_it() {
        let ip: IpAddr = "10.0.0.10".parse().expect("literal");
        let relay = [RelayIp { bind: ip, advertised: ip }];
        let ledger = Arc::new(Ledger::with_ports(&relay, 50000, 50099, [0; 32]));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let port = ledger.reserve_port(ip, &mut rng, true, true, &[]).expect("a pair");
        let held = SocketAddr::new(ip, port + 1);
        // Tokens 7, then 7 again (another worker's draw): a live token is never handed out twice.
        let mut draws = rand::rngs::mock::StepRng::new(7, 0);
        let token = ledger.hold_reservation(&mut draws, held, T0 + std::time::Duration::from_secs(30));
        let mut same = rand::rngs::mock::StepRng::new(7, 1);
        assert_eq!(ledger.hold_reservation(&mut same, SocketAddr::new(ip, 1), T0), 8);
        let claims: Vec<_> = (0..4)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || ledger.claim_reservation(token, T0))
            })
            .collect();
        let won: Vec<SocketAddr> = claims.into_iter().filter_map(|t| t.join().expect("no panic")).collect();
        assert_eq!(won, vec![held]);
        assert_eq!(ledger.ports_in_use(), 2, "the claimed port is the claimant's now");
    }

    #[test]
    fn unlimited_quotas_only_count() {
        let ledger = Ledger::with_ports(&[], 0, 0, [0; 32]);
        for _ in 0..100 {
            assert_eq!(ledger.claim("alice", HERE, &quotas(0, 0), T0).map(drop), Ok(()));
        }
        assert_eq!(ledger.allocations(), 100);
    }
}
