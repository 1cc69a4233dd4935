//! The XDP program's next hops. XDP has no `bpf_redirect_neigh`: a frame that leaves through a
//! device needs its Ethernet header written by the program. Where the host forwards, the
//! program's FIB lookup supplies the MACs; where it does not (most relays: the lookup then
//! answers "forwarding disabled"), this table does. For each destination (a client or a peer)
//! that leaves by an interface, the relay finds the next hop when it installs the route
//! (egress.rs: the route's gateway, or the destination on a directly connected network), takes
//! that neighbour's MAC from the kernel's neighbour table (an rtnetlink dump) and the egress
//! device's own MAC and MTU, and keeps them in the `next_hops` map.
//!
//! The relay never resolves a neighbour itself: a destination whose neighbour is not resolved
//! yet has no entry, so the program leaves its datagrams to userspace, whose sends make the
//! kernel resolve it; the next refresh (every second, from the driver's tick) finds it. A
//! neighbour that fails, changes its MAC or goes away is followed by the same refresh.
//!
//! The same refresh keeps the `ports` map: which devices a frame may be sent out of. Where the
//! program runs in generic mode the kernel sends the redirected skb itself, through any device.
//! Where it runs natively the frame goes to the egress driver's ndo_xdp_xmit, and a device
//! without it drops the frame, counted as relayed: a veth whose other end has neither XDP nor
//! GRO on, a device where XDP could only attach in generic mode. So a native redirect (or
//! XDP_TX) is allowed only to devices the program runs on natively and the kernel reports as
//! taking XDP frames (NETDEV_XDP_ACT_NDO_XMIT, from the `netdev` generic netlink family of
//! Linux 6.3; an older kernel cannot say, so there nothing leaves through a device from XDP).

use std::collections::HashMap as Table;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};

use super::egress::Egress;
use super::maps::{ip16_of, NextHopKey, NextHopValue};
use super::netlink;
use super::{ifaces, XdpMode};

/// How often the neighbours are read again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// MAC addresses of resolved neighbours, by (interface index, address).
type Neighbours = Table<(u32, IpAddr), [u8; 6]>;

/// `ports` flags (relay_xdp.bpf.c): the program runs in generic mode on this device.
const PORT_GENERIC: u32 = 1;
/// The program runs natively on this device and the device takes XDP frames.
const PORT_XMIT: u32 = 2;

/// The destinations the installed routes send to and what the map holds for each; the devices
/// the program is attached to and what `ports` says of them.
pub(crate) struct NextHops {
    map: HashMap<MapData, NextHopKey, NextHopValue>,
    ports: HashMap<MapData, u32, u32>,
    /// (interface index, mode) of each device the program is attached to, and its flags now.
    attached: Vec<(u32, XdpMode, Option<u32>)>,
    wanted: Table<IpAddr, Wanted>,
    neighbours: Neighbours,
    /// The last periodic refresh. A read at install does not count: it would put the next
    /// refresh off by up to a tick more, and a neighbour resolved right after the install
    /// (by userspace's first sends to a new peer) would wait two seconds instead of one.
    refreshed: Option<Instant>,
}

struct Wanted {
    /// Installed routes sending to this destination.
    routes: u32,
    egress: u32,
    via: IpAddr,
    /// What the map holds for it.
    entry: Option<NextHopValue>,
}

impl NextHops {
    pub(crate) fn new(
        map: HashMap<MapData, NextHopKey, NextHopValue>,
        ports: HashMap<MapData, u32, u32>,
        attached: &[(u32, XdpMode)],
    ) -> Self {
        let attached = attached.iter().map(|&(ifindex, mode)| (ifindex, mode, None)).collect();
        let mut this =
            NextHops { map, ports, attached, wanted: Table::new(), neighbours: Table::new(), refreshed: None };
        this.update_ports();
        this
    }

    /// Whether frames may leave through the attached device `interface` now.
    pub(crate) fn takes_frames(&self, interface: &str) -> bool {
        let index = ifaces::index(interface).ok();
        self.attached.iter().any(|(i, _, flags)| Some(*i) == index && flags.is_some_and(|f| f & PORT_XMIT != 0))
    }

    /// Puts each attached device's flags into `ports` where they changed.
    fn update_ports(&mut self) {
        let capable = xmit_capable().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot read the devices' XDP features: no native redirects");
            Default::default()
        });
        for (ifindex, mode, flags) in self.attached.iter_mut() {
            let now = match mode {
                XdpMode::Generic => PORT_GENERIC,
                XdpMode::Native if capable.contains(ifindex) => PORT_XMIT,
                XdpMode::Native => 0,
            };
            if *flags != Some(now) {
                match self.ports.insert(*ifindex, now, 0) {
                    Ok(()) => *flags = Some(now),
                    Err(e) => tracing::debug!(ifindex = *ifindex, error = %e, "cannot update a port"),
                }
            }
        }
    }

    /// One more route sends to `dst`, which leaves as `route` says. Local destinations and
    /// unknown egresses need no next hop (the program delivers or passes those itself).
    pub(crate) fn add(&mut self, dst: IpAddr, route: Egress) {
        let (Some(via), true) = (route.via, route.egress != 0 && route.egress != super::egress::LOCAL) else {
            return;
        };
        let dst = dst.to_canonical();
        if let Some(w) = self.wanted.get_mut(&dst) {
            w.routes += 1;
            return;
        }
        // A neighbour resolved since the last refresh (the client's, which just talked to us).
        if !self.neighbours.contains_key(&(route.egress, via)) {
            self.read_neighbours();
        }
        let mut wanted = Wanted { routes: 1, egress: route.egress, via, entry: None };
        self.update(dst, &mut wanted, &mut Table::new());
        self.wanted.insert(dst, wanted);
    }

    /// One route fewer sends to `dst`; the last one takes its entry out of the map.
    pub(crate) fn remove(&mut self, dst: IpAddr) {
        let dst = dst.to_canonical();
        let Some(w) = self.wanted.get_mut(&dst) else { return };
        w.routes -= 1;
        if w.routes == 0 {
            if w.entry.is_some() {
                let _ = self.map.remove(&key(dst));
            }
            self.wanted.remove(&dst);
        }
    }

    /// Reads the devices and the neighbours again and brings every entry up to date, at most
    /// every [`REFRESH_EVERY`].
    pub(crate) fn refresh(&mut self, now: Instant) {
        if self.refreshed.is_some_and(|at| now.duration_since(at) < REFRESH_EVERY) {
            return;
        }
        self.refreshed = Some(now);
        self.update_ports();
        if self.wanted.is_empty() {
            return;
        }
        self.read_neighbours();
        let mut links = Table::new();
        let mut wanted = std::mem::take(&mut self.wanted);
        for (dst, w) in wanted.iter_mut() {
            self.update(*dst, w, &mut links);
        }
        self.wanted = wanted;
    }

    fn read_neighbours(&mut self) {
        match neighbours() {
            Ok(n) => self.neighbours = n,
            // Entries stay as they are; the next refresh tries again.
            Err(e) => tracing::debug!(error = %e, "cannot read the neighbour table"),
        }
    }

    /// Puts what `w` resolves to now into the map (or takes it out).
    fn update(&mut self, dst: IpAddr, w: &mut Wanted, links: &mut Table<u32, Option<([u8; 6], u32)>>) {
        let link = *links.entry(w.egress).or_insert_with(|| link(w.egress));
        let now = match (self.neighbours.get(&(w.egress, w.via)), link) {
            (Some(&dmac), Some((smac, mtu))) => Some(NextHopValue { dmac, smac, ifindex: w.egress, mtu, pad: 0 }),
            _ => None,
        };
        if now == w.entry {
            return;
        }
        let done = match now {
            Some(value) => self.map.insert(key(dst), value, 0),
            None => self.map.remove(&key(dst)),
        };
        match done {
            Ok(()) => {
                tracing::debug!(%dst, via = %w.via, egress = w.egress, resolved = now.is_some(), "next hop");
                w.entry = now;
            }
            // Full or gone: the program leaves this destination to userspace.
            Err(e) => {
                tracing::debug!(%dst, error = %e, "cannot update a next hop");
                let _ = self.map.remove(&key(dst));
                w.entry = None;
            }
        }
    }
}

fn key(dst: IpAddr) -> NextHopKey {
    NextHopKey { ip: ip16_of(dst) }
}

/// An Ethernet device's MAC address and MTU; None for other devices (a tunnel has no MACs, and
/// the program writes an Ethernet header).
fn link(ifindex: u32) -> Option<([u8; 6], u32)> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has room for IF_NAMESIZE bytes, as if_indextoname requires.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_str().ok()?.to_owned();
    let hw = ifaces::query(&name, libc::SIOCGIFHWADDR).ok()?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hw = unsafe { hw.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    let mtu = ifaces::query(&name, libc::SIOCGIFMTU).ok()?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { mtu.ifr_ifru.ifru_mtu };
    Some((mac, u32::try_from(mtu).ok()?))
}

/// `struct ndmsg` (linux/neighbour.h): what an RTM_GETNEIGH dump asks with (all zeros: every
/// family, every device) and what each answer starts with.
const NDMSG: usize = 12;

/// NUD_VALID: the states in which the kernel itself sends to the neighbour's address.
const NUD_VALID: u16 = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;

/// Every resolved neighbour of this network namespace, both families (RTM_GETNEIGH dump).
fn neighbours() -> std::io::Result<Neighbours> {
    let msg = netlink::request(libc::RTM_GETNEIGH, libc::NLM_F_DUMP as u16, &[0; NDMSG]);
    let answer = netlink::exchange(libc::NETLINK_ROUTE, &msg, true)?;
    Ok(answer
        .iter()
        .filter(|m| m.kind == libc::RTM_NEWNEIGH)
        .filter_map(|m| neighbour(&m.payload))
        .map(|(ifindex, ip, mac)| ((ifindex, ip), mac))
        .collect())
}

/// One RTM_NEWNEIGH body: ndmsg, then attributes; a resolved Ethernet neighbour, or None.
fn neighbour(body: &[u8]) -> Option<(u32, IpAddr, [u8; 6])> {
    let ifindex = u32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let state = u16::from_ne_bytes(body.get(8..10)?.try_into().ok()?);
    if state & NUD_VALID == 0 {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    for (kind, value) in netlink::attributes(body.get(NDMSG..)?) {
        match kind {
            libc::NDA_DST => {
                ip = match value.len() {
                    4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            libc::NDA_LLADDR => mac = <[u8; 6]>::try_from(value).ok(),
            _ => {}
        }
    }
    // A NOARP device's neighbours carry no address worth writing.
    let mac = mac.filter(|m| m.iter().any(|&b| b != 0))?;
    Some((ifindex, ip?, mac))
}

/// The generic netlink `netdev` family (linux/netdev.h, Linux 6.3): devices' XDP features.
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// NETDEV_XDP_ACT_NDO_XMIT: the device takes XDP frames from other devices (a veth only while
/// its other end runs XDP or has GRO on).
const NDO_XMIT: u64 = 4;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// GENL_ID_CTRL: the generic netlink controller, which names the families' ids.
const GENL_ID_CTRL: u16 = 0x10;

/// The devices that take XDP frames redirected from another device (ndo_xdp_xmit), by index.
/// Empty where the kernel cannot say (before Linux 6.3): no native redirects there.
fn xmit_capable() -> std::io::Result<std::collections::HashSet<u32>> {
    // genlmsghdr: command, version 1, reserved.
    let family = [CTRL_CMD_GETFAMILY, 1, 0, 0]
        .into_iter()
        .chain(netlink::attribute(CTRL_ATTR_FAMILY_NAME, b"netdev\0"))
        .collect::<Vec<u8>>();
    let answer = netlink::exchange(libc::NETLINK_GENERIC, &netlink::request(GENL_ID_CTRL, 0, &family), false)?;
    let id = answer
        .iter()
        .flat_map(|m| netlink::attributes(m.payload.get(4..).unwrap_or_default()))
        .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no netdev netlink family"))?;
    let get = [NETDEV_CMD_DEV_GET, 1, 0, 0];
    let answer = netlink::exchange(libc::NETLINK_GENERIC, &netlink::request(id, libc::NLM_F_DUMP as u16, &get), true)?;
    let mut capable = std::collections::HashSet::new();
    for m in answer.iter().filter(|m| m.kind == id) {
        let (mut ifindex, mut features) = (None, 0u64);
        for (kind, value) in netlink::attributes(m.payload.get(4..).unwrap_or_default()) {
            match kind {
                NETDEV_A_DEV_IFINDEX => {
                    ifindex = value.get(..4).and_then(|v| v.try_into().ok()).map(u32::from_ne_bytes)
                }
                NETDEV_A_DEV_XDP_FEATURES => {
                    features = value.get(..8).and_then(|v| v.try_into().ok()).map(u64::from_ne_bytes).unwrap_or(0)
                }
                _ => {}
            }
        }
        if let (Some(ifindex), true) = (ifindex, features & NDO_XMIT != 0) {
            capable.insert(ifindex);
        }
    }
    Ok(capable)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An RTM_NEWNEIGH body as the kernel sends it.
    fn body(ifindex: u32, state: u16, dst: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; NDMSG];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[8..10].copy_from_slice(&state.to_ne_bytes());
        body.extend(netlink::attribute(libc::NDA_DST, dst));
        body.extend(netlink::attribute(libc::NDA_LLADDR, mac));
        body
    }

    #[test]
    fn resolved_neighbours_of_both_families_are_read() {
        const REACHABLE: u16 = 0x02;
        const STALE: u16 = 0x04;
        const INCOMPLETE: u16 = 0x01;
        let mac = [2, 0, 0, 0, 0, 7];
        assert_eq!(neighbour(&body(3, REACHABLE, &[10, 0, 0, 1], &mac)), Some((3, "10.0.0.1".parse().unwrap(), mac)));
        let fe80 = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap();
        assert_eq!(neighbour(&body(3, STALE, &fe80.octets(), &mac)), Some((3, fe80.into(), mac)));
        assert_eq!(neighbour(&body(4, INCOMPLETE, &[10, 0, 0, 2], &mac)), None);
        assert_eq!(neighbour(&body(4, REACHABLE, &[10, 0, 0, 2], &[0; 6])), None, "NOARP");
    }

    #[test]
    fn this_namespaces_devices_and_neighbours_can_be_read() {
        // Any process may ask; what the answers hold depends on the host.
        assert!(neighbours().is_ok());
        assert!(xmit_capable().is_ok());
    }
}
