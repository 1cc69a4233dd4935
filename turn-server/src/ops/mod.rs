//! Operations around the relay: logging now; metrics, health, reload and drain later.

pub mod logging;
