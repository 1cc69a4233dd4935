//! A STUN/TURN relay (RFC 8489, RFC 8656) with TURN REST API credentials.
//!
//! `proto` is the pure protocol core (no sockets, clocks or locks of its own; its contract with
//! drivers is `proto::server` `io.rs`: `handle_client`/`handle_peer` answer the data path directly,
//! every other effect comes out of `poll_output()`); `net` is the driver that moves bytes and time
//! into it and carries out its outputs;
//! `settings` resolves the shared config file; `coturn_config` reads coturn's; `cli`, `ops` and
//! `admin_client` serve the binary.

pub mod admin_client;
pub mod cli;
pub mod coturn_config;
pub mod net;
pub mod ops;
pub mod probe;
pub mod proto;
pub mod runner;
pub mod settings;
