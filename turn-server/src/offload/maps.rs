//! The map layouts of relay_maps.h (both programs) and relay_xdp.bpf.c, byte for byte, and a `Route`'s keys and values in them.
//! Addresses are 16 bytes (IPv4 as ::ffff:a.b.c.d), ports and channel numbers in network order,
//! padding explicit so no byte is left to the compiler.

use std::net::{IpAddr, SocketAddr};

use aya::Pod;

use super::{Counters, OffloadError, Route};

/// `channels` key: what a client -> server ChannelData datagram carries.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelKey {
    pub client_ip: [u8; 16],
    pub server_ip: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub channel: u16,
    pub pad: u16,
}

/// `channels` value: where its payload goes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelValue {
    pub relay_ip: [u8; 16],
    pub peer_ip: [u8; 16],
    pub relay_port: u16,
    pub peer_port: u16,
    pub slot: u32,
    /// Where the datagram goes when the kernel's FIB will not say (see `egress`).
    pub egress: u32,
    pub pad: u32,
}

/// `peers` key: what a peer -> relay datagram carries.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerKey {
    pub peer_ip: [u8; 16],
    pub relay_ip: [u8; 16],
    pub peer_port: u16,
    pub relay_port: u16,
    pub pad: u32,
}

/// `peers` value: the client it goes back to, in a ChannelData message on `channel`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerValue {
    pub client_ip: [u8; 16],
    pub server_ip: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub channel: u16,
    pub pad: u16,
    pub slot: u32,
    pub egress: u32,
}

/// One CPU's `counters` entry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CounterValue {
    pub to_peer_packets: u64,
    pub to_peer_bytes: u64,
    pub from_peer_packets: u64,
    pub from_peer_bytes: u64,
}

/// `next_hops` key (XDP program only): a destination, client or peer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextHopKey {
    pub ip: [u8; 16],
}

/// `next_hops` value: the Ethernet header a frame to that destination gets, and where it leaves.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextHopValue {
    /// The next hop's MAC address (the destination's, or its gateway's).
    pub dmac: [u8; 6],
    /// The egress device's own MAC address.
    pub smac: [u8; 6],
    pub ifindex: u32,
    /// The egress device's MTU: the program leaves larger IP packets to userspace.
    pub mtu: u32,
    pub pad: u32,
}

// The C side's sizes: a mismatch would make every lookup miss (or the kernel refuse the map).
const _: () = assert!(std::mem::size_of::<ChannelKey>() == 40);
const _: () = assert!(std::mem::size_of::<ChannelValue>() == 48);
const _: () = assert!(std::mem::size_of::<PeerKey>() == 40);
const _: () = assert!(std::mem::size_of::<PeerValue>() == 48);
const _: () = assert!(std::mem::size_of::<CounterValue>() == 32);
const _: () = assert!(std::mem::size_of::<NextHopKey>() == 16);
const _: () = assert!(std::mem::size_of::<NextHopValue>() == 24);

// SAFETY: each type is #[repr(C)] of integers and byte arrays with explicit padding fields, so
// it has no implicit padding, and every bit pattern is a valid value (aya::Pod's contract).
unsafe impl Pod for ChannelKey {}
// SAFETY: as above.
unsafe impl Pod for ChannelValue {}
// SAFETY: as above.
unsafe impl Pod for PeerKey {}
// SAFETY: as above.
unsafe impl Pod for PeerValue {}
// SAFETY: as above.
unsafe impl Pod for CounterValue {}
// SAFETY: as above.
unsafe impl Pod for NextHopKey {}
// SAFETY: as above.
unsafe impl Pod for NextHopValue {}

impl CounterValue {
    pub(crate) fn add_to(&self, total: &mut Counters) {
        total.to_peer_packets = total.to_peer_packets.wrapping_add(self.to_peer_packets);
        total.to_peer_bytes = total.to_peer_bytes.wrapping_add(self.to_peer_bytes);
        total.from_peer_packets = total.from_peer_packets.wrapping_add(self.from_peer_packets);
        total.from_peer_bytes = total.from_peer_bytes.wrapping_add(self.from_peer_bytes);
    }
}

/// The 16-byte form; an IPv4-mapped IPv6 address is the IPv4 address it maps (a dual-stack
/// socket reports IPv4 peers that way, the wire carries IPv4).
fn ip16(addr: &SocketAddr) -> [u8; 16] {
    ip16_of(addr.ip())
}

pub(crate) fn ip16_of(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn is_v4(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_ipv4()
}

/// Both directions' entries of a route; refuses what the program cannot relay.
pub(crate) fn entries(
    route: &Route,
    slot: u32,
) -> Result<(ChannelKey, ChannelValue, PeerKey, PeerValue), OffloadError> {
    // Each side is one family; the two sides may differ (the program translates).
    if is_v4(&route.client) != is_v4(&route.server) || is_v4(&route.relay) != is_v4(&route.peer) {
        return Err(OffloadError::FamilyMismatch(format!(
            "client {} server {} relay {} peer {}",
            route.client, route.server, route.relay, route.peer
        )));
    }
    if !(0x4000..=0x4FFF).contains(&route.channel) {
        return Err(OffloadError::InvalidChannel(route.channel));
    }
    let channel = route.channel.to_be();
    let (client_ip, server_ip) = (ip16(&route.client), ip16(&route.server));
    let (relay_ip, peer_ip) = (ip16(&route.relay), ip16(&route.peer));
    let (client_port, server_port) = (route.client.port().to_be(), route.server.port().to_be());
    let (relay_port, peer_port) = (route.relay.port().to_be(), route.peer.port().to_be());
    Ok((
        ChannelKey { client_ip, server_ip, client_port, server_port, channel, pad: 0 },
        ChannelValue { relay_ip, peer_ip, relay_port, peer_port, slot, egress: 0, pad: 0 },
        PeerKey { peer_ip, relay_ip, peer_port, relay_port, pad: 0 },
        PeerValue { client_ip, server_ip, client_port, server_port, channel, pad: 0, slot, egress: 0 },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(client: &str, server: &str, relay: &str, peer: &str) -> Route {
        Route {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            relay: relay.parse().unwrap(),
            peer: peer.parse().unwrap(),
            channel: 0x4001,
        }
    }

    #[test]
    fn ipv4_is_mapped_and_ports_are_network_order() {
        let r = route("1.2.3.4:1000", "5.6.7.8:3478", "5.6.7.8:50000", "9.9.9.9:7");
        let (ck, cv, pk, pv) = entries(&r, 3).unwrap();
        let mut want = [0u8; 16];
        want[10] = 0xff;
        want[11] = 0xff;
        want[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(ck.client_ip, want);
        assert_eq!(ck.client_port.to_ne_bytes(), 1000u16.to_be_bytes());
        assert_eq!(ck.channel.to_ne_bytes(), [0x40, 0x01]);
        assert_eq!(cv.slot, 3);
        assert_eq!(pk.relay_port.to_ne_bytes(), 50000u16.to_be_bytes());
        assert_eq!(pv.server_port.to_ne_bytes(), 3478u16.to_be_bytes());
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let r = route("[::ffff:1.2.3.4]:1000", "5.6.7.8:3478", "5.6.7.8:50000", "9.9.9.9:7");
        assert!(entries(&r, 0).is_ok());
    }

    #[test]
    fn each_side_is_one_family_and_channels_are_valid() {
        let r = route("1.2.3.4:1000", "5.6.7.8:3478", "[2001:db8::1]:5", "[2001:db8::2]:7");
        assert!(entries(&r, 0).is_ok(), "an IPv4 client with an IPv6 peer is translated");
        let r = route("1.2.3.4:1000", "[2001:db8::1]:3478", "5.6.7.8:5", "9.9.9.9:7");
        assert!(matches!(entries(&r, 0), Err(OffloadError::FamilyMismatch(_))));
        let r = route("1.2.3.4:1000", "5.6.7.8:3478", "5.6.7.8:5", "[2001:db8::2]:7");
        assert!(matches!(entries(&r, 0), Err(OffloadError::FamilyMismatch(_))));
        let mut r = route("1.2.3.4:1000", "5.6.7.8:3478", "5.6.7.8:5", "9.9.9.9:7");
        r.channel = 0x5000;
        assert!(matches!(entries(&r, 0), Err(OffloadError::InvalidChannel(0x5000))));
    }
}
