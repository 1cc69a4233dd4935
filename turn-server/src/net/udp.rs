//! The UDP data path: listeners and relay sockets read in bursts (`recvmmsg`), each burst handed
//! to the core under one borrow and one clock read, what it relays sent from the receive slots in
//! bursts (`sendmmsg`). Nothing is allocated per datagram.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::batch::{Out, RecvBatch, SendQueue};
use super::relay_set::Ready;
use super::worker::{now, Opener, Shared};
use crate::proto::server::DATA_INDICATION_HEADROOM;
use crate::proto::{channel_data, ClientTransport, FiveTuple};

/// Largest UDP payload.
pub(super) const MAX_DATAGRAM: usize = 65_535;
/// Datagrams per `recvmmsg`.
const BATCH: usize = 32;
/// Datagrams a listener reads before yielding to the relay task, and the relay task before
/// yielding to the listeners: small enough that neither direction waits long for the other.
const TURN_BUDGET: usize = 128;
/// Room after a relayed payload for padding to a multiple of four (TCP/TLS ChannelData).
const PADDING: usize = 4;

pub(super) async fn listener_loop(shared: Rc<Shared>, socket: Rc<UdpSocket>, local: SocketAddr) {
    let mut batch = RecvBatch::new(BATCH, 0, MAX_DATAGRAM, 0);
    let mut sends = SendQueue::new(BATCH);
    let fd = socket.as_raw_fd();
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(%local, error = %e, "listener failed");
            return;
        }
        let mut read = 0;
        while read < TURN_BUDGET {
            // try_io clears tokio's readiness on WouldBlock, so the next await sleeps.
            match socket.try_io(Interest::READABLE, || batch.recv(fd)) {
                Ok(n) => {
                    read += n.max(1);
                    client_burst(&shared, local, &mut batch, n, &mut sends);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors for earlier sends surface here on Linux; they concern one client only.
                // Counted against the budget, so an error that repeats cannot keep this task in.
                Err(e) => {
                    read += 1;
                    tracing::debug!(%local, error = %e, "listener receive error");
                }
            }
        }
        if read >= TURN_BUDGET {
            tokio::task::yield_now().await;
        }
    }
}

/// Hands `n` datagrams from clients to the core and sends what it relays.
fn client_burst(shared: &Rc<Shared>, local: SocketAddr, batch: &mut RecvBatch, n: usize, sends: &mut SendQueue) {
    let now = now();
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

/// Drains every ready relay socket, a share of `TURN_BUDGET` at a time.
pub(super) async fn relay_loop(shared: Rc<Shared>) {
    let epoll = shared.relays.borrow().waiter();
    let mut batch = RecvBatch::new(BATCH, DATA_INDICATION_HEADROOM, MAX_DATAGRAM, PADDING);
    let mut sends = SendQueue::new(BATCH);
    let mut ready: Vec<Ready> = Vec::new();
    loop {
        let mut guard = match epoll.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "relay sockets cannot be polled");
                return;
            }
        };
        let mut read = 0;
        while read < TURN_BUDGET {
            if let Err(e) = shared.relays.borrow_mut().ready(&mut ready) {
                // Only a broken epoll fd fails here (EINTR is retried inside): polling again
                // would spin.
                tracing::error!(error = %e, "relay sockets cannot be polled");
                return;
            }
            if ready.is_empty() {
                // Level-triggered inside: empty now means any later datagram wakes the set again.
                guard.clear_ready();
                break;
            }
            let now = Instant::now();
            for r in &ready {
                match batch.recv(r.fd) {
                    Ok(n) => {
                        read += n.max(1);
                        peer_burst(&shared, now, *r, &mut batch, n, &mut sends);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        read += 1;
                        tracing::debug!(relay = %r.addr, error = %e, "relay receive error");
                    }
                }
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
