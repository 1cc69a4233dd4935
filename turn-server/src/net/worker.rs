//! One worker: a `Server`, its listening sockets and relay sockets, on one thread. A datagram worker
//! serves UDP clients on a thread of its own with no runtime (`udp_thread`), and sees only the
//! datagram side (`datagram`: the core, UDP listeners, relay sockets); the stream worker adds the
//! stream side here (TCP and TLS clients, RFC 6062) on the main thread's runtime. The UDP data path
//! lives in `udp`; relay sockets sit in one epoll set (`relay_set`), so ten thousand idle
//! allocations cost neither a task nor a buffer each.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

use super::clock;
use super::datagram::{DatagramSide, NoStreams, Streams};
use super::fast_path::FastPath;
use super::proxy::ProxyProtocol;
use super::relay_set::RelaySet;
use super::socket;
use super::stream::{self, StreamConn, StreamLimits};
use super::tcp_relay;
use super::tls::{TlsError, TlsFiles};
use super::udp;
use super::udp_thread;
use crate::offload::Offload;
use crate::proto::{BindError, ClientTransport, FiveTuple, Now, Output, Server, SocketKind};

/// How often certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(5);

/// A worker's state: the datagram side, which datagram threads use alone, and the stream side,
/// which only the stream worker's runtime touches.
pub(super) struct Shared {
    pub(super) dgram: Rc<DatagramSide>,
    pub(super) streams: RefCell<HashMap<FiveTuple, Rc<StreamConn>>>,
    pub(super) stream_limits: StreamLimits,
    pub(super) proxy: ProxyProtocol,
    /// Open stream connections per source address, for the per-source cap.
    sources: RefCell<HashMap<IpAddr, u32>>,
    tls: RefCell<Option<TlsAcceptor>>,
    tls_files: Option<TlsFiles>,
    /// RFC 6062: accept loops of TCP relay listeners, by relay address.
    tcp_relays: RefCell<HashMap<SocketAddr, AbortHandle>>,
    /// RFC 6062 peer connections by connection id, until spliced to a data connection.
    pub(super) peer_streams: RefCell<HashMap<u32, TcpStream>>,
    /// Pending outgoing connects, so ClosePeer can cancel them.
    pub(super) peer_connects: RefCell<HashMap<u32, AbortHandle>>,
    /// Data connections spliced to peer connections, by connection id.
    pub(super) spliced: RefCell<HashMap<u32, FiveTuple>>,
}

/// Sockets a worker serves, bound by the caller so bind errors surface at startup.
#[derive(Default)]
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub tls: Vec<std::net::TcpListener>,
}

/// How stream (TCP/TLS) clients are served.
#[derive(Default)]
pub struct StreamOptions {
    pub limits: StreamLimits,
    /// Certificate and key for the TLS listeners; loaded at start and on reload.
    pub tls_files: Option<TlsFiles>,
    /// Listeners behind a proxy that sends the PROXY protocol header.
    pub proxy: ProxyProtocol,
}

/// Runs a `Server` on sockets already bound by the caller (so bind errors surface at startup).
pub struct Worker {
    /// For metrics and logs: `udp-N` for a datagram worker, `streams` for the stream worker.
    name: String,
    shared: Rc<Shared>,
    /// Taken by `run`, which starts their accept loops.
    tcp: RefCell<Vec<(TcpListener, bool)>>,
}

impl Worker {
    /// With TCP or TLS listeners, must be called inside a tokio runtime (they register with its
    /// reactor); a worker of UDP listeners only needs none.
    pub fn new(
        name: impl Into<String>,
        server: Server,
        listeners: Listeners,
        streams: StreamOptions,
        offload: Option<Arc<Offload>>,
    ) -> Result<Self, WorkerError> {
        let mut map = HashMap::new();
        let mut relays = RelaySet::new()?;
        for l in listeners.udp {
            use std::os::fd::AsRawFd;
            let local = l.local_addr()?;
            l.set_nonblocking(true)?;
            relays.watch_listener(l.as_raw_fd(), local)?;
            map.insert(local, l);
        }
        let mut tcp = Vec::new();
        for (list, tls) in [(listeners.tcp, false), (listeners.tls, true)] {
            for l in list {
                l.set_nonblocking(true)?;
                tcp.push((TcpListener::from_std(l)?, tls));
            }
        }
        let acceptor = match &streams.tls_files {
            Some(files) => Some(files.load()?),
            None if tcp.iter().any(|(_, tls)| *tls) => return Err(WorkerError::NoCertificate),
            None => None,
        };
        Ok(Worker {
            name: name.into(),
            shared: Rc::new(Shared {
                dgram: Rc::new(DatagramSide::new(map, relays, server, offload.map(FastPath::new))),
                streams: RefCell::new(HashMap::new()),
                stream_limits: streams.limits,
                proxy: streams.proxy,
                sources: RefCell::new(HashMap::new()),
                tls: RefCell::new(acceptor),
                tls_files: streams.tls_files,
                tcp_relays: RefCell::new(HashMap::new()),
                peer_streams: RefCell::new(HashMap::new()),
                peer_connects: RefCell::new(HashMap::new()),
                spliced: RefCell::new(HashMap::new()),
            }),
            tcp: RefCell::new(tcp),
        })
    }

    /// Applies a reloaded configuration to the core (see `Server::reload`).
    pub fn reload_config(&self, server: crate::proto::ServerConfig) -> Vec<&'static str> {
        let now = clock::now();
        let mut core = self.shared.dgram.server.borrow_mut();
        let needs_restart = core.reload(now, server);
        // A reload may withdraw offloaded routes (a peer now refused, a new bandwidth cap).
        self.shared.settle(&mut core, now);
        needs_restart
    }

    /// Reloads the TLS certificate; on failure the current one stays.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let Some(files) = &self.shared.tls_files else { return Ok(()) };
        let acceptor = files.load()?;
        *self.shared.tls.borrow_mut() = Some(acceptor);
        Ok(())
    }

    /// Every listening address with its transport, for the startup log.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out: Vec<_> = self.shared.dgram.listeners.keys().map(|a| ("udp", *a)).collect();
        for (l, tls) in self.tcp.borrow().iter() {
            if let Ok(a) = l.local_addr() {
                out.push((if *tls { "tls" } else { "tcp" }, a));
            }
        }
        out
    }

    /// This worker's counts for a scrape (the pool adds up every worker's).
    pub fn metrics_sample(&self) -> crate::ops::metrics::Sample {
        let streams = self.shared.streams.borrow();
        let tls = streams.keys().filter(|t| t.transport == ClientTransport::Tls).count();
        crate::ops::metrics::Sample::of(&self.name, &self.folded_server(), (streams.len() - tls, tls))
    }

    pub fn allocation_count(&self) -> usize {
        self.shared.dgram.server.borrow().allocation_count()
    }

    /// Reads the core's state (for the admin interface).
    pub fn with_server<R>(&self, read: impl FnOnce(&Server) -> R) -> R {
        read(&self.folded_server())
    }

    /// The core, with what the kernel fast path relayed folded in (so traffic figures are exact).
    fn folded_server(&self) -> std::cell::RefMut<'_, Server> {
        let mut server = self.shared.dgram.server.borrow_mut();
        if let Some(fast_path) = &self.shared.dgram.fast_path {
            fast_path.fold(&mut server);
        }
        server
    }

    /// Ends every allocation of `user` (see `Server::drop_user`); their sockets close at once.
    pub fn drop_user(&self, user: &str) -> usize {
        let now = clock::now();
        let mut server = self.shared.dgram.server.borrow_mut();
        let dropped = server.drop_user(now, user);
        self.shared.settle(&mut server, now);
        dropped
    }

    /// New allocations are redirected or refused from now on; existing ones carry on.
    pub fn start_drain(&self) {
        self.shared.dgram.server.borrow_mut().start_drain();
    }

    /// The fleet's less loaded relays, best first, for redirects (see `Server::set_fleet_alternates`).
    pub fn set_fleet_alternates(&self, alternates: Vec<SocketAddr>) {
        self.shared.dgram.server.borrow_mut().set_fleet_alternates(alternates);
    }

    /// Adds the doorbell whose ring makes `serve_datagrams` call its `on_wakeup`.
    pub(super) fn watch_wakeup(&self, wakeup: &udp_batch::Wakeup) -> io::Result<()> {
        self.shared.dgram.relays.borrow_mut().watch_wakeup(std::os::fd::AsRawFd::as_raw_fd(wakeup))
    }

    /// Serves a datagram worker on this thread, without a runtime, until `on_wakeup` returns false
    /// (it runs whenever the doorbell rang). For workers of UDP listeners only: stream clients
    /// need the runtime (`run`).
    pub(super) fn serve_datagrams(&self, on_wakeup: impl FnMut() -> bool) -> io::Result<()> {
        udp_thread::serve(&self.shared.dgram, on_wakeup)
    }

    /// Runs until the future is dropped. Must be polled inside a `LocalSet`.
    pub async fn run(&self) {
        tokio::task::spawn_local(udp::datagram_loop(self.shared.dgram.clone(), self.shared.clone()));
        for (listener, tls) in self.tcp.take() {
            tokio::task::spawn_local(stream::accept_loop(self.shared.clone(), listener, tls));
        }
        if self.shared.tls_files.is_some() {
            tokio::task::spawn_local(watch_certificate(self.shared.clone()));
        }
        timer_loop(self.shared.clone()).await;
    }
}

async fn timer_loop(shared: Rc<Shared>) {
    loop {
        let deadline = shared.dgram.run_timers(&shared);
        tokio::time::sleep_until(clock::to_std(deadline).into()).await;
    }
}

impl Shared {
    /// Carries out the core's outputs after an input outside a datagram burst.
    pub(super) fn settle(self: &Rc<Self>, server: &mut Server, now: Now) {
        self.dgram.settle(server, now, self);
    }

    /// One complete TCP/TLS frame from a client (UDP datagrams come in bursts, see `udp`).
    pub(super) fn on_client_message(self: &Rc<Self>, tuple: FiveTuple, data: &[u8]) {
        let now = clock::now();
        let mut server = self.dgram.server.borrow_mut();
        if let Some(out) = server.handle_client(now, tuple, data) {
            let relays = self.dgram.relays.borrow();
            if let Some(Err(e)) = relays.send_to(&out.relay, &data[out.start..out.end], out.peer) {
                tracing::trace!(relay = %out.relay, peer = %out.peer, error = %e, "dropped datagram to peer");
            }
        }
        self.settle(&mut server, now);
    }

    pub(super) fn on_connection_closed(self: &Rc<Self>, tuple: FiveTuple) {
        let now = clock::now();
        let mut server = self.dgram.server.borrow_mut();
        server.connection_closed(now, tuple);
        self.settle(&mut server, now);
    }

    pub(super) fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.dgram.server.borrow().allocation(tuple).is_some()
    }

    pub(super) fn admit_source(&self, ip: IpAddr) -> bool {
        let mut sources = self.sources.borrow_mut();
        let count = sources.entry(ip).or_insert(0);
        if *count >= self.stream_limits.per_source {
            return false;
        }
        *count += 1;
        true
    }

    pub(super) fn release_source(&self, ip: IpAddr) {
        let mut sources = self.sources.borrow_mut();
        if let Some(count) = sources.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                sources.remove(&ip);
            }
        }
    }

    pub(super) fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.borrow().clone()
    }
}

/// Reloads the certificate when its files change (renewals by certbot or acme.sh need no restart).
async fn watch_certificate(shared: Rc<Shared>) {
    let Some(files) = shared.tls_files.clone() else { return };
    let mut seen = files.modified();
    loop {
        tokio::time::sleep(CERT_POLL).await;
        let now = files.modified();
        if now == seen {
            continue;
        }
        seen = now;
        match files.load() {
            Ok(acceptor) => {
                *shared.tls.borrow_mut() = Some(acceptor);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "new TLS certificate rejected; keeping the current one"),
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot register a socket with the runtime: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("TLS listeners need a certificate and key (--cert and --pkey)")]
    NoCertificate,
}

/// The stream side, as the datagram path sees it.
impl Streams for Rc<Shared> {
    fn send(&self, tuple: &FiveTuple, data: &[u8]) {
        if let Some(conn) = self.streams.borrow().get(tuple) {
            conn.send(data, self.stream_limits.max_queued);
        }
    }

    fn output(&self, server: &mut Server, now: Now, out: Output) {
        match out {
            Output::OpenRelay { addr, kind: SocketKind::TcpListener } => {
                let result = self.open_tcp_relay(addr);
                server.relay_opened(now, addr, result);
            }
            Output::CloseRelay { addr } => {
                if let Some(task) = self.tcp_relays.borrow_mut().remove(&addr) {
                    task.abort();
                }
            }
            Output::Tcp(command) => tcp_relay::run_command(self, command),
            other => NoStreams.output(server, now, other),
        }
    }
}

impl Shared {
    /// An RFC 6062 relay: a listener for peers, accepted on this runtime.
    fn open_tcp_relay(self: &Rc<Self>, addr: SocketAddr) -> Result<(), BindError> {
        let listener = socket::bind_tcp_relay(addr)?;
        let listener = TcpListener::from_std(listener)?;
        let task = tokio::task::spawn_local(tcp_relay::accept_peers(self.clone(), listener, addr));
        self.tcp_relays.borrow_mut().insert(addr, task.abort_handle());
        Ok(())
    }
}
