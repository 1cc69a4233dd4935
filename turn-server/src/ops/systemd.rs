//! sd_notify for the relay: READY once every listener is bound, RELOADING and READY around a
//! SIGHUP reload, STOPPING on shutdown, WATCHDOG pings. The protocol lives in the workspace's
//! `sdnotify` crate (`systemd/sdnotify/`), shared with the signaling service.

pub use sdnotify::{notify, watchdog_interval};
