//! The contract between the TURN core and its drivers, in one place: what goes in, what comes out.
//!
//! Inputs are method calls on [`Server`](super::Server), each handed the time as a [`Now`]:
//! - `handle_client(now, tuple, datagram)` for a datagram or stream frame from a client, and
//!   `handle_peer(now, relay, peer, buf, start, end)` for a datagram on a relay socket. These two
//!   are the data path: they answer directly ([`ToPeer`], [`ToClient`], both as bounds into the
//!   buffer the driver handed in), because a queue per datagram would cost more than the relaying;
//! - `relay_opened(now, addr, result)`: the answer to [`Output::OpenRelay`];
//! - `handle_timeout(now)` once [`Output::Timeout`]'s instant has passed;
//! - `connection_closed`, `tcp_connect_result`, `tcp_peer_incoming`, `tcp_connection_closed`: what
//!   the driver saw happen to stream connections.
//!
//! Everything else the core wants done comes out of one queue, `poll_output()`, drained after each
//! input until it says [`Output::Timeout`] (as quinn-proto and str0m do). Relay sockets are opened
//! on request: the core reserves a port in the ledger (a short critical section, no IO), asks for
//! it with `OpenRelay`, and confirms the allocation when the driver reports the bind, so no lock
//! is ever held across a syscall.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::allocation::{FiveTuple, Traffic};
use crate::proto::time::Instant;

/// The current time, as both clocks, read by the driver once per input (or burst): the monotonic
/// one for lifetimes and rates, the wall clock for REST credential expiry and nonces (both are unix
/// time on the wire). The core's one time type on its API; it never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: u64,
}

impl Now {
    /// `d` later, on both clocks.
    pub fn after(self, d: Duration) -> Now {
        Now { instant: self.instant + d, unix_secs: self.unix_secs + d.as_secs() }
    }
}

/// What the core asks of its driver, in the order it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A control message (response or indication) to a client.
    Transmit(Transmit),
    /// Bind a relay socket at `addr` and answer with `Server::relay_opened(now, addr, result)`.
    /// The port is already reserved relay-wide for this request.
    OpenRelay { addr: SocketAddr, kind: SocketKind },
    /// Close the relay socket at `addr`. Datagrams already queued for it may still be sent: the
    /// driver closes it once what it queued in the current burst has left.
    CloseRelay { addr: SocketAddr },
    /// RFC 6062 work for the driver's TCP side.
    Tcp(TcpCommand),
    /// Mirror a channel into, or out of, the kernel fast path (only once the driver has called
    /// `Server::enable_offload`).
    Offload(OffloadCommand),
    /// Worth logging or counting.
    Event(Event),
    /// Nothing more to do now; call `handle_timeout` at this instant (`None`: no timer is armed).
    Timeout(Option<Instant>),
}

/// What kind of relay socket to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A UDP relay; `dont_fragment` asks for the DF bit on what it sends.
    Udp { dont_fragment: bool },
    /// An RFC 6062 relay: a TCP listener for peers' connections (outgoing ones bind here too).
    TcpListener,
}

/// Why the driver could not open a relay socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// Another process holds the port: the core tries another one.
    InUse,
    Failed(String),
}

/// How a driver reports a failed bind (or a failed step after it): the port being taken is the one
/// failure the core answers by trying another port.
impl From<std::io::Error> for BindError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::AddrInUse => BindError::InUse,
            _ => BindError::Failed(e.to_string()),
        }
    }
}

/// A control message to send to a client over its 5-tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub tuple: FiveTuple,
    pub data: Vec<u8>,
    /// RFC 5780 answers leave from another local address or go to another port: (from, to).
    /// `None` means over the tuple itself.
    pub redirect: Option<(SocketAddr, SocketAddr)>,
}

/// Application data for a peer: send `datagram[start..end]` (of the datagram given to
/// `handle_client`) from the relay socket at `relay` to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToPeer {
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    pub start: usize,
    pub end: usize,
}

/// Peer data framed in place for the client: send `buf[start..end]` over `tuple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToClient {
    pub tuple: FiveTuple,
    pub start: usize,
    pub end: usize,
}

/// A live channel binding as a kernel fast path needs it: ChannelData from `tuple` on channel
/// `number` leaves from `relay` to `peer` as plain UDP, and datagrams from `peer` to `relay` go
/// back to `tuple` framed as ChannelData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRoute {
    pub tuple: FiveTuple,
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    pub number: u16,
}

/// The core stays the only authority over what is relayed: a route is installed only while
/// everything the data path would check holds, and withdrawn the moment one stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadCommand {
    /// Relay this channel in the kernel from now on.
    Install(ChannelRoute),
    /// Stop relaying it there (channel or permission expired, allocation ended, user dropped,
    /// peer refused after a reload). Hand the route's last counts to `Server::offloaded_traffic`;
    /// when the allocation ended, its `AllocationEnded` event follows and does not include them.
    Remove(ChannelRoute),
}

/// What the driver must do for TCP allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpCommand {
    /// Open a TCP connection from `relay` to `peer`; report with `Server::tcp_connect_result`.
    ConnectPeer { id: u32, relay: SocketAddr, peer: SocketAddr },
    /// Close the peer connection `id` (and the data connection spliced to it, if any).
    ClosePeer { id: u32 },
    /// Pipe bytes between the peer connection `id` and the client's data connection `data`, once
    /// the ConnectionBind response queued before this command has been written.
    Splice { id: u32, data: FiveTuple },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    /// Refresh with LIFETIME 0.
    Deleted,
    /// Refresh would pass the configured maximum session length.
    SessionLimit,
    /// The client's TCP or TLS connection closed (RFC 8656 section 3.1: the allocation goes with it).
    ConnectionClosed,
    /// An operator dropped it (admin interface).
    Dropped,
}

impl EndReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::SessionLimit => "session_limit",
            EndReason::ConnectionClosed => "connection_closed",
            EndReason::Dropped => "dropped",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted by client",
            EndReason::SessionLimit => "maximum session length",
            EndReason::ConnectionClosed => "connection closed",
            EndReason::Dropped => "dropped by an operator",
        }
    }
}

/// Things worth logging or counting; the driver turns them into session log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AllocationCreated {
        tuple: FiveTuple,
        username: String,
        relays: Vec<SocketAddr>,
        lifetime: Duration,
    },
    AllocationEnded {
        tuple: FiveTuple,
        username: String,
        relays: Vec<SocketAddr>,
        duration: Duration,
        traffic: TrafficSummary,
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficSummary {
    pub packets_to_peer: u64,
    pub bytes_to_peer: u64,
    pub packets_from_peer: u64,
    pub bytes_from_peer: u64,
}

impl From<Traffic> for TrafficSummary {
    fn from(t: Traffic) -> Self {
        TrafficSummary {
            packets_to_peer: t.packets_to_peer,
            bytes_to_peer: t.bytes_to_peer,
            packets_from_peer: t.packets_from_peer,
            bytes_from_peer: t.bytes_from_peer,
        }
    }
}
