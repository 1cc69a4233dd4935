//! The signaling service: ICE config over REST and 1:1 call signaling over Socket.IO.
//!
//! - [`calls`]: the pure call state machine (no IO, time as input).
//! - [`store`]: where call records live (memory or Redis) and the engine that runs the machine
//!   against them with compare-and-set commits.
//! - [`cluster`]: Redis: the shared store and the Socket.IO adapter.
//! - [`http`]: axum routes (`/v1/ice-servers`, health, the metrics listener).
//! - [`metrics`]: Prometheus counters, counted where transitions are committed.
//! - [`limiter`]: per-client rate limits in constant memory (REST and Socket.IO).
//! - [`socket`]: the Socket.IO gateway (auth on connect, events, effects).
//! - [`fleet`]: the relays' registry in Redis, which `/v1/ice-servers` picks relays from.
//! - [`server`]: wires the parts together and runs them; [`quickstart`]: the loopback demo.
//! - [`auth`], [`webhook`], [`cli`]: around them. The config file itself is
//!   [`ice_config::Config`], shared with the relay.

pub mod auth;
pub mod calls;
pub mod cli;
pub mod cluster;
pub mod fleet;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod quickstart;
pub mod server;
pub mod socket;
pub mod store;
pub mod webhook;
