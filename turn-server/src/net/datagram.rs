//! What a worker's datagram path needs, and no more: the core, the UDP listening sockets and the
//! relay socket set, plus the loop that carries out the core's outputs. The stream side of a
//! worker (TCP/TLS clients, RFC 6062) plugs in through [`Streams`]; a datagram worker has none.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::clock;
use super::fast_path::FastPath;
use super::relay_set::RelaySet;
use super::socket;
use crate::proto::{BindError, ClientTransport, Event, FiveTuple, Instant, Now, Output, Server, SocketKind, Transmit};

/// Upper bound on how stale the timer check may be; lifetimes are whole seconds.
const TIMER_TICK: Duration = Duration::from_millis(500);

pub(super) struct DatagramSide {
    pub(super) server: RefCell<Server>,
    /// UDP listening sockets (watched by the relay set, which drains both directions).
    pub(super) listeners: HashMap<SocketAddr, UdpSocket>,
    pub(super) relays: RefCell<RelaySet>,
    /// This worker's routes in the kernel fast path, when it is loaded.
    pub(super) fast_path: Option<FastPath>,
}

/// A worker's stream side, as its datagram path sees it.
pub(super) trait Streams {
    /// Queues a frame for a TCP or TLS client.
    fn send(&self, tuple: &FiveTuple, data: &[u8]);
    /// Carries out an output the datagram side has no means for (TCP relays, RFC 6062 commands).
    /// `CloseRelay` comes here too, after the UDP side has dealt with it.
    fn output(&self, server: &mut Server, now: Now, out: Output);
}

/// A datagram worker's stream side: there is none. The core offers TCP relays only to stream
/// clients, so these outputs do not come; if one did, the bind is refused rather than lost.
pub(super) struct NoStreams;

impl Streams for NoStreams {
    fn send(&self, _tuple: &FiveTuple, _data: &[u8]) {}

    fn output(&self, server: &mut Server, now: Now, out: Output) {
        if let Output::OpenRelay { addr, .. } = out {
            server.relay_opened(now, addr, Err(BindError::Failed("a TCP relay needs the stream worker".into())));
        }
    }
}

impl DatagramSide {
    pub(super) fn new(
        listeners: HashMap<SocketAddr, UdpSocket>,
        relays: RelaySet,
        mut server: Server,
        fast_path: Option<FastPath>,
    ) -> Self {
        if fast_path.is_some() {
            server.enable_offload(clock::now());
        }
        DatagramSide { server: RefCell::new(server), listeners, relays: RefCell::new(relays), fast_path }
    }

    /// Carries out the core's outputs until it has none; returns when its timers next need running.
    /// Relay sockets it closes stay open until [`DatagramSide::reap`], so sends queued in the
    /// current burst can still leave from them.
    pub(super) fn drive(&self, server: &mut Server, now: Now, streams: &impl Streams) -> Option<Instant> {
        loop {
            match server.poll_output() {
                Output::Transmit(t) => self.transmit(&t, streams),
                Output::OpenRelay { addr, kind: SocketKind::Udp { dont_fragment } } => {
                    let result = self.open_udp(addr, dont_fragment);
                    server.relay_opened(now, addr, result);
                }
                Output::CloseRelay { addr } => {
                    self.relays.borrow_mut().close(addr);
                    streams.output(server, now, Output::CloseRelay { addr });
                }
                Output::Offload(command) => {
                    if let Some(fast_path) = &self.fast_path {
                        fast_path.apply(server, command);
                    }
                }
                Output::Event(mut event) => {
                    if let Some(fast_path) = &self.fast_path {
                        fast_path.complete(&mut event);
                    }
                    log_event(&event);
                }
                Output::Timeout(at) => return at,
                out @ (Output::OpenRelay { .. } | Output::Tcp(_)) => streams.output(server, now, out),
            }
        }
    }

    /// [`DatagramSide::drive`] outside a burst: nothing is queued, so closed sockets go at once.
    pub(super) fn settle(&self, server: &mut Server, now: Now, streams: &impl Streams) -> Option<Instant> {
        let next = self.drive(server, now, streams);
        self.reap();
        next
    }

    /// Runs the core's due timers; returns when they next need running (at most `TIMER_TICK` away).
    pub(super) fn run_timers(&self, streams: &impl Streams) -> Instant {
        let now = clock::now();
        let mut server = self.server.borrow_mut();
        if let Some(fast_path) = &self.fast_path {
            fast_path.fold_due(&mut server, now.instant);
        }
        server.handle_timeout(now);
        let tick = now.instant + TIMER_TICK;
        self.settle(&mut server, now, streams).map_or(tick, |at| at.min(tick))
    }

    /// Closes the relay sockets closed since the last call; call once queued sends have left.
    pub(super) fn reap(&self) {
        self.relays.borrow_mut().reap();
    }

    fn open_udp(&self, addr: SocketAddr, dont_fragment: bool) -> Result<(), BindError> {
        let socket = socket::bind_udp(addr, false, None)?;
        if dont_fragment {
            socket::set_dont_fragment(&socket, addr.is_ipv6())?;
        }
        Ok(self.relays.borrow_mut().insert(addr, socket)?)
    }

    fn transmit(&self, t: &Transmit, streams: &impl Streams) {
        let (from, to) = t.redirect.unwrap_or((t.tuple.server, t.tuple.client));
        if t.tuple.transport != ClientTransport::Udp && t.redirect.is_none() {
            return streams.send(&t.tuple, &t.data);
        }
        self.send_to_client(from, &t.data, to);
    }

    /// One datagram from the listening socket at `local`.
    pub(super) fn send_to_client(&self, local: SocketAddr, data: &[u8], to: SocketAddr) {
        let Some(listener) = self.listeners.get(&local) else { return };
        if let Err(e) = socket::send_datagram(listener, data, to) {
            tracing::trace!(client = %to, error = %e, "dropped datagram to client");
        }
    }

    pub(super) fn listener_fd(&self, local: &SocketAddr) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.listeners.get(local).map(|l| l.as_raw_fd())
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
