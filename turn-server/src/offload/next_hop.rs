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

use std::collections::HashMap as Table;
use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};

use super::egress::Egress;
use super::ifaces;
use super::maps::{ip16_of, NextHopKey, NextHopValue};

/// How often the neighbours are read again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// MAC addresses of resolved neighbours, by (interface index, address).
type Neighbours = Table<(u32, IpAddr), [u8; 6]>;

/// The destinations the installed routes send to and what the map holds for each.
pub(crate) struct NextHops {
    map: HashMap<MapData, NextHopKey, NextHopValue>,
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
    pub(crate) fn new(map: HashMap<MapData, NextHopKey, NextHopValue>) -> Self {
        NextHops { map, wanted: Table::new(), neighbours: Table::new(), refreshed: None }
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

    /// Reads the neighbours and the devices again and brings every entry up to date, at most
    /// every [`REFRESH_EVERY`].
    pub(crate) fn refresh(&mut self, now: Instant) {
        if self.refreshed.is_some_and(|at| now.duration_since(at) < REFRESH_EVERY) || self.wanted.is_empty() {
            return;
        }
        self.refreshed = Some(now);
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

/// `struct ndmsg` (linux/neighbour.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NdMsg {
    family: u8,
    pad1: u8,
    pad2: u16,
    ifindex: i32,
    state: u16,
    flags: u8,
    kind: u8,
}

#[repr(C)]
struct DumpRequest {
    header: libc::nlmsghdr,
    body: NdMsg,
}

/// NUD_VALID: the states in which the kernel itself sends to the neighbour's address.
const NUD_VALID: u16 = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;
const HEADER: usize = std::mem::size_of::<libc::nlmsghdr>();

/// Every resolved neighbour of this network namespace, both families (RTM_GETNEIGH dump).
fn neighbours() -> std::io::Result<Neighbours> {
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers a dump at once; the timeout only bounds a kernel that does not.
    let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: SO_RCVTIMEO takes a timeval; the pointer and length describe `timeout`.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let request = DumpRequest {
        header: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<DumpRequest>() as u32,
            nlmsg_type: libc::RTM_GETNEIGH,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        body: NdMsg::default(),
    };
    // SAFETY: the pointer and length describe `request`, which outlives the call.
    let sent = unsafe {
        libc::send(fd.as_raw_fd(), (&request as *const DumpRequest).cast(), std::mem::size_of::<DumpRequest>(), 0)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = Table::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 || parse_dump(&buf[..n], &mut found)? {
            return Ok(found);
        }
    }
}

/// Adds the neighbours in one datagram of a dump's answer; true once the dump is complete.
fn parse_dump(mut data: &[u8], into: &mut Neighbours) -> std::io::Result<bool> {
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < HEADER || len > data.len() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a truncated netlink message"));
        }
        let body = &data[HEADER..len];
        match i32::from(kind) {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let code = body.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ if kind == libc::RTM_NEWNEIGH => {
                if let Some((ifindex, ip, mac)) = neighbour(body) {
                    into.insert((ifindex, ip), mac);
                }
            }
            _ => {}
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Ok(false)
}

/// One RTM_NEWNEIGH body: ndmsg, then attributes; a resolved Ethernet neighbour, or None.
fn neighbour(body: &[u8]) -> Option<(u32, IpAddr, [u8; 6])> {
    const NDMSG: usize = std::mem::size_of::<NdMsg>();
    let ifindex = u32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let state = u16::from_ne_bytes(body.get(8..10)?.try_into().ok()?);
    if state & NUD_VALID == 0 {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    let mut attrs = body.get(NDMSG..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
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
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    // A NOARP device's neighbours carry no address worth writing.
    let mac = mac.filter(|m| m.iter().any(|&b| b != 0))?;
    Some((ifindex, ip?, mac))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An RTM_NEWNEIGH message as the kernel sends it.
    fn message(ifindex: u32, state: u16, dst: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; std::mem::size_of::<NdMsg>()];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[8..10].copy_from_slice(&state.to_ne_bytes());
        for (kind, value) in [(libc::NDA_DST, dst), (libc::NDA_LLADDR, mac)] {
            body.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut msg = ((HEADER + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&libc::RTM_NEWNEIGH.to_ne_bytes());
        msg.resize(HEADER, 0);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn a_dump_gives_resolved_neighbours_of_both_families() {
        const REACHABLE: u16 = 0x02;
        const STALE: u16 = 0x04;
        const INCOMPLETE: u16 = 0x01;
        let mac = [2, 0, 0, 0, 0, 7];
        let mut data = message(3, REACHABLE, &[10, 0, 0, 1], &mac);
        data.extend(message(3, STALE, &"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(), &mac));
        data.extend(message(4, INCOMPLETE, &[10, 0, 0, 2], &[0; 6]));
        let mut done = vec![0u8; HEADER];
        done[..4].copy_from_slice(&(HEADER as u32).to_ne_bytes());
        done[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        let mut found = Table::new();
        assert!(!parse_dump(&data, &mut found).unwrap());
        assert!(parse_dump(&done, &mut found).unwrap());
        assert_eq!(found.len(), 2);
        assert_eq!(found.get(&(3, "10.0.0.1".parse().unwrap())), Some(&mac));
        assert_eq!(found.get(&(3, "fe80::1".parse().unwrap())), Some(&mac));
    }

    #[test]
    fn a_truncated_message_is_an_error() {
        let mut data = message(3, 0x02, &[10, 0, 0, 1], &[2, 0, 0, 0, 0, 7]);
        data.truncate(data.len() - 2);
        assert!(parse_dump(&data, &mut Table::new()).is_err());
    }

    #[test]
    fn this_namespaces_table_can_be_read() {
        // Any process may dump the neighbour table; the answer's content depends on the host.
        assert!(neighbours().is_ok());
    }
}
