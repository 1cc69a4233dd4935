//! One load run: ChannelData at a paced rate from many client sockets, a peer socket that counts
//! or echoes, and (when it echoes) a receiver that times each round trip from the timestamp the
//! sender wrote into the payload.
//!
//! Payload layout after the 4-byte ChannelData header: sequence number (u64), send time in
//! nanoseconds since the run's epoch (u64), zeros. The peer echoes payloads unchanged, so the
//! timestamp comes back in the ChannelData the relay makes of it.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::CHANNEL;
use crate::mmsg::{Batch, Epoll, SendBatch};

/// Smallest payload: sequence number and timestamp.
pub const MIN_PAYLOAD: usize = 16;
/// How long to wait after the last send for datagrams still queued in the server.
const DRAIN: Duration = Duration::from_millis(400);
/// A sender that falls this far behind schedule gives up; the achieved rate tells the caller.
const BEHIND_LIMIT: Duration = Duration::from_secs(1);
/// Upper bound on recorded round trips (memory stays bounded whatever the rate).
const MAX_SAMPLES: usize = 4_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Datagrams per second from all clients together.
    pub rate: f64,
    pub duration: Duration,
    pub payload: usize,
    /// The peer echoes each datagram back through the relay (otherwise it only counts).
    pub echo: bool,
    /// Datagrams sent from one socket in one `sendmmsg` before moving to the next socket.
    pub burst: usize,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Datagrams the sender tried to send, and how many the kernel took.
    pub attempted: u64,
    pub sent: u64,
    pub send_elapsed: Duration,
    pub peer_received: u64,
    pub echoes_received: u64,
    /// Round-trip times in nanoseconds (echo runs).
    pub rtts: Vec<u64>,
}

impl Outcome {
    /// Datagrams offered per second, as achieved (not as asked).
    pub fn offered_rate(&self) -> f64 {
        self.attempted as f64 / self.send_elapsed.as_secs_f64().max(1e-9)
    }

    /// Fraction of what the sender sent that did not arrive where it was going.
    pub fn loss(&self, echo: bool) -> f64 {
        let arrived = if echo { self.echoes_received } else { self.peer_received };
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - (arrived.min(self.sent) as f64 / self.sent as f64)
    }

    /// Datagrams the relay forwarded, both directions.
    pub fn relayed(&self) -> u64 {
        self.peer_received + self.echoes_received
    }
}

/// Runs `spec` from `clients` (sockets connected to the relay, each with channel `CHANNEL` to the
/// peer, or connected straight to the peer for a baseline) to `peer`.
pub fn run(clients: &[&UdpSocket], peer: &UdpSocket, spec: Spec) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!clients.is_empty(), "no client sockets");
    anyhow::ensure!(spec.payload >= MIN_PAYLOAD, "payload must be at least {MIN_PAYLOAD} bytes");
    peer.set_read_timeout(Some(Duration::from_millis(20))).context("peer read timeout")?;
    if spec.echo {
        for c in clients {
            c.set_nonblocking(true).context("client nonblocking")?;
        }
    }
    let epoch = Instant::now();
    let stop = AtomicBool::new(false);
    let peer_count = AtomicU64::new(0);
    let result = std::thread::scope(|s| {
        let peer_thread = s.spawn(|| peer_loop(peer, spec.echo, &stop, &peer_count));
        let receiver = spec.echo.then(|| s.spawn(|| receive_echoes(clients, epoch, &stop)));
        let sent = send_paced(clients, spec, epoch);
        std::thread::sleep(DRAIN);
        stop.store(true, Ordering::Relaxed);
        let peer_result = peer_thread.join().map_err(|_| anyhow::anyhow!("peer thread panicked"));
        let echoes = match receiver {
            Some(r) => r.join().map_err(|_| anyhow::anyhow!("receiver thread panicked"))?,
            None => Ok((0, Vec::new())),
        };
        peer_result??;
        let (echoes_received, rtts) = echoes?;
        let (attempted, sent, send_elapsed) = sent?;
        Ok(Outcome {
            attempted,
            sent,
            send_elapsed,
            peer_received: peer_count.load(Ordering::Relaxed),
            echoes_received,
            rtts,
        })
    });
    if spec.echo {
        for c in clients {
            c.set_nonblocking(false).context("client blocking")?;
        }
    }
    result
}

fn send_paced(clients: &[&UdpSocket], spec: Spec, epoch: Instant) -> anyhow::Result<(u64, u64, Duration)> {
    let burst = spec.burst.max(1);
    let len = 4 + spec.payload;
    let mut batch = SendBatch::new(burst, len);
    for i in 0..burst {
        let buf = batch.buf_mut(i);
        turn_server::proto::channel_data::write_header(buf, CHANNEL, spec.payload);
    }
    let fds: Vec<_> = clients.iter().map(|c| c.as_raw_fd()).collect();
    let total = (spec.rate * spec.duration.as_secs_f64()) as u64;
    let start = Instant::now();
    let (mut attempted, mut sent, mut errors) = (0u64, 0u64, 0u64);
    let mut next = 0usize;
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
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for j in 0..k {
            let buf = batch.buf_mut(j);
            buf[4..12].copy_from_slice(&(attempted + j as u64).to_be_bytes());
            buf[12..20].copy_from_slice(&now_ns.to_be_bytes());
        }
        match batch.send(fds[next], k, len) {
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
        next = (next + 1) % fds.len();
    }
    // A socket error on every send means the server is gone, not that it is slow.
    if sent == 0 && errors > 0 {
        if let Some(e) = last_error {
            return Err(e).context("every send failed");
        }
    }
    Ok((attempted, sent, start.elapsed()))
}

fn peer_loop(peer: &UdpSocket, echo: bool, stop: &AtomicBool, count: &AtomicU64) -> anyhow::Result<()> {
    let mut batch = Batch::new(64, 2048);
    let fd = peer.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let n = batch.recv(fd, libc::MSG_WAITFORONE).context("peer receive")?;
        if n == 0 {
            continue;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
        if echo {
            // Echoes the kernel refuses count as loss on the way back, which is what they are.
            let _ = batch.echo(fd, n);
        }
    }
    Ok(())
}

fn receive_echoes(clients: &[&UdpSocket], epoch: Instant, stop: &AtomicBool) -> anyhow::Result<(u64, Vec<u64>)> {
    let mut epoll = Epoll::new(256).context("epoll")?;
    for (i, c) in clients.iter().enumerate() {
        epoll.add(c.as_raw_fd(), i as u64).context("epoll add")?;
    }
    let mut batch = Batch::new(32, 2048);
    let mut received = 0u64;
    let mut rtts = Vec::with_capacity(1 << 16);
    let mut ready = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        ready.clear();
        ready.extend(epoll.wait(20).context("epoll wait")?);
        for &i in &ready {
            let Some(c) = clients.get(i as usize) else { continue };
            // Bounded per wakeup so one busy socket cannot starve the rest.
            for _ in 0..8 {
                let n = batch.recv(c.as_raw_fd(), libc::MSG_DONTWAIT).context("client receive")?;
                if n == 0 {
                    break;
                }
                let now_ns = epoch.elapsed().as_nanos() as u64;
                for j in 0..n {
                    let d = batch.data(j);
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

/// Sockets connected straight to `peer`, for the no-relay baseline of the latency row.
pub fn direct_sockets(n: usize, peer: std::net::SocketAddr) -> anyhow::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").context("bind baseline socket")?;
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
