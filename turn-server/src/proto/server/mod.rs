//! The TURN server core: one `Server` owns every allocation of a worker and answers each datagram
//! with replies, relayed payloads and timers, never touching a socket, a clock or a lock of its own
//! (the relay-wide [`Ledger`] is the one shared table: locked as allocations and EVEN-PORT
//! reservations start and end, never for relayed data; its per-source limit on unauthenticated
//! answers is lock-free).
//!
//! The contract with drivers is in `io`: the data path answers directly
//! ([`Server::handle_client`] returns a [`ToPeer`], [`Server::handle_peer`] a [`ToClient`]);
//! everything else comes out of [`Server::poll_output`] as [`Output`]s, drained after every input.

mod allocate;
mod authenticate;
mod bind;
mod io;
mod offload;
mod relay;
mod reply;
mod tcp;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::allocation::{Allocation, FiveTuple};
use super::channel_data;
use super::config::ServerConfig;
use super::ledger::Ledger;
use super::nonce::NonceMinter;
use super::stats::Stats;
use super::stun::{Class, ErrorCode, Message, Method};
use super::FastMap;
use crate::proto::time::Instant;

pub use io::{
    BindError, ChannelRoute, EndReason, Event, Now, OffloadCommand, Output, SocketKind, TcpCommand, ToClient, ToPeer,
    TrafficSummary, Transmit,
};
pub use relay::DATA_INDICATION_HEADROOM;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Allocation { tuple: FiveTuple, serial: u64 },
    Reservation { token: u64 },
    TcpConnection { id: u32 },
}

pub struct Server {
    cfg: ServerConfig,
    nonces: NonceMinter,
    allocations: FastMap<FiveTuple, Allocation>,
    by_relay: FastMap<SocketAddr, FiveTuple>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Shared with the relay's other workers: ports, per-user, per-source and total quotas.
    ledger: Arc<Ledger>,
    /// Allocates waiting for the driver to bind their relay sockets, by 5-tuple.
    pending: HashMap<FiveTuple, bind::Pending>,
    /// Relay addresses asked for with [`Output::OpenRelay`] and not yet answered: whose they are.
    opening: HashMap<SocketAddr, FiveTuple>,
    /// Set by [`Server::start_drain`]: new allocations are redirected or refused.
    draining: bool,
    /// Round-robin position in the alternates.
    next_alternate: usize,
    /// Less loaded relays of the fleet, best first, as the registry last reported them.
    fleet_alternates: Vec<SocketAddr>,
    rng: StdRng,
    /// What the driver is to do, in order (see [`Server::poll_output`]).
    outputs: VecDeque<Output>,
    next_serial: u64,
    indication_salt: u32,
    indications_sent: u64,
    tcp_connections: HashMap<u32, tcp::TcpConnection>,
    next_connection_id: u32,
    /// Whether live channels are mirrored into a kernel fast path ([`Output::Offload`]).
    offload: bool,
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
        // The rate is the configuration's, whichever worker's; the buckets are the relay's.
        ledger.unauthenticated().set_rate(cfg.unauthenticated_rate);
        Server {
            nonces: {
                let mut minter = NonceMinter::new(nonce_key, cfg.nonce_lifetime_secs);
                minter.set_keys(&cfg.nonce_keys);
                minter
            },
            cfg,
            allocations: FastMap::default(),
            by_relay: FastMap::default(),
            timers: BinaryHeap::new(),
            ledger,
            pending: HashMap::new(),
            opening: HashMap::new(),
            draining: false,
            next_alternate: 0,
            fleet_alternates: Vec::new(),
            rng,
            outputs: VecDeque::new(),
            next_serial: 1,
            indication_salt,
            indications_sent: 0,
            tcp_connections: HashMap::new(),
            next_connection_id,
            offload: false,
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
    pub fn reload(&mut self, now: Now, new: ServerConfig) -> Vec<&'static str> {
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
            self.ledger.unauthenticated().set_rate(new.unauthenticated_rate);
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
        // A peer the new policy refuses, or a new bandwidth cap, takes routes out of the kernel.
        self.resync_offload_all(now);
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
    pub fn drop_user(&mut self, now: Now, user: &str) -> usize {
        let doomed: Vec<FiveTuple> =
            self.allocations.values().filter(|a| a.username == user || a.quota_user == user).map(|a| a.tuple).collect();
        for tuple in &doomed {
            self.remove_allocation(tuple, now.instant, EndReason::Dropped);
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

    /// A datagram (or, over TCP and TLS, a frame) from a client. Returns the part of `data` to
    /// relay to a peer, if any; anything else it causes is queued for [`Server::poll_output`].
    pub fn handle_client(&mut self, now: Now, tuple: FiveTuple, data: &[u8]) -> Option<ToPeer> {
        if channel_data::looks_like_channel_data(data) {
            return self.channel_data_from_client(now.instant, tuple, data);
        }
        let msg = match Message::parse(data) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(client = %tuple.client, error = %e, "dropped malformed datagram");
                return None;
            }
        };
        let typ = msg.message_type();
        match (typ.class, typ.method) {
            (Class::Request, Method::Binding) => self.binding(now.instant, tuple, &msg),
            (Class::Request, Method::Allocate) => self.allocate(now, tuple, &msg),
            (Class::Request, Method::Refresh) => self.refresh(now, tuple, &msg),
            (Class::Request, Method::CreatePermission) => self.create_permission(now, tuple, &msg),
            (Class::Request, Method::ChannelBind) => self.channel_bind(now, tuple, &msg),
            (Class::Request, Method::Connect) => self.connect(now, tuple, &msg),
            (Class::Request, Method::ConnectionBind) => self.connection_bind(now, tuple, &msg),
            (Class::Request, method) => {
                let why = format!("unsupported method {:#05x}", method.code());
                self.reply_error_unauthenticated(now.instant, tuple, &msg, ErrorCode::BadRequest, &why);
            }
            (Class::Indication, Method::Send) => return self.send_indication(now.instant, tuple, &msg),
            // Binding indications are keepalives; responses are not ours to handle.
            _ => {}
        }
        None
    }

    /// A client's TCP or TLS connection is gone: its allocation, if any, ends with it.
    pub fn connection_closed(&mut self, now: Now, tuple: FiveTuple) {
        self.cancel_pending(&tuple);
        self.remove_allocation(&tuple, now.instant, EndReason::ConnectionClosed);
    }

    /// The next thing for the driver to do; [`Output::Timeout`] when there is nothing more until
    /// then. Drain it after every input: until [`Output::OpenRelay`] is answered, the Allocate
    /// that asked waits.
    pub fn poll_output(&mut self) -> Output {
        match self.outputs.pop_front() {
            Some(out) => out,
            None => Output::Timeout(self.timers.peek().map(|Reverse((at, _))| *at)),
        }
    }

    /// Time has reached `now`: expires what is due.
    pub fn handle_timeout(&mut self, now: Now) {
        let now = now.instant;
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Allocation { tuple, serial } => self.allocation_timer(now, at, tuple, serial),
                Timer::TcpConnection { id } => self.tcp_connection_timer(now, id),
                // The reservation is the ledger's (any worker may claim it); its socket was
                // closed when it was made, so only the port goes back.
                Timer::Reservation { token } => self.ledger.expire_reservation(token, now),
            }
        }
    }

    fn allocation_timer(&mut self, now: Instant, at: Instant, tuple: FiveTuple, serial: u64) {
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        if alloc.serial != serial || alloc.timer_at != at {
            return; // superseded by a later allocation or an earlier deadline
        }
        if alloc.expires <= now {
            self.remove_allocation(&tuple, now, EndReason::Expired);
        } else {
            // A channel or permission of an offloaded route may be what is due.
            self.sync_offload(&tuple, now);
            if let Some(at) = self.allocations.get(&tuple).map(|a| self.next_deadline(a)) {
                self.schedule_allocation(&tuple, at);
            }
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

    fn remove_allocation(&mut self, tuple: &FiveTuple, now: Instant, reason: EndReason) {
        let Some(alloc) = self.allocations.remove(tuple) else { return };
        self.withdraw_routes(&alloc);
        self.close_tcp_connections(tuple);
        for relay in &alloc.relays {
            self.by_relay.remove(relay);
            self.release_port(*relay);
        }
        self.stats.allocation_ended(reason);
        self.ledger.release(&alloc.quota_user, alloc.tuple.client.ip());
        self.outputs.push_back(Output::Event(Event::AllocationEnded {
            tuple: alloc.tuple,
            username: alloc.username,
            relays: alloc.relays,
            duration: now.saturating_duration_since(alloc.created),
            traffic: alloc.traffic.into(),
            reason,
        }));
    }

    /// Closes a bound relay socket and gives its port back.
    fn release_port(&mut self, addr: SocketAddr) {
        self.outputs.push_back(Output::CloseRelay { addr });
        self.ledger.release_port(addr);
    }
}
