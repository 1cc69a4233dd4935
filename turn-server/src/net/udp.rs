//! The UDP data path: listeners and relay sockets read in bursts (`recvmmsg`), each burst handed
//! to the core under one borrow and one clock read, what it relays sent from the receive slots in
//! bursts (`sendmmsg`). Nothing is allocated per datagram.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::batch::{Out, RecvBatch, SendQueue};
use super::clock;
use super::datagram::{DatagramSide, Streams};
use super::relay_set::{Ready, Role, MAX_EVENTS};
use crate::proto::server::DATA_INDICATION_HEADROOM;
use crate::proto::{ClientTransport, FiveTuple, Instant, Now};

/// Largest UDP payload.
pub(super) const MAX_DATAGRAM: usize = 65_535;
/// Datagrams per `recvmmsg`.
const BATCH: usize = 32;
/// Datagrams the stream worker's UDP task reads before it yields to the runtime's other tasks.
const TURN_BUDGET: usize = 128;
/// Room after a relayed payload for padding to a multiple of four (TCP/TLS ChannelData).
const PADDING: usize = 4;

/// Hands `n` datagrams from clients to the core and sends what it relays. Every datagram is
/// handled alike: relayed payload is queued for one `sendmmsg`, and what else the core asks for
/// is done at once (a relay socket it closes meanwhile stays open until the queue has left).
fn client_burst(
    side: &DatagramSide,
    streams: &impl Streams,
    now: Now,
    local: SocketAddr,
    batch: &mut RecvBatch,
    n: usize,
    sends: &mut SendQueue,
) {
    let mut server = side.server.borrow_mut();
    for i in 0..n {
        let Some((from, slot, start, end)) = batch.slot_mut(i) else { continue };
        let tuple = FiveTuple { client: from, server: local, transport: ClientTransport::Udp };
        if let Some(out) = server.handle_client(now, tuple, &slot[start..end]) {
            if let Some(fd) = side.relays.borrow().fd_of(&out.relay) {
                sends.push(Out { fd, slot: i, start: start + out.start, end: start + out.end, to: out.peer });
            }
        }
        side.drive(&mut server, now, streams);
    }
    drop(server);
    sends.flush(batch);
    side.reap();
}

/// The buffers of one worker's datagram path, made once: what is received, relayed and sent
/// lives in them, so nothing is allocated per datagram.
pub(super) struct DatagramPath {
    from_clients: RecvBatch,
    from_peers: RecvBatch,
    sends: SendQueue,
    /// The sockets the last poll found ready.
    pub(super) ready: Vec<Ready>,
}

/// What one round over the ready sockets did.
pub(super) struct Round {
    /// Datagrams read (a receive error counts as one).
    pub(super) read: usize,
    /// Every socket was emptied: a short read means its queue was empty at that moment, and the
    /// poll that listed them was not full.
    pub(super) drained: bool,
    /// The wake-up fd was among the ready ones (the caller serves it).
    pub(super) woken: bool,
    /// When the round began (the clock read its datagrams were handled at).
    pub(super) at: Instant,
}

impl DatagramPath {
    pub(super) fn new() -> Self {
        DatagramPath {
            from_clients: RecvBatch::new(BATCH, 0, MAX_DATAGRAM, 0),
            from_peers: RecvBatch::new(BATCH, DATA_INDICATION_HEADROOM, MAX_DATAGRAM, PADDING),
            sends: SendQueue::new(BATCH),
            ready: Vec::with_capacity(MAX_EVENTS),
        }
    }

    /// Reads up to `BATCH` datagrams from each socket in `ready`, hands them to the core and sends
    /// what it relays.
    pub(super) fn serve_ready(&mut self, side: &DatagramSide, streams: &impl Streams) -> Round {
        let now = clock::now();
        let mut round = Round { read: 0, drained: self.ready.len() < MAX_EVENTS, woken: false, at: now.instant };
        for r in &self.ready {
            if !side.relays.borrow().is_watched(r) {
                continue;
            }
            let batch = match r.role {
                Role::Listener => &mut self.from_clients,
                Role::Relay => &mut self.from_peers,
                Role::Wakeup => {
                    round.woken = true;
                    continue;
                }
            };
            match batch.recv(r.fd) {
                Ok(n) => {
                    round.read += n.max(1);
                    round.drained &= n < BATCH;
                    if r.role == Role::Listener {
                        client_burst(side, streams, now, r.addr, batch, n, &mut self.sends);
                    } else {
                        peer_burst(side, streams, now, *r, batch, n, &mut self.sends);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP errors for earlier sends surface here on Linux; they concern one client or
                // peer only. Counted as a datagram, so an error that repeats cannot keep a
                // budgeted caller in.
                Err(e) => {
                    round.read += 1;
                    round.drained = false;
                    tracing::debug!(socket = %r.addr, error = %e, "UDP receive error");
                }
            }
        }
        round
    }
}

/// The stream worker's UDP relay sockets under its runtime: drains every ready socket of the set,
/// up to `BATCH` datagrams each per round, until none is left or `TURN_BUDGET` is spent (then
/// yields, so TCP, timers and the control plane get their turn). Datagram workers do not use
/// this: their threads sleep on the set directly (`udp_thread`).
pub(super) async fn datagram_loop<S: Streams>(side: Rc<DatagramSide>, streams: S) {
    let fd = EpollFd(side.relays.borrow().epoll_fd());
    // SAFETY: the epoll fd belongs to the relay set in `side`, which this loop holds and which
    // never replaces it, so it stays open and the same for the registration's whole life.
    let epoll = match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %io::Error::from(e), "UDP sockets cannot be polled");
            return;
        }
    };
    let mut path = DatagramPath::new();
    loop {
        let mut guard = match epoll.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "UDP sockets cannot be polled");
                return;
            }
        };
        let mut read = 0;
        while read < TURN_BUDGET {
            if let Err(e) = side.relays.borrow_mut().ready(&mut path.ready) {
                // Only a broken epoll fd fails here (EINTR is retried inside): polling again
                // would spin.
                tracing::error!(error = %e, "UDP sockets cannot be polled");
                return;
            }
            let round = path.serve_ready(&side, &streams);
            read += round.read;
            if round.drained {
                // The inner set is level-triggered and every socket is empty: any datagram from
                // now on makes the set readable again, so no further poll is needed to sleep.
                guard.clear_ready();
                break;
            }
        }
        drop(guard);
        if read >= TURN_BUDGET {
            tokio::task::yield_now().await;
        }
    }
}

/// The relay set's epoll fd, borrowed for the runtime's registration: the set lives in the side
/// which the loop holds, so the fd outlives the registration.
struct EpollFd(RawFd);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Hands `n` datagrams from peers on relay socket `r` to the core and sends them on to clients.
fn peer_burst(
    side: &DatagramSide,
    streams: &impl Streams,
    now: Now,
    r: Ready,
    batch: &mut RecvBatch,
    n: usize,
    sends: &mut SendQueue,
) {
    let mut server = side.server.borrow_mut();
    for i in 0..n {
        let Some((peer, slot, start, end)) = batch.slot_mut(i) else { continue };
        let Some(out) = server.handle_peer(now, r.addr, peer, slot, start, end) else { continue };
        if out.tuple.transport == ClientTransport::Udp {
            if let Some(listener) = side.listener_fd(&out.tuple.server) {
                sends.push(Out { fd: listener, slot: i, start: out.start, end: out.end, to: out.tuple.client });
            }
        } else {
            streams.send(&out.tuple, &slot[out.start..out.end]);
        }
    }
    drop(server);
    sends.flush(batch);
}
