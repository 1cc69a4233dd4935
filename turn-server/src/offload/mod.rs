//! The kernel fast path: an eBPF program at TC ingress (bpf/relay.bpf.c) or at XDP
//! (bpf/relay_xdp.bpf.c) that relays TURN ChannelData between clients and peers without waking
//! the relay, and its loader. Both programs share the maps' layouts (bpf/relay_maps.h), so
//! everything here but attaching is the same for both. The driver
//! mirrors each live channel binding here (`install` when a channel is bound, `remove` when it
//! goes) and reads its counters for the ledger; everything the program does not relay (STUN,
//! Send/Data, unknown channels, odd packets) reaches the userspace sockets as before.
//!
//! The client and server are of one family and the relay and peer of one; when the two differ
//! the TC program translates (the XDP one leaves those to userspace). Where a rewritten datagram
//! goes is the kernel FIB's answer when forwarding is on, else the egress the relay looked up for
//! the destination when it installed the route (`egress`): a host that is not a router still
//! relays in the kernel. XDP also needs the next hop's MAC address there, which the relay keeps
//! from the neighbour table (`next_hop`). See relay.bpf.c and relay_xdp.bpf.c for the checksum
//! and local-delivery rules.

mod egress;
mod error;
mod ifaces;
mod loader;
mod maps;
mod netlink;
mod next_hop;
mod slots;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use error::OffloadError;
pub use loader::{probe, Offload};

/// Where the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// TC ingress through TCX links (Linux 6.6+).
    Tc,
    /// XDP through XDP links (Linux 5.9+; the program's helpers need 5.18): before the kernel
    /// builds an skb where the driver runs XDP, one program per interface.
    Xdp,
}

/// How the XDP program runs on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists.
    Native,
    /// In the stack, on the skb (lo, and drivers without XDP).
    Generic,
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
