//! The driver: it owns the sockets and the clock (`clock`) and moves bytes and time into the sans-IO
//! core in `proto`, carrying out its outputs (`datagram::DatagramSide::drive`). One worker is one thread owning one `Server`, so the core needs no locks; relay sockets
//! are polled by the worker that created their allocation. Datagram workers (UDP clients) run a
//! plain epoll loop on threads of their own; the stream worker (TCP and TLS clients, RFC 6062)
//! and the control plane run on the main thread's single-threaded tokio runtime.

mod batch;
pub mod clock;
mod datagram;
pub mod fast_path;
mod pool;
mod proxy;
mod relay_set;
pub mod socket;
pub mod steering;
mod stream;
mod tcp_relay;
pub mod tls;
mod udp;
mod udp_thread;
mod worker;

pub use pool::{WorkerPool, WorkerSpec};
pub use proxy::ProxyProtocol;
pub use stream::StreamLimits;
pub use tls::TlsFiles;
pub use worker::{Listeners, StreamOptions, Worker, WorkerError};
