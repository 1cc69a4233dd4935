//! Operations around the relay: logging and Prometheus metrics; reload and drain come later.

pub mod logging;
pub mod metrics;
pub mod systemd;
