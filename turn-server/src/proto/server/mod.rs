//! The TURN server core: one `Server` owns every allocation of a worker and answers each datagram
//! with replies, relayed payloads and timers, never touching a socket or a clock itself.
//!
//! The driver calls [`Server::handle_client`] for datagrams on a listening socket,
//! [`Server::handle_peer`] for datagrams arriving on a relay socket, [`Server::handle_timeout`] when
//! [`Server::poll_timeout`] passes, and then drains [`Server::poll_transmit`] and
//! [`Server::poll_event`]. Relay sockets are opened and closed through [`RelaySockets`], the one
//! capability the core borrows from its driver.

mod allocate;
mod authenticate;
mod relay;
mod reply;
mod tcp;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::allocation::{Allocation, FiveTuple, Traffic};
use super::channel_data;
use super::config::ServerConfig;
use super::ledger::{Ledger, UserBuckets};
use super::nonce::NonceMinter;
use super::ratelimit::SourceLimiter;
use super::stats::Stats;
use super::stun::{Class, Message, Method};
use super::FastMap;

pub use relay::DATA_INDICATION_HEADROOM;
pub use tcp::Command;

/// The current time, as both clocks: the monotonic one for lifetimes and the wall clock for REST
/// credential expiry and nonces (both are unix-time based on the wire).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: u64,
}

/// Why the driver could not open a relay socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// Another process holds the port: the core tries another one.
    InUse,
    Failed(String),
}

/// What kind of relay socket to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A UDP relay; `dont_fragment` asks for the DF bit on what it sends.
    Udp { dont_fragment: bool },
    /// An RFC 6062 relay: a TCP listener for peers' connections (outgoing ones bind here too).
    TcpListener,
}

/// Relay sockets, opened and closed on the core's behalf.
pub trait RelaySockets {
    fn open(&mut self, addr: SocketAddr, kind: SocketKind) -> Result<(), BindError>;
    fn close(&mut self, addr: SocketAddr);
}

/// A control message (response) to send to a client over its 5-tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub tuple: FiveTuple,
    pub data: Vec<u8>,
    /// RFC 5780 answers leave from another local address or go to another port: (from, to).
    /// `None` means over the tuple itself.
    pub redirect: Option<(SocketAddr, SocketAddr)>,
}

/// Application data to send from a relay socket to a peer. Borrows the client's datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToPeer<'a> {
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// Peer data framed in place for the client: send `buf[start..end]` over `tuple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToClient {
    pub tuple: FiveTuple,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    /// Refresh with LIFETIME 0.
    Deleted,
    /// Refresh would pass the configured maximum session length.
    SessionLimit,
    /// The client's TCP or TLS connection closed (RFC 8656 section 3.1: the allocation goes with it).
    ConnectionClosed,
    /// An operator dropped it (admin interface).
    Dropped,
}

impl EndReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::SessionLimit => "session_limit",
            EndReason::ConnectionClosed => "connection_closed",
            EndReason::Dropped => "dropped",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted by client",
            EndReason::SessionLimit => "maximum session length",
            EndReason::ConnectionClosed => "connection closed",
            EndReason::Dropped => "dropped by an operator",
        }
    }
}

/// Things worth logging or counting; the driver turns them into session log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AllocationCreated {
        tuple: FiveTuple,
        username: String,
        relays: Vec<SocketAddr>,
        lifetime: Duration,
    },
    AllocationEnded {
        tuple: FiveTuple,
        username: String,
        relays: Vec<SocketAddr>,
        duration: Duration,
        traffic: TrafficSummary,
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficSummary {
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_from_peer: u64,
    pub bytes_from_peer: u64,
}

impl From<Traffic> for TrafficSummary {
    fn from(t: Traffic) -> Self {
        TrafficSummary {
            packets_to_peer: t.packets_to_peer,
            bytes_to_peer: t.bytes_to_peer,
            packets_from_peer: t.packets_from_peer,
            bytes_from_peer: t.bytes_from_peer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Allocation { tuple: FiveTuple, serial: u64 },
    Reservation { token: u64 },
    TcpConnection { id: u32 },
}

/// A port held by EVEN-PORT's R bit until an Allocate with the token claims it.
struct Reservation {
    addr: SocketAddr,
    expires: Instant,
}

pub struct Server {
    cfg: ServerConfig,
    nonces: NonceMinter,
    allocations: FastMap<FiveTuple, Allocation>,
    by_relay: FastMap<SocketAddr, FiveTuple>,
    reservations: HashMap<u64, Reservation>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Shared with the relay's other workers: ports, per-user, per-source and total quotas.
    ledger: Arc<Ledger>,
    /// Allocations per quota user on this worker, so its bandwidth buckets go with the last one.
    users_here: HashMap<String, u32>,
    /// Bandwidth allowances of users with allocations, when a per-user cap is set.
    user_bandwidth: FastMap<String, UserBuckets>,
    /// Set by [`Server::start_drain`]: new allocations are redirected or refused.
    draining: bool,
    /// Round-robin position in the alternates.
    next_alternate: usize,
    /// Less loaded relays of the fleet, best first, as the registry last reported them.
    fleet_alternates: Vec<SocketAddr>,
    /// Limits answers to unauthenticated requests (amplification and reflection).
    unauthenticated: SourceLimiter,
    /// The time of the input being handled, for code paths that are not handed it.
    now: Instant,
    rng: StdRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_serial: u64,
    indication_salt: u32,
    indications_sent: u64,
    tcp_connections: HashMap<u32, tcp::TcpConnection>,
    next_connection_id: u32,
    commands: VecDeque<Command>,
    pub(super) stats: Stats,
}

impl Server {
    /// A relay of one worker. `seed` feeds nonce keys, port choice and reservation tokens: the
    /// driver passes real randomness, tests a constant.
    pub fn new(cfg: ServerConfig, seed: [u8; 32]) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let nonce_key: [u8; 32] = rand::Rng::gen(&mut rng);
        let ledger = Arc::new(Ledger::new(&cfg, nonce_key));
        Self::with_ledger(cfg, seed, ledger)
    }

    /// One worker of a relay whose workers share `ledger` (each with its own `seed`).
    pub fn with_ledger(cfg: ServerConfig, seed: [u8; 32], ledger: Arc<Ledger>) -> Self {
        let mut rng = StdRng::from_seed(seed);
        // `new` drew the nonce key first; skipped here so every later draw is the same either way.
        let _: [u8; 32] = rand::Rng::gen(&mut rng);
        let nonce_key = ledger.nonce_key();
        let indication_salt: u32 = rand::Rng::gen(&mut rng);
        let next_connection_id: u32 = rand::Rng::gen(&mut rng);
        let unauthenticated = SourceLimiter::new(cfg.unauthenticated_rate);
        Server {
            nonces: {
                let mut minter = NonceMinter::new(nonce_key, cfg.nonce_lifetime_secs);
                minter.set_keys(&cfg.nonce_keys);
                minter
            },
            cfg,
            allocations: FastMap::default(),
            by_relay: FastMap::default(),
            reservations: HashMap::new(),
            timers: BinaryHeap::new(),
            ledger,
            users_here: HashMap::new(),
            user_bandwidth: FastMap::default(),
            draining: false,
            next_alternate: 0,
            fleet_alternates: Vec::new(),
            unauthenticated,
            now: Instant::now(),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_serial: 1,
            indication_salt,
            indications_sent: 0,
            tcp_connections: HashMap::new(),
            next_connection_id,
            commands: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Applies a new configuration without touching live allocations: credentials (so secrets
    /// rotate while calls keep the key they were created with), peer policy, quotas, lifetimes of
    /// what is created from now on, rate limits. Addresses, ports and the realm need a restart;
    /// their names are returned when they differ, and the old values stay.
    pub fn reload(&mut self, new: ServerConfig) -> Vec<&'static str> {
        let mut needs_restart = Vec::new();
        if new.realm != self.cfg.realm {
            needs_restart.push("realm");
        }
        if new.relay_ips != self.cfg.relay_ips {
            needs_restart.push("turn.relay_ips");
        }
        if (new.min_port, new.max_port) != (self.cfg.min_port, self.cfg.max_port) {
            needs_restart.push("turn.min_port/max_port");
        }
        if new.nat_discovery != self.cfg.nat_discovery {
            needs_restart.push("turn.alt_listening_ip");
        }
        if new.unauthenticated_rate != self.cfg.unauthenticated_rate {
            self.unauthenticated = SourceLimiter::new(new.unauthenticated_rate);
        }
        self.nonces.set_lifetime(new.nonce_lifetime_secs);
        self.nonces.set_keys(&new.nonce_keys);
        let cfg = &mut self.cfg;
        cfg.software = new.software;
        cfg.credentials = new.credentials;
        cfg.nonce_lifetime_secs = new.nonce_lifetime_secs;
        cfg.unauthenticated_rate = new.unauthenticated_rate;
        cfg.lifetimes = new.lifetimes;
        cfg.quotas = new.quotas;
        cfg.peer_policy = new.peer_policy;
        cfg.no_stun = new.no_stun;
        cfg.bandwidth = new.bandwidth;
        cfg.alternate_servers = new.alternate_servers;
        cfg.capacity = new.capacity;
        if cfg.bandwidth.per_user == 0 {
            self.user_bandwidth.clear();
        }
        needs_restart
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Allocations of this worker.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// What this worker shares with the relay's others.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn allocation(&self, tuple: &FiveTuple) -> Option<&Allocation> {
        self.allocations.get(tuple)
    }

    /// Every allocation, in no particular order (for the admin interface).
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.values()
    }

    /// Ends every allocation whose username or quota user (a REST credential's user id) is `user`.
    /// Returns how many ended.
    pub fn drop_user(&mut self, now: Instant, user: &str, sockets: &mut dyn RelaySockets) -> usize {
        let doomed: Vec<FiveTuple> =
            self.allocations.values().filter(|a| a.username == user || a.quota_user == user).map(|a| a.tuple).collect();
        for tuple in &doomed {
            self.remove_allocation(tuple, now, EndReason::Dropped, sockets);
        }
        doomed.len()
    }

    /// Stops taking new allocations: from now on an Allocate is answered 300 Try Alternate (when
    /// alternate servers are configured) or 508, while existing allocations carry on.
    pub fn start_drain(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The fleet's relays a full or draining relay may send clients to, best first (from the
    /// registry; the driver refreshes it every heartbeat).
    pub fn set_fleet_alternates(&mut self, alternates: Vec<SocketAddr>) {
        self.fleet_alternates = alternates;
    }

    /// Relay ports held relay-wide, allocations and reservations together (for leak checks and
    /// metrics).
    pub fn ports_in_use(&self) -> usize {
        self.ledger.ports_in_use()
    }

    /// A datagram from a client. Returns payload to relay to a peer, if any; replies are queued
    /// for [`Server::poll_transmit`].
    pub fn handle_client<'a>(
        &mut self,
        now: Now,
        tuple: FiveTuple,
        data: &'a [u8],
        sockets: &mut dyn RelaySockets,
    ) -> Option<ToPeer<'a>> {
        if channel_data::looks_like_channel_data(data) {
            return self.channel_data_from_client(now.instant, tuple, data);
        }
        self.now = now.instant;
        let msg = match Message::parse(data) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(client = %tuple.client, error = %e, "dropped malformed datagram");
                return None;
            }
        };
        let typ = msg.message_type();
        match (typ.class, typ.method) {
            (Class::Request, Method::Binding) => self.binding(tuple, &msg),
            (Class::Request, Method::Allocate) => self.allocate(now, tuple, &msg, sockets),
            (Class::Request, Method::Refresh) => self.refresh(now, tuple, &msg, sockets),
            (Class::Request, Method::CreatePermission) => self.create_permission(now, tuple, &msg),
            (Class::Request, Method::ChannelBind) => self.channel_bind(now, tuple, &msg),
            (Class::Request, Method::Connect) => self.connect(now, tuple, &msg),
            (Class::Request, Method::ConnectionBind) => self.connection_bind(now, tuple, &msg),
            (Class::Request, method) => {
                let why = format!("unsupported method {:#05x}", method.code());
                self.reply_error(tuple, &msg, 400, None, &why);
            }
            (Class::Indication, Method::Send) => return self.send_indication(now.instant, tuple, &msg),
            // Binding indications are keepalives; responses are not ours to handle.
            _ => {}
        }
        None
    }

    /// A client's TCP or TLS connection is gone: its allocation, if any, ends with it.
    pub fn connection_closed(&mut self, now: Instant, tuple: FiveTuple, sockets: &mut dyn RelaySockets) {
        self.remove_allocation(&tuple, now, EndReason::ConnectionClosed, sockets);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant, sockets: &mut dyn RelaySockets) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Allocation { tuple, serial } => self.allocation_timer(now, at, tuple, serial, sockets),
                Timer::TcpConnection { id } => self.tcp_connection_timer(now, id),
                Timer::Reservation { token } => {
                    if self.reservations.get(&token).is_some_and(|r| r.expires <= now) {
                        if let Some(r) = self.reservations.remove(&token) {
                            self.release_port(r.addr, sockets);
                        }
                    }
                }
            }
        }
    }

    fn allocation_timer(
        &mut self,
        now: Instant,
        at: Instant,
        tuple: FiveTuple,
        serial: u64,
        sockets: &mut dyn RelaySockets,
    ) {
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        if alloc.serial != serial || alloc.timer_at != at {
            return; // superseded by a later allocation or an earlier deadline
        }
        if alloc.expires <= now {
            self.remove_allocation(&tuple, now, EndReason::Expired, sockets);
        } else {
            let expires = alloc.expires;
            self.schedule_allocation(&tuple, expires);
        }
    }

    /// (Re)arms the allocation's timer for `at`.
    fn schedule_allocation(&mut self, tuple: &FiveTuple, at: Instant) {
        if let Some(alloc) = self.allocations.get_mut(tuple) {
            alloc.timer_at = at;
            let timer = Timer::Allocation { tuple: *tuple, serial: alloc.serial };
            self.timers.push(Reverse((at, timer)));
        }
    }

    fn remove_allocation(
        &mut self,
        tuple: &FiveTuple,
        now: Instant,
        reason: EndReason,
        sockets: &mut dyn RelaySockets,
    ) {
        let Some(alloc) = self.allocations.remove(tuple) else { return };
        self.close_tcp_connections(tuple);
        for relay in &alloc.relays {
            self.by_relay.remove(relay);
            self.release_port(*relay, sockets);
        }
        self.stats.allocation_ended(reason);
        self.ledger.release(&alloc.quota_user, alloc.tuple.client.ip());
        decrement(&mut self.users_here, &alloc.quota_user);
        if !self.users_here.contains_key(&alloc.quota_user) {
            self.user_bandwidth.remove(&alloc.quota_user);
        }
        self.events.push_back(Event::AllocationEnded {
            tuple: alloc.tuple,
            username: alloc.username,
            relays: alloc.relays,
            duration: now.saturating_duration_since(alloc.created),
            traffic: alloc.traffic.into(),
            reason,
        });
    }

    fn release_port(&mut self, addr: SocketAddr, sockets: &mut dyn RelaySockets) {
        sockets.close(addr);
        if let Some(pool) = self.ledger.lock().ports.get_mut(&addr.ip()) {
            pool.release(addr.port());
        }
    }
}

/// Counts down a quota entry, removing it at zero so the maps hold only live holders.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}
