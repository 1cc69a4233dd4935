//! Building and queueing responses. Responses to authenticated requests carry the same kind of
//! integrity the request used (RFC 8489 9.2.4); every response carries FINGERPRINT, except a
//! challenge to a request that had none.

use ice_config::{LongTermKey, PasswordAlgorithm};

use std::net::SocketAddr;

use super::super::allocation::{ClientTransport, FiveTuple};
use super::super::stun::integrity::IntegrityAlgorithm;
use super::super::stun::{attr, Class, ErrorCode, Message, MessageBuilder};
use super::{Now, Output, Server, Transmit};
use crate::proto::time::Instant;

/// CHANGE-REQUEST flags (RFC 5780 7.2).
const CHANGE_IP: u32 = 0x04;
const CHANGE_PORT: u32 = 0x02;

/// The key and integrity kind of an authenticated request, reused to protect its response.
#[derive(Debug, Clone)]
pub(super) struct ResponseKey {
    pub key: LongTermKey,
    pub algorithm: IntegrityAlgorithm,
}

/// PASSWORD-ALGORITHMS value: the algorithms this server accepts, MD5 first (RFC 8489 14.11).
pub(super) fn password_algorithms_value() -> [u8; 8] {
    let md5 = PasswordAlgorithm::Md5.code().to_be_bytes();
    let sha256 = PasswordAlgorithm::Sha256.code().to_be_bytes();
    [md5[0], md5[1], 0, 0, sha256[0], sha256[1], 0, 0]
}

impl Server {
    /// Seals `b` (SOFTWARE when authenticated, integrity, fingerprint) and queues it.
    pub(super) fn queue(&mut self, tuple: FiveTuple, mut b: MessageBuilder, key: Option<&ResponseKey>) {
        if let Some(k) = key {
            if let Some(software) = &self.cfg.software {
                b.attr(attr::SOFTWARE, software.as_bytes());
            }
            match k.algorithm {
                IntegrityAlgorithm::Sha1 => b.integrity_sha1(k.key.as_bytes()),
                IntegrityAlgorithm::Sha256 => b.integrity_sha256(k.key.as_bytes()),
            };
        }
        b.fingerprint();
        self.outputs.push_back(Output::Transmit(Transmit { tuple, data: b.finish(), redirect: None }));
    }

    /// An error response to an authenticated request, protected with its key; `why` is logged at
    /// debug level, so every refusal can be traced with -v.
    pub(super) fn reply_error(
        &mut self,
        tuple: FiveTuple,
        req: &Message<'_>,
        code: ErrorCode,
        key: &ResponseKey,
        why: &str,
    ) {
        self.send_error(tuple, req, code, Some(key), why);
    }

    /// 443: the allocation has no relay address of the peer's family (RFC 8656 sections 9-11).
    pub(super) fn reply_family_mismatch(&mut self, tuple: FiveTuple, req: &Message<'_>, key: &ResponseKey) {
        let why = "no relay of the peer's address family";
        self.reply_error(tuple, req, ErrorCode::PeerAddressFamilyMismatch, key, why);
    }

    /// An error response to a request that is not (or not yet) authenticated: rate limited per
    /// source, since a spoofed source would make it a reflector.
    pub(super) fn reply_error_unauthenticated(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message<'_>,
        code: ErrorCode,
        why: &str,
    ) {
        if !self.ledger.unauthenticated().allow(tuple.client.ip(), now) {
            let method = req.message_type().method.name();
            tracing::debug!(client = %tuple.client, method, code = code.code(), why, "refusal suppressed: source over its rate");
            self.stats.unauthenticated_suppressed += 1;
            return;
        }
        self.send_error(tuple, req, code, None, why);
    }

    fn send_error(
        &mut self,
        tuple: FiveTuple,
        req: &Message<'_>,
        code: ErrorCode,
        key: Option<&ResponseKey>,
        why: &str,
    ) {
        let method = req.message_type().method.name();
        tracing::debug!(client = %tuple.client, method, code = code.code(), why, "refused request");
        self.stats.refused(code.code());
        let mut b = MessageBuilder::response_to(req, Class::Error);
        b.error(code);
        self.queue(tuple, b, key);
    }

    /// 420 with the attributes we did not understand.
    pub(super) fn reply_unknown(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message<'_>,
        unknown: &[u16],
        key: Option<&ResponseKey>,
    ) {
        tracing::debug!(client = %tuple.client, method = req.message_type().method.name(), ?unknown, "refused request: 420");
        if key.is_none() && !self.ledger.unauthenticated().allow(tuple.client.ip(), now) {
            self.stats.unauthenticated_suppressed += 1;
            return;
        }
        self.stats.refused(ErrorCode::UnknownAttribute.code());
        let mut b = MessageBuilder::response_to(req, Class::Error);
        b.error(ErrorCode::UnknownAttribute).unknown_attributes(unknown);
        self.queue(tuple, b, key);
    }

    /// 401 or 438: a challenge with realm, a fresh nonce and the password algorithms on offer.
    pub(super) fn reply_challenge(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>, code: ErrorCode) {
        if !self.ledger.unauthenticated().allow(tuple.client.ip(), now.instant) {
            tracing::debug!(client = %tuple.client, code = code.code(), "challenge suppressed: source over its rate");
            self.stats.unauthenticated_suppressed += 1;
            return;
        }
        self.stats.refused(code.code());
        let nonce = self.nonces.mint(tuple.client.ip(), now.unix_secs);
        let mut b = MessageBuilder::response_to(req, Class::Error);
        b.error(code)
            .attr(attr::REALM, self.cfg.realm.as_bytes())
            .attr(attr::NONCE, nonce.as_bytes())
            .attr(attr::PASSWORD_ALGORITHMS, &password_algorithms_value());
        // A challenge is what anyone can make the relay send to a spoofed address, so it carries
        // no byte it does not need. FINGERPRINT only tells STUN apart from other protocols sharing
        // a port, and a client that sent none does not need it back (coturn answers alike).
        if req.has_fingerprint() {
            b.fingerprint();
        }
        self.outputs.push_back(Output::Transmit(Transmit { tuple, data: b.finish(), redirect: None }));
    }

    /// Binding success: the client's reflexive address (RFC 8489 section 7.3), plus RFC 5780 NAT
    /// behaviour discovery where a second address is configured.
    pub(super) fn binding(&mut self, now: Instant, tuple: FiveTuple, req: &Message<'_>) {
        if self.cfg.no_stun {
            tracing::debug!(client = %tuple.client, "dropped Binding: STUN disabled (--no-stun)");
            return;
        }
        let discovery = self.cfg.nat_discovery.filter(|_| tuple.transport == ClientTransport::Udp);
        let unknown: Vec<u16> = req
            .unknown_required()
            .filter(|&c| {
                !(discovery.is_some() && matches!(c, attr::CHANGE_REQUEST | attr::RESPONSE_PORT | attr::PADDING))
            })
            .collect();
        if !unknown.is_empty() {
            return self.reply_unknown(now, tuple, req, &unknown, None);
        }
        let mut b = MessageBuilder::response_to(req, Class::Success);
        b.xor_address(attr::XOR_MAPPED_ADDRESS, &tuple.client);
        if let Some(software) = &self.cfg.software {
            b.attr(attr::SOFTWARE, software.as_bytes());
        }
        let Some(discovery) = discovery else { return self.queue(tuple, b, None) };
        let change = match req.get(attr::CHANGE_REQUEST).map(attr::decode_u32).transpose() {
            Ok(flags) => flags.unwrap_or(0),
            Err(_) => {
                return self.reply_error_unauthenticated(
                    now,
                    tuple,
                    req,
                    ErrorCode::BadRequest,
                    "malformed CHANGE-REQUEST",
                )
            }
        };
        let to_port = match req.get(attr::RESPONSE_PORT) {
            Some([hi, lo, ..]) => u16::from_be_bytes([*hi, *lo]),
            Some(_) => {
                return self.reply_error_unauthenticated(
                    now,
                    tuple,
                    req,
                    ErrorCode::BadRequest,
                    "malformed RESPONSE-PORT",
                )
            }
            None => tuple.client.port(),
        };
        let from = discovery.source(tuple.server, change & CHANGE_IP != 0, change & CHANGE_PORT != 0);
        b.address(attr::RESPONSE_ORIGIN, &from);
        b.address(attr::OTHER_ADDRESS, &discovery.source(tuple.server, true, true));
        b.fingerprint();
        let to = SocketAddr::new(tuple.client.ip(), to_port);
        let redirect = (from != tuple.server || to != tuple.client).then_some((from, to));
        self.outputs.push_back(Output::Transmit(Transmit { tuple, data: b.finish(), redirect }));
    }
}
