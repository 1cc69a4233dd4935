//! Allocate and Refresh (RFC 8656 sections 7.1-7.3): creating, extending and deleting allocations,
//! and opening their relay sockets from the configured port range.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::allocation::{Allocation, ClientTransport, FiveTuple, RelayTransport, Traffic};
use super::super::ledger::UserBuckets;
use super::super::stun::attr::{self, AttrError, FAMILY_IPV4, FAMILY_IPV6};
use super::super::stun::{Class, ErrorCode, Message, MessageBuilder, MessageType, Method, TransactionId};
use super::authenticate::Authorized;
use super::bind::{Bind, Pending};
use super::reply::ResponseKey;
use super::{EndReason, Event, Now, Output, Server};
use crate::proto::time::Instant;

/// UDP's protocol number in REQUESTED-TRANSPORT.
const PROTO_UDP: u8 = 17;
/// TCP's protocol number: an RFC 6062 TCP allocation.
const PROTO_TCP: u8 = 6;

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
pub(super) struct AllocateRequest {
    pub(super) relay_transport: RelayTransport,
    families: Vec<u8>,
    /// Even port; with `reserve_next` also hold port + 1 under a reservation token.
    pub(super) even_port: Option<bool>,
    reservation: Option<u64>,
    pub(super) dont_fragment: bool,
    pub(super) lifetime: Option<u32>,
}

/// An error code to answer with.
type Refusal = ErrorCode;

/// What a confirmed Allocate becomes an allocation with.
struct Created {
    tid: TransactionId,
    auth: Authorized,
    relay_transport: RelayTransport,
    lifetime: Duration,
    user_bandwidth: UserBuckets,
}

impl Server {
    pub(super) fn allocate(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(auth) = self.authenticate(now, tuple, req) else { return };
        let key = auth.response_key.clone();
        if self.pending.contains_key(&tuple) {
            return; // a retransmission while its sockets are being bound: the answer is coming
        }
        if let Some(existing) = self.allocations.get(&tuple) {
            if existing.allocate_tid == *req.transaction_id() {
                // A retransmission: answer as the first time, with the lifetime left.
                let lifetime = existing.expires.saturating_duration_since(now.instant);
                let relays = existing.relays.clone();
                return self.reply_allocated(tuple, req.transaction_id(), &relays, lifetime, None, &[], &key);
            }
            return self.reply_error(
                tuple,
                req,
                ErrorCode::AllocationMismatch,
                &key,
                "5-tuple already has an allocation",
            );
        }
        let unknown: Vec<u16> = req.unknown_required().collect();
        if !unknown.is_empty() {
            return self.reply_unknown(now.instant, tuple, req, &unknown, Some(&key));
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
            Err(code) => return self.reply_error(tuple, req, code, &key, "bad Allocate attributes"),
        };
        let user_bandwidth = match self.ledger.claim(&auth.quota_user, tuple.client.ip(), &self.cfg.quotas, now.instant)
        {
            Ok(handle) => handle,
            Err((code, quota)) => {
                *self.stats.quota_refusals.entry(quota).or_default() += 1;
                let why = format!("{quota} quota reached (user {})", auth.quota_user);
                return self.reply_error(tuple, req, code, &key, &why);
            }
        };
        let tid = *req.transaction_id();
        if let Some(token) = request.reservation {
            // RFC 8656 7.2: an unknown or expired token is 508. The reservation is relay-wide (the
            // pair's first Allocate may have reached another worker): its port is held in the
            // ledger, and bound here, by the worker that will serve the allocation.
            let Some(addr) = self.ledger.claim_reservation(token, now.instant) else {
                self.ledger.release(&auth.quota_user, tuple.client.ip());
                return self.reply_error(
                    tuple,
                    req,
                    ErrorCode::InsufficientCapacity,
                    &key,
                    "unknown reservation token",
                );
            };
            let binds = vec![Bind::claimed(addr)];
            let pending = Pending::new(tid, auth, request, user_bandwidth, binds, Vec::new());
            return self.start_binds(tuple, pending);
        }
        let mut binds = Vec::new();
        let mut unsupported = Vec::new();
        for &family in &request.families {
            match self.cfg.relay_ips.iter().map(|r| r.bind).find(|ip| ip.is_ipv4() == (family == FAMILY_IPV4)) {
                Some(ip) => binds.push(ip),
                None => unsupported.push(family),
            }
        }
        let binds = match self.reserve_binds(&binds, &request) {
            Ok(b) if !b.is_empty() => b,
            result => {
                self.ledger.release(&auth.quota_user, tuple.client.ip());
                let code = result.err().unwrap_or(ErrorCode::AddressFamilyNotSupported);
                return self.reply_error(tuple, req, code, &key, "no relay address available");
            }
        };
        let pending = Pending::new(tid, auth, request, user_bandwidth, binds, unsupported);
        self.start_binds(tuple, pending);
    }

    /// Every bind of `pending` done: the allocation exists from now on (or, if one failed or the
    /// client left meanwhile, everything it held is given back).
    pub(super) fn confirm(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        pending: Pending,
        relays: Vec<SocketAddr>,
        paired: Option<SocketAddr>,
    ) {
        let Pending { tid, auth, request, user_bandwidth, unsupported, .. } = pending;
        let mut token = None;
        if let Some(addr) = paired {
            let expires = now + self.cfg.lifetimes.reservation;
            let t = self.ledger.hold_reservation(&mut self.rng, addr, expires);
            // The bind proved the port free; the port stays held in the ledger, and the socket
            // closes, since whichever worker the token reaches binds it for its allocation.
            self.outputs.push_back(Output::CloseRelay { addr });
            self.timers.push(std::cmp::Reverse((expires, super::Timer::Reservation { token: t })));
            token = Some(t);
        }
        let key = auth.response_key.clone();
        let lifetime = self.clamp_lifetime(request.lifetime, now, now);
        let created = Created { tid, auth, relay_transport: request.relay_transport, lifetime, user_bandwidth };
        self.insert_allocation(now, tuple, created, &relays);
        self.reply_allocated(tuple, &tid, &relays, lifetime, token, &unsupported, &key);
    }

    /// An Allocate that cannot be served after its quota was claimed: gives the claim back and
    /// answers `code` (unless the client is gone).
    pub(super) fn refuse_pending(&mut self, tuple: FiveTuple, pending: Pending, code: ErrorCode, answer: bool) {
        self.ledger.release(&pending.auth.quota_user, tuple.client.ip());
        if !answer {
            return;
        }
        tracing::debug!(client = %tuple.client, code = code.code(), "refused Allocate: no relay address available");
        self.stats.refused(code.code());
        let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Error), &pending.tid);
        b.error(code);
        self.queue(tuple, b, Some(&pending.auth.response_key));
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
            return self.reply_error(
                tuple,
                req,
                ErrorCode::InsufficientCapacity,
                key,
                "draining, and no alternate server",
            );
        }
        // The fleet's list is best first and short: spread over its best two so that one relay
        // does not take every redirected client until the next heartbeat.
        let spread = if self.fleet_alternates.is_empty() { alternates.len() } else { alternates.len().min(2) };
        let alternate = alternates[self.next_alternate % spread];
        self.next_alternate = self.next_alternate.wrapping_add(1);
        tracing::debug!(client = %tuple.client, %alternate, reason = why.label(), "Allocate redirected");
        *self.stats.redirects.entry(why.label()).or_default() += 1;
        self.stats.refused(ErrorCode::TryAlternate.code());
        let mut b = MessageBuilder::response_to(req, Class::Error);
        b.error(ErrorCode::TryAlternate).address(attr::ALTERNATE_SERVER, &alternate);
        self.queue(tuple, b, Some(key));
    }

    fn insert_allocation(&mut self, now: Instant, tuple: FiveTuple, created: Created, relays: &[SocketAddr]) {
        let Created { tid, auth, relay_transport, lifetime, user_bandwidth } = created;
        let serial = self.next_serial;
        self.next_serial += 1;
        for relay in relays {
            self.by_relay.insert(*relay, tuple);
        }
        self.outputs.push_back(Output::Event(Event::AllocationCreated {
            tuple,
            username: auth.username.clone(),
            relays: relays.to_vec(),
            lifetime,
        }));
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
                allocate_tid: tid,
                created: now,
                expires,
                timer_at: expires,
                serial,
                permissions: Vec::new(),
                channels: Vec::new(),
                traffic: Traffic::default(),
                bandwidth: None,
                user_bandwidth,
            },
        );
        self.schedule_allocation(&tuple, expires);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_allocated(
        &mut self,
        tuple: FiveTuple,
        tid: &TransactionId,
        relays: &[SocketAddr],
        lifetime: Duration,
        token: Option<u64>,
        family_errors: &[u8],
        key: &ResponseKey,
    ) {
        let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Success), tid);
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
            value.extend_from_slice(ErrorCode::AddressFamilyNotSupported.reason().as_bytes());
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

    pub(super) fn refresh(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(key) = self.on_allocation(now, tuple, req) else { return };
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        if let Some(value) = req.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let family_matches = match attr::decode_family(value) {
                Ok(f) => alloc.relays.iter().any(|r| r.is_ipv4() == (f == FAMILY_IPV4)),
                Err(_) => false,
            };
            if !family_matches {
                return self.reply_error(
                    tuple,
                    req,
                    ErrorCode::PeerAddressFamilyMismatch,
                    &key,
                    "REQUESTED-ADDRESS-FAMILY differs",
                );
            }
        }
        let requested = match req.get(attr::LIFETIME).map(attr::decode_u32).transpose() {
            Ok(r) => r,
            Err(_) => return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "malformed LIFETIME"),
        };
        let lifetime = if requested == Some(0) {
            self.remove_allocation(&tuple, now.instant, EndReason::Deleted);
            Duration::ZERO
        } else {
            let created = alloc.created;
            let lifetime = self.clamp_lifetime(requested, created, now.instant);
            if lifetime.is_zero() {
                self.remove_allocation(&tuple, now.instant, EndReason::SessionLimit);
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
    let bad = |_: AttrError| ErrorCode::BadRequest;
    let transport = req.get(attr::REQUESTED_TRANSPORT).ok_or(ErrorCode::BadRequest)?;
    let relay_transport = match attr::decode_requested_transport(transport).map_err(bad)? {
        PROTO_UDP => RelayTransport::Udp,
        PROTO_TCP => RelayTransport::Tcp,
        _ => return Err(ErrorCode::UnsupportedTransportProtocol),
    };
    // RFC 6062 5.1: TCP relays are for stream clients, without the UDP-only attributes.
    if relay_transport == RelayTransport::Tcp
        && (client == ClientTransport::Udp
            || req.has(attr::DONT_FRAGMENT)
            || req.has(attr::EVEN_PORT)
            || req.has(attr::RESERVATION_TOKEN)
            || req.has(attr::ADDITIONAL_ADDRESS_FAMILY))
    {
        return Err(ErrorCode::BadRequest);
    }
    let even_port = req.get(attr::EVEN_PORT).map(attr::decode_even_port).transpose().map_err(bad)?;
    let reservation = req.get(attr::RESERVATION_TOKEN).map(attr::decode_reservation_token).transpose().map_err(bad)?;
    let requested = req.get(attr::REQUESTED_ADDRESS_FAMILY);
    let additional = req.get(attr::ADDITIONAL_ADDRESS_FAMILY);
    if reservation.is_some() && (even_port.is_some() || requested.is_some() || additional.is_some()) {
        return Err(ErrorCode::BadRequest);
    }
    if requested.is_some() && additional.is_some() {
        return Err(ErrorCode::BadRequest);
    }
    let families = match (requested, additional) {
        (Some(v), _) => {
            vec![attr::decode_family(v).map_err(|e| {
                if matches!(e, AttrError::BadFamily(_)) {
                    ErrorCode::AddressFamilyNotSupported
                } else {
                    ErrorCode::BadRequest
                }
            })?]
        }
        // ADDITIONAL-ADDRESS-FAMILY may only ask for IPv6 on top of the IPv4 default.
        (None, Some(v)) => match attr::decode_family(v) {
            Ok(FAMILY_IPV6) => vec![FAMILY_IPV4, FAMILY_IPV6],
            _ => return Err(ErrorCode::BadRequest),
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
