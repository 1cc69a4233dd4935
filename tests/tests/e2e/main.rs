//! The end-to-end tests as one test binary: each module was once its own binary, and each of
//! those linked the whole harness (`tests/src/`) again, which cost more build time than the
//! tests' own code. Tests are named `<module>::<test>`, e.g.
//! `cargo test -p e2e --test e2e turn_client::two_allocations`. They run in threads of one
//! process, so what must be unique per test (ports, namespaces, file names) takes a per-process
//! counter as well as the process id (see `PortBlock`, `LogDir`, `netns::new_group`).

mod attacker;
mod browser_call;
mod browser_client;
mod browser_redirect;
mod cli;
mod config_reload;
mod coturn_abuse;
mod coturn_config;
mod coturn_tools;
mod diag_page;
mod fleet_nginx_geoip;
mod fleet_registry;
mod fleet_signaling;
mod metrics;
mod offload;
mod offload_xdp;
mod operations;
mod probe;
mod redis_topologies;
mod relay_workers;
mod signaling_abuse;
mod signaling_calls;
mod signaling_cli;
mod signaling_nginx;
mod signaling_ops;
mod signaling_python;
mod signaling_redis;
mod signaling_renegotiate;
mod signaling_rest;
mod systemd_notify;
mod turn_cert_reload;
mod turn_client;
mod turn_nat;
mod turn_nat_symmetric;
mod turn_nginx;
mod turn_proxy_protocol;
mod turn_stream_limits;
mod turn_streams;
