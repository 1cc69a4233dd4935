//! The TURN client side of the generator: what a WebRTC client does before media flows (401
//! challenge, authenticated Allocate, CreatePermission, ChannelBind), over blocking UDP sockets,
//! encoded with the relay's own STUN codec and signed with the shared REST credential code.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use ice_config::{long_term_key, LongTermKey, PasswordAlgorithm, RestSecrets};
use turn_server::app::probe::signed_request;
use turn_server::proto::stun::{attr, Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use crate::net::NetArgs;

/// The channel every allocation binds: each allocation has one peer, so one number suffices.
pub const CHANNEL: u16 = 0x4000;
/// RFC 8489 retransmits from 500 ms; loopback answers in well under that unless the server is
/// swamped, which the allocation-rate step wants to see as slowness, not as failure.
const RETRANSMITS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
];

/// Allocations are refreshed (with their channels and so permissions, 300 s) at least this often.
const REFRESH_EVERY: Duration = Duration::from_secs(120);

/// Tries per allocation before it counts as failed.
const ATTEMPTS: usize = 3;

/// Where to allocate and with what.
pub struct Target {
    pub server: SocketAddr,
    pub peer: SocketAddr,
    pub secrets: RestSecrets,
    /// The clients' source addresses and namespace.
    pub net: NetArgs,
}

/// The long-term credential state of one allocation, kept to refresh it.
struct Session {
    username: String,
    realm: String,
    nonce: Vec<u8>,
    key: LongTermKey,
}

/// A live allocation with a permission and channel `CHANNEL` to the target's peer.
pub struct Allocation {
    pub socket: UdpSocket,
    /// Where the peer sends to reach this client (a talking peer does; an echo answers to
    /// wherever a datagram came from, which is the same address).
    pub relayed: SocketAddr,
    session: Session,
    peer: SocketAddr,
}

/// How a batch of allocations went.
pub struct OpenReport {
    pub allocations: Vec<Allocation>,
    pub elapsed: Duration,
    pub failures: usize,
    pub first_error: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Opens `n` allocations with at most `concurrency` in flight, giving up on new ones at
/// `deadline`. Client `i` is user `bench<offset+i>`.
pub fn open_many(target: &Target, n: usize, offset: usize, concurrency: usize, deadline: Instant) -> OpenReport {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(n));
    let failures = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() >= deadline {
                    return;
                }
                // A retry gets a fresh socket: a client port the kernel hands out again may still
                // name a live allocation of an earlier client (437), as on a real NAT.
                let mut last = None;
                for _ in 0..ATTEMPTS {
                    match open_one(target, offset + i) {
                        Ok(a) => {
                            out.lock().unwrap_or_else(|e| e.into_inner()).push(a);
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(format!("{e:#}"));
                }
            });
        }
    });
    OpenReport {
        elapsed: start.elapsed(),
        allocations: out.into_inner().unwrap_or_else(|e| e.into_inner()),
        failures: failures.into_inner(),
        first_error: first_error.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

fn open_one(target: &Target, index: usize) -> anyhow::Result<Allocation> {
    let socket = target.net.client_socket(index)?;
    socket.connect(target.server).context("connect client socket")?;
    let cred = target.secrets.issue(Some(&format!("bench{index}")), unix_now(), 3600);

    let udp = [17u8, 0, 0, 0];
    let tid: TransactionId = rand::random();
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &tid);
    b.attr(attr::REQUESTED_TRANSPORT, &udp);
    let challenge = transact(&socket, &b.finish(), &tid)?;
    let msg = Message::parse(&challenge).map_err(|e| anyhow!("unparsable 401: {e}"))?;
    let (Some(realm), Some(nonce)) = (msg.get(attr::REALM), msg.get(attr::NONCE)) else {
        bail!("expected a 401 challenge, got {}", describe(&msg));
    };
    let realm = String::from_utf8_lossy(realm).into_owned();
    let key = long_term_key(PasswordAlgorithm::Md5, &cred.username, &realm, &cred.password);
    let mut session = Session { username: cred.username, realm, nonce: nonce.to_vec(), key };

    let reply = session.request(&socket, Method::Allocate, &[(attr::REQUESTED_TRANSPORT, &udp)], None)?;
    let msg = Message::parse(&reply).map_err(|e| anyhow!("unparsable Allocate answer: {e}"))?;
    let relayed = msg
        .get(attr::XOR_RELAYED_ADDRESS)
        .and_then(|v| attr::decode_xor_address(v, msg.transaction_id()).ok())
        .ok_or_else(|| anyhow!("Allocate answer without XOR-RELAYED-ADDRESS"))?;
    let mut alloc = Allocation { socket, relayed, session, peer: target.peer };
    alloc.session.request(&alloc.socket, Method::CreatePermission, &[], Some(alloc.peer))?;
    alloc.bind_channel()?;
    Ok(alloc)
}

impl Allocation {
    fn bind_channel(&mut self) -> anyhow::Result<()> {
        let [hi, lo] = CHANNEL.to_be_bytes();
        self.session.request(
            &self.socket,
            Method::ChannelBind,
            &[(attr::CHANNEL_NUMBER, &[hi, lo, 0, 0])],
            Some(self.peer),
        )?;
        Ok(())
    }

    /// Refreshes the allocation, and its channel (which refreshes the permission), so that runs
    /// longer than the 300 s permission lifetime keep relaying.
    pub fn refresh(&mut self) -> anyhow::Result<()> {
        self.session.request(&self.socket, Method::Refresh, &[(attr::LIFETIME, &600u32.to_be_bytes())], None)?;
        self.bind_channel()
    }
}

impl Allocation {
    /// Ends the allocation as a browser does when a call closes (Refresh with LIFETIME 0), so
    /// the relay frees it at once instead of when its lifetime runs out.
    pub fn delete(mut self) -> anyhow::Result<()> {
        self.session.request(&self.socket, Method::Refresh, &[(attr::LIFETIME, &0u32.to_be_bytes())], None)?;
        Ok(())
    }
}

/// Refreshes every allocation; returns how many failed.
pub fn refresh_all(allocs: &mut [Allocation]) -> usize {
    allocs.iter_mut().map(|a| a.refresh()).filter(Result::is_err).count()
}

/// Allocations kept past the 300 s permission lifetime: refreshed (with their channels) whenever
/// `REFRESH_EVERY` has passed since the last time, before a measurement.
pub struct Held {
    pub allocations: Vec<Allocation>,
    refreshed: Instant,
}

impl Held {
    pub fn new(allocations: Vec<Allocation>) -> Self {
        Held { allocations, refreshed: Instant::now() }
    }

    pub fn keep_fresh(&mut self) -> anyhow::Result<()> {
        if self.refreshed.elapsed() >= REFRESH_EVERY {
            let failed = refresh_all(&mut self.allocations);
            anyhow::ensure!(failed == 0, "{failed} allocations failed to refresh");
            self.refreshed = Instant::now();
        }
        Ok(())
    }
}

impl Session {
    /// An authenticated request; a 438 (stale nonce) is answered once with the new nonce. Error
    /// answers are errors.
    fn request(
        &mut self,
        socket: &UdpSocket,
        method: Method,
        attrs: &[(u16, &[u8])],
        peer: Option<SocketAddr>,
    ) -> anyhow::Result<Vec<u8>> {
        for _ in 0..2 {
            let tid: TransactionId = rand::random();
            let request =
                signed_request(method, &tid, attrs, peer, &self.username, &self.realm, &self.nonce, &self.key);
            let reply = transact(socket, &request, &tid)?;
            let msg = Message::parse(&reply).map_err(|e| anyhow!("unparsable {} answer: {e}", method.name()))?;
            if msg.message_type().class == Class::Success {
                return Ok(reply);
            }
            let code = msg.get(attr::ERROR_CODE).and_then(|v| attr::decode_error_code(v).ok()).map(|(c, _)| c);
            match (code, msg.get(attr::NONCE)) {
                (Some(438), Some(nonce)) => self.nonce = nonce.to_vec(),
                _ => bail!("{} failed: {}", method.name(), describe(&msg)),
            }
        }
        bail!("{} failed: stale nonce twice", method.name())
    }
}

/// Requests sent again because no answer came in time, over the whole process: a server that
/// drops requests under load shows up here, not only as a slower allocation rate.
pub static RETRANSMITTED: AtomicUsize = AtomicUsize::new(0);

/// Sends `request` and waits for the answer with its transaction id, retransmitting.
fn transact(socket: &UdpSocket, request: &[u8], tid: &TransactionId) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    for (attempt, wait) in RETRANSMITS.into_iter().enumerate() {
        if attempt > 0 {
            RETRANSMITTED.fetch_add(1, Ordering::Relaxed);
        }
        socket.send(request).context("send request")?;
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).context("set read timeout")?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    // Anything else (ChannelData still in flight, a late answer) is skipped.
                    if n >= 20 && buf[8..20] == tid[..] {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => return Err(e).context("receive answer"),
            }
        }
    }
    bail!("no answer after {} tries", RETRANSMITS.len())
}

fn describe(msg: &Message<'_>) -> String {
    match msg.get(attr::ERROR_CODE).and_then(|v| attr::decode_error_code(v).ok()) {
        Some((code, reason)) => format!("{code} {reason}"),
        None => format!("{:?} {:?}", msg.message_type().method, msg.message_type().class),
    }
}
