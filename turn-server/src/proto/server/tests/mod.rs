//! Core tests: every request and error path, driven through the contract (`io.rs`) by a small
//! in-test driver, at a time moved by hand from a fixed epoch. One module per seam of the core.
#![allow(clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ice_config::{long_term_key, LongTermKey, PasswordAlgorithm, RestSecrets, StaticUserSecret};

use super::super::allocation::ClientTransport;
use super::super::auth::CredentialStore;
use super::super::peer_policy::{PeerPolicy, PeerPolicyConfig};
use super::super::stun::attr;
use super::super::stun::integrity::Integrity;
use super::super::stun::{Class, Message, MessageBuilder, MessageType, Method};
use super::*;
use crate::proto::time::Instant;
use crate::proto::{Lifetimes, Quotas, RelayIp, ServerConfig};

const REALM: &str = "example.org";
const SECRET: &str = "rest-secret";
const PEER: &str = "93.184.216.34:5000";
const T0_UNIX: u64 = 1_800_000_000;

/// The relay sockets the in-test driver holds (bound for real by nothing: the core only needs
/// the answers a driver would give).
#[derive(Default)]
struct Sockets {
    open: HashSet<SocketAddr>,
    /// Addresses another process holds: binding them fails with `InUse`.
    taken_elsewhere: HashSet<SocketAddr>,
    opened_total: usize,
}

impl Sockets {
    fn open(&mut self, addr: SocketAddr) -> Result<(), BindError> {
        if self.taken_elsewhere.contains(&addr) {
            return Err(BindError::InUse);
        }
        assert!(self.open.insert(addr), "{addr} opened twice");
        self.opened_total += 1;
        Ok(())
    }

    fn close(&mut self, addr: SocketAddr) {
        assert!(self.open.remove(&addr), "{addr} closed but not open");
    }
}

fn config() -> ServerConfig {
    let mut static_users = std::collections::HashMap::new();
    static_users.insert("alice".to_owned(), StaticUserSecret::Password("alice-pw".into()));
    ServerConfig {
        realm: REALM.into(),
        software: Some("turn-server test".into()),
        credentials: CredentialStore {
            rest: Some(RestSecrets::new([SECRET]).unwrap()),
            rest_separator: ':',
            static_users,
            max_lifetime_secs: Some(7 * 86_400),
        },
        nonce_lifetime_secs: 600,
        unauthenticated_rate: 0,
        relay_ips: vec![
            RelayIp { bind: "10.0.0.10".parse().unwrap(), advertised: "192.0.2.10".parse().unwrap() },
            RelayIp { bind: "2001:db8::10".parse().unwrap(), advertised: "2001:db8::10".parse().unwrap() },
        ],
        min_port: 50000,
        max_port: 50099,
        lifetimes: Lifetimes::default(),
        quotas: Quotas::default(),
        peer_policy: PeerPolicy::new(PeerPolicyConfig::default()),
        no_stun: false,
        nat_discovery: None,
        bandwidth: Default::default(),
        alternate_servers: Vec::new(),
        capacity: 0,
        nonce_keys: Vec::new(),
    }
}

/// A small driver: hands the core its inputs at a hand-moved time from a fixed epoch, answers its
/// `OpenRelay` outputs from `sockets`, and keeps the rest for the test to look at.
struct Harness {
    server: Server,
    sockets: Sockets,
    elapsed: Duration,
    transmits: VecDeque<Transmit>,
    events: Vec<Event>,
    commands: VecDeque<TcpCommand>,
    offloads: VecDeque<OffloadCommand>,
    /// The last `Output::Timeout`.
    timeout: Option<Instant>,
}

impl Harness {
    fn new(cfg: ServerConfig) -> Self {
        Self::with_server(Server::new(cfg, [7; 32]))
    }

    fn with_server(server: Server) -> Self {
        Harness {
            server,
            sockets: Sockets::default(),
            elapsed: Duration::ZERO,
            transmits: VecDeque::new(),
            events: Vec::new(),
            commands: VecDeque::new(),
            offloads: VecDeque::new(),
            timeout: None,
        }
    }

    fn now(&self) -> Now {
        Now { instant: Instant::EPOCH, unix_secs: T0_UNIX }.after(self.elapsed)
    }

    /// Carries out every output the core has queued.
    fn drive(&mut self) {
        let now = self.now();
        loop {
            match self.server.poll_output() {
                Output::Transmit(t) => self.transmits.push_back(t),
                Output::OpenRelay { addr, .. } => {
                    let result = self.sockets.open(addr);
                    self.server.relay_opened(now, addr, result);
                }
                Output::CloseRelay { addr } => self.sockets.close(addr),
                Output::Tcp(c) => self.commands.push_back(c),
                Output::Offload(c) => self.offloads.push_back(c),
                Output::Event(e) => self.events.push(e),
                Output::Timeout(at) => {
                    self.timeout = at;
                    return;
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
        let now = self.now();
        self.server.handle_timeout(now);
        self.drive();
    }

    /// Sends a datagram; returns the single reply, if any.
    fn send(&mut self, tuple: FiveTuple, data: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        let out = self.server.handle_client(now, tuple, data);
        assert!(out.is_none(), "a request must not relay data");
        let reply = self.transmit().map(|t| {
            assert_eq!(t.tuple, tuple);
            t.data
        });
        assert!(self.transmit().is_none(), "one reply per request");
        reply
    }

    fn relay(&mut self, tuple: FiveTuple, data: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let now = self.now();
        let out = self.server.handle_client(now, tuple, data);
        self.drive();
        out.map(|o| (o.relay, o.peer, data[o.start..o.end].to_vec()))
    }

    fn transmit(&mut self) -> Option<Transmit> {
        self.drive();
        self.transmits.pop_front()
    }

    fn command(&mut self) -> Option<TcpCommand> {
        self.drive();
        self.commands.pop_front()
    }

    /// The fast-path commands issued since the last call.
    fn offloads(&mut self) -> Vec<OffloadCommand> {
        self.drive();
        self.offloads.drain(..).collect()
    }

    fn timeout(&mut self) -> Option<Instant> {
        self.drive();
        self.timeout
    }

    fn events(&mut self) -> Vec<Event> {
        self.drive();
        std::mem::take(&mut self.events)
    }

    fn drop_user(&mut self, user: &str) -> usize {
        let dropped = self.server.drop_user(self.now(), user);
        self.drive();
        dropped
    }

    fn connection_closed(&mut self, tuple: FiveTuple) {
        self.server.connection_closed(self.now(), tuple);
        self.drive();
    }
}

fn tuple(client: &str) -> FiveTuple {
    FiveTuple {
        client: client.parse().unwrap(),
        server: "10.0.0.10:3478".parse().unwrap(),
        transport: ClientTransport::Udp,
    }
}

/// A TURN client's view: credentials and the nonce it learned.
struct Client {
    tuple: FiveTuple,
    username: String,
    key: LongTermKey,
    nonce: Vec<u8>,
    next_tid: u8,
    sha256: bool,
}

impl Client {
    fn rest(client: &str, user: &str, expires_at: u64) -> Self {
        let username = format!("{expires_at}:{user}");
        let password = ice_config::rest_password(SECRET.as_bytes(), &username);
        Self::with_password(client, &username, &password)
    }

    fn with_password(client: &str, username: &str, password: &str) -> Self {
        Client {
            tuple: tuple(client),
            username: username.into(),
            key: long_term_key(PasswordAlgorithm::Md5, username, REALM, password),
            nonce: Vec::new(),
            next_tid: 1,
            sha256: false,
        }
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next_tid += 1;
        [self.next_tid; 12]
    }

    /// An authenticated request with extra attributes.
    fn request(&mut self, method: Method, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let tid = self.tid();
        self.request_with_tid(method, attrs, tid)
    }

    fn request_with_tid(&self, method: Method, attrs: &[(u16, Vec<u8>)], tid: [u8; 12]) -> Vec<u8> {
        let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), &tid);
        for (code, value) in attrs {
            b.attr(*code, value);
        }
        b.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce);
        if self.sha256 {
            b.attr(attr::PASSWORD_ALGORITHMS, &super::reply::password_algorithms_value());
            b.attr(attr::PASSWORD_ALGORITHM, &[0, 2, 0, 0]);
            b.integrity_sha256(self.key.as_bytes());
        } else {
            b.integrity_sha1(self.key.as_bytes());
        }
        b.fingerprint();
        b.finish()
    }

    fn unauthenticated(&mut self, method: Method, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let tid = self.tid();
        let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), &tid);
        for (code, value) in attrs {
            b.attr(*code, value);
        }
        b.finish()
    }

    /// The first round trip of every session: learn the nonce from a 401.
    fn learn_nonce(&mut self, h: &mut Harness) {
        let req = self.unauthenticated(Method::Allocate, &[udp()]);
        let reply = h.send(self.tuple, &req).unwrap();
        let msg = Message::parse(&reply).unwrap();
        assert_eq!(error_code(&msg), 401);
        self.nonce = msg.get(attr::NONCE).unwrap().to_vec();
    }

    fn allocate(&mut self, h: &mut Harness, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        if self.nonce.is_empty() {
            self.learn_nonce(h);
        }
        let mut attrs = vec![udp()];
        attrs.extend_from_slice(extra);
        let req = self.request(Method::Allocate, &attrs);
        h.send(self.tuple, &req).unwrap()
    }

    /// Allocates with `extra` attributes; returns the verified answer.
    fn allocated(&mut self, h: &mut Harness, extra: &[(u16, Vec<u8>)]) -> Message<'static> {
        let reply = self.allocate(h, extra);
        self.verify(&reply)
    }

    /// Sends `req` on this client's tuple; returns the verified answer.
    fn ask(&self, h: &mut Harness, req: &[u8]) -> Message<'static> {
        let reply = h.send(self.tuple, req).expect("an answer");
        self.verify(&reply)
    }

    fn verify(&self, reply: &[u8]) -> Message<'static> {
        let leaked: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
        let msg = Message::parse(leaked).unwrap();
        assert_eq!(msg.check_integrity(self.key.as_bytes()), Integrity::Valid, "response integrity");
        assert!(msg.has_fingerprint());
        msg
    }
}

fn udp() -> (u16, Vec<u8>) {
    (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

fn lifetime(secs: u32) -> (u16, Vec<u8>) {
    (attr::LIFETIME, secs.to_be_bytes().to_vec())
}

fn peer_attr(peer: &str, tid_source: &Client) -> impl Fn([u8; 12]) -> (u16, Vec<u8>) {
    let peer: SocketAddr = peer.parse().unwrap();
    let _ = tid_source;
    move |tid| {
        let mut v = vec![0u8; attr::xor_address_len(&peer)];
        attr::encode_xor_address(&mut v, &peer, &tid);
        (attr::XOR_PEER_ADDRESS, v)
    }
}

/// Builds an authenticated request whose XOR-PEER-ADDRESS is encoded with its own transaction id.
fn peer_request(c: &mut Client, method: Method, peer: &str, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let tid = c.tid();
    let mut attrs = extra.to_vec();
    attrs.push(peer_attr(peer, c)(tid));
    c.request_with_tid(method, &attrs, tid)
}

fn error_code(msg: &Message<'_>) -> u16 {
    assert_eq!(msg.message_type().class, Class::Error, "expected an error response");
    attr::decode_error_code(msg.get(attr::ERROR_CODE).unwrap()).unwrap().0
}

fn relayed(msg: &Message<'_>) -> Vec<SocketAddr> {
    msg.attributes()
        .filter(|a| a.code == attr::XOR_RELAYED_ADDRESS)
        .map(|a| attr::decode_xor_address(a.value, msg.transaction_id()).unwrap())
        .collect()
}

fn lifetime_of(msg: &Message<'_>) -> u32 {
    attr::decode_u32(msg.get(attr::LIFETIME).unwrap()).unwrap()
}

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    v.extend_from_slice(payload);
    crate::proto::channel_data::write_header(&mut v, channel, payload.len());
    v
}

fn send_indication(peer: &str, data: &[u8]) -> Vec<u8> {
    let tid = [0xAB; 12];
    let peer: SocketAddr = peer.parse().unwrap();
    let mut b = MessageBuilder::new(MessageType::new(Method::Send, Class::Indication), &tid);
    b.xor_address(attr::XOR_PEER_ADDRESS, &peer).attr(attr::DATA, data);
    b.finish()
}

mod abuse;
mod allocate;
mod auth;
mod binding;
mod offload;
mod operations;
mod refresh;
mod relay;
mod reload;
mod tcp;
