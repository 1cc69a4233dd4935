//! Redis for the relay and the signaling service, whatever its topology: one URL names one
//! server, a Sentinel-managed primary or a Cluster ([`Target`]), and [`Link`] is a connection to
//! it that comes back after restarts, failovers and resharding, for commands and pub/sub alike.
//!
//! - [`target`]: the URL forms, and the key prefix that keeps a service's keys in one slot;
//! - [`link`]: the connection;
//! - [`outage`]: which errors mean Redis is gone rather than a bug.

pub mod link;
pub mod outage;
mod sentinel;
pub mod target;

pub use link::{Link, Options, PushSink};
pub use outage::is_outage;
pub use sentinel::WATCH_EVERY as SENTINEL_WATCH_EVERY;
pub use target::{redact, Target, UrlError};
