//! Opening an Allocate's relay sockets without holding anything across the bind: reserve a port in
//! the ledger, ask the driver for the socket ([`Output::OpenRelay`]), and confirm the allocation
//! when every bind has been answered ([`Server::relay_opened`]). A port another process holds is
//! given back and another one tried, as many times as `BIND_ATTEMPTS`.

use std::net::{IpAddr, SocketAddr};

use super::super::allocation::{FiveTuple, RelayTransport};
use super::super::ledger::UserBuckets;
use super::super::stun::{ErrorCode, TransactionId};
use super::allocate::AllocateRequest;
use super::authenticate::Authorized;
use super::{BindError, Now, Output, Server, SocketKind};

/// Bind attempts per relay address before giving up with 508, when other processes hold ports of
/// the range.
const BIND_ATTEMPTS: usize = 16;

/// An Allocate waiting for its relay sockets.
pub(super) struct Pending {
    pub(super) tid: TransactionId,
    pub(super) auth: Authorized,
    pub(super) request: AllocateRequest,
    pub(super) user_bandwidth: UserBuckets,
    binds: Vec<Bind>,
    /// Families asked for but not served (ADDRESS-ERROR-CODE 440).
    pub(super) unsupported: Vec<u8>,
    /// The first bind that failed for good: the Allocate is answered with it.
    failed: Option<ErrorCode>,
    /// The client went away meanwhile (its connection closed): nothing is answered.
    cancelled: bool,
}

impl Pending {
    pub(super) fn new(
        tid: TransactionId,
        auth: Authorized,
        request: AllocateRequest,
        user_bandwidth: UserBuckets,
        binds: Vec<Bind>,
        unsupported: Vec<u8>,
    ) -> Self {
        Pending { tid, auth, request, user_bandwidth, binds, unsupported, failed: None, cancelled: false }
    }
}

/// One relay address being opened: a reserved port (with EVEN-PORT's R bit, its successor too).
pub(super) struct Bind {
    ip: IpAddr,
    port: u16,
    /// EVEN-PORT asked for an even port.
    even: bool,
    /// Hold `port + 1` as well, for a reservation token.
    pair: bool,
    /// A claimed reservation's port: this one or none, never another.
    claimed: bool,
    state: BindState,
    /// Ports that failed to bind, not to be picked again for this request.
    tried: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindState {
    /// `port` asked for.
    Opening,
    /// `port` bound, `port + 1` asked for.
    OpeningPair,
    Bound,
    /// Given up; its ports are released.
    Failed,
}

impl Bind {
    /// The bind of a claimed reservation's port (held in the ledger already).
    pub(super) fn claimed(addr: SocketAddr) -> Self {
        let (ip, port) = (addr.ip(), addr.port());
        Bind { ip, port, even: false, pair: false, claimed: true, state: BindState::Opening, tried: Vec::new() }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    fn next(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.wrapping_add(1))
    }

    fn waiting(&self) -> bool {
        matches!(self.state, BindState::Opening | BindState::OpeningPair)
    }
}

impl Server {
    /// Reserves a port on each IP (all or none).
    pub(super) fn reserve_binds(&mut self, ips: &[IpAddr], req: &AllocateRequest) -> Result<Vec<Bind>, ErrorCode> {
        let (even, pair) = (req.even_port.is_some(), req.even_port == Some(true));
        let mut binds = Vec::with_capacity(ips.len());
        for &ip in ips {
            match self.ledger.reserve_port(ip, &mut self.rng, even, pair, &[]) {
                Ok(port) => binds.push(Bind {
                    ip,
                    port,
                    even,
                    pair,
                    claimed: false,
                    state: BindState::Opening,
                    tried: Vec::new(),
                }),
                Err(code) => {
                    for b in &binds {
                        self.unreserve(b);
                    }
                    return Err(code);
                }
            }
        }
        Ok(binds)
    }

    /// Asks the driver for every socket of `pending`.
    pub(super) fn start_binds(&mut self, tuple: FiveTuple, pending: Pending) {
        let kind = socket_kind(&pending.request);
        for b in &pending.binds {
            self.opening.insert(b.addr(), tuple);
            self.outputs.push_back(Output::OpenRelay { addr: b.addr(), kind });
        }
        self.pending.insert(tuple, pending);
    }

    /// The driver's answer to [`Output::OpenRelay`] for `addr`.
    pub fn relay_opened(&mut self, now: Now, addr: SocketAddr, result: Result<(), BindError>) {
        let Some(tuple) = self.opening.remove(&addr) else {
            // Not (or no longer) asked for: whatever was bound is not ours to keep.
            if result.is_ok() {
                self.outputs.push_back(Output::CloseRelay { addr });
            }
            return;
        };
        let Some(mut pending) = self.pending.remove(&tuple) else { return };
        let kind = socket_kind(&pending.request);
        if let Some(i) = pending.binds.iter().position(|b| b.waiting() && (b.addr() == addr || b.next() == addr)) {
            if let Err(code) = self.bind_answered(tuple, &mut pending.binds[i], addr, result, kind) {
                pending.binds[i].state = BindState::Failed;
                pending.failed.get_or_insert(code);
            }
        }
        self.settle(now, tuple, pending);
    }

    /// The client's connection closed while its Allocate waited: undone once the binds are in.
    pub(super) fn cancel_pending(&mut self, tuple: &FiveTuple) {
        if let Some(p) = self.pending.get_mut(tuple) {
            p.cancelled = true;
        }
    }

    /// Moves one bind on after the driver's answer for `addr`. `Err` once it failed for good (its
    /// ports given back).
    fn bind_answered(
        &mut self,
        tuple: FiveTuple,
        b: &mut Bind,
        addr: SocketAddr,
        result: Result<(), BindError>,
        kind: SocketKind,
    ) -> Result<(), ErrorCode> {
        match result {
            Ok(()) if b.state == BindState::Opening && b.pair => {
                b.state = BindState::OpeningPair;
                self.opening.insert(b.next(), tuple);
                self.outputs.push_back(Output::OpenRelay { addr: b.next(), kind });
                Ok(())
            }
            Ok(()) => {
                b.state = BindState::Bound;
                Ok(())
            }
            Err(BindError::InUse) => {
                if b.state == BindState::OpeningPair {
                    self.outputs.push_back(Output::CloseRelay { addr: b.addr() });
                    b.tried.push(b.port.wrapping_add(1));
                }
                b.tried.push(b.port);
                self.unreserve(b);
                // Another process took a reserved port meanwhile (the range is meant to be the
                // relay's alone): the reservation cannot be kept.
                if b.claimed || b.tried.len() >= BIND_ATTEMPTS {
                    return Err(ErrorCode::InsufficientCapacity);
                }
                b.port = self.ledger.reserve_port(b.ip, &mut self.rng, b.even, b.pair, &b.tried)?;
                b.state = BindState::Opening;
                self.opening.insert(b.addr(), tuple);
                self.outputs.push_back(Output::OpenRelay { addr: b.addr(), kind });
                Ok(())
            }
            Err(BindError::Failed(why)) => {
                tracing::warn!(%addr, error = why, "cannot open relay socket");
                if b.state == BindState::OpeningPair {
                    self.outputs.push_back(Output::CloseRelay { addr: b.addr() });
                }
                self.unreserve(b);
                Err(ErrorCode::InsufficientCapacity)
            }
        }
    }

    /// Confirms or refuses `pending` once no bind waits any more; until then it waits on.
    fn settle(&mut self, now: Now, tuple: FiveTuple, pending: Pending) {
        if pending.binds.iter().any(Bind::waiting) {
            self.pending.insert(tuple, pending);
            return;
        }
        if pending.failed.is_some() || pending.cancelled {
            for b in pending.binds.iter().filter(|b| b.state == BindState::Bound) {
                self.release_port(b.addr());
                if b.pair {
                    self.release_port(b.next());
                }
            }
            let code = pending.failed.unwrap_or(ErrorCode::InsufficientCapacity);
            let answer = !pending.cancelled;
            return self.refuse_pending(tuple, pending, code, answer);
        }
        let relays: Vec<SocketAddr> = pending.binds.iter().map(Bind::addr).collect();
        let paired = pending.binds.iter().find(|b| b.pair).map(Bind::next);
        self.confirm(now.instant, tuple, pending, relays, paired);
    }

    /// Gives a bind's reserved ports back to the ledger (no socket of them is open).
    fn unreserve(&self, b: &Bind) {
        self.ledger.release_port(b.addr());
        if b.pair {
            self.ledger.release_port(b.next());
        }
    }
}

fn socket_kind(req: &AllocateRequest) -> SocketKind {
    match req.relay_transport {
        RelayTransport::Udp => SocketKind::Udp { dont_fragment: req.dont_fragment },
        RelayTransport::Tcp => SocketKind::TcpListener,
    }
}
