//! One allocation (RFC 8656 section 2.2): its relayed addresses, lifetime, permissions and channel
//! bindings. Permissions and channels are small vectors: a call uses one or two peers, and caps keep
//! them small under abuse, so a linear scan beats hashing.

use std::net::{IpAddr, SocketAddr};

use ice_config::LongTermKey;

use super::bandwidth::DirectionalBuckets;
use super::ledger::UserBuckets;
use super::stun::TransactionId;
use crate::proto::time::Instant;

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientTransport {
    Udp,
    Tcp,
    Tls,
}

impl ClientTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientTransport::Udp => "udp",
            ClientTransport::Tcp => "tcp",
            ClientTransport::Tls => "tls",
        }
    }
}

/// What the relayed transport address carries (RFC 6062 adds TCP relays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTransport {
    Udp,
    Tcp,
}

/// The client side of an allocation: client address, server address, transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: ClientTransport,
}

#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub ip: IpAddr,
    pub expires: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Instant,
    /// Mirrored into the kernel fast path (the core keeps this in step with what it told the
    /// driver, see `server/offload.rs`).
    pub offloaded: bool,
}

/// Counters for the session log and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_from_peer: u64,
    pub bytes_from_peer: u64,
}

pub struct Allocation {
    pub tuple: FiveTuple,
    /// Bound relay addresses, at most one per family (RFC 8656 dual allocation).
    pub relays: Vec<SocketAddr>,
    pub relay_transport: RelayTransport,
    pub username: String,
    pub key: LongTermKey,
    pub quota_user: String,
    /// Transaction id of the Allocate that created it: a retransmission gets the same answer.
    pub allocate_tid: TransactionId,
    pub created: Instant,
    pub expires: Instant,
    /// Deadline of this allocation's live entry in the server's timer queue.
    pub timer_at: Instant,
    /// Distinguishes this allocation from an earlier one on the same 5-tuple in the timer queue.
    pub serial: u64,
    pub permissions: Vec<Permission>,
    pub channels: Vec<Channel>,
    pub traffic: Traffic,
    /// The per-allocation bandwidth allowance; boxed, so allocations without a cap stay small.
    pub bandwidth: Option<Box<DirectionalBuckets>>,
    /// The user's allowance, shared with the user's other allocations (relay-wide), handed out by
    /// the ledger at Allocate so the data path reaches it without a lookup. Used while a per-user
    /// cap is set.
    pub user_bandwidth: UserBuckets,
}

/// Why a channel cannot be bound (RFC 8656 11.2: both answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelConflict {
    NumberBoundToOtherPeer,
    PeerBoundToOtherNumber,
    TooMany,
}

/// The address families of a set of relayed addresses, as a metric label.
pub fn relay_family(relays: &[SocketAddr]) -> &'static str {
    match (relays.iter().any(SocketAddr::is_ipv4), relays.iter().any(SocketAddr::is_ipv6)) {
        (true, true) => "dual",
        (false, true) => "ipv6",
        _ => "ipv4",
    }
}

impl Allocation {
    pub fn relay_for(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        self.relays.iter().copied().find(|r| r.is_ipv4() == peer.is_ipv4())
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.iter().any(|p| p.ip == ip && p.expires > now)
    }

    /// Installs or refreshes the permission for `ip`. Returns false when the cap is reached.
    pub fn install_permission(&mut self, ip: IpAddr, expires: Instant, now: Instant, cap: usize) -> bool {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = expires;
            return true;
        }
        self.permissions.retain(|p| p.expires > now);
        if self.permissions.len() >= cap {
            return false;
        }
        self.permissions.push(Permission { ip, expires });
        true
    }

    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels.iter().find(|c| c.number == number && c.expires > now).map(|c| c.peer)
    }

    pub fn channel_for_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels.iter().find(|c| c.peer == peer && c.expires > now).map(|c| c.number)
    }

    /// Binds `number` to `peer`, or refreshes the existing identical binding.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        expires: Instant,
        now: Instant,
        cap: usize,
    ) -> Result<(), ChannelConflict> {
        // An expired binding no longer blocks anything (the caller withdrew any route it had).
        self.channels.retain(|c| c.expires > now || c.offloaded);
        for c in &mut self.channels {
            match (c.number == number, c.peer == peer) {
                (true, true) => {
                    c.expires = expires;
                    return Ok(());
                }
                (true, false) => return Err(ChannelConflict::NumberBoundToOtherPeer),
                (false, true) => return Err(ChannelConflict::PeerBoundToOtherNumber),
                (false, false) => {}
            }
        }
        if self.channels.len() >= cap {
            return Err(ChannelConflict::TooMany);
        }
        self.channels.push(Channel { number, peer, expires, offloaded: false });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn alloc(now: Instant) -> Allocation {
        Allocation {
            tuple: FiveTuple {
                client: "192.0.2.1:1000".parse().unwrap(),
                server: "192.0.2.2:3478".parse().unwrap(),
                transport: ClientTransport::Udp,
            },
            relays: vec!["192.0.2.2:50000".parse().unwrap()],
            relay_transport: RelayTransport::Udp,
            username: "u".into(),
            key: ice_config::long_term_key(ice_config::PasswordAlgorithm::Md5, "u", "r", "p"),
            quota_user: "u".into(),
            allocate_tid: [0; 12],
            created: now,
            expires: now + Duration::from_secs(600),
            timer_at: now + Duration::from_secs(600),
            serial: 1,
            permissions: Vec::new(),
            channels: Vec::new(),
            traffic: Traffic::default(),
            bandwidth: None,
            user_bandwidth: std::sync::Arc::new(super::super::bandwidth::SharedBuckets::new(now)),
        }
    }

    #[test]
    fn permissions_expire_and_cap() {
        let now = Instant::EPOCH;
        let mut a = alloc(now);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(a.install_permission(ip, now + Duration::from_secs(300), now, 1));
        assert!(a.has_permission(ip, now + Duration::from_secs(299)));
        assert!(!a.has_permission(ip, now + Duration::from_secs(300)));
        assert!(!a.install_permission("203.0.113.10".parse().unwrap(), now + Duration::from_secs(300), now, 1));
        // Once the first expires it no longer counts against the cap.
        let later = now + Duration::from_secs(301);
        assert!(a.install_permission("203.0.113.10".parse().unwrap(), later + Duration::from_secs(300), later, 1));
    }

    #[test]
    fn channel_conflicts() {
        let now = Instant::EPOCH;
        let mut a = alloc(now);
        let p1: SocketAddr = "203.0.113.9:1".parse().unwrap();
        let p2: SocketAddr = "203.0.113.9:2".parse().unwrap();
        let exp = now + Duration::from_secs(600);
        a.bind_channel(0x4000, p1, exp, now, 8).unwrap();
        a.bind_channel(0x4000, p1, exp, now, 8).unwrap();
        assert_eq!(a.bind_channel(0x4000, p2, exp, now, 8), Err(ChannelConflict::NumberBoundToOtherPeer));
        assert_eq!(a.bind_channel(0x4001, p1, exp, now, 8), Err(ChannelConflict::PeerBoundToOtherNumber));
        assert_eq!(a.channel_peer(0x4000, now), Some(p1));
        assert_eq!(a.channel_for_peer(p1, now), Some(0x4000));
        assert_eq!(a.channel_peer(0x4000, exp), None);
        // After expiry the number can be rebound to another peer.
        a.bind_channel(0x4000, p2, exp + Duration::from_secs(600), exp, 8).unwrap();
        assert_eq!(a.bind_channel(0x4001, p1, exp, exp, 1), Err(ChannelConflict::TooMany));
    }
}
