//! Operations around the relay: logging, Prometheus metrics, the admin interface, and the control
//! actions (reload, drain) that signals and the admin interface share.

pub mod admin;
pub mod control;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod systemd;
