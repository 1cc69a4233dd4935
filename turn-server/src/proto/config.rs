//! Settings of the protocol core, resolved from the shared config file and the command line by the
//! binary. Everything here is plain data: the core never reads files or the environment.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::auth::CredentialStore;
use super::bandwidth::BandwidthCaps;
use super::peer_policy::PeerPolicy;

/// One address relay sockets bind to, and the address clients are told (differs behind 1:1 NAT,
/// coturn's `--external-ip PUBLIC/PRIVATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayIp {
    pub bind: IpAddr,
    pub advertised: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub default_allocation: Duration,
    pub max_allocation: Duration,
    pub permission: Duration,
    pub channel: Duration,
    /// How long an allocation may live in all, refreshes included; `None` = unbounded.
    pub max_session: Option<Duration>,
    /// How long an unused EVEN-PORT reservation holds its port (RFC 8656: about 30 s).
    pub reservation: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            default_allocation: Duration::from_secs(600),
            max_allocation: Duration::from_secs(3600),
            permission: Duration::from_secs(300),
            channel: Duration::from_secs(600),
            max_session: Some(Duration::from_secs(86_400)),
            reservation: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Allocations one user may hold at once; 0 = unlimited (486 when reached).
    pub per_user: u32,
    /// Allocations in all; 0 = unlimited (508 when reached).
    pub total: u32,
    /// Allocations from one client IP address; 0 = unlimited (486 when reached).
    pub per_source: u32,
    /// Caps that keep one allocation's state bounded whatever a client sends (508 when reached).
    pub permissions_per_allocation: usize,
    pub channels_per_allocation: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { per_user: 0, total: 0, per_source: 0, permissions_per_allocation: 256, channels_per_allocation: 256 }
    }
}

#[derive(Clone)]
pub struct ServerConfig {
    pub realm: String,
    /// SOFTWARE attribute on responses; `None` leaves it out.
    pub software: Option<String>,
    pub credentials: CredentialStore,
    pub nonce_lifetime_secs: u64,
    /// Answers per second to unauthenticated requests from one source; 0 = unlimited.
    pub unauthenticated_rate: u32,
    pub relay_ips: Vec<RelayIp>,
    pub min_port: u16,
    pub max_port: u16,
    pub lifetimes: Lifetimes,
    pub quotas: Quotas,
    pub peer_policy: PeerPolicy,
    /// coturn's `--no-stun`: Binding requests are dropped.
    pub no_stun: bool,
    /// RFC 5780 NAT behaviour discovery, when a second address and port are configured.
    pub nat_discovery: Option<NatDiscovery>,
    /// Relayed bytes per second per allocation and per user.
    pub bandwidth: BandwidthCaps,
    /// Where new Allocates are sent (300 Try Alternate) while this relay drains.
    pub alternate_servers: Vec<SocketAddr>,
    /// Allocations this relay should hold at most: beyond it, new Allocates are sent to a less
    /// loaded relay of the fleet when one is known (a soft limit; `quotas.total` is the hard one).
    /// 0 = no such limit.
    pub capacity: u32,
    /// Nonce keys, the first minting (see `NonceMinter::new`); empty = a random key per process.
    pub nonce_keys: Vec<[u8; 32]>,
}

/// The two addresses and two ports of an RFC 5780 server; the driver listens on all four pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatDiscovery {
    pub primary_ip: IpAddr,
    pub alternate_ip: IpAddr,
    pub primary_port: u16,
    pub alternate_port: u16,
}

impl NatDiscovery {
    /// The local address an answer leaves from when a request arrived at `local` and asked to
    /// change IP and/or port.
    pub fn source(&self, local: SocketAddr, change_ip: bool, change_port: bool) -> SocketAddr {
        let swap_ip = |ip: IpAddr| if ip == self.primary_ip { self.alternate_ip } else { self.primary_ip };
        let swap_port = |p: u16| if p == self.primary_port { self.alternate_port } else { self.primary_port };
        let ip = if change_ip { swap_ip(local.ip()) } else { local.ip() };
        let port = if change_port { swap_port(local.port()) } else { local.port() };
        SocketAddr::new(ip, port)
    }

    /// The four listening addresses.
    pub fn addresses(&self) -> [SocketAddr; 4] {
        [
            SocketAddr::new(self.primary_ip, self.primary_port),
            SocketAddr::new(self.primary_ip, self.alternate_port),
            SocketAddr::new(self.alternate_ip, self.primary_port),
            SocketAddr::new(self.alternate_ip, self.alternate_port),
        ]
    }
}
