//! A STUN/TURN relay (RFC 8489, RFC 8656) with TURN REST API credentials.
//!
//! `proto` is the pure protocol core; `net` is the tokio driver that moves bytes and time into it;
//! `settings` resolves the shared config file; `coturn_config` reads coturn's; `cli`, `ops` and
//! `admin_client` serve the binary.

pub mod app;
pub mod net;
pub mod ops;
pub mod proto;
