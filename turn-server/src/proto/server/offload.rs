//! Mirroring live channels into a kernel fast path. The kernel relays what the core would relay,
//! and nothing else: a channel is offloaded while every check of the userspace data path holds
//! for it (channel and permission live, peer allowed, no bandwidth cap to enforce, a UDP client
//! and relay), and withdrawn by the core as soon as one stops holding. A dual allocation's
//! channels to a peer of the other family are offloaded too: the kernel translates as the core
//! does. The allocation's timer is brought forward to the first instant a route must go.

use super::super::allocation::{Allocation, Channel, ClientTransport, FiveTuple, RelayTransport};
use super::super::bandwidth::BandwidthCaps;
use super::super::config::ServerConfig;
use super::{ChannelRoute, Now, OffloadCommand, Output, Server, TrafficSummary};
use crate::proto::time::Instant;

impl Server {
    /// The driver has a fast path: from now on live channels are offered to it as
    /// [`OffloadCommand`]s. Channels bound before this are offered too.
    pub fn enable_offload(&mut self, now: Now) {
        self.offload = true;
        self.resync_offload_all(now);
    }

    /// Whether channels are mirrored into a fast path.
    pub fn offload_enabled(&self) -> bool {
        self.offload
    }

    /// Traffic the fast path relayed for `tuple`'s allocation since the last call: counted as if
    /// the core had relayed it (allocation totals for the session log, relay-wide stats for
    /// metrics and the fleet registry). An allocation that has ended meanwhile adds to the stats only.
    pub fn offloaded_traffic(&mut self, tuple: &FiveTuple, t: TrafficSummary) {
        self.stats.offloaded(t);
        if let Some(alloc) = self.allocations.get_mut(tuple) {
            alloc.traffic.packets_to_peer += t.packets_to_peer;
            alloc.traffic.bytes_to_peer += t.bytes_to_peer;
            alloc.traffic.packets_from_peer += t.packets_from_peer;
            alloc.traffic.bytes_from_peer += t.bytes_from_peer;
        }
    }

    /// Installs the routes of `tuple`'s allocation that may now be offloaded and withdraws those
    /// that no longer may. Run before anything drops expired channels or permissions (so none
    /// leaves the table while still installed) and after anything that may enable one.
    pub(super) fn sync_offload(&mut self, tuple: &FiveTuple, now: Instant) {
        if !self.offload {
            return;
        }
        let Some(alloc) = self.allocations.get_mut(tuple) else { return };
        let mut earliest: Option<Instant> = None;
        for i in 0..alloc.channels.len() {
            let ch = alloc.channels[i];
            let want = may_offload(&self.cfg, alloc, &ch, now);
            if want != ch.offloaded {
                let Some(route) = route(alloc, &ch) else { continue };
                let command = if want { OffloadCommand::Install(route) } else { OffloadCommand::Remove(route) };
                self.outputs.push_back(Output::Offload(command));
                alloc.channels[i].offloaded = want;
            }
            if want {
                let until = route_deadline(alloc, &ch);
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
            }
        }
        if let Some(at) = earliest.filter(|at| *at < alloc.timer_at) {
            self.schedule_allocation(tuple, at);
        }
    }

    /// [`Server::sync_offload`] for every allocation (the policy or the caps changed).
    pub(super) fn resync_offload_all(&mut self, now: Now) {
        if !self.offload {
            return;
        }
        let tuples: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for tuple in &tuples {
            self.sync_offload(tuple, now.instant);
        }
    }

    /// Withdraws every route of an allocation that is ending.
    pub(super) fn withdraw_routes(&mut self, alloc: &Allocation) {
        for route in alloc.channels.iter().filter(|c| c.offloaded).filter_map(|c| route(alloc, c)) {
            self.outputs.push_back(Output::Offload(OffloadCommand::Remove(route)));
        }
    }

    /// When the allocation's timer must next fire: its expiry, or earlier when an offloaded
    /// route must be withdrawn first.
    pub(super) fn next_deadline(&self, alloc: &Allocation) -> Instant {
        alloc
            .channels
            .iter()
            .filter(|c| c.offloaded)
            .map(|c| route_deadline(alloc, c))
            .fold(alloc.expires, Instant::min)
    }
}

/// Every check the userspace data path makes for ChannelData on `ch` (both directions), made
/// once: the kernel can then relay without asking.
fn may_offload(cfg: &ServerConfig, alloc: &Allocation, ch: &Channel, now: Instant) -> bool {
    let Some(relay) = alloc.relay_for(&ch.peer) else { return false };
    let concrete = !alloc.tuple.server.ip().is_unspecified() && !relay.ip().is_unspecified();
    alloc.tuple.transport == ClientTransport::Udp
        && alloc.relay_transport == RelayTransport::Udp
        && concrete
        // A cap is enforced per datagram, which the kernel program does not do.
        && cfg.bandwidth == BandwidthCaps::default()
        && ch.expires > now
        && alloc.has_permission(ch.peer.ip(), now)
        && cfg.peer_policy.check_peer(ch.peer).is_ok()
}

/// The route of `ch`; `None` only without a relay of the peer's family, which `may_offload`
/// refuses, and an allocation's relays never change.
fn route(alloc: &Allocation, ch: &Channel) -> Option<ChannelRoute> {
    let relay = alloc.relay_for(&ch.peer)?;
    Some(ChannelRoute { tuple: alloc.tuple, relay, peer: ch.peer, number: ch.number })
}

/// The first instant the route of `ch` stops being allowed: its channel or its permission ends.
fn route_deadline(alloc: &Allocation, ch: &Channel) -> Instant {
    let permission =
        alloc.permissions.iter().filter(|p| p.ip == ch.peer.ip()).map(|p| p.expires).max().unwrap_or(ch.expires);
    ch.expires.min(permission)
}
