//! One load run: ChannelData at a paced rate from many client sockets, and a peer socket that
//! counts, echoes, or talks back on its own clock (see [`PeerRole`]). When anything comes back to
//! the clients a receiver counts it and times it from the timestamp the sender wrote into it.
//!
//! Payload layout after the 4-byte ChannelData header: sequence number (u64), send time in
//! nanoseconds since the run's epoch (u64), zeros. The peer echoes payloads unchanged, so the
//! timestamp comes back in the ChannelData the relay makes of it; the peer's own datagrams carry
//! the same layout (the relay adds the header).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::CHANNEL;
use udp_batch::{Epoll, Out, RecvBatch, SendBatch, SendQueue};

/// Smallest payload: sequence number and timestamp.
pub const MIN_PAYLOAD: usize = 16;
/// How long to wait after the last send for datagrams still queued in the server.
const DRAIN: Duration = Duration::from_millis(400);
/// A sender that falls this far behind schedule gives up; the achieved rate tells the caller.
const BEHIND_LIMIT: Duration = Duration::from_secs(1);
/// Upper bound on recorded round trips (memory stays bounded whatever the rate).
const MAX_SAMPLES: usize = 4_000_000;

/// What the peer does besides counting what reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// Only counts: one direction, client to peer.
    Count,
    /// Sends each datagram back at once, through the relay: round trips can be timed, but the
    /// server sees every datagram's echo a few microseconds after it sent it.
    Echo,
    /// Sends its own stream at the clients' rate to the allocations' relayed addresses, paced on
    /// its own clock like the far end of a call: neither direction waits for the other.
    Talk,
}

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Datagrams per second from all clients together (and from the peer, when it talks).
    pub rate: f64,
    pub duration: Duration,
    pub payload: usize,
    pub peer: PeerRole,
    /// Datagrams sent from one socket in one `sendmmsg` before moving to the next socket.
    pub burst: usize,
    /// Send a burst as one UDP GSO message (else one message per datagram).
    pub gso: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Datagrams the sender tried to send, and how many the kernel took.
    pub attempted: u64,
    pub sent: u64,
    pub send_elapsed: Duration,
    pub peer_received: u64,
    /// Datagrams the peer sent on its own (`PeerRole::Talk`).
    pub peer_sent: u64,
    /// Datagrams that came back to the clients through the relay.
    pub clients_received: u64,
    /// Nanoseconds from send to arrival at a client: round trips when the peer echoes, one-way
    /// peer-to-client times when it talks.
    pub rtts: Vec<u64>,
}

impl Outcome {
    /// Datagrams offered per second, as achieved (not as asked).
    pub fn offered_rate(&self) -> f64 {
        self.attempted as f64 / self.send_elapsed.as_secs_f64().max(1e-9)
    }

    /// Fraction of what was sent that did not arrive where it was going: for an echo, what the
    /// clients sent and did not get back.
    pub fn loss(&self, role: PeerRole) -> f64 {
        let (sent, arrived) = match role {
            PeerRole::Count => (self.sent, self.peer_received),
            PeerRole::Echo => (self.sent, self.clients_received),
            PeerRole::Talk => (self.sent + self.peer_sent, self.peer_received.min(self.sent) + self.clients_received),
        };
        if sent == 0 {
            return 1.0;
        }
        1.0 - (arrived.min(sent) as f64 / sent as f64)
    }

    /// Datagrams the relay forwarded, both directions.
    pub fn relayed(&self) -> u64 {
        self.peer_received + self.clients_received
    }
}

/// Runs `spec` from `clients` (sockets connected to the relay, each with channel `CHANNEL` to the
/// peer, or connected straight to the peer for a baseline) to `peer`. `relayed` holds the
/// clients' relayed addresses, where a talking peer sends; other roles ignore it.
pub fn run(clients: &[&UdpSocket], relayed: &[SocketAddr], peer: &UdpSocket, spec: Spec) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!clients.is_empty(), "no client sockets");
    anyhow::ensure!(spec.payload >= MIN_PAYLOAD, "payload must be at least {MIN_PAYLOAD} bytes");
    anyhow::ensure!(spec.peer != PeerRole::Talk || !relayed.is_empty(), "a talking peer needs relayed addresses");
    let replies = spec.peer != PeerRole::Count;
    let echo = spec.peer == PeerRole::Echo;
    peer.set_read_timeout(Some(Duration::from_millis(20))).context("peer read timeout")?;
    if replies {
        for c in clients {
            c.set_nonblocking(true).context("client nonblocking")?;
        }
    }
    let epoch = Instant::now();
    let stop = AtomicBool::new(false);
    let peer_count = AtomicU64::new(0);
    let result = std::thread::scope(|s| {
        let peer_thread = s.spawn(|| peer_loop(peer, echo, spec.gso, &stop, &peer_count));
        let receiver = replies.then(|| s.spawn(|| receive_at_clients(clients, epoch, &stop)));
        let talker = (spec.peer == PeerRole::Talk).then(|| s.spawn(|| talk(peer, relayed, spec, epoch)));
        let sent = send_from_clients(clients, spec, epoch);
        let talked = talker.map(|t| t.join().map_err(|_| anyhow::anyhow!("talking peer panicked")));
        std::thread::sleep(DRAIN);
        stop.store(true, Ordering::Relaxed);
        let peer_result = peer_thread.join().map_err(|_| anyhow::anyhow!("peer thread panicked"));
        let received = match receiver {
            Some(r) => r.join().map_err(|_| anyhow::anyhow!("receiver thread panicked"))?,
            None => Ok((0, Vec::new())),
        };
        peer_result??;
        let (clients_received, rtts) = received?;
        let sent = sent?;
        let peer_sent = match talked {
            Some(t) => t??.sent,
            None => 0,
        };
        Ok(Outcome {
            attempted: sent.attempted,
            sent: sent.sent,
            send_elapsed: sent.elapsed,
            peer_received: peer_count.load(Ordering::Relaxed),
            peer_sent,
            clients_received,
            rtts,
        })
    });
    if replies {
        for c in clients {
            c.set_nonblocking(false).context("client blocking")?;
        }
    }
    result
}

/// What one paced sender did.
struct Sent {
    attempted: u64,
    sent: u64,
    elapsed: Duration,
}

/// Calls `send(first, k, now_ns)` for datagrams `first..first + k` so that `rate * duration` of
/// them go out evenly spread, at most `burst` per call; `send` returns how many the kernel took.
/// A sender that falls `BEHIND_LIMIT` behind stops early: the achieved rate tells the caller.
fn pace(
    spec: Spec,
    epoch: Instant,
    mut send: impl FnMut(u64, usize, u64) -> std::io::Result<usize>,
) -> anyhow::Result<Sent> {
    let burst = spec.burst.max(1);
    let total = (spec.rate * spec.duration.as_secs_f64()) as u64;
    let start = Instant::now();
    let (mut attempted, mut sent, mut errors) = (0u64, 0u64, 0u64);
    let mut last_error = None;
    while attempted < total {
        let elapsed = start.elapsed();
        if elapsed > spec.duration + BEHIND_LIMIT {
            break;
        }
        let due = ((elapsed.as_secs_f64() * spec.rate) as u64 + 1).min(total);
        if due <= attempted {
            let at = Duration::from_secs_f64((attempted + 1) as f64 / spec.rate);
            std::thread::sleep(at.saturating_sub(elapsed).min(Duration::from_millis(1)));
            continue;
        }
        let k = ((due - attempted) as usize).min(burst);
        match send(attempted, k, epoch.elapsed().as_nanos() as u64) {
            Ok(m) => {
                sent += m as u64;
                errors += (k - m) as u64;
            }
            Err(e) => {
                errors += k as u64;
                last_error = Some(e);
            }
        }
        attempted += k as u64;
    }
    // A socket error on every send means the server is gone, not that it is slow.
    if sent == 0 && errors > 0 {
        if let Some(e) = last_error {
            return Err(e).context("every send failed");
        }
    }
    Ok(Sent { attempted, sent, elapsed: start.elapsed() })
}

/// Writes sequence number and send time where the receiver looks for them.
fn stamp(payload: &mut [u8], seq: u64, now_ns: u64) {
    payload[..8].copy_from_slice(&seq.to_be_bytes());
    payload[8..16].copy_from_slice(&now_ns.to_be_bytes());
}

/// The clients' side: ChannelData from one socket per call, the next socket each time.
fn send_from_clients(clients: &[&UdpSocket], spec: Spec, epoch: Instant) -> anyhow::Result<Sent> {
    let burst = spec.burst.max(1);
    let len = 4 + spec.payload;
    let mut batch = SendBatch::new(burst, len);
    if !spec.gso {
        batch = batch.without_gso();
    }
    for i in 0..burst {
        turn_server::proto::channel_data::write_header(batch.buf_mut(i), CHANNEL, spec.payload);
    }
    let fds: Vec<_> = clients.iter().map(|c| c.as_raw_fd()).collect();
    let mut next = 0usize;
    pace(spec, epoch, |first, k, now_ns| {
        for j in 0..k {
            stamp(&mut batch.buf_mut(j)[4..], first + j as u64, now_ns);
        }
        let fd = fds[next];
        next = (next + 1) % fds.len();
        batch.send(fd, k, len)
    })
}

/// The talking peer: plain datagrams to the relayed addresses in turn, which the relay turns into
/// ChannelData to each client.
fn talk(peer: &UdpSocket, relayed: &[SocketAddr], spec: Spec, epoch: Instant) -> anyhow::Result<Sent> {
    let mut payload = vec![0u8; spec.payload];
    let mut next = 0usize;
    pace(spec, epoch, |first, k, now_ns| {
        let (mut took, mut failed) = (0, None);
        for j in 0..k {
            stamp(&mut payload, first + j as u64, now_ns);
            let to = relayed[next];
            next = (next + 1) % relayed.len();
            match peer.send_to(&payload, to) {
                Ok(_) => took += 1,
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) if took == 0 => Err(e),
            _ => Ok(took),
        }
    })
}

/// The peer: counts what arrives and, for `echo`, sends each datagram back (as one GSO message
/// per run to one relayed address only with `gso`).
fn peer_loop(peer: &UdpSocket, echo: bool, gso: bool, stop: &AtomicBool, count: &AtomicU64) -> anyhow::Result<()> {
    let mut batch = RecvBatch::new(64, 0, 2048, 0);
    let mut echoes = SendQueue::new(64);
    if !gso {
        echoes = echoes.without_gso();
    }
    let fd = peer.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let n = nothing_is_zero(batch.recv_with(fd, libc::MSG_WAITFORONE)).context("peer receive")?;
        if n == 0 {
            continue;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        if echo {
            for i in 0..n {
                if let Some((from, _, start, end)) = batch.slot_mut(i) {
                    echoes.push(Out { fd, slot: i, start, end, to: from });
                }
            }
            // Echoes the kernel refuses count as loss on the way back, which is what they are.
            echoes.flush(&batch);
        }
    }
    Ok(())
}

fn receive_at_clients(clients: &[&UdpSocket], epoch: Instant, stop: &AtomicBool) -> anyhow::Result<(u64, Vec<u64>)> {
    let mut epoll = Epoll::new(256).context("epoll")?;
    for (i, c) in clients.iter().enumerate() {
        epoll.add(c.as_raw_fd(), i as u64).context("epoll add")?;
    }
    let mut batch = RecvBatch::new(32, 0, 2048, 0);
    let mut received = 0u64;
    let mut rtts = Vec::with_capacity(1 << 16);
    let mut ready = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        ready.clear();
        epoll.wait(Duration::from_millis(20)).context("epoll wait")?;
        ready.extend(epoll.tokens());
        for &i in &ready {
            let Some(c) = clients.get(i as usize) else { continue };
            // Bounded per wakeup so one busy socket cannot starve the rest.
            for _ in 0..8 {
                let n = nothing_is_zero(batch.recv(c.as_raw_fd())).context("client receive")?;
                if n == 0 {
                    break;
                }
                let now_ns = epoch.elapsed().as_nanos() as u64;
                for j in 0..n {
                    let d = batch.payload(j);
                    if d.len() < 4 + MIN_PAYLOAD {
                        continue;
                    }
                    received += 1;
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&d[12..20]);
                    if rtts.len() < MAX_SAMPLES {
                        rtts.push(now_ns.saturating_sub(u64::from_be_bytes(ts)));
                    }
                }
                if n < batch.capacity() {
                    break;
                }
            }
        }
    }
    Ok((received, rtts))
}

/// A receive that found nothing (an empty queue, the socket's timeout, a signal) as 0 datagrams.
fn nothing_is_zero(received: std::io::Result<usize>) -> std::io::Result<usize> {
    match received {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => Ok(0),
        r => r,
    }
}

/// Sockets connected straight to `peer`, for the no-relay baseline of the latency row, on the
/// clients' first address (on loopback: 127.0.0.2).
pub fn direct_sockets(n: usize, peer: SocketAddr, net: &crate::net::NetArgs) -> anyhow::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = net.client_socket(0).context("bind baseline socket")?;
            s.connect(peer).context("connect baseline socket")?;
            Ok(s)
        })
        .collect()
}

/// Percentile `p` (0-100) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}
