//! The webrtc-rs `turn` client over a socket that counts what crosses it.
//!
//! The client decides by itself when to use Send indications and when ChannelData; counting the
//! packets on its socket lets a test assert that a ChannelBind really succeeded and that the
//! server then relayed data to the client as ChannelData (not only as Data indications).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use crate::stun::{self, Class};

/// STUN methods (RFC 8656 section 18).
pub mod method {
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// What kind of packet crossed the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Packet {
    Stun { method: u16, class: ClassKey },
    ChannelData,
    Other,
}

/// [`Class`] as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClassKey {
    Request,
    Indication,
    Success,
    Error,
}

impl From<Class> for ClassKey {
    fn from(c: Class) -> Self {
        match c {
            Class::Request => Self::Request,
            Class::Indication => Self::Indication,
            Class::Success => Self::Success,
            Class::Error => Self::Error,
        }
    }
}

fn classify(buf: &[u8]) -> Packet {
    match buf.first() {
        // RFC 8656 section 12: channel numbers 0x4000-0x4FFF; the first two bits are 01.
        Some(b) if b & 0xC0 == 0x40 => Packet::ChannelData,
        _ => match stun::parse(buf) {
            Some(r) => Packet::Stun { method: r.method, class: r.class.into() },
            None => Packet::Other,
        },
    }
}

/// Packet counts in each direction.
#[derive(Debug, Default)]
pub struct Stats {
    sent: Mutex<BTreeMap<Packet, u64>>,
    received: Mutex<BTreeMap<Packet, u64>>,
    /// Error codes of error responses received, in order.
    errors: Mutex<Vec<(u16, u16)>>,
    /// LIFETIME of every Allocate success response received, in order.
    allocate_lifetimes: Mutex<Vec<u32>>,
}

impl Stats {
    fn count(map: &Mutex<BTreeMap<Packet, u64>>, p: Packet) {
        if let Ok(mut m) = map.lock() {
            *m.entry(p).or_default() += 1;
        }
    }

    fn get(map: &Mutex<BTreeMap<Packet, u64>>, p: Packet) -> u64 {
        map.lock().map(|m| m.get(&p).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// How many packets of this kind the client sent.
    pub fn sent(&self, p: Packet) -> u64 {
        Self::get(&self.sent, p)
    }

    /// How many packets of this kind the client received.
    pub fn received(&self, p: Packet) -> u64 {
        Self::get(&self.received, p)
    }

    /// (method, code) of every error response received.
    pub fn error_responses(&self) -> Vec<(u16, u16)> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// LIFETIME (seconds) of every Allocate success response received.
    pub fn allocate_lifetimes(&self) -> Vec<u32> {
        self.allocate_lifetimes.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A one-line summary for failure messages.
    pub fn summary(&self) -> String {
        let fmt = |m: &Mutex<BTreeMap<Packet, u64>>| {
            m.lock()
                .map(|m| m.iter().map(|(k, v)| format!("{k:?}={v}")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        format!(
            "sent: [{}]; received: [{}]; error responses (method, code): {:?}",
            fmt(&self.sent),
            fmt(&self.received),
            self.error_responses()
        )
    }
}

/// Shorthand for a STUN packet kind.
pub fn stun_packet(method: u16, class: ClassKey) -> Packet {
    Packet::Stun { method, class }
}

/// A tokio UDP socket that counts packets for [`Stats`].
pub struct SniffConn {
    socket: UdpSocket,
    stats: Arc<Stats>,
}

impl SniffConn {
    fn note_received(&self, buf: &[u8]) {
        let p = classify(buf);
        match p {
            Packet::Stun { method, class: ClassKey::Error } => {
                if let Some(code) = stun::parse(buf).and_then(|r| r.error_code) {
                    if let Ok(mut e) = self.stats.errors.lock() {
                        e.push((method, code));
                    }
                }
            }
            Packet::Stun { method: method::ALLOCATE, class: ClassKey::Success } => {
                if let Some(lifetime) = stun::parse(buf).and_then(|r| r.lifetime) {
                    if let Ok(mut l) = self.stats.allocate_lifetimes.lock() {
                        l.push(lifetime);
                    }
                }
            }
            _ => {}
        }
        Stats::count(&self.stats.received, p);
    }
}

#[async_trait]
impl Conn for SniffConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let n = self.socket.recv(buf).await?;
        self.note_received(&buf[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        self.note_received(&buf[..n]);
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Stats::count(&self.stats.sent, classify(buf));
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        Stats::count(&self.stats.sent, classify(buf));
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Bound for every client operation: the client's own retransmissions give up only after ~40 s.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client (listening) with its packet counters.
pub struct TurnClient {
    pub client: Client,
    pub stats: Arc<Stats>,
    pub local: SocketAddr,
}

/// The relayed transport address of an allocation, as a `Conn`.
pub type Relay = Box<dyn Conn + Send + Sync>;

impl TurnClient {
    /// Binds 127.0.0.1:0 and starts the client's read loop; no request is sent yet.
    pub async fn connect(server: SocketAddr, username: &str, password: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client socket");
        let local = socket.local_addr().expect("client local addr");
        let stats = Arc::new(Stats::default());
        let conn = Arc::new(SniffConn { socket, stats: Arc::clone(&stats) });
        let client = Client::new(ClientConfig {
            stun_serv_addr: server.to_string(),
            turn_serv_addr: server.to_string(),
            username: username.to_owned(),
            password: password.to_owned(),
            // The client takes the realm from the server's 401 response.
            realm: String::new(),
            software: "e2e-tests".to_owned(),
            rto_in_ms: 0,
            conn,
            vnet: None,
        })
        .await
        .expect("create turn client");
        client.listen().await.expect("start turn client read loop");
        Self { client, stats, local }
    }

    /// Allocate, bounded by [`OP_TIMEOUT`]. The error is the client's text (it carries the
    /// STUN error code, e.g. "error 401").
    pub async fn allocate(&self) -> Result<Relay, String> {
        match tokio::time::timeout(OP_TIMEOUT, self.client.allocate()).await {
            Err(_) => Err(format!("allocate timed out after {OP_TIMEOUT:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(relay)) => Ok(Box::new(relay)),
        }
    }

    /// Closes the client (its read loop and pending transactions).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(OP_TIMEOUT, self.client.close()).await;
    }
}

/// `relay.send_to`, bounded by [`OP_TIMEOUT`]. The first send to a peer blocks on the
/// CreatePermission transaction, so a refused permission comes back here as an error.
pub async fn send_to(relay: &Relay, data: &[u8], peer: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(OP_TIMEOUT, relay.send_to(data, peer)).await {
        Err(_) => Err(format!("send_to {peer} timed out after {OP_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) => Ok(()),
    }
}

/// `relay.recv_from`, bounded by `within`; `None` on timeout.
pub async fn recv_from(relay: &Relay, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(within, relay.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            buf.truncate(n);
            Some((buf, from))
        }
        _ => None,
    }
}
