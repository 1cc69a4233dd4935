//! Permissions, channels and the data path (RFC 8656 sections 9-12): who may reach the client
//! through its relay, and moving payloads both ways without allocating.

use std::net::SocketAddr;

use super::super::allocation::{Allocation, ChannelConflict, ClientTransport, FiveTuple, RelayTransport};
use super::super::bandwidth::{BandwidthCaps, Direction, DirectionalBuckets};
use super::super::channel_data;
use super::super::framing::stream_padding;
use super::super::stats::{CapKind, Stats};
use super::super::stun::attr::{self, XOR_PEER_ADDRESS};
use super::super::stun::{Class, ErrorCode, Message, MessageBuilder, MessageType, Method, HEADER_LEN, MAGIC_COOKIE};
use super::{Now, Server, ToClient, ToPeer};
use crate::proto::time::Instant;

/// Bytes the driver must leave free in front of a peer payload so the core can frame it in place
/// as a Data indication (header 20, XOR-PEER-ADDRESS up to 24, DATA header 4).
pub const DATA_INDICATION_HEADROOM: usize = HEADER_LEN + 24 + 4;

impl Server {
    pub(super) fn create_permission(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(key) = self.on_allocation(now, tuple, req) else { return };
        // Withdraw what expired before the permission table drops it.
        self.sync_offload(&tuple, now.instant);
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        let mut peers = Vec::new();
        for value in req.attributes().filter(|a| a.code == XOR_PEER_ADDRESS).map(|a| a.value) {
            match attr::decode_xor_address(value, req.transaction_id()) {
                Ok(peer) => peers.push(peer),
                Err(_) => {
                    return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "malformed XOR-PEER-ADDRESS")
                }
            }
        }
        if peers.is_empty() {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "no XOR-PEER-ADDRESS");
        }
        // All or nothing (RFC 8656 9.2): check every peer before installing any.
        for peer in &peers {
            if alloc.relay_for(peer).is_none() {
                return self.reply_family_mismatch(tuple, req, &key);
            }
            if let Err(why) = self.cfg.peer_policy.check(peer.ip()) {
                *self.stats.peers_refused.entry(why.as_str()).or_default() += 1;
                let why = format!("peer {peer} refused: {}", why.as_str());
                return self.reply_error(tuple, req, ErrorCode::Forbidden, &key, &why);
            }
        }
        let expires = now.instant + self.cfg.lifetimes.permission;
        let cap = self.cfg.quotas.permissions_per_allocation;
        let Some(alloc) = self.allocations.get_mut(&tuple) else { return };
        for peer in &peers {
            if !alloc.install_permission(peer.ip(), expires, now.instant, cap) {
                return self.reply_error(tuple, req, ErrorCode::InsufficientCapacity, &key, "permission cap reached");
            }
        }
        // A renewed permission may let a channel to that peer back into the kernel.
        self.sync_offload(&tuple, now.instant);
        self.queue(tuple, MessageBuilder::response_to(req, Class::Success), Some(&key));
    }

    pub(super) fn channel_bind(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) {
        let Some(key) = self.on_allocation(now, tuple, req) else { return };
        // Withdraw what expired before the channel table drops it.
        self.sync_offload(&tuple, now.instant);
        let Some(alloc) = self.allocations.get(&tuple) else { return };
        let number = req.get(attr::CHANNEL_NUMBER).map(attr::decode_channel_number);
        let peer = req.get(XOR_PEER_ADDRESS).map(|v| attr::decode_xor_address(v, req.transaction_id()));
        let (Some(Ok(number)), Some(Ok(peer))) = (number, peer) else {
            return self.reply_error(
                tuple,
                req,
                ErrorCode::BadRequest,
                &key,
                "missing or malformed CHANNEL-NUMBER or XOR-PEER-ADDRESS",
            );
        };
        if !channel_data::is_valid_channel(number) {
            let why = format!("channel number {number:#06x} out of range");
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, &why);
        }
        if alloc.relay_for(&peer).is_none() {
            return self.reply_family_mismatch(tuple, req, &key);
        }
        if alloc.relay_transport != RelayTransport::Udp {
            return self.reply_error(tuple, req, ErrorCode::BadRequest, &key, "ChannelBind on a TCP allocation");
        }
        if let Err(why) = self.cfg.peer_policy.check_peer(peer) {
            *self.stats.peers_refused.entry(why.as_str()).or_default() += 1;
            let why = format!("peer {peer} refused: {}", why.as_str());
            return self.reply_error(tuple, req, ErrorCode::Forbidden, &key, &why);
        }
        let channel_expires = now.instant + self.cfg.lifetimes.channel;
        let permission_expires = now.instant + self.cfg.lifetimes.permission;
        let quotas = self.cfg.quotas;
        let Some(alloc) = self.allocations.get_mut(&tuple) else { return };
        if let Err(conflict) =
            alloc.bind_channel(number, peer, channel_expires, now.instant, quotas.channels_per_allocation)
        {
            let code = if conflict == ChannelConflict::TooMany {
                ErrorCode::InsufficientCapacity
            } else {
                ErrorCode::BadRequest
            };
            return self.reply_error(tuple, req, code, &key, &format!("channel conflict: {conflict:?}"));
        }
        // A channel binding also installs or refreshes the permission for its peer (RFC 8656 11.2).
        if !alloc.install_permission(peer.ip(), permission_expires, now.instant, quotas.permissions_per_allocation) {
            return self.reply_error(tuple, req, ErrorCode::InsufficientCapacity, &key, "permission cap reached");
        }
        self.sync_offload(&tuple, now.instant);
        self.queue(tuple, MessageBuilder::response_to(req, Class::Success), Some(&key));
    }

    /// Send indication (RFC 8656 10.2): silently dropped unless every check passes.
    pub(super) fn send_indication(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>) -> Option<ToPeer> {
        let alloc = self.allocations.get_mut(&tuple)?;
        let peer = attr::decode_xor_address(msg.get(XOR_PEER_ADDRESS)?, msg.transaction_id()).ok()?;
        let data = msg.attributes().find(|a| a.code == attr::DATA)?;
        if msg.unknown_required().next().is_some() {
            return None;
        }
        let relay = alloc.relay_for(&peer)?;
        if alloc.relay_transport != RelayTransport::Udp
            || !alloc.has_permission(peer.ip(), now)
            || self.cfg.peer_policy.check_own_port(peer).is_err()
        {
            return None;
        }
        let caps = self.cfg.bandwidth;
        let len = data.value.len();
        if !within_caps(caps, alloc, &mut self.stats, now, Direction::ToPeer, len) {
            return None;
        }
        alloc.traffic.packets_to_peer += 1;
        alloc.traffic.bytes_to_peer += len as u64;
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += len as u64;
        Some(ToPeer { relay, peer, start: data.start, end: data.start + len })
    }

    pub(super) fn channel_data_from_client(&mut self, now: Instant, tuple: FiveTuple, data: &[u8]) -> Option<ToPeer> {
        let (number, payload) = channel_data::parse(data).ok()?;
        let alloc = self.allocations.get_mut(&tuple)?;
        let peer = alloc.channel_peer(number, now)?;
        let relay = alloc.relay_for(&peer)?;
        if !alloc.has_permission(peer.ip(), now) {
            return None;
        }
        let caps = self.cfg.bandwidth;
        let len = payload.len();
        if !within_caps(caps, alloc, &mut self.stats, now, Direction::ToPeer, len) {
            return None;
        }
        alloc.traffic.packets_to_peer += 1;
        alloc.traffic.bytes_to_peer += len as u64;
        self.stats.packets_to_peer += 1;
        self.stats.bytes_to_peer += len as u64;
        // ChannelData's payload follows its 4-byte header.
        Some(ToPeer { relay, peer, start: channel_data::HEADER_LEN, end: channel_data::HEADER_LEN + len })
    }

    /// A datagram from `peer` arrived on relay socket `relay`, its payload at `buf[start..end]`
    /// with at least [`DATA_INDICATION_HEADROOM`] bytes before `start` and 3 after `end`. Frames it
    /// in place as ChannelData or a Data indication, or drops it without a permission.
    pub fn handle_peer(
        &mut self,
        now: Now,
        relay: SocketAddr,
        peer: SocketAddr,
        buf: &mut [u8],
        start: usize,
        end: usize,
    ) -> Option<ToClient> {
        let now = now.instant;
        let tuple = *self.by_relay.get(&relay)?;
        let alloc = self.allocations.get_mut(&tuple)?;
        if !alloc.has_permission(peer.ip(), now) {
            return None;
        }
        let len = end.checked_sub(start)?;
        let caps = self.cfg.bandwidth;
        if !within_caps(caps, alloc, &mut self.stats, now, Direction::FromPeer, len) {
            return None;
        }
        alloc.traffic.packets_from_peer += 1;
        alloc.traffic.bytes_from_peer += len as u64;
        self.stats.packets_from_peer += 1;
        self.stats.bytes_from_peer += len as u64;
        if let Some(number) = alloc.channel_for_peer(peer, now) {
            let header = start.checked_sub(channel_data::HEADER_LEN)?;
            if len > usize::from(u16::MAX) {
                return None;
            }
            channel_data::write_header(&mut buf[header..start], number, len);
            // Over TCP and TLS, ChannelData is padded to a multiple of four (RFC 8656 12.5).
            let padded_end = if tuple.transport == ClientTransport::Udp { end } else { end + stream_padding(len) };
            buf.get_mut(end..padded_end)?.fill(0);
            return Some(ToClient { tuple, start: header, end: padded_end });
        }
        self.indications_sent = self.indications_sent.wrapping_add(1);
        let tid = indication_tid(self.indication_salt, self.indications_sent);
        frame_data_indication(buf, start, end, peer, &tid).map(|(start, end)| ToClient { tuple, start, end })
    }
}

/// Whether the bandwidth caps let a datagram of `bytes` through; a refusal is counted. The
/// allocation's allowance is given back when the user's cap refuses, so one cap never charges for
/// a datagram the other dropped. The allocation's bucket appears on first use and the user's
/// handle is on the allocation from the start, so a cap added by a reload applies to live
/// allocations too, and the data path neither locks nor looks the user up.
fn within_caps(
    caps: BandwidthCaps,
    alloc: &mut Allocation,
    stats: &mut Stats,
    now: Instant,
    direction: Direction,
    bytes: usize,
) -> bool {
    if caps == BandwidthCaps::default() {
        return true;
    }
    let bytes = bytes as u64;
    if caps.per_allocation > 0 {
        let own = alloc.bandwidth.get_or_insert_with(|| Box::new(DirectionalBuckets::new(now, caps.per_allocation)));
        if !own.take(now, direction, bytes, caps.per_allocation) {
            stats.bandwidth_dropped(direction, CapKind::Allocation);
            return false;
        }
    }
    if caps.per_user > 0 && !alloc.user_bandwidth.take(now, direction, bytes, caps.per_user) {
        if let (Some(own), true) = (alloc.bandwidth.as_mut(), caps.per_allocation > 0) {
            own.refund(direction, bytes);
        }
        stats.bandwidth_dropped(direction, CapKind::User);
        return false;
    }
    true
}

/// Writes a Data indication header (XOR-PEER-ADDRESS, DATA) before `buf[start..end]` and pads the
/// payload. Returns the bounds of the framed message.
fn frame_data_indication(
    buf: &mut [u8],
    start: usize,
    end: usize,
    peer: SocketAddr,
    tid: &[u8; 12],
) -> Option<(usize, usize)> {
    let addr_len = attr::xor_address_len(&peer);
    let header_len = HEADER_LEN + 4 + addr_len + 4;
    let msg_start = start.checked_sub(header_len)?;
    let len = end - start;
    let padded = (len + 3) & !3;
    let body_len = u16::try_from(header_len - HEADER_LEN + padded).ok()?;
    if buf.len() < start + padded {
        return None;
    }
    buf[end..start + padded].fill(0);
    let h = &mut buf[msg_start..start];
    h[0..2].copy_from_slice(&MessageType::new(Method::Data, Class::Indication).to_u16().to_be_bytes());
    h[2..4].copy_from_slice(&body_len.to_be_bytes());
    h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(tid);
    h[20..22].copy_from_slice(&XOR_PEER_ADDRESS.to_be_bytes());
    h[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    attr::encode_xor_address(&mut h[24..24 + addr_len], &peer, tid);
    let d = 24 + addr_len;
    h[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    Some((msg_start, start + padded))
}

/// Indications need distinct transaction ids (clients may drop what looks like a duplicate), but
/// nobody answers them: a random per-server salt and a counter avoid a random-number call per packet.
pub(super) fn indication_tid(salt: u32, counter: u64) -> [u8; 12] {
    let mut tid = [0u8; 12];
    tid[..4].copy_from_slice(&salt.to_be_bytes());
    tid[4..].copy_from_slice(&counter.to_be_bytes());
    tid
}
