//! The kernel fast path: an eBPF program at TC ingress (bpf/relay.bpf.c) that relays TURN
//! ChannelData between clients and peers without waking the relay, and its loader. The driver
//! mirrors each live channel binding here (`install` when a channel is bound, `remove` when it
//! goes) and reads its counters for the ledger; everything the program does not relay (STUN,
//! Send/Data, unknown channels, odd packets) reaches the userspace sockets as before.
//!
//! The client and server are of one family and the relay and peer of one; when the two differ
//! the program translates. Where a rewritten datagram goes is the kernel FIB's answer when
//! forwarding is on, else the egress the relay looked up for the destination when it installed
//! the route (`egress`): a host that is not a router still relays in the kernel. See
//! relay.bpf.c for the checksum and local-delivery rules.

mod egress;
mod error;
mod ifaces;
mod loader;
mod maps;
mod slots;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use error::OffloadError;
pub use loader::{probe, Offload};

/// Where the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// TC ingress through TCX links (Linux 6.6+). XDP may come later.
    Tc,
}

/// One channel binding as the kernel sees it: ChannelData from `client` to `server` on
/// `channel` leaves as UDP from `relay` to `peer`, and UDP from `peer` to `relay` comes back as
/// ChannelData from `server` to `client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    pub channel: u16,
}

/// What the kernel relayed for one channel; bytes are application payload (ChannelData
/// payload, without its 4-byte header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub to_peer_packets: u64,
    pub to_peer_bytes: u64,
    pub from_peer_packets: u64,
    pub from_peer_bytes: u64,
}

/// A channel's counter slot, handed out by `Offload::install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(u32);

impl Slot {
    /// The index in the program's `counters` map.
    pub fn index(self) -> u32 {
        self.0
    }
}
