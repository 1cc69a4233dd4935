//! A STUN/TURN relay (RFC 8489, RFC 8656) with TURN REST API credentials, in three layers and
//! the binary on top:
//!
//! - [`proto`], the core: sans-IO STUN/TURN (messages, auth, allocations, permissions, channels).
//!   It never reads the clock or touches a socket, holds no lock on the data path, and depends on
//!   no other module here. Its contract with drivers is one file, `proto/server/io.rs`:
//!   `handle_client`/`handle_peer` answer the data path directly, every other effect comes out
//!   of `poll_output()`.
//! - [`net`], the driver: owns the sockets, threads and clock and moves bytes and time into the
//!   core (datagram workers on epoll threads, batched through the `udp-batch` crate; tokio for
//!   TCP/TLS, RFC 6062 and the control plane).
//! - [`offload`]: the kernel fast path, an eBPF program relaying ChannelData at TC ingress and
//!   its loader; the driver mirrors channel bindings into it.
//! - [`ops`]: logging, metrics, the admin interface, reload and drain, beside the driver.
//! - [`app`]: what only the binary needs: the command line, settings resolved from the shared
//!   config file, the runner that starts the workers, the admin client, the deployment probe and
//!   coturn config import.

pub mod app;
pub mod net;
pub mod offload;
pub mod ops;
pub mod proto;
