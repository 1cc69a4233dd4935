//! The UDP data path: listeners and relay sockets read in bursts (`recvmmsg`), each burst handed
//! to the core under one borrow and one clock read, what it relays sent from the receive slots in
//! bursts (`sendmmsg`). Nothing is allocated per datagram.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::batch::{Out, RecvBatch, SendQueue};
use super::relay_set::{Ready, MAX_EVENTS};
use super::worker::{now, Opener, Shared};
use crate::proto::server::DATA_INDICATION_HEADROOM;
use crate::proto::{channel_data, ClientTransport, FiveTuple, Now};

/// Largest UDP payload.
pub(super) const MAX_DATAGRAM: usize = 65_535;
/// Datagrams per `recvmmsg`.
const BATCH: usize = 32;
/// Datagrams the UDP task reads before it yields to the worker's other tasks.
const TURN_BUDGET: usize = 128;
/// Room after a relayed payload for padding to a multiple of four (TCP/TLS ChannelData).
const PADDING: usize = 4;

/// Hands `n` datagrams from clients to the core and sends what it relays.
fn client_burst(
    shared: &Rc<Shared>,
    now: Now,
    local: SocketAddr,
    batch: &mut RecvBatch,
    n: usize,
    sends: &mut SendQueue,
) {
    let mut server = shared.server.borrow_mut();
    for i in 0..n {
        let Some((from, slot, start, end)) = batch.slot_mut(i) else { continue };
        let is_data = channel_data::looks_like_channel_data(&slot[start..end]);
        if !is_data {
            // A request may close a relay socket and open another on the same fd number: what is
            // queued for the old one leaves first.
            drop(server);
            sends.flush(batch);
            server = shared.server.borrow_mut();
        }
        let Some((_, slot, start, end)) = batch.slot_mut(i) else { continue };
        let tuple = FiveTuple { client: from, server: local, transport: ClientTransport::Udp };
        let base = slot.as_ptr() as usize;
        if let Some(out) = server.handle_client(now, tuple, &slot[start..end], &mut Opener { shared }) {
            // The payload is a part of the datagram, so of this slot.
            let offset = (out.data.as_ptr() as usize).wrapping_sub(base);
            if let Some(fd) = shared.relays.borrow().fd_of(&out.relay) {
                sends.push(Out { fd, slot: i, start: offset, end: offset + out.data.len(), to: out.peer });
            }
        }
        if !is_data {
            shared.flush(&mut server);
        }
    }
    drop(server);
    sends.flush(batch);
}

/// Drains every ready socket of the set, listeners and relay sockets alike, up to `BATCH`
/// datagrams each per round, until none is left or `TURN_BUDGET` is spent (then yields, so TCP,
/// timers and the control plane get their turn).
pub(super) async fn datagram_loop(shared: Rc<Shared>) {
    let epoll = shared.relays.borrow().waiter();
    let mut from_clients = RecvBatch::new(BATCH, 0, MAX_DATAGRAM, 0);
    let mut from_peers = RecvBatch::new(BATCH, DATA_INDICATION_HEADROOM, MAX_DATAGRAM, PADDING);
    let mut sends = SendQueue::new(BATCH);
    let mut ready: Vec<Ready> = Vec::new();
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
            if let Err(e) = shared.relays.borrow_mut().ready(&mut ready) {
                // Only a broken epoll fd fails here (EINTR is retried inside): polling again
                // would spin.
                tracing::error!(error = %e, "UDP sockets cannot be polled");
                return;
            }
            // Whether every socket was emptied: a short read means its queue was empty at that
            // moment, and the set was not full.
            let mut drained = ready.len() < MAX_EVENTS;
            let now = now();
            for r in &ready {
                let batch = if r.listener { &mut from_clients } else { &mut from_peers };
                match batch.recv(r.fd) {
                    Ok(n) => {
                        read += n.max(1);
                        drained &= n < BATCH;
                        if r.listener {
                            client_burst(&shared, now, r.addr, batch, n, &mut sends);
                        } else {
                            peer_burst(&shared, now.instant, *r, batch, n, &mut sends);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // ICMP errors for earlier sends surface here on Linux; they concern one
                    // client or peer only. Counted against the budget, so an error that repeats
                    // cannot keep this task in.
                    Err(e) => {
                        read += 1;
                        drained = false;
                        tracing::debug!(socket = %r.addr, error = %e, "UDP receive error");
                    }
                }
            }
            if drained {
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

/// Hands `n` datagrams from peers on relay socket `r` to the core and sends them on to clients.
fn peer_burst(shared: &Shared, now: Instant, r: Ready, batch: &mut RecvBatch, n: usize, sends: &mut SendQueue) {
    let mut server = shared.server.borrow_mut();
    for i in 0..n {
        let Some((peer, slot, start, end)) = batch.slot_mut(i) else { continue };
        let Some(out) = server.handle_peer(now, r.addr, peer, slot, start, end) else { continue };
        if out.tuple.transport == ClientTransport::Udp {
            if let Some(listener) = shared.listener_fd(&out.tuple.server) {
                sends.push(Out { fd: listener, slot: i, start: out.start, end: out.end, to: out.tuple.client });
            }
        } else {
            shared.send_to_client(&out.tuple, &slot[out.start..out.end]);
        }
    }
    drop(server);
    sends.flush(batch);
}
