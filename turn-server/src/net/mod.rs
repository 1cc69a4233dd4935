//! The tokio driver: it owns the sockets and the clock and moves bytes and time into the sans-IO
//! core in `proto`. One worker is one single-threaded runtime owning one `Server`, so the core needs
//! no locks; relay sockets are polled by the worker that created their allocation.

mod batch;
mod pool;
mod relay_set;
pub mod socket;
pub mod steering;
mod stream;
mod tcp_relay;
pub mod tls;
mod udp;
mod worker;

pub use pool::{WorkerPool, WorkerSpec};
pub use stream::StreamLimits;
pub use tls::TlsFiles;
pub use worker::{Listeners, StreamOptions, Worker, WorkerError};
