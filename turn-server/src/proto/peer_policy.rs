//! Which peer addresses the relay agrees to send to (CreatePermission / ChannelBind).
//!
//! An open TURN relay is an SSRF and scanning proxy into whatever network it sits in: loopback
//! services, the cloud metadata endpoint, private subnets. This module refuses those by default,
//! including when they are disguised as IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo),
//! forms that a deny list of literal IPv4 ranges misses. It is pure: the driver supplies its own
//! addresses and the config; the result maps to 403 Forbidden.
//!
//! Precedence, strongest first:
//! 1. Teredo (2001::/32) is refused unless an `allowed` rule covers it: the real destination is
//!    an obfuscated IPv4 address reached through a third-party relay, so it cannot be checked.
//! 2. `denied` rules, matched against the address as given and its canonical form, override
//!    everything else, including `allowed` rules.
//! 3. The server's own addresses are refused (relay loops, local services), except loopback
//!    ones when `allow_loopback` is set: test setups listen on 127.0.0.1 and run their peers
//!    there too, and that flag already opens every local service.
//! 4. `allowed` rules, matched against the canonical address only (so a broad IPv6 allow rule
//!    such as `2000::/3` cannot open `2002:7f00:1::`, which is 127.0.0.1 via 6to4), override
//!    the built-in list.
//! 5. Loopback is refused unless `allow_loopback`.
//! 6. The built-in special-purpose ranges (IANA registries) and IPv6 outside 2000::/3 are
//!    refused; everything else is fine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use ice_config::IpRange;

/// Why a peer address was refused; stable names for logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// RFC 1918 networks, IPv6 unique-local and site-local.
    Private,
    /// Carrier-grade NAT space, 100.64.0.0/10.
    SharedAddressSpace,
    /// 169.254.0.0/16 (including cloud metadata at 169.254.169.254), fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation prefixes (TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20).
    Documentation,
    /// Other special-purpose or unallocated space.
    Reserved,
    /// One of the relay's own addresses.
    OwnAddress,
    /// An operator `denied_peer_ips` rule.
    DeniedByRule,
    /// Teredo, 2001::/32.
    Teredo,
    /// The signaling service or Redis named in the shared config.
    ServiceEndpoint,
}

impl DenyReason {
    /// snake_case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Unspecified => "unspecified",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared_address_space",
            Self::LinkLocal => "link_local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
            Self::OwnAddress => "own_address",
            Self::DeniedByRule => "denied_by_rule",
            Self::Teredo => "teredo",
            Self::ServiceEndpoint => "service_endpoint",
        }
    }
}

/// Operator settings the policy is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerPolicyConfig {
    /// Permit 127.0.0.0/8 and ::1 (test setups only).
    pub allow_loopback: bool,
    /// Ranges opened despite the built-in list.
    pub allowed: Vec<IpRange>,
    /// Ranges always refused.
    pub denied: Vec<IpRange>,
    /// The relay's listening, relay and external addresses.
    pub own_addresses: Vec<IpAddr>,
    /// The relay port range. When set, an own address is a valid peer on these ports only: that is
    /// another allocation of this same server, the usual path when both callers relay through it.
    pub relay_ports: Option<RangeInclusive<u16>>,
    /// The signaling service's and Redis's addresses from the shared config: refused as peers even
    /// when an allow rule opens their network, so a TURN credential never reaches the
    /// infrastructure behind the relay. A port of 0 stands for every port of that address.
    pub service_endpoints: Vec<SocketAddr>,
}

impl PeerPolicyConfig {
    /// The settings from the `[turn]` section plus the addresses the driver found it owns.
    pub fn from_turn_config(turn: &ice_config::TurnConfig, own_addresses: Vec<IpAddr>) -> Self {
        Self {
            allow_loopback: turn.allow_loopback_peers,
            allowed: turn.allowed_peer_ips.clone(),
            denied: turn.denied_peer_ips.clone(),
            own_addresses,
            relay_ports: Some(turn.min_port..=turn.max_port),
            service_endpoints: Vec::new(),
        }
    }
}

/// The peer address filter; cheap to query, rebuilt on config reload.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allow_loopback: bool,
    allowed: Vec<IpRange>,
    denied: Vec<IpRange>,
    own: Vec<IpAddr>,
    relay_ports: Option<RangeInclusive<u16>>,
    service_endpoints: Vec<SocketAddr>,
}

impl PeerPolicy {
    /// Builds the policy; own addresses are stored canonicalized so a mapped form matches too.
    pub fn new(cfg: PeerPolicyConfig) -> Self {
        let mut own: Vec<IpAddr> = cfg.own_addresses.into_iter().map(canonical_ip).collect();
        own.sort_unstable();
        own.dedup();
        Self {
            allow_loopback: cfg.allow_loopback,
            allowed: cfg.allowed,
            denied: cfg.denied,
            own,
            relay_ports: cfg.relay_ports,
            service_endpoints: cfg
                .service_endpoints
                .into_iter()
                .map(|e| SocketAddr::new(canonical_ip(e.ip()), e.port()))
                .collect(),
        }
    }

    /// `Ok` if the relay may send to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), DenyReason> {
        if is_teredo(ip) && !self.is_allowed(ip) {
            return Err(DenyReason::Teredo);
        }
        let canonical = canonical_ip(ip);
        if self.denied.iter().any(|r| r.contains(ip) || r.contains(canonical)) {
            return Err(DenyReason::DeniedByRule);
        }
        if self.relay_ports.is_none() && self.is_own_refused(canonical) {
            return Err(DenyReason::OwnAddress);
        }
        if self.is_allowed(canonical) {
            return Ok(());
        }
        if is_loopback(canonical) {
            return if self.allow_loopback { Ok(()) } else { Err(DenyReason::Loopback) };
        }
        builtin_class(canonical)
    }

    /// [`PeerPolicy::check`] plus the port rule for the relay's own addresses: used where a peer
    /// port is known (ChannelBind), so a client cannot reach the relay host's other services.
    pub fn check_peer(&self, peer: SocketAddr) -> Result<(), DenyReason> {
        self.check(peer.ip())?;
        self.check_own_port(peer)
    }

    /// Only the own-address port rule; for the Send path, whose peer IP passed [`PeerPolicy::check`]
    /// when its permission was installed.
    pub fn check_own_port(&self, peer: SocketAddr) -> Result<(), DenyReason> {
        let canonical = canonical_ip(peer.ip());
        if self.service_endpoints.iter().any(|e| e.ip() == canonical && (e.port() == 0 || e.port() == peer.port())) {
            return Err(DenyReason::ServiceEndpoint);
        }
        match &self.relay_ports {
            Some(ports) if !ports.contains(&peer.port()) && self.is_own_refused(canonical) => {
                Err(DenyReason::OwnAddress)
            }
            _ => Ok(()),
        }
    }

    /// An own address is opened only by `allow_loopback` (for loopback) or by an allow rule naming
    /// exactly that address: a broad rule such as 10.0.0.0/8 must not expose the relay host's own
    /// services by accident.
    fn is_own_refused(&self, canonical: IpAddr) -> bool {
        self.own.contains(&canonical)
            && !(self.allow_loopback && is_loopback(canonical))
            && !self.allowed.iter().any(|r| r.start() == r.end() && r.contains(canonical))
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|r| r.contains(ip))
    }
}

/// The IPv4 address an IPv6 form actually reaches, or `ip` unchanged.
///
/// Reduces IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (but not `::` or `::1`),
/// NAT64 `64:ff9b::/96` and local-use `64:ff9b:1::/48` (IPv4 in the last 32 bits) and 6to4
/// `2002:AABB:CCDD::/16`. Teredo is left alone: its IPv4 address is obfuscated and reached via a
/// third party, so [`PeerPolicy`] refuses it as a whole instead.
///
/// A local-use NAT64 translator may use a shorter RFC 6052 format that embeds the IPv4 address
/// elsewhere; operators running one should add `64:ff9b:1::/48` to `denied_peer_ips`, which is
/// matched against the address as given.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    let s = v6.segments();
    let o = v6.octets();
    let last32 = || IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => last32(),
        [0, 0, 0, 0, 0, 0, 0, 0] | [0, 0, 0, 0, 0, 0, 0, 1] => ip,
        [0, 0, 0, 0, 0, 0, _, _] => last32(),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => last32(),
        [0x64, 0xff9b, 1, ..] => last32(),
        [0x2002, ..] => IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => ip,
    }
}

fn is_teredo(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[..2] == [0x2001, 0])
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// The built-in deny list for a canonical, non-loopback address.
fn builtin_class(ip: IpAddr) -> Result<(), DenyReason> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// IANA IPv4 special-purpose registry entries that are not globally reachable, plus multicast,
/// class E and broadcast.
const V4_DENY: &[([u8; 4], u32, DenyReason)] = &[
    ([0, 0, 0, 0], 8, DenyReason::Unspecified),
    ([10, 0, 0, 0], 8, DenyReason::Private),
    ([100, 64, 0, 0], 10, DenyReason::SharedAddressSpace),
    ([127, 0, 0, 0], 8, DenyReason::Loopback),
    ([169, 254, 0, 0], 16, DenyReason::LinkLocal),
    ([172, 16, 0, 0], 12, DenyReason::Private),
    ([192, 0, 0, 0], 24, DenyReason::Reserved),
    ([192, 0, 2, 0], 24, DenyReason::Documentation),
    ([192, 88, 99, 0], 24, DenyReason::Reserved), // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16, DenyReason::Private),
    ([198, 18, 0, 0], 15, DenyReason::Reserved), // benchmarking
    ([198, 51, 100, 0], 24, DenyReason::Documentation),
    ([203, 0, 113, 0], 24, DenyReason::Documentation),
    ([224, 0, 0, 0], 4, DenyReason::Multicast),
    ([255, 255, 255, 255], 32, DenyReason::Broadcast),
    ([240, 0, 0, 0], 4, DenyReason::Reserved),
];

fn v4_class(ip: Ipv4Addr) -> Result<(), DenyReason> {
    match V4_DENY.iter().find(|(net, len, _)| in_v4(ip, *net, *len)) {
        Some((_, _, reason)) => Err(*reason),
        None => Ok(()),
    }
}

/// IANA IPv6 special-purpose entries that are not globally reachable. Forms embedding IPv4 are
/// reduced before this is consulted.
const V6_DENY: &[([u16; 8], u32, DenyReason)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, DenyReason::Unspecified),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, DenyReason::Loopback),
    ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, DenyReason::Reserved), // discard-only
    ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48, DenyReason::Reserved), // benchmarking
    ([0x2001, 0x0010, 0, 0, 0, 0, 0, 0], 28, DenyReason::Reserved), // ORCHID
    ([0x2001, 0x0020, 0, 0, 0, 0, 0, 0], 28, DenyReason::Reserved), // ORCHIDv2
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, DenyReason::Documentation),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, DenyReason::Documentation),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, DenyReason::Reserved), // SRv6 SIDs
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, DenyReason::Private),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, DenyReason::LinkLocal),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, DenyReason::Private), // deprecated site-local
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, DenyReason::Multicast),
];

fn v6_class(ip: Ipv6Addr) -> Result<(), DenyReason> {
    if let Some((_, _, reason)) = V6_DENY.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Err(*reason);
    }
    // Only 2000::/3 is allocated for global unicast; anything else left here (unallocated
    // space, the SIIT ::ffff:0:0/96 form, NAT64 prefixes other than the two we decode) has no
    // business being a peer.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Err(DenyReason::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    fn default_policy() -> PeerPolicy {
        PeerPolicy::new(PeerPolicyConfig::default())
    }

    /// `first` and `last` are refused for `reason`; the neighbours just outside are not refused
    /// for that reason (they may be refused for another).
    fn assert_block(first: &str, last: &str, below: Option<&str>, above: Option<&str>, reason: DenyReason) {
        let p = default_policy();
        assert_eq!(p.check(ip(first)), Err(reason), "{first}");
        assert_eq!(p.check(ip(last)), Err(reason), "{last}");
        for outside in [below, above].into_iter().flatten() {
            assert_ne!(p.check(ip(outside)), Err(reason), "{outside}");
        }
    }

    #[test]
    fn reason_names_are_distinct_snake_case() {
        let all = [
            DenyReason::Loopback,
            DenyReason::Unspecified,
            DenyReason::Private,
            DenyReason::SharedAddressSpace,
            DenyReason::LinkLocal,
            DenyReason::Multicast,
            DenyReason::Broadcast,
            DenyReason::Documentation,
            DenyReason::Reserved,
            DenyReason::OwnAddress,
            DenyReason::DeniedByRule,
            DenyReason::Teredo,
        ];
        let mut names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(DenyReason::SharedAddressSpace.as_str(), "shared_address_space");
        assert_eq!(DenyReason::DeniedByRule.as_str(), "denied_by_rule");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn canonical_ip_reduces_embedded_ipv4() {
        for (form, expected) in [
            ("10.0.0.1", "10.0.0.1"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("::10.0.0.1", "10.0.0.1"),
            ("::0.0.0.2", "0.0.0.2"),
            ("64:ff9b::a00:1", "10.0.0.1"),
            ("64:ff9b:1::a00:1", "10.0.0.1"),
            ("64:ff9b:1:ffff:ffff:ffff:a00:1", "10.0.0.1"),
            ("2002:a00:1::", "10.0.0.1"),
            ("2002:a00:1:ffff:ffff:ffff:ffff:ffff", "10.0.0.1"),
            ("::ffff:0.0.0.0", "0.0.0.0"),
        ] {
            assert_eq!(canonical_ip(ip(form)), ip(expected), "{form}");
        }
    }

    #[test]
    fn canonical_ip_leaves_other_addresses_alone() {
        for form in [
            "::",
            "::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "2001:db8::1",
            "64:ff9b:0:0:1::a00:1", // not the /96 well-known prefix
            "64:ff9b:2::a00:1",     // outside the local-use /48
            "64:ff9a::a00:1",
            "2003::a00:1",
            "::ffff:0:a00:1", // SIIT, refused as unallocated instead
            "fe80::1",
            "255.255.255.255",
        ] {
            assert_eq!(canonical_ip(ip(form)), ip(form), "{form}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let p = default_policy();
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "1.0.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2000::",
            "3fff:1000::",
            "2001:1::1",
            "2001:3::1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn ipv4_unspecified_and_loopback() {
        assert_block("0.0.0.0", "0.255.255.255", None, Some("1.0.0.0"), DenyReason::Unspecified);
        assert_block("127.0.0.0", "127.255.255.255", Some("126.255.255.255"), Some("128.0.0.0"), DenyReason::Loopback);
    }

    #[test]
    fn ipv4_private() {
        assert_block("10.0.0.0", "10.255.255.255", Some("9.255.255.255"), Some("11.0.0.0"), DenyReason::Private);
        assert_block("172.16.0.0", "172.31.255.255", Some("172.15.255.255"), Some("172.32.0.0"), DenyReason::Private);
        assert_block(
            "192.168.0.0",
            "192.168.255.255",
            Some("192.167.255.255"),
            Some("192.169.0.0"),
            DenyReason::Private,
        );
    }

    #[test]
    fn ipv4_shared_address_space() {
        assert_block(
            "100.64.0.0",
            "100.127.255.255",
            Some("100.63.255.255"),
            Some("100.128.0.0"),
            DenyReason::SharedAddressSpace,
        );
    }

    #[test]
    fn ipv4_link_local_includes_metadata() {
        assert_block(
            "169.254.0.0",
            "169.254.255.255",
            Some("169.253.255.255"),
            Some("169.255.0.0"),
            DenyReason::LinkLocal,
        );
        assert_eq!(default_policy().check(ip("169.254.169.254")), Err(DenyReason::LinkLocal));
    }

    #[test]
    fn ipv4_documentation() {
        assert_block("192.0.2.0", "192.0.2.255", Some("192.0.1.255"), Some("192.0.3.0"), DenyReason::Documentation);
        assert_block(
            "198.51.100.0",
            "198.51.100.255",
            Some("198.51.99.255"),
            Some("198.51.101.0"),
            DenyReason::Documentation,
        );
        assert_block(
            "203.0.113.0",
            "203.0.113.255",
            Some("203.0.112.255"),
            Some("203.0.114.0"),
            DenyReason::Documentation,
        );
    }

    #[test]
    fn ipv4_reserved() {
        assert_block("192.0.0.0", "192.0.0.255", Some("191.255.255.255"), Some("192.0.1.0"), DenyReason::Reserved);
        assert_block("198.18.0.0", "198.19.255.255", Some("198.17.255.255"), Some("198.20.0.0"), DenyReason::Reserved);
        assert_block("192.88.99.0", "192.88.99.255", Some("192.88.98.255"), Some("192.88.100.0"), DenyReason::Reserved);
        assert_block(
            "240.0.0.0",
            "255.255.255.254",
            Some("239.255.255.255"),
            Some("255.255.255.255"),
            DenyReason::Reserved,
        );
    }

    #[test]
    fn ipv4_multicast_and_broadcast() {
        assert_block("224.0.0.0", "239.255.255.255", Some("223.255.255.255"), Some("240.0.0.0"), DenyReason::Multicast);
        assert_eq!(default_policy().check(ip("255.255.255.255")), Err(DenyReason::Broadcast));
    }

    #[test]
    fn ipv6_unspecified_loopback_and_discard() {
        let p = default_policy();
        assert_eq!(p.check(ip("::")), Err(DenyReason::Unspecified));
        assert_eq!(p.check(ip("::1")), Err(DenyReason::Loopback));
        assert_block(
            "100::",
            "100::ffff:ffff:ffff:ffff",
            // Neighbours are outside 2000::/3 and so refused as Reserved anyway.
            None,
            None,
            DenyReason::Reserved,
        );
    }

    #[test]
    fn ipv6_private_and_link_local() {
        assert_block(
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("fe00::"),
            DenyReason::Private,
        );
        assert_block(
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("fec0::"),
            DenyReason::LinkLocal,
        );
        assert_block(
            "fec0::",
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("ff00::"),
            DenyReason::Private,
        );
    }

    #[test]
    fn ipv6_multicast() {
        assert_block(
            "ff00::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            None,
            DenyReason::Multicast,
        );
    }

    #[test]
    fn ipv6_documentation() {
        assert_block(
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:db9::"),
            DenyReason::Documentation,
        );
        assert_block(
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("3fff:1000::"),
            DenyReason::Documentation,
        );
    }

    #[test]
    fn ipv6_reserved_blocks() {
        assert_block(
            "2001:2::",
            "2001:2:0:ffff:ffff:ffff:ffff:ffff",
            Some("2001:1:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:2:1::"),
            DenyReason::Reserved,
        );
        assert_block(
            "2001:10::",
            "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:f:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:30::"),
            DenyReason::Reserved,
        );
        assert_block("5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None, None, DenyReason::Reserved);
    }

    #[test]
    fn ipv6_outside_global_unicast_is_reserved() {
        let p = default_policy();
        for addr in [
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "4000::",
            "::ffff:0:a00:1",
            "::ffff:0:808:808",
            "64:ff9b:2::808:808",
        ] {
            assert_eq!(p.check(ip(addr)), Err(DenyReason::Reserved), "{addr}");
        }
        assert_eq!(p.check(ip("2000::")), Ok(()));
        assert_eq!(p.check(ip("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Ok(()));
    }

    #[test]
    fn teredo_is_refused() {
        assert_block(
            "2001::",
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:1::"),
            DenyReason::Teredo,
        );
    }

    #[test]
    fn every_ipv6_disguise_of_dangerous_ipv4_is_refused() {
        let p = default_policy();
        for (v4, hex, reason) in [
            ("127.0.0.1", "7f00:1", DenyReason::Loopback),
            ("169.254.169.254", "a9fe:a9fe", DenyReason::LinkLocal),
            ("10.0.0.1", "a00:1", DenyReason::Private),
        ] {
            let (hi, lo) = hex.split_once(':').unwrap();
            for form in [
                v4.to_string(),
                format!("::ffff:{v4}"),
                format!("::ffff:{hex}"),
                format!("::{v4}"),
                format!("::{hex}"),
                format!("64:ff9b::{v4}"),
                format!("64:ff9b::{hex}"),
                format!("64:ff9b:1::{hex}"),
                format!("64:ff9b:1:abcd::{hex}"),
                format!("2002:{hi}:{lo}::"),
                format!("2002:{hi}:{lo}:1::1"),
            ] {
                assert_eq!(p.check(ip(&form)), Err(reason), "{form}");
            }
        }
    }

    #[test]
    fn ipv6_forms_of_public_ipv4_are_allowed() {
        let p = default_policy();
        for form in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "64:ff9b:1::808:808", "2002:808:808::1"] {
            assert_eq!(p.check(ip(form)), Ok(()), "{form}");
        }
    }

    #[test]
    fn allow_loopback_opens_only_loopback() {
        let p = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..Default::default() });
        for addr in ["127.0.0.1", "127.255.255.255", "::1", "::ffff:127.0.0.1", "2002:7f00:1::"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
        assert_eq!(p.check(ip("10.0.0.1")), Err(DenyReason::Private));
        assert_eq!(p.check(ip("::")), Err(DenyReason::Unspecified));
    }

    #[test]
    fn allow_rule_opens_exactly_its_range() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            allowed: vec![range("10.0.0.5"), range("169.254.1.0/24")],
            ..Default::default()
        });
        assert_eq!(p.check(ip("10.0.0.5")), Ok(()));
        assert_eq!(p.check(ip("::ffff:10.0.0.5")), Ok(()));
        assert_eq!(p.check(ip("64:ff9b::a00:5")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.4")), Err(DenyReason::Private));
        assert_eq!(p.check(ip("10.0.0.6")), Err(DenyReason::Private));
        assert_eq!(p.check(ip("169.254.1.255")), Ok(()));
        assert_eq!(p.check(ip("169.254.169.254")), Err(DenyReason::LinkLocal));
        assert_eq!(p.check(ip("127.0.0.1")), Err(DenyReason::Loopback));
    }

    #[test]
    fn allow_rule_can_open_loopback() {
        let p = PeerPolicy::new(PeerPolicyConfig { allowed: vec![range("127.0.0.1")], ..Default::default() });
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("127.0.0.2")), Err(DenyReason::Loopback));
    }

    #[test]
    fn broad_ipv6_allow_rule_does_not_open_disguised_ipv4() {
        let p =
            PeerPolicy::new(PeerPolicyConfig { allowed: vec![range("2000::/3"), range("::/0")], ..Default::default() });
        assert_eq!(p.check(ip("2002:7f00:1::")), Err(DenyReason::Loopback));
        assert_eq!(p.check(ip("::ffff:169.254.169.254")), Err(DenyReason::LinkLocal));
        assert_eq!(p.check(ip("64:ff9b::a00:1")), Err(DenyReason::Private));
        // Native IPv6 and Teredo are covered by the rule as written.
        assert_eq!(p.check(ip("fd00::1")), Ok(()));
        assert_eq!(p.check(ip("2001::1")), Ok(()));
    }

    #[test]
    fn teredo_opened_by_allow_rule_on_the_original() {
        let p = PeerPolicy::new(PeerPolicyConfig { allowed: vec![range("2001::/32")], ..Default::default() });
        assert_eq!(p.check(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")), Ok(()));
        let p = PeerPolicy::new(PeerPolicyConfig {
            allowed: vec![range("2001::/32")],
            denied: vec![range("2001::/32")],
            ..Default::default()
        });
        assert_eq!(p.check(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")), Err(DenyReason::DeniedByRule));
    }

    #[test]
    fn deny_rule_closes_public_addresses_in_every_form() {
        let p = PeerPolicy::new(PeerPolicyConfig { denied: vec![range("8.8.8.0/24")], ..Default::default() });
        for form in ["8.8.8.8", "8.8.8.0", "8.8.8.255", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"] {
            assert_eq!(p.check(ip(form)), Err(DenyReason::DeniedByRule), "{form}");
        }
        assert_eq!(p.check(ip("8.8.7.255")), Ok(()));
        assert_eq!(p.check(ip("8.8.9.0")), Ok(()));
    }

    #[test]
    fn deny_rule_matches_the_original_ipv6_form() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            denied: vec![range("2002::/16"), range("64:ff9b:1::/48")],
            ..Default::default()
        });
        assert_eq!(p.check(ip("2002:808:808::")), Err(DenyReason::DeniedByRule));
        assert_eq!(p.check(ip("64:ff9b:1::808:808")), Err(DenyReason::DeniedByRule));
        assert_eq!(p.check(ip("8.8.8.8")), Ok(()));
        assert_eq!(p.check(ip("64:ff9b::808:808")), Ok(()));
    }

    #[test]
    fn deny_rule_beats_allow_rule() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            allow_loopback: true,
            allowed: vec![range("10.0.0.0/8")],
            denied: vec![range("10.0.0.1"), range("127.0.0.1")],
            ..Default::default()
        });
        assert_eq!(p.check(ip("10.0.0.1")), Err(DenyReason::DeniedByRule));
        assert_eq!(p.check(ip("10.0.0.2")), Ok(()));
        assert_eq!(p.check(ip("127.0.0.1")), Err(DenyReason::DeniedByRule));
        assert_eq!(p.check(ip("127.0.0.2")), Ok(()));
    }

    #[test]
    fn own_addresses_are_refused_even_when_allowed() {
        let p = PeerPolicy::new(PeerPolicyConfig {
            allowed: vec![range("0.0.0.0/0"), range("10.0.0.0/8")],
            own_addresses: vec![ip("8.8.8.8"), ip("::ffff:10.0.0.5"), ip("2606:4700::1")],
            ..Default::default()
        });
        for form in ["8.8.8.8", "::ffff:8.8.8.8", "2002:808:808::", "10.0.0.5", "2606:4700::1"] {
            assert_eq!(p.check(ip(form)), Err(DenyReason::OwnAddress), "{form}");
        }
        assert_eq!(p.check(ip("8.8.4.4")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.6")), Ok(()));
        // An allow entry naming exactly an own address opens it (ARCHITECTURE.md: "unless an
        // allow-list entry opens them").
        let opened = PeerPolicy::new(PeerPolicyConfig {
            allowed: vec![range("8.8.8.8")],
            own_addresses: vec![ip("8.8.8.8")],
            ..Default::default()
        });
        assert_eq!(opened.check(ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn own_loopback_address_is_reachable_only_with_allow_loopback() {
        let own = vec![ip("127.0.0.1"), ip("::1"), ip("8.8.8.8")];
        let strict = PeerPolicy::new(PeerPolicyConfig { own_addresses: own.clone(), ..Default::default() });
        assert_eq!(strict.check(ip("127.0.0.1")), Err(DenyReason::OwnAddress));
        assert_eq!(strict.check(ip("::1")), Err(DenyReason::OwnAddress));
        let test_setup =
            PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, own_addresses: own, ..Default::default() });
        assert_eq!(test_setup.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(test_setup.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(test_setup.check(ip("::1")), Ok(()));
        assert_eq!(test_setup.check(ip("8.8.8.8")), Err(DenyReason::OwnAddress));
    }

    #[test]
    fn config_from_turn_section() {
        let turn = ice_config::TurnConfig {
            allow_loopback_peers: true,
            allowed_peer_ips: vec![range("10.0.0.0/8")],
            denied_peer_ips: vec![range("10.1.0.0/16")],
            ..Default::default()
        };
        let cfg = PeerPolicyConfig::from_turn_config(&turn, vec![ip("203.0.113.7")]);
        assert_eq!(
            cfg,
            PeerPolicyConfig {
                allow_loopback: true,
                allowed: vec![range("10.0.0.0/8")],
                denied: vec![range("10.1.0.0/16")],
                own_addresses: vec![ip("203.0.113.7")],
                relay_ports: Some(49_152..=65_535),
                service_endpoints: Vec::new(),
            }
        );
        let p = PeerPolicy::new(cfg);
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("10.2.0.1")), Ok(()));
        assert_eq!(p.check(ip("10.1.0.1")), Err(DenyReason::DeniedByRule));
        // Own addresses get no exemption from the built-in list.
        assert_eq!(p.check(ip("203.0.113.7")), Err(DenyReason::Documentation));
    }

    #[test]
    fn own_address_is_a_peer_only_on_relay_ports() {
        let policy = PeerPolicy::new(PeerPolicyConfig {
            own_addresses: vec![ip("8.8.8.8")],
            relay_ports: Some(49152..=65535),
            ..PeerPolicyConfig::default()
        });
        // Another allocation of this server: the relay-to-relay path of two relayed callers.
        assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
        assert_eq!(policy.check_peer("8.8.8.8:49152".parse().unwrap()), Ok(()));
        assert_eq!(policy.check_peer("8.8.8.8:65535".parse().unwrap()), Ok(()));
        // Its other services (SSH, the TURN port itself, metrics) stay out of reach.
        for port in [22, 3478, 49151] {
            let peer = SocketAddr::new(ip("8.8.8.8"), port);
            assert_eq!(policy.check_peer(peer), Err(DenyReason::OwnAddress));
            assert_eq!(policy.check_own_port(peer), Err(DenyReason::OwnAddress));
        }
        let mapped: SocketAddr = "[::ffff:8.8.8.8]:22".parse().unwrap();
        assert_eq!(policy.check_own_port(mapped), Err(DenyReason::OwnAddress));
        assert_eq!(policy.check_own_port("8.8.4.4:22".parse().unwrap()), Ok(()));
    }

    #[test]
    fn service_endpoints_stay_refused_even_inside_an_allowed_network() {
        let policy = PeerPolicy::new(PeerPolicyConfig {
            allowed: vec![range("10.0.0.0/8")],
            service_endpoints: vec!["10.0.0.5:6379".parse().unwrap(), "10.0.0.6:0".parse().unwrap()],
            ..PeerPolicyConfig::default()
        });
        assert_eq!(policy.check_peer("10.0.0.9:6379".parse().unwrap()), Ok(()));
        assert_eq!(policy.check_peer("10.0.0.5:5000".parse().unwrap()), Ok(()));
        for peer in ["10.0.0.5:6379", "[::ffff:10.0.0.5]:6379", "10.0.0.6:1", "10.0.0.6:8080"] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(policy.check_peer(peer), Err(DenyReason::ServiceEndpoint), "{peer}");
            assert_eq!(policy.check_own_port(peer), Err(DenyReason::ServiceEndpoint), "{peer}");
        }
    }
}
