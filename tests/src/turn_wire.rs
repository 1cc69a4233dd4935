//! A small blocking TURN client that speaks the wire protocol itself, for what no third-party
//! client here does: RFC 6062 (Connect, ConnectionBind, ConnectionAttempt), stream clients that
//! misbehave on purpose, and clients inside network namespaces.
//!
//! Messages are built and parsed with the relay's own codec (`turn_server::proto::stun`), but the
//! long-term key comes from `ice_config::long_term_key` and every authenticated response's
//! MESSAGE-INTEGRITY is checked, so a response the client accepts is one the relay signed with
//! the key the client derived on its own side. Every wait has a deadline.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use turn_server::proto::framing;
use turn_server::proto::stun::integrity::Integrity;
use turn_server::proto::stun::{attr, Class, Message, MessageBuilder, MessageType, Method, TransactionId};

/// REQUESTED-TRANSPORT protocol numbers.
pub const UDP: u8 = 17;
pub const TCP: u8 = 6;

/// How long one transaction may take in total (UDP retransmits within it).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// What carries the client's frames to the relay.
#[derive(Debug)]
pub enum Wire {
    Udp {
        socket: UdpSocket,
        server: SocketAddr,
    },
    /// TURN over TCP; `buf` holds bytes read but not yet framed.
    Tcp {
        stream: TcpStream,
        buf: Vec<u8>,
    },
}

impl Wire {
    /// A UDP socket on an ephemeral port of the address family (and loopback-ness) of `server`.
    pub fn udp(server: SocketAddr) -> std::io::Result<Self> {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
        let socket = UdpSocket::bind(local)?;
        Ok(Wire::Udp { socket, server })
    }

    /// A UDP socket bound to `local` (e.g. `127.0.0.2:0`, to come from another source address).
    pub fn udp_from(local: SocketAddr, server: SocketAddr) -> std::io::Result<Self> {
        Ok(Wire::Udp { socket: UdpSocket::bind(local)?, server })
    }

    /// A TCP connection to `server`, connected within 5 s.
    pub fn tcp(server: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(Wire::Tcp { stream, buf: Vec::new() })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Wire::Udp { socket, .. } => socket.local_addr(),
            Wire::Tcp { stream, .. } => stream.local_addr(),
        }
    }

    fn is_udp(&self) -> bool {
        matches!(self, Wire::Udp { .. })
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        match self {
            Wire::Udp { socket, server } => socket.send_to(frame, *server).map(drop),
            Wire::Tcp { stream, .. } => stream.write_all(frame),
        }
        .map_err(|e| format!("send failed: {e}"))
    }

    /// The next frame (STUN message or ChannelData) before `deadline`; `Ok(None)` on timeout,
    /// `Err` when the connection was closed or failed.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self {
                Wire::Udp { socket, server } => {
                    socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
                    let mut buf = vec![0u8; 65_536];
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) if from == *server => {
                            buf.truncate(n);
                            return Ok(Some(buf));
                        }
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                        // ICMP errors from an earlier send: keep waiting.
                        Err(_) => std::thread::sleep(left.min(Duration::from_millis(50))),
                    }
                }
                Wire::Tcp { stream, buf } => {
                    if let Some(len) = framing::frame_len(buf).map_err(|e| format!("bad framing from relay: {e}"))? {
                        // For ChannelData the length includes the stream padding.
                        return Ok(Some(buf.drain(..len).collect()));
                    }
                    stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
                    let mut chunk = [0u8; 16 * 1024];
                    match stream.read(&mut chunk) {
                        Ok(0) => return Err("connection closed by the relay".to_owned()),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                        Err(e) => return Err(format!("read failed: {e}")),
                    }
                }
            }
        }
    }

    /// The TCP stream, for raw use after a ConnectionBind (bytes already buffered come with it).
    pub fn into_tcp(self) -> Option<(TcpStream, Vec<u8>)> {
        match self {
            Wire::Tcp { stream, buf } => Some((stream, buf)),
            Wire::Udp { .. } => None,
        }
    }
}

/// An attribute of a request: raw bytes, or an address XORed with the request's transaction id.
#[derive(Debug, Clone)]
pub enum Attr {
    Raw(u16, Vec<u8>),
    Xor(u16, SocketAddr),
}

/// An owned copy of a response or indication.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: Method,
    pub class: Class,
    pub tid: TransactionId,
    pub attrs: Vec<(u16, Vec<u8>)>,
    /// MESSAGE-INTEGRITY checked with the client's key: `Some(true)` valid, `Some(false)`
    /// invalid, `None` when the message had none or the client had no key yet.
    pub integrity_ok: Option<bool>,
}

impl Reply {
    fn from_message(msg: &Message<'_>, key: Option<&[u8]>) -> Self {
        let integrity_ok = key.and_then(|k| match msg.check_integrity(k) {
            Integrity::Missing => None,
            Integrity::Valid => Some(true),
            Integrity::Invalid => Some(false),
        });
        Reply {
            method: msg.message_type().method,
            class: msg.message_type().class,
            tid: *msg.transaction_id(),
            attrs: msg.attributes().map(|a| (a.code, a.value.to_vec())).collect(),
            integrity_ok,
        }
    }

    pub fn get(&self, code: u16) -> Option<&[u8]> {
        self.attrs.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    pub fn error_code(&self) -> Option<u16> {
        self.get(attr::ERROR_CODE).and_then(|v| attr::decode_error_code(v).ok()).map(|(c, _)| c)
    }

    pub fn error_text(&self) -> String {
        self.get(attr::ERROR_CODE)
            .and_then(|v| attr::decode_error_code(v).ok())
            .map(|(c, r)| format!("{c} {r}"))
            .unwrap_or_default()
    }

    pub fn xor_address(&self, code: u16) -> Option<SocketAddr> {
        attr::decode_xor_address(self.get(code)?, &self.tid).ok()
    }

    pub fn plain_address(&self, code: u16) -> Option<SocketAddr> {
        attr::decode_plain_address(self.get(code)?).ok()
    }

    pub fn u32_attr(&self, code: u16) -> Option<u32> {
        attr::decode_u32(self.get(code)?).ok()
    }

    pub fn is_success(&self) -> bool {
        self.class == Class::Success
    }

    /// One line for failure messages.
    pub fn describe(&self) -> String {
        match self.class {
            Class::Error => format!("{} error {}", self.method.name(), self.error_text()),
            c => format!("{} {c:?}", self.method.name()),
        }
    }
}

/// Something other than a response that arrived while waiting: indications and ChannelData.
#[derive(Debug, Clone)]
pub enum Incoming {
    Indication(Reply),
    ChannelData { channel: u16, data: Vec<u8> },
}

/// The result of a successful Allocate.
#[derive(Debug, Clone, Copy)]
pub struct Allocation {
    pub relayed: SocketAddr,
    pub mapped: Option<SocketAddr>,
    pub lifetime: Option<u32>,
}

/// Data from a peer: its address (`None` for ChannelData, which names a channel instead) and
/// the bytes.
pub type Received = (Option<SocketAddr>, Vec<u8>);

/// A TURN client with long-term credentials (the 401 nonce dance is done on first use).
#[derive(Debug)]
pub struct TurnClient {
    wire: Wire,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    /// Indications and ChannelData that arrived while a transaction was waiting.
    pending: VecDeque<Incoming>,
}

impl TurnClient {
    pub fn new(wire: Wire, username: &str, password: &str) -> Self {
        TurnClient {
            wire,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: None,
            nonce: None,
            key: None,
            pending: VecDeque::new(),
        }
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    pub fn into_wire(self) -> Wire {
        self.wire
    }

    fn set_realm_nonce(&mut self, reply: &Reply) -> bool {
        let (Some(realm), Some(nonce)) = (reply.get(attr::REALM), reply.get(attr::NONCE)) else { return false };
        let realm = String::from_utf8_lossy(realm).into_owned();
        let key = ice_config::long_term_key(ice_config::PasswordAlgorithm::Md5, &self.username, &realm, &self.password);
        self.key = Some(key.as_bytes().to_vec());
        self.realm = Some(realm);
        self.nonce = Some(nonce.to_vec());
        true
    }

    fn build(&self, method: Method, attrs: &[Attr], authenticate: bool) -> (TransactionId, Vec<u8>) {
        self.build_signed(method, attrs, authenticate, &[])
    }

    /// A request signed with the credentials learned so far, with `after_integrity` placed
    /// between MESSAGE-INTEGRITY and FINGERPRINT (where RFC 8489 says a server must ignore them).
    pub fn build_signed(
        &self,
        method: Method,
        attrs: &[Attr],
        authenticate: bool,
        after_integrity: &[Attr],
    ) -> (TransactionId, Vec<u8>) {
        let tid: TransactionId = rand::random();
        let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), &tid);
        for a in attrs {
            match a {
                Attr::Raw(code, value) => b.attr(*code, value),
                Attr::Xor(code, addr) => b.xor_address(*code, addr),
            };
        }
        if let (true, Some(realm), Some(nonce), Some(key)) = (authenticate, &self.realm, &self.nonce, &self.key) {
            b.attr(attr::USERNAME, self.username.as_bytes());
            b.attr(attr::REALM, realm.as_bytes());
            b.attr(attr::NONCE, nonce);
            b.integrity_sha1(key);
        }
        for a in after_integrity {
            match a {
                Attr::Raw(code, value) => b.attr(*code, value),
                Attr::Xor(code, addr) => b.xor_address(*code, addr),
            };
        }
        b.fingerprint();
        (tid, b.finish())
    }

    /// One transaction without credentials handling: sends (and over UDP resends every 500 ms)
    /// until a response with the same transaction id arrives.
    pub fn transact_raw(&mut self, tid: TransactionId, request: &[u8]) -> Result<Reply, String> {
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            self.wire.send(request)?;
            let resend_at = if self.wire.is_udp() { Instant::now() + Duration::from_millis(500) } else { deadline };
            loop {
                let wait = resend_at.min(deadline);
                match self.wire.recv(wait)? {
                    None if Instant::now() >= deadline => {
                        return Err(format!("no response within {TRANSACTION_TIMEOUT:?}"));
                    }
                    None => break,
                    Some(frame) => {
                        if let Some(reply) = self.classify(&frame) {
                            if reply.tid == tid && matches!(reply.class, Class::Success | Class::Error) {
                                return Ok(reply);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Parses a frame; responses are returned, indications and ChannelData queued.
    fn classify(&mut self, frame: &[u8]) -> Option<Reply> {
        if frame.first().is_some_and(|b| b >> 6 == 1) && frame.len() >= 4 {
            let channel = u16::from_be_bytes([frame[0], frame[1]]);
            let len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
            let data = frame.get(4..4 + len)?.to_vec();
            self.pending.push_back(Incoming::ChannelData { channel, data });
            return None;
        }
        let msg = Message::parse(frame).ok()?;
        let reply = Reply::from_message(&msg, self.key.as_deref());
        if reply.class == Class::Indication {
            self.pending.push_back(Incoming::Indication(reply));
            return None;
        }
        Some(reply)
    }

    /// An authenticated request: a 401 or 438 carrying REALM and NONCE is answered once with
    /// fresh credentials. A success response must carry valid MESSAGE-INTEGRITY.
    pub fn request(&mut self, method: Method, attrs: &[Attr]) -> Result<Reply, String> {
        let (tid, msg) = self.build(method, attrs, true);
        let mut reply = self.transact_raw(tid, &msg)?;
        if matches!(reply.error_code(), Some(401 | 438)) && self.set_realm_nonce(&reply) {
            let (tid, msg) = self.build(method, attrs, true);
            reply = self.transact_raw(tid, &msg)?;
        }
        if reply.is_success() && reply.integrity_ok != Some(true) {
            return Err(format!(
                "{} success response without valid MESSAGE-INTEGRITY (integrity_ok = {:?})",
                method.name(),
                reply.integrity_ok
            ));
        }
        Ok(reply)
    }

    /// A request that must succeed; the error names the method and the relay's reason.
    pub fn request_ok(&mut self, method: Method, attrs: &[Attr]) -> Result<Reply, String> {
        let reply = self.request(method, attrs)?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(reply.describe())
        }
    }

    /// An unauthenticated Binding request: the reflexive address.
    pub fn binding(&mut self) -> Result<Reply, String> {
        let (tid, msg) = self.build(Method::Binding, &[], false);
        self.transact_raw(tid, &msg)
    }

    /// Allocate with REQUESTED-TRANSPORT `protocol` ([`UDP`] or [`TCP`]).
    pub fn allocate(&mut self, protocol: u8) -> Result<Allocation, String> {
        self.allocate_with(&[Attr::Raw(attr::REQUESTED_TRANSPORT, vec![protocol, 0, 0, 0])])
    }

    /// A UDP allocation with an IPv6 relayed address (REQUESTED-ADDRESS-FAMILY; IPv4 is the
    /// default whatever the client's own family).
    pub fn allocate_ipv6(&mut self) -> Result<Allocation, String> {
        self.allocate_with(&[
            Attr::Raw(attr::REQUESTED_TRANSPORT, vec![UDP, 0, 0, 0]),
            Attr::Raw(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
        ])
    }

    fn allocate_with(&mut self, attrs: &[Attr]) -> Result<Allocation, String> {
        let reply = self.request_ok(Method::Allocate, attrs)?;
        let relayed = reply
            .xor_address(attr::XOR_RELAYED_ADDRESS)
            .ok_or_else(|| "Allocate success without XOR-RELAYED-ADDRESS".to_owned())?;
        Ok(Allocation {
            relayed,
            mapped: reply.xor_address(attr::XOR_MAPPED_ADDRESS),
            lifetime: reply.u32_attr(attr::LIFETIME),
        })
    }

    pub fn create_permission(&mut self, peer: SocketAddr) -> Result<Reply, String> {
        self.request(Method::CreatePermission, &[Attr::Xor(attr::XOR_PEER_ADDRESS, peer)])
    }

    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<Reply, String> {
        let mut number = channel.to_be_bytes().to_vec();
        number.extend_from_slice(&[0, 0]);
        self.request(
            Method::ChannelBind,
            &[Attr::Raw(attr::CHANNEL_NUMBER, number), Attr::Xor(attr::XOR_PEER_ADDRESS, peer)],
        )
    }

    /// RFC 6062 Connect; the reply (success carries CONNECTION-ID).
    pub fn connect(&mut self, peer: SocketAddr) -> Result<Reply, String> {
        self.request(Method::Connect, &[Attr::Xor(attr::XOR_PEER_ADDRESS, peer)])
    }

    /// RFC 6062 ConnectionBind for `id`, sent on this (fresh, data) connection.
    pub fn connection_bind(&mut self, id: u32) -> Result<Reply, String> {
        self.request(Method::ConnectionBind, &[Attr::Raw(attr::CONNECTION_ID, id.to_be_bytes().to_vec())])
    }

    /// ConnectionBind for `id` with `extra` raw bytes in the same write right behind it, as a
    /// client may pipeline its first data (credentials must already be known: no 401 retry).
    pub fn connection_bind_pipelined(&mut self, id: u32, extra: &[u8]) -> Result<Reply, String> {
        let attrs = [Attr::Raw(attr::CONNECTION_ID, id.to_be_bytes().to_vec())];
        let (tid, mut msg) = self.build(Method::ConnectionBind, &attrs, true);
        msg.extend_from_slice(extra);
        self.wire.send(&msg)?;
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            let Some(frame) = self.wire.recv(deadline)? else {
                return Err(format!("no ConnectionBind response within {TRANSACTION_TIMEOUT:?}"));
            };
            if let Some(reply) = self.classify(&frame) {
                if reply.tid == tid {
                    return Ok(reply);
                }
            }
        }
    }

    /// Refresh with LIFETIME `secs` (0 deletes the allocation).
    pub fn refresh(&mut self, secs: u32) -> Result<Reply, String> {
        self.request(Method::Refresh, &[Attr::Raw(attr::LIFETIME, secs.to_be_bytes().to_vec())])
    }

    /// A Send indication to `peer`.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), String> {
        let tid: TransactionId = rand::random();
        let mut b = MessageBuilder::new(MessageType::new(Method::Send, Class::Indication), &tid);
        b.xor_address(attr::XOR_PEER_ADDRESS, &peer);
        b.attr(attr::DATA, data);
        self.wire.send(&b.finish())
    }

    /// ChannelData on a bound channel (padded to 4 bytes over streams).
    pub fn send_channel_data(&mut self, channel: u16, data: &[u8]) -> Result<(), String> {
        let len = u16::try_from(data.len()).map_err(|_| "ChannelData too long".to_owned())?;
        let mut frame = Vec::with_capacity(4 + data.len() + 3);
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        if !self.wire.is_udp() {
            frame.resize(frame.len() + framing::stream_padding(frame.len()), 0);
        }
        self.wire.send(&frame)
    }

    /// The next indication or ChannelData before `within` passes.
    pub fn next_incoming(&mut self, within: Duration) -> Result<Option<Incoming>, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.pending.pop_front() {
                return Ok(Some(i));
            }
            match self.wire.recv(deadline)? {
                None => return Ok(None),
                Some(frame) => {
                    let _ = self.classify(&frame);
                }
            }
        }
    }

    /// Waits for a Data indication (or ChannelData, reported with the channel's peer unknown as
    /// `None`) and returns `(peer, data)`.
    pub fn recv_data(&mut self, within: Duration) -> Result<Option<Received>, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left)? {
                None => return Ok(None),
                Some(Incoming::ChannelData { data, .. }) => return Ok(Some((None, data))),
                Some(Incoming::Indication(r)) if r.method == Method::Data => {
                    let peer = r.xor_address(attr::XOR_PEER_ADDRESS);
                    let data = r.get(attr::DATA).unwrap_or_default().to_vec();
                    return Ok(Some((peer, data)));
                }
                Some(Incoming::Indication(_)) => {}
            }
        }
    }

    /// Uses the very credential of `other` (username, password, realm, nonce and key), as a
    /// client's data connection must for ConnectionBind; it also saves the 401 round trip. (A
    /// second REST credential for the same user minted in another second has another username.)
    pub fn share_credentials_of(&mut self, other: &TurnClient) {
        self.username.clone_from(&other.username);
        self.password.clone_from(&other.password);
        self.realm.clone_from(&other.realm);
        self.nonce.clone_from(&other.nonce);
        self.key.clone_from(&other.key);
    }
}
