//! Where a datagram the program rewrites must go when the kernel's FIB will not say: the FIB
//! helper answers "forwarding disabled" on a host that is not a router (most relays), although
//! the relay is the source of what it sends, not a router. So the relay looks the destination
//! up itself when it installs a route, the way the kernel routes what a socket sends: an address
//! of this host is delivered locally, anything else leaves by the interface of the longest
//! matching route of the main table (`/proc/net/route`, `/proc/net/ipv6_route`; read through
//! /proc/thread-self, so a thread that entered another network namespace sees that one's). Policy
//! routing is not followed; a route that changes after install is followed only where forwarding
//! is on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The program's EGRESS_LOCAL: deliver on this host.
pub(crate) const LOCAL: u32 = u32::MAX;

/// Where a datagram to a destination leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Egress {
    /// [`LOCAL`], an interface index, or 0 when unknown (then the program leaves such
    /// datagrams to userspace).
    pub egress: u32,
    /// For an interface, the neighbour whose MAC address a frame to the destination carries:
    /// the route's gateway, or the destination itself on a directly connected network. The XDP
    /// program needs its MAC (next_hop.rs).
    pub via: Option<IpAddr>,
}

/// Where `dst` leaves, looked up the way the kernel routes what a socket sends.
pub(crate) fn lookup(dst: IpAddr) -> Egress {
    let dst = dst.to_canonical();
    if dst.is_loopback() || is_local(dst) {
        return Egress { egress: LOCAL, via: None };
    }
    // thread-self: /proc/net is the network namespace of the process's first thread, which need
    // not be the calling thread's.
    let route = match dst {
        IpAddr::V4(v4) => std::fs::read_to_string("/proc/thread-self/net/route").ok().and_then(|t| route_v4(&t, v4)),
        IpAddr::V6(v6) => {
            std::fs::read_to_string("/proc/thread-self/net/ipv6_route").ok().and_then(|t| route_v6(&t, v6))
        }
    };
    match route.and_then(|r| Some((super::ifaces::index(&r.interface).ok()?, r.gateway))) {
        Some((egress, gateway)) => Egress { egress, via: Some(gateway.unwrap_or(dst)) },
        None => Egress { egress: 0, via: None },
    }
}

/// The route a lookup chose: its interface, and its gateway unless the network is on-link.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    interface: String,
    gateway: Option<IpAddr>,
}

fn is_local(ip: IpAddr) -> bool {
    if_addrs::get_if_addrs().is_ok_and(|all| all.iter().any(|i| i.ip() == ip))
}

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
const RTF_REJECT: u32 = 0x200;

/// The interface of the longest matching usable route in `/proc/net/route` text (lowest metric
/// among equals). Addresses and masks there are the kernel's native-endian view of network-order
/// words, printed in hex.
fn route_v4(table: &str, dst: Ipv4Addr) -> Option<Route> {
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|w| Ipv4Addr::from(w.to_ne_bytes()));
    let mut best: Option<(u32, u32, &str, Option<IpAddr>)> = None; // (prefix, metric, interface, gateway)
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(flags), Some(metric), Some(mask)) =
            (f.first(), f.get(1).and_then(|h| word(h)), f.get(3), f.get(6), f.get(7).and_then(|h| word(h)))
        else {
            continue;
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        let metric: u32 = metric.parse().unwrap_or(u32::MAX);
        let (mask, dest) = (u32::from(mask), u32::from(dest));
        if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || u32::from(dst) & mask != dest {
            continue;
        }
        let prefix = mask.count_ones();
        let gateway = f.get(2).and_then(|h| word(h)).filter(|_| flags & RTF_GATEWAY != 0).map(IpAddr::V4);
        if best.is_none_or(|(p, m, _, _)| prefix > p || (prefix == p && metric < m)) {
            best = Some((prefix, metric, iface, gateway));
        }
    }
    best.map(|(_, _, iface, gateway)| Route { interface: iface.to_owned(), gateway })
}

/// The same for `/proc/net/ipv6_route`: destination, its prefix length, source, its prefix
/// length, next hop, metric, reference count, use count, flags, interface.
fn route_v6(table: &str, dst: Ipv6Addr) -> Option<Route> {
    let mut best: Option<(u32, u32, &str, Option<IpAddr>)> = None;
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Ok(dest), Ok(prefix), Ok(metric), Ok(flags)) = (
            u128::from_str_radix(f[0], 16),
            u32::from_str_radix(f[1], 16),
            u32::from_str_radix(f[5], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || f[9] == "lo" || prefix > 128 {
            continue;
        }
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        if u128::from(dst) & mask != dest & mask {
            continue;
        }
        let gateway = u128::from_str_radix(f[4], 16)
            .ok()
            .filter(|_| flags & RTF_GATEWAY != 0)
            .map(|g| IpAddr::V6(Ipv6Addr::from(g)));
        if best.is_none_or(|(p, m, _, _)| prefix > p || (prefix == p && metric < m)) {
            best = Some((prefix, metric, f[9], gateway));
        }
    }
    best.map(|(_, _, iface, gateway)| Route { interface: iface.to_owned(), gateway })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_longest_ipv4_route_wins_then_the_lowest_metric() {
        let word = |ip: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(ip));
        let table = format!(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
             eth0\t{}\t0101A8C0\t0003\t0\t0\t100\t{}\t0\t0\t0\n\
             r-p\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n\
             slow\t{}\t00000000\t0001\t0\t0\t50\t{}\t0\t0\t0\n\
             down\t{}\t00000000\t0000\t0\t0\t0\t{}\t0\t0\t0\n",
            word([0, 0, 0, 0]),
            word([0, 0, 0, 0]),
            word([10, 201, 2, 0]),
            word([255, 255, 255, 0]),
            word([10, 201, 2, 0]),
            word([255, 255, 255, 0]),
            word([10, 201, 2, 2]),
            word([255, 255, 255, 255]),
        );
        let on_link = Route { interface: "r-p".into(), gateway: None };
        assert_eq!(route_v4(&table, "10.201.2.2".parse().unwrap()), Some(on_link));
        let default = Route { interface: "eth0".into(), gateway: Some("192.168.1.1".parse().unwrap()) };
        assert_eq!(route_v4(&table, "93.184.216.34".parse().unwrap()), Some(default));
        assert_eq!(route_v4("Iface\n", "10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn the_longest_ipv6_route_wins_and_local_ones_are_skipped() {
        let table = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
fd010002000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 r-p
fd010002000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001 lo
";
        let interface = |ip: &str| route_v6(table, ip.parse().unwrap()).map(|r| r.interface);
        assert_eq!(interface("fd01:2::2").as_deref(), Some("r-p"));
        assert_eq!(interface("fd01:2::1").as_deref(), Some("r-p"));
        let default = route_v6(table, "2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!((default.interface.as_str(), default.gateway), ("eth0", Some("fe80::1".parse().unwrap())));
        assert_eq!(route_v6(table, "fd01:2::2".parse().unwrap()).unwrap().gateway, None);
    }

    #[test]
    fn this_hosts_addresses_are_local() {
        let egress = |ip: &str| lookup(ip.parse().unwrap()).egress;
        assert_eq!(egress("127.0.0.1"), LOCAL);
        assert_eq!(egress("::1"), LOCAL);
        assert_eq!(egress("::ffff:127.0.0.1"), LOCAL);
    }
}
