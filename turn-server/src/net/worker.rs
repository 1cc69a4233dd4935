//! One worker: a `Server`, its listening sockets and relay sockets, on a single-threaded runtime.
//! Relay sockets share one receive buffer (read with `try_recv_from` after readiness, never held
//! across an await) so ten thousand idle allocations do not each pin a 64 KiB buffer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use super::socket;
use crate::proto::server::DATA_INDICATION_HEADROOM;
use crate::proto::{BindError, ClientTransport, Event, FiveTuple, Now, RelaySockets, Server};

/// Largest UDP payload, plus room to frame it in place.
const MAX_DATAGRAM: usize = 65_535;
const RELAY_BUF: usize = DATA_INDICATION_HEADROOM + MAX_DATAGRAM + 4;
/// Datagrams read from one socket before yielding, so one busy socket cannot starve the others.
const READ_BATCH: usize = 64;
/// Upper bound on how stale the timer check may be; lifetimes are whole seconds.
const TIMER_TICK: Duration = Duration::from_millis(500);

struct RelaySocket {
    socket: Rc<UdpSocket>,
    task: AbortHandle,
}

struct Shared {
    server: RefCell<Server>,
    listeners: HashMap<SocketAddr, Rc<UdpSocket>>,
    relays: RefCell<HashMap<SocketAddr, RelaySocket>>,
    relay_buf: RefCell<Vec<u8>>,
}

/// Runs a `Server` on sockets already bound by the caller (so bind errors surface at startup).
pub struct Worker {
    shared: Rc<Shared>,
}

fn now() -> Now {
    let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Now { instant: Instant::now(), unix_secs }
}

impl Worker {
    /// Must be called inside a tokio runtime (the sockets register with its reactor).
    pub fn new(server: Server, listeners: Vec<std::net::UdpSocket>) -> io::Result<Self> {
        let mut map = HashMap::new();
        for l in listeners {
            let local = l.local_addr()?;
            map.insert(local, Rc::new(UdpSocket::from_std(l)?));
        }
        Ok(Worker {
            shared: Rc::new(Shared {
                server: RefCell::new(server),
                listeners: map,
                relays: RefCell::new(HashMap::new()),
                relay_buf: RefCell::new(vec![0; RELAY_BUF]),
            }),
        })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listeners.keys().copied().collect()
    }

    pub fn allocation_count(&self) -> usize {
        self.shared.server.borrow().allocation_count()
    }

    /// Runs until the future is dropped. Must be polled inside a `LocalSet`.
    pub async fn run(&self) {
        for (local, socket) in &self.shared.listeners {
            tokio::task::spawn_local(listener_loop(self.shared.clone(), socket.clone(), *local));
        }
        timer_loop(self.shared.clone()).await;
    }
}

async fn listener_loop(shared: Rc<Shared>, socket: Rc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => shared.on_client_datagram(local, from, &buf[..n]),
            // ICMP errors for earlier sends surface here on Linux; they concern one client only.
            Err(e) => tracing::debug!(%local, error = %e, "listener receive error"),
        }
    }
}

async fn relay_loop(shared: Rc<Shared>, socket: Rc<UdpSocket>, relay: SocketAddr) {
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(%relay, error = %e, "relay socket failed");
            return;
        }
        for _ in 0..READ_BATCH {
            let mut buf = shared.relay_buf.borrow_mut();
            let start = DATA_INDICATION_HEADROOM;
            match socket.try_recv_from(&mut buf[start..start + MAX_DATAGRAM]) {
                Ok((n, peer)) => shared.on_peer_datagram(relay, peer, &mut buf, start, start + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(%relay, error = %e, "relay receive error");
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

async fn timer_loop(shared: Rc<Shared>) {
    loop {
        let next = shared.server.borrow().poll_timeout();
        let tick = Instant::now() + TIMER_TICK;
        let deadline = next.map_or(tick, |d| d.min(tick));
        tokio::time::sleep_until(deadline.into()).await;
        let mut server = shared.server.borrow_mut();
        server.handle_timeout(Instant::now(), &mut Opener { shared: &shared });
        shared.flush(&mut server);
    }
}

impl Shared {
    fn on_client_datagram(self: &Rc<Self>, local: SocketAddr, from: SocketAddr, data: &[u8]) {
        let tuple = FiveTuple { client: from, server: local, transport: ClientTransport::Udp };
        let mut server = self.server.borrow_mut();
        if let Some(out) = server.handle_client(now(), tuple, data, &mut Opener { shared: self }) {
            if let Some(relay) = self.relays.borrow().get(&out.relay) {
                if let Err(e) = relay.socket.try_send_to(out.data, out.peer) {
                    tracing::trace!(relay = %out.relay, peer = %out.peer, error = %e, "dropped datagram to peer");
                }
            }
        }
        self.flush(&mut server);
    }

    fn on_peer_datagram(&self, relay: SocketAddr, peer: SocketAddr, buf: &mut [u8], start: usize, end: usize) {
        let mut server = self.server.borrow_mut();
        if let Some(out) = server.handle_peer(Instant::now(), relay, peer, buf, start, end) {
            self.send_to_client(&out.tuple, &buf[out.start..out.end]);
        }
    }

    fn send_to_client(&self, tuple: &FiveTuple, data: &[u8]) {
        let Some(listener) = self.listeners.get(&tuple.server) else { return };
        if let Err(e) = listener.try_send_to(data, tuple.client) {
            tracing::trace!(client = %tuple.client, error = %e, "dropped datagram to client");
        }
    }

    /// Sends queued replies and logs events.
    fn flush(&self, server: &mut Server) {
        while let Some(t) = server.poll_transmit() {
            self.send_to_client(&t.tuple, &t.data);
        }
        while let Some(event) = server.poll_event() {
            log_event(&event);
        }
    }
}

/// coturn-style session log lines, which operators grep.
fn log_event(event: &Event) {
    match event {
        Event::AllocationCreated { tuple, username, relays, lifetime } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.as_str(),
            username = %username,
            relay = %DisplayList(relays),
            lifetime_secs = lifetime.as_secs(),
            "allocation created"
        ),
        Event::AllocationEnded { tuple, username, relays, duration, traffic, reason } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.as_str(),
            username = %username,
            relay = %DisplayList(relays),
            duration_secs = duration.as_secs(),
            sent_packets = traffic.packets_to_peer,
            sent_bytes = traffic.bytes_to_peer,
            received_packets = traffic.packets_from_peer,
            received_bytes = traffic.bytes_from_peer,
            reason = reason.as_str(),
            "allocation ended"
        ),
    }
}

struct DisplayList<'a>(&'a [SocketAddr]);

impl std::fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Opens relay sockets for the core and starts their receive tasks.
struct Opener<'a> {
    shared: &'a Rc<Shared>,
}

impl RelaySockets for Opener<'_> {
    fn open(&mut self, addr: SocketAddr, dont_fragment: bool) -> Result<(), BindError> {
        let std_socket = socket::bind_udp(addr, false, None).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => BindError::InUse,
            _ => BindError::Failed(e.to_string()),
        })?;
        if dont_fragment {
            socket::set_dont_fragment(&std_socket, addr.is_ipv6()).map_err(|e| BindError::Failed(e.to_string()))?;
        }
        let socket = Rc::new(UdpSocket::from_std(std_socket).map_err(|e| BindError::Failed(e.to_string()))?);
        let task = tokio::task::spawn_local(relay_loop(self.shared.clone(), socket.clone(), addr)).abort_handle();
        self.shared.relays.borrow_mut().insert(addr, RelaySocket { socket, task });
        Ok(())
    }

    fn close(&mut self, addr: SocketAddr) {
        if let Some(relay) = self.shared.relays.borrow_mut().remove(&addr) {
            relay.task.abort();
        }
    }
}
