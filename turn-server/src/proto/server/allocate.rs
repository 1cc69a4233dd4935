//! Allocate and Refresh (RFC 8656 sections 7.1-7.3): creating, extending and deleting allocations,
//! and opening their relay sockets from the configured port range.

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use super::super::allocation::{Allocation, ClientTransport, FiveTuple, RelayTransport, Traffic};
use super::super::stun::attr::{self, AttrError, FAMILY_IPV4, FAMILY_IPV6};
use super::super::stun::{Class, Message, MessageBuilder};
use super::authenticate::Authorized;
use super::reply::ResponseKey;
use super::{BindError, EndReason, Event, Now, RelaySockets, Reservation, Server, SocketKind, Timer};

/// UDP's protocol number in REQUESTED-TRANSPORT.
const PROTO_UDP: u8 = 17;
/// TCP's protocol number: an RFC 6062 TCP allocation.
const PROTO_TCP: u8 = 6;
/// Bind attempts before giving up with 508 when other processes hold ports of the range.
const BIND_ATTEMPTS: usize = 16;

/// Why an Allocate is sent elsewhere.
#[derive(Debug, Clone, Copy)]
enum Redirect {
    Draining,
    OverCapacity,
}

impl Redirect {
    fn label(self) -> &'static str {
        match self {
            Redirect::Draining => "draining",
            Redirect::OverCapacity => "capacity",
        }
    }
}

/// What an Allocate asked for, validated.
struct AllocateRequest {
    relay_transport: RelayTransport,
    families: Vec<u8>,
    /// Even port; with `reserve_next` also hold port + 1 under a reservation token.
    even_port: Option<bool>,
    reservation: Option<u64>,
    dont_fragment: bool,
    lifetime: Option<u32>,
}

/// Relay sockets opened for one Allocate.
struct OpenedRelays {
    relays: Vec<SocketAddr>,
    /// Families asked for but not served (ADDRESS-ERROR-CODE 440).
    unsupported: Vec<u8>,
    /// EVEN-PORT's reservation token, when the next port was held too.
    token: Option<u64>,
}

/// An error code to answer with.
type Refusal = u16;

impl Server {
    pub(super) fn allocate(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>, sockets: &mut dyn RelaySockets) {
        let Some(auth) = self.authenticate(now, tuple, req) else { return };
        let key = auth.response_key.clone();
        if let Some(existing) = self.allocations.get(&tuple) {
            if existing.allocate_tid == *req.transaction_id() {
                // A retransmission: answer as the first time, with the lifetime left.
                let lifetime = existing.expires.saturating_duration_since(now.instant);
                let relays = existing.relays.clone();
                return self.reply_allocated(tuple, req, &relays, lifetime, None, &[], &key);
            }
            return self.reply_error(tuple, req, 437, Some(&key), "5-tuple already has an allocation");
        }
        let unknown: Vec<u16> = req.unknown_required().collect();
        if !unknown.is_empty() {
            return self.reply_unknown(tuple, req, &unknown, Some(&key));
        }
        if self.draining {
            return self.redirect(tuple, req, &key, Redirect::Draining);
        }
        if self.cfg.capacity > 0
            && self.ledger.allocations() >= self.cfg.capacity as usize
            && self.has_alternate(&tuple)
        {
            return self.redirect(tuple, req, &key, Redirect::OverCapacity);
        }
        let request = match parse_allocate(req, tuple.transport) {
            Ok(r) => r,
            Err(code) => {
                return self.reply_error(tuple, req, code, Some(&key), "bad Allocate attributes");
            }
        };
        if let Err((code, quota)) = self.check_quota(&auth, tuple.client.ip()) {
            *self.stats.quota_refusals.entry(quota).or_default() += 1;
            let why = format!("{quota} quota reached (user {})", auth.quota_user);
            return self.reply_error(tuple, req, code, Some(&key), &why);
        }
        let opened = match self.open_relays(now.instant, &request, sockets) {
            Ok(r) => r,
            Err(code) => {
                self.ledger.release(&auth.quota_user, tuple.client.ip());
                return self.reply_error(tuple, req, code, Some(&key), "no relay address available");
            }
        };
        let lifetime = self.clamp_lifetime(request.lifetime, now.instant, now.instant);
        self.insert_allocation(now.instant, tuple, req, auth, &opened.relays, request.relay_transport, lifetime);
        self.reply_allocated(tuple, req, &opened.relays, lifetime, opened.token, &opened.unsupported, &key);
    }

    /// Alternates of the client's address family: the fleet's less loaded relays first, then the
    /// configured `alternate_servers`.
    fn alternates_for(&self, tuple: &FiveTuple) -> Vec<SocketAddr> {
        let mut list: Vec<SocketAddr> = self.fleet_alternates.clone();
        list.extend(self.cfg.alternate_servers.iter().filter(|a| !self.fleet_alternates.contains(a)));
        list.retain(|a| a.is_ipv4() == tuple.server.is_ipv4());
        list
    }

    fn has_alternate(&self, tuple: &FiveTuple) -> bool {
        !self.alternates_for(tuple).is_empty()
    }

    /// RFC 8489 section 10: send the client to an alternate server of its address family
    /// (authenticated, so the client can trust the redirect). Draining with none left: 508.
    fn redirect(&mut self, tuple: FiveTuple, req: &Message<'_>, key: &ResponseKey, why: Redirect) {
        let alternates = self.alternates_for(&tuple);
        if alternates.is_empty() {
            return self.reply_error(tuple, req, 508, Some(key), "draining, and no alternate server");
        }
        // The fleet's list is best first and short: spread over its best two so that one relay
        // does not take every redirected client until the next heartbeat.
        let spread = if self.fleet_alternates.is_empty() { alternates.len() } else { alternates.len().min(2) };
        let alternate = alternates[self.next_alternate % spread];
        self.next_alternate = self.next_alternate.wrapping_add(1);
        tracing::debug!(client = %tuple.client, %alternate, reason = why.label(), "Allocate redirected");
        *self.stats.redirects.entry(why.label()).or_default() += 1;
        self.stats.refused(300);
        let mut b = MessageBuilder::response_to(req, Class::Error);
        b.error_code(300, super::reply::reason(300)).address(attr::ALTERNATE_SERVER, &alternate);
        self.queue(tuple, b, Some(key));
    }

    /// Counts the allocation against the relay-wide quotas, or says which one it would exceed
    /// (code, name).
    fn check_quota(&self, auth: &Authorized, client: IpAddr) -> Result<(), (Refusal, &'static str)> {
        self.ledger.claim(&auth.quota_user, client, &self.cfg.quotas)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_allocation(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message<'_>,
        auth: Authorized,
        relays: &[SocketAddr],
        relay_transport: RelayTransport,
        lifetime: Duration,
    ) {
        let serial = self.next_serial;
        self.next_serial += 1;
        for relay in relays {
            self.by_relay.insert(*relay, tuple);
        }
        *self.users_here.entry(auth.quota_user.clone()).or_insert(0) += 1;
        self.events.push_back(Event::AllocationCreated {
            tuple,
            username: auth.username.clone(),
            relays: relays.to_vec(),
            lifetime,
        });
        self.stats.allocation_created(tuple.transport, relay_transport, super::super::allocation::relay_family(relays));
        let expires = now + lifetime;
        self.allocations.insert(
            tuple,
            Allocation {
                tuple,
                relays: relays.to_vec(),
                relay_transport,
                username: auth.username,
                key: auth.response_key.key,
                quota_user: auth.quota_user,
                allocate_tid: *req.transaction_id(),
                created: now,
                expires,
                timer_at: expires,
                serial,
                permissions: Vec::new(),
                channels: Vec::new(),
                traffic: Traffic::default(),
                bandwidth: None,
            },
        );
        self.schedule_allocation(&tuple, expires);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_allocated(
        &mut self,
        tuple: FiveTuple,
        req: &Message<'_>,
        relays: &[SocketAddr],
        lifetime: Duration,
        token: Option<u64>,
        family_errors: &[u8],
        key: &ResponseKey,
    ) {
        let mut b = MessageBuilder::response_to(req, Class::Success);
        for relay in relays {
            b.xor_address(attr::XOR_RELAYED_ADDRESS, &self.advertised(*relay));
        }
        b.u32_attr(attr::LIFETIME, lifetime.as_secs() as u32);
        if let Some(token) = token {
            b.attr(attr::RESERVATION_TOKEN, &token.to_be_bytes());
        }
        for family in family_errors {
            // ADDRESS-ERROR-CODE: family, reserved, then an ERROR-CODE style class/number/reason.
            let mut value = vec![*family, 0, 4, 40];
            value.extend_from_slice(super::reply::reason(440).as_bytes());
            b.attr(attr::ADDRESS_ERROR_CODE, &value);
        }
        b.xor_address(attr::XOR_MAPPED_ADDRESS, &tuple.client);
        self.queue(tuple, b, Some(key));
    }

    /// The address clients are told for a bound relay address (differs behind 1:1 NAT).
    pub(super) fn advertised(&self, relay: SocketAddr) -> SocketAddr {
        let ip = self.cfg.relay_ips.iter().find(|r| r.bind == relay.ip()).map_or(relay.ip(), |r| r.advertised);
        SocketAddr::new(ip, relay.port())
    }

    /// RFC 8656 7.2: min(requested, maximum), but never below the default; then bounded by what is
    /// left of the maximum session length.
    fn clamp_lifetime(&self, requested: Option<u32>, created: Instant, now: Instant) -> Duration {
        let l = self.cfg.lifetimes;
        let mut lifetime = match requested {
            Some(secs) => Duration::from_secs(u64::from(secs)).min(l.max_allocation).max(l.default_allocation),
            None => l.default_allocation,
        };
        if let Some(max_session) = l.max_session {
            let left = (created + max_session).saturating_duration_since(now);
            lifetime = lifetime.min(left);
        }
        lifetime
    }

    /// Opens relay sockets for every requested family. Returns the bound addresses, the families
    /// that could not be served (ADDRESS-ERROR-CODE 440) and a reservation token if one was made.
    fn open_relays(
        &mut self,
        now: Instant,
        req: &AllocateRequest,
        sockets: &mut dyn RelaySockets,
    ) -> Result<OpenedRelays, Refusal> {
        if let Some(token) = req.reservation {
            // RFC 8656 7.2: an unknown or expired token is 508.
            let r = self.reservations.remove(&token).ok_or(508u16)?;
            return Ok(OpenedRelays { relays: vec![r.addr], unsupported: Vec::new(), token: None });
        }
        let mut relays = Vec::new();
        let mut unsupported = Vec::new();
        let mut token = None;
        for &family in &req.families {
            let Some(ip) = self.cfg.relay_ips.iter().map(|r| r.bind).find(|ip| ip.is_ipv4() == (family == FAMILY_IPV4))
            else {
                unsupported.push(family);
                continue;
            };
            let reserve_next = req.even_port == Some(true);
            let kind = match req.relay_transport {
                RelayTransport::Udp => SocketKind::Udp { dont_fragment: req.dont_fragment },
                RelayTransport::Tcp => SocketKind::TcpListener,
            };
            let port = match self.bind_port(ip, req.even_port.is_some(), reserve_next, kind, sockets) {
                Ok(port) => port,
                Err(code) => {
                    self.undo_relays(relays, token, sockets);
                    return Err(code);
                }
            };
            relays.push(SocketAddr::new(ip, port));
            if reserve_next {
                let t: u64 = self.rng.gen();
                let expires = now + self.cfg.lifetimes.reservation;
                self.reservations.insert(t, Reservation { addr: SocketAddr::new(ip, port + 1), expires });
                self.timers.push(Reverse((expires, Timer::Reservation { token: t })));
                token = Some(t);
            }
        }
        if relays.is_empty() {
            return Err(440);
        }
        Ok(OpenedRelays { relays, unsupported, token })
    }

    /// Gives back what a failed Allocate had already opened.
    fn undo_relays(&mut self, relays: Vec<SocketAddr>, token: Option<u64>, sockets: &mut dyn RelaySockets) {
        for relay in relays {
            self.release_port(relay, sockets);
        }
        if let Some(r) = token.and_then(|t| self.reservations.remove(&t)) {
            self.release_port(r.addr, sockets);
        }
    }

    /// Picks and binds a port from the range, retrying ports other processes hold.
    fn bind_port(
        &mut self,
        ip: std::net::IpAddr,
        even: bool,
        pair: bool,
        kind: SocketKind,
        sockets: &mut dyn RelaySockets,
    ) -> Result<u16, Refusal> {
        let mut tried = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            // Held from pick to take: another worker picking meanwhile must not get this port.
            let mut ledger = self.ledger.lock();
            let pool = ledger.ports.get(&ip).ok_or(440u16)?;
            let port = pool.pick(&mut self.rng, even, pair, &tried).ok_or(508u16)?;
            match sockets.open(SocketAddr::new(ip, port), kind) {
                Ok(()) => {}
                Err(BindError::InUse) => {
                    tried.push(port);
                    continue;
                }
                Err(BindError::Failed(why)) => {
                    tracing::warn!(%ip, port, error = why, "cannot open relay socket");
                    return Err(508);
                }
            }
            if pair {
                match sockets.open(SocketAddr::new(ip, port + 1), kind) {
                    Ok(()) => {}
                    Err(_) => {
                        sockets.close(SocketAddr::new(ip, port));
                        tried.extend([port, port + 1]);
                        continue;
                    }
                }
                if let Some(pool) = ledger.ports.get_mut(&ip) {
                    pool.take(port + 1);
                }
            }
            if let Some(pool) = ledger.ports.get_mut(&ip) {
                pool.take(port);
            }
            return Ok(port);
        }
        Err(508)
    }

    pub(super) fn refresh(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>, sockets: &mut dyn RelaySockets) {
        let Some(key) = self.on_allocation(now, tuple, req) else { return };
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        if let Some(value) = req.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let family_matches = match attr::decode_family(value) {
                Ok(f) => alloc.relays.iter().any(|r| r.is_ipv4() == (f == FAMILY_IPV4)),
                Err(_) => false,
            };
            if !family_matches {
                return self.reply_error(tuple, req, 443, Some(&key), "REQUESTED-ADDRESS-FAMILY differs");
            }
        }
        let requested = match req.get(attr::LIFETIME).map(attr::decode_u32).transpose() {
            Ok(r) => r,
            Err(_) => return self.reply_error(tuple, req, 400, Some(&key), "malformed LIFETIME"),
        };
        let lifetime = if requested == Some(0) {
            self.remove_allocation(&tuple, now.instant, EndReason::Deleted, sockets);
            Duration::ZERO
        } else {
            let created = alloc.created;
            let lifetime = self.clamp_lifetime(requested, created, now.instant);
            if lifetime.is_zero() {
                self.remove_allocation(&tuple, now.instant, EndReason::SessionLimit, sockets);
            } else if let Some(alloc) = self.allocations.get_mut(&tuple) {
                alloc.expires = now.instant + lifetime;
                if alloc.expires < alloc.timer_at {
                    let at = alloc.expires;
                    self.schedule_allocation(&tuple, at);
                }
            }
            lifetime
        };
        let mut b = MessageBuilder::response_to(req, Class::Success);
        b.u32_attr(attr::LIFETIME, lifetime.as_secs() as u32);
        self.queue(tuple, b, Some(&key));
    }
}

/// Validates the Allocate attributes (RFC 8656 7.2 steps 2-6, RFC 6062 5.1) without touching state.
fn parse_allocate(req: &Message<'_>, client: ClientTransport) -> Result<AllocateRequest, Refusal> {
    let bad = |_: AttrError| 400u16;
    let transport = req.get(attr::REQUESTED_TRANSPORT).ok_or(400u16)?;
    let relay_transport = match attr::decode_requested_transport(transport).map_err(bad)? {
        PROTO_UDP => RelayTransport::Udp,
        PROTO_TCP => RelayTransport::Tcp,
        _ => return Err(442),
    };
    // RFC 6062 5.1: TCP relays are for stream clients, without the UDP-only attributes.
    if relay_transport == RelayTransport::Tcp
        && (client == ClientTransport::Udp
            || req.has(attr::DONT_FRAGMENT)
            || req.has(attr::EVEN_PORT)
            || req.has(attr::RESERVATION_TOKEN)
            || req.has(attr::ADDITIONAL_ADDRESS_FAMILY))
    {
        return Err(400);
    }
    let even_port = req.get(attr::EVEN_PORT).map(attr::decode_even_port).transpose().map_err(bad)?;
    let reservation = req.get(attr::RESERVATION_TOKEN).map(attr::decode_reservation_token).transpose().map_err(bad)?;
    let requested = req.get(attr::REQUESTED_ADDRESS_FAMILY);
    let additional = req.get(attr::ADDITIONAL_ADDRESS_FAMILY);
    if reservation.is_some() && (even_port.is_some() || requested.is_some() || additional.is_some()) {
        return Err(400);
    }
    if requested.is_some() && additional.is_some() {
        return Err(400);
    }
    let families = match (requested, additional) {
        (Some(v), _) => {
            vec![attr::decode_family(v).map_err(|e| if matches!(e, AttrError::BadFamily(_)) { 440u16 } else { 400 })?]
        }
        // ADDITIONAL-ADDRESS-FAMILY may only ask for IPv6 on top of the IPv4 default.
        (None, Some(v)) => match attr::decode_family(v) {
            Ok(FAMILY_IPV6) => vec![FAMILY_IPV4, FAMILY_IPV6],
            _ => return Err(400),
        },
        (None, None) => vec![FAMILY_IPV4],
    };
    let lifetime = req.get(attr::LIFETIME).map(attr::decode_u32).transpose().map_err(bad)?;
    Ok(AllocateRequest {
        relay_transport,
        families,
        even_port,
        reservation,
        dont_fragment: req.has(attr::DONT_FRAGMENT),
        lifetime,
    })
}
