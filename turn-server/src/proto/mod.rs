//! The sans-IO STUN/TURN core: no sockets, no clocks. The driver in `net` feeds it datagrams and the
//! current time, and carries out what it returns (the contract: `server/io.rs`).
//!
//! Enforced by `clippy.toml` at the workspace root: here, reading a clock or taking a
//! `std::sync::Mutex` is a clippy error (the ledger's one lock is allowed where it is declared).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod allocation;
pub mod auth;
pub mod bandwidth;
pub mod channel_data;
pub mod config;
pub mod framing;
// Only for the fuzz targets (cargo-fuzz builds every crate with `--cfg fuzzing`) and tests: a
// release build carries no entry points that run the whole core from bytes.
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod ledger;
pub mod nonce;
pub mod peer_policy;
pub mod ports;
pub mod proxy_header;
pub mod ratelimit;
pub mod server;
pub mod stats;
pub mod stun;
pub mod time;

pub use allocation::{ClientTransport, FiveTuple};

/// A map for lookups made per relayed datagram. foldhash is several times cheaper than SipHash
/// on small keys (socket addresses, 5-tuples) and still seeded at random per process, so keys an
/// attacker picks cannot be aimed at one bucket.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub use config::{Lifetimes, NatDiscovery, Quotas, RelayIp, ServerConfig};
pub use ledger::Ledger;
pub use server::{
    BindError, ChannelRoute, Event, Now, OffloadCommand, Output, Server, SocketKind, TcpCommand, ToClient, ToPeer,
    TrafficSummary, Transmit,
};
pub use time::Instant;
