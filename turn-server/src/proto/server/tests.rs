//! Core tests: every request and error path, driven through the public API with a fake socket
//! table and a clock moved by hand.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ice_config::{long_term_key, LongTermKey, PasswordAlgorithm, RestSecrets, StaticUserSecret};

use super::super::allocation::ClientTransport;
use super::super::auth::CredentialStore;
use super::super::peer_policy::{PeerPolicy, PeerPolicyConfig};
use super::super::stun::attr;
use super::super::stun::integrity::Integrity;
use super::super::stun::{Class, Message, MessageBuilder, MessageType, Method};
use super::*;
use crate::proto::{Lifetimes, Quotas, RelayIp, ServerConfig};

const REALM: &str = "example.org";
const SECRET: &str = "rest-secret";
const PEER: &str = "93.184.216.34:5000";
const T0_UNIX: u64 = 1_800_000_000;

#[derive(Default)]
struct FakeSockets {
    open: HashSet<SocketAddr>,
    /// Addresses another process holds.
    taken_elsewhere: HashSet<SocketAddr>,
    opened_total: usize,
}

impl RelaySockets for FakeSockets {
    fn open(&mut self, addr: SocketAddr, _kind: SocketKind) -> Result<(), BindError> {
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

struct Harness {
    server: Server,
    sockets: FakeSockets,
    t0: Instant,
    elapsed: Duration,
}

impl Harness {
    fn new(cfg: ServerConfig) -> Self {
        Self::with_server(Server::new(cfg, [7; 32]))
    }

    fn with_server(server: Server) -> Self {
        Harness { server, sockets: FakeSockets::default(), t0: Instant::now(), elapsed: Duration::ZERO }
    }

    fn now(&self) -> Now {
        Now { instant: self.t0 + self.elapsed, unix_secs: T0_UNIX + self.elapsed.as_secs() }
    }

    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
        let now = self.now().instant;
        self.server.handle_timeout(now, &mut self.sockets);
    }

    /// Sends a datagram; returns the single reply, if any.
    fn send(&mut self, tuple: FiveTuple, data: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        let out = self.server.handle_client(now, tuple, data, &mut self.sockets);
        assert!(out.is_none(), "a request must not relay data");
        let reply = self.server.poll_transmit().map(|t| {
            assert_eq!(t.tuple, tuple);
            t.data
        });
        assert!(self.server.poll_transmit().is_none(), "one reply per request");
        reply
    }

    fn relay(&mut self, tuple: FiveTuple, data: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let now = self.now();
        let out = self.server.handle_client(now, tuple, data, &mut self.sockets);
        out.map(|o| (o.relay, o.peer, o.data.to_vec()))
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
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

// ---- STUN Binding ----

#[test]
fn binding_returns_reflexive_address() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:40000");
    let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]).finish();
    let reply = h.send(t, &req).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Binding, Class::Success));
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        t.client
    );
    assert_eq!(msg.get(attr::SOFTWARE).unwrap(), b"turn-server test");
    assert!(msg.has_fingerprint());
}

#[test]
fn binding_with_unknown_required_attribute_gets_420() {
    let mut h = Harness::new(config());
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]);
    b.attr(0x0042, b"?");
    let reply = h.send(tuple("203.0.113.5:1"), &b.finish()).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&msg), 420);
    assert_eq!(msg.get(attr::UNKNOWN_ATTRIBUTES).unwrap(), &[0x00, 0x42]);
}

#[test]
fn no_stun_drops_binding_but_not_turn() {
    let mut cfg = config();
    cfg.no_stun = true;
    let mut h = Harness::new(cfg);
    let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[1; 12]).finish();
    assert!(h.send(tuple("203.0.113.5:1"), &req).is_none());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    assert_eq!(msg.message_type().class, Class::Success);
}

// ---- Authentication ----

#[test]
fn unauthenticated_allocate_is_challenged() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let req = c.unauthenticated(Method::Allocate, &[udp()]);
    let reply = h.send(c.tuple, &req).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(error_code(&msg), 401);
    assert_eq!(msg.get(attr::REALM).unwrap(), REALM.as_bytes());
    assert!(msg.get(attr::NONCE).unwrap().starts_with(b"obMatJos2"));
    assert_eq!(msg.get(attr::PASSWORD_ALGORITHMS).unwrap(), &[0, 1, 0, 0, 0, 2, 0, 0]);
    assert!(msg.integrity().is_none());
    assert!(msg.get(attr::SOFTWARE).is_none(), "challenges stay small");
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rest_credential_allocates_with_protected_response() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = c.allocate(&mut h, &[]);
    let msg = c.verify(&reply);
    assert_eq!(msg.message_type(), MessageType::new(Method::Allocate, Class::Success));
    let relays = relayed(&msg);
    assert_eq!(relays.len(), 1);
    // Advertised (public) address, bound private one.
    assert_eq!(relays[0].ip(), "192.0.2.10".parse::<IpAddr>().unwrap());
    assert!((50000..=50099).contains(&relays[0].port()));
    assert!(h.sockets.open.contains(&SocketAddr::new("10.0.0.10".parse().unwrap(), relays[0].port())));
    assert_eq!(lifetime_of(&msg), 600);
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        c.tuple.client
    );
    assert!(matches!(h.events()[..], [Event::AllocationCreated { .. }]));
}

#[test]
fn static_user_allocates() {
    let mut h = Harness::new(config());
    let mut c = Client::with_password("203.0.113.5:1", "alice", "alice-pw");
    let msg = {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    assert_eq!(msg.message_type().class, Class::Success);
}

#[test]
fn wrong_password_and_expired_credential_get_401() {
    let mut h = Harness::new(config());
    let mut wrong = Client::with_password("203.0.113.5:1", &format!("{}:bob", T0_UNIX + 3600), "not-the-password");
    let msg = Message::parse(&wrong.allocate(&mut h, &[])).map(|m| error_code(&m)).unwrap();
    assert_eq!(msg, 401);
    let mut expired = Client::rest("203.0.113.5:2", "bob", T0_UNIX - 1);
    assert_eq!(error_code(&Message::parse(&expired.allocate(&mut h, &[])).unwrap()), 401);
    let mut unknown = Client::with_password("203.0.113.5:3", "mallory", "x");
    assert_eq!(error_code(&Message::parse(&unknown.allocate(&mut h, &[])).unwrap()), 401);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rotated_secret_still_verifies_old_credentials() {
    let mut cfg = config();
    cfg.credentials.rest = Some(RestSecrets::new(["new-secret", SECRET]).unwrap());
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(
        {
            let r = c.allocate(&mut h, &[]);
            c.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );
}

#[test]
fn stale_or_foreign_nonce_gets_438_with_a_fresh_one() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 7200);
    c.learn_nonce(&mut h);
    h.advance(Duration::from_secs(601));
    let req = c.request(Method::Allocate, &[udp()]);
    let msg = Message::parse(&h.send(c.tuple, &req).unwrap())
        .map(|m| (error_code(&m), m.get(attr::NONCE).map(<[u8]>::to_vec)))
        .unwrap();
    assert_eq!(msg.0, 438);
    let fresh = msg.1.unwrap();
    assert_ne!(fresh, c.nonce);
    // A nonce issued to another address is not accepted either.
    let mut other = Client::rest("203.0.113.6:1", "bob", T0_UNIX + 7200);
    other.nonce = fresh.clone();
    let req = other.request(Method::Allocate, &[udp()]);
    assert_eq!(error_code(&Message::parse(&h.send(other.tuple, &req).unwrap()).unwrap()), 438);
    // With the fresh nonce the original client succeeds.
    c.nonce = fresh;
    let req = c.request(Method::Allocate, &[udp()]);
    assert_eq!(c.verify(&h.send(c.tuple, &req).unwrap()).message_type().class, Class::Success);
}

#[test]
fn missing_username_with_integrity_is_400() {
    let mut h = Harness::new(config());
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &[3; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).integrity_sha1(b"k");
    assert_eq!(error_code(&Message::parse(&h.send(tuple("203.0.113.5:1"), &b.finish()).unwrap()).unwrap()), 400);
}

#[test]
fn sha256_password_algorithm_is_negotiated() {
    let mut h = Harness::new(config());
    let username = format!("{}:bob", T0_UNIX + 3600);
    let password = ice_config::rest_password(SECRET.as_bytes(), &username);
    let mut c = Client::with_password("203.0.113.5:1", &username, &password);
    c.key = long_term_key(PasswordAlgorithm::Sha256, &username, REALM, &password);
    c.sha256 = true;
    let reply = c.allocate(&mut h, &[]);
    let msg = Message::parse(&reply).unwrap();
    assert_eq!(msg.message_type().class, Class::Success);
    assert!(matches!(msg.integrity(), Some(crate::proto::stun::message::IntegrityAttr::Sha256 { .. })));
    assert_eq!(msg.check_integrity(c.key.as_bytes()), Integrity::Valid);
}

#[test]
fn password_algorithm_without_the_echoed_list_is_400() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[udp(), (attr::PASSWORD_ALGORITHM, vec![0, 2, 0, 0])]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 400);
}

// ---- Allocate ----

#[test]
fn allocate_retransmission_and_mismatch() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let tid = [0x55; 12];
    let req = c.request_with_tid(Method::Allocate, &[udp()], tid);
    let first = relayed(&c.verify(&h.send(c.tuple, &req).unwrap()));
    let again = relayed(&c.verify(&h.send(c.tuple, &req).unwrap()));
    assert_eq!(first, again);
    assert_eq!(h.sockets.opened_total, 1);
    let other = c.request(Method::Allocate, &[udp()]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &other).unwrap())), 437);
}

#[test]
fn allocate_attribute_errors() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    type Attrs = Vec<(u16, Vec<u8>)>;
    let cases: Vec<(Attrs, u16)> = vec![
        (vec![], 400),                                               // no REQUESTED-TRANSPORT
        (vec![(attr::REQUESTED_TRANSPORT, vec![99, 0, 0, 0])], 442), // neither UDP nor TCP
        (vec![(attr::REQUESTED_TRANSPORT, vec![17, 0])], 400),       // malformed
        (vec![udp(), (0x0031, vec![1])], 420),                       // unknown required
        (vec![udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![3, 0, 0, 0])], 440),
        (vec![udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![1, 0, 0, 0])], 400),
        (
            vec![
                udp(),
                (attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]),
                (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
            ],
            400,
        ),
        (vec![udp(), (attr::EVEN_PORT, vec![0x80, 0, 0, 0]), (attr::RESERVATION_TOKEN, vec![1; 8])], 400),
        (vec![udp(), (attr::RESERVATION_TOKEN, vec![1; 8])], 508), // unknown token
        (vec![udp(), (attr::LIFETIME, vec![1])], 400),
    ];
    for (attrs, want) in cases {
        let req = c.request(Method::Allocate, &attrs);
        let msg = c.verify(&h.send(c.tuple, &req).unwrap());
        assert_eq!(error_code(&msg), want, "attributes {attrs:?}");
        if want == 420 {
            assert_eq!(msg.get(attr::UNKNOWN_ATTRIBUTES).unwrap(), &[0x00, 0x31]);
        }
    }
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.ports_in_use(), 0);
}

#[test]
fn ipv6_and_dual_stack_allocations() {
    let mut h = Harness::new(config());
    let mut v6 = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = {
        let r = v6.allocate(&mut h, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
        v6.verify(&r)
    };
    let r = relayed(&msg);
    assert!(r.len() == 1 && r[0].is_ipv6());
    let mut dual = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = {
        let r = dual.allocate(&mut h, &[(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
        dual.verify(&r)
    };
    let r = relayed(&msg);
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ipv4() && r[1].is_ipv6());
}

#[test]
fn dual_stack_without_ipv6_relay_reports_address_error() {
    let mut cfg = config();
    cfg.relay_ips.truncate(1);
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = {
        let r = c.allocate(&mut h, &[(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
        c.verify(&r)
    };
    assert_eq!(relayed(&msg).len(), 1);
    let aec = msg.get(attr::ADDRESS_ERROR_CODE).unwrap();
    assert_eq!((aec[0], aec[2], aec[3]), (2, 4, 40));
    let mut only6 = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = {
        let r = only6.allocate(&mut h, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
        only6.verify(&r)
    };
    assert_eq!(error_code(&msg), 440);
}

#[test]
fn even_port_reservation_is_claimed_or_released() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let msg = {
        let r = a.allocate(&mut h, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
        a.verify(&r)
    };
    let port = relayed(&msg)[0].port();
    assert_eq!(port % 2, 0);
    let token = msg.get(attr::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(h.server.ports_in_use(), 2);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let msg = {
        let r = b.allocate(&mut h, &[(attr::RESERVATION_TOKEN, token.clone())]);
        b.verify(&r)
    };
    assert_eq!(relayed(&msg)[0].port(), port + 1);
    // The token is single use.
    let mut c = Client::rest("203.0.113.5:3", "bob", T0_UNIX + 3600);
    assert_eq!(
        error_code(&{
            let r = c.allocate(&mut h, &[(attr::RESERVATION_TOKEN, token)]);
            c.verify(&r)
        }),
        508
    );

    // An unclaimed reservation gives its port back after about 30 s.
    let mut d = Client::rest("203.0.113.5:4", "bob", T0_UNIX + 3600);
    {
        let r = d.allocate(&mut h, &[(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
        d.verify(&r)
    };
    assert_eq!(h.server.ports_in_use(), 4);
    h.advance(Duration::from_secs(31));
    assert_eq!(h.server.ports_in_use(), 3);
    // Once every allocation expires, nothing is held: no port leaks.
    h.advance(Duration::from_secs(600));
    assert_eq!(h.server.ports_in_use(), 0);
    assert!(h.sockets.open.is_empty());
}

#[test]
fn ports_held_by_other_processes_are_skipped() {
    let mut cfg = config();
    cfg.min_port = 50000;
    cfg.max_port = 50001;
    let mut h = Harness::new(cfg);
    h.sockets.taken_elsewhere.insert("10.0.0.10:50000".parse().unwrap());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(
        relayed(&{
            let r = a.allocate(&mut h, &[]);
            a.verify(&r)
        })[0]
            .port(),
        50001
    );
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(
        error_code(&{
            let r = b.allocate(&mut h, &[]);
            b.verify(&r)
        }),
        508
    );
}

#[test]
fn quotas_per_user_and_total() {
    let mut cfg = config();
    cfg.quotas.per_user = 1;
    cfg.quotas.total = 2;
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    {
        let r = a.allocate(&mut h, &[]);
        a.verify(&r)
    };
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(
        error_code(&{
            let r = b.allocate(&mut h, &[]);
            b.verify(&r)
        }),
        486
    );
    let mut c = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    let mut d = Client::rest("203.0.113.5:4", "dave", T0_UNIX + 3600);
    assert_eq!(
        error_code(&{
            let r = d.allocate(&mut h, &[]);
            d.verify(&r)
        }),
        508
    );
    // Quota is given back when an allocation ends.
    let req = a.request(Method::Refresh, &[lifetime(0)]);
    a.verify(&h.send(a.tuple, &req).unwrap());
    let mut e = Client::rest("203.0.113.5:5", "bob", T0_UNIX + 3600);
    assert_eq!(
        {
            let r = e.allocate(&mut h, &[]);
            e.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );
}

#[test]
fn workers_sharing_a_ledger_share_quotas_ports_and_nonces() {
    let mut cfg = config();
    cfg.quotas.per_user = 1;
    cfg.relay_ips.truncate(1);
    cfg.max_port = cfg.min_port + 1;
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let mut one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let mut two = Harness::with_server(Server::with_ledger(cfg, [2; 32], ledger.clone()));
    let code = |h: &mut Harness, c: &mut Client| {
        let r = c.allocate(h, &[]);
        let m = c.verify(&r);
        if m.message_type().class == Class::Success {
            0
        } else {
            error_code(&m)
        }
    };
    let mut alice = Client::rest("203.0.113.5:1", "alice", T0_UNIX + 3600);
    assert_eq!(code(&mut one, &mut alice), 0);
    // The same user through the other worker: the quota is the relay's, not the worker's.
    let mut alice_again = Client::rest("203.0.113.6:1", "alice", T0_UNIX + 3600);
    assert_eq!(code(&mut two, &mut alice_again), 486);
    let mut bob = Client::rest("203.0.113.6:2", "bob", T0_UNIX + 3600);
    assert_eq!(code(&mut two, &mut bob), 0);
    let (a, b) = (one.sockets.open.iter().next().copied(), two.sockets.open.iter().next().copied());
    assert!(a.is_some() && a != b, "each port of the range goes to one worker only: {a:?} {b:?}");
    // Two ports, both held: a third allocation on either worker finds none.
    let mut carol = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    assert_eq!(code(&mut one, &mut carol), 508);
    assert_eq!((ledger.allocations(), ledger.ports_in_use()), (2, 2));
    // Ending an allocation on one worker frees its place for the other.
    let req = alice.request(Method::Refresh, &[lifetime(0)]);
    alice.verify(&one.send(alice.tuple, &req).expect("refresh answered"));
    assert_eq!(code(&mut two, &mut alice_again), 0);
    assert_eq!((ledger.allocations(), ledger.ports_in_use()), (2, 2));
    // A nonce one worker minted is good on the other (same key).
    let mut dave = Client::rest("203.0.113.5:4", "dave", T0_UNIX + 3600);
    dave.learn_nonce(&mut one);
    let req = dave.request(Method::Allocate, &[udp()]);
    let reply = two.send(dave.tuple, &req).expect("answered");
    // Authenticated (not 438 Stale Nonce), then refused only because both ports are held.
    assert_eq!(error_code(&dave.verify(&reply)), 508);
}

#[test]
fn lifetimes_are_clamped_and_allocations_expire() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(
        lifetime_of(&{
            let r = a.allocate(&mut h, &[lifetime(100_000)]);
            a.verify(&r)
        }),
        3600
    );
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(
        lifetime_of(&{
            let r = b.allocate(&mut h, &[lifetime(10)]);
            b.verify(&r)
        }),
        600
    );
    h.events();
    h.advance(Duration::from_secs(599));
    assert_eq!(h.server.allocation_count(), 2);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.allocation_count(), 1);
    let ended = h.events();
    assert!(matches!(&ended[..], [Event::AllocationEnded { reason: EndReason::Expired, .. }]));
    h.advance(Duration::from_secs(3000));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.ports_in_use(), 0);
    assert!(h.server.poll_timeout().is_none());
}

// ---- Refresh ----

#[test]
fn refresh_extends_deletes_and_survives_credential_expiry() {
    let mut h = Harness::new(config());
    // The credential expires 60 s into the call.
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 60);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    h.advance(Duration::from_secs(500));
    let req = c.request(Method::Refresh, &[lifetime(600)]);
    let msg = c.verify(&h.send(c.tuple, &req).unwrap());
    assert_eq!(lifetime_of(&msg), 600, "a call must not drop when its credential expires");
    h.advance(Duration::from_secs(500));
    assert_eq!(h.server.allocation_count(), 1);
    // 1000 s in, the nonce from the start is stale: 438, then the delete goes through.
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    let stale = Message::parse(&h.send(c.tuple, &req).unwrap())
        .map(|m| (error_code(&m), m.get(attr::NONCE).unwrap().to_vec()))
        .unwrap();
    assert_eq!(stale.0, 438);
    c.nonce = stale.1;
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    assert_eq!(lifetime_of(&c.verify(&h.send(c.tuple, &req).unwrap())), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.sockets.open.is_empty());
    // Refresh without an allocation.
    let req = c.request(Method::Refresh, &[]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 437);
}

#[test]
fn refresh_is_bounded_by_max_session() {
    let mut cfg = config();
    cfg.lifetimes.max_session = Some(Duration::from_secs(900));
    cfg.nonce_lifetime_secs = 100_000;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    h.advance(Duration::from_secs(500));
    let req = c.request(Method::Refresh, &[lifetime(3600)]);
    assert_eq!(lifetime_of(&c.verify(&h.send(c.tuple, &req).unwrap())), 400);
    h.advance(Duration::from_secs(401));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn refresh_with_other_family_is_443_and_other_username_441() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    let req = c.request(Method::Refresh, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 443);
    let mut other = Client::rest("203.0.113.5:1", "eve", T0_UNIX + 3600);
    other.nonce = c.nonce.clone();
    let req = other.request(Method::Refresh, &[]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 441);
}

// ---- Permissions, channels, data ----

#[test]
fn create_permission_refuses_unsafe_peers() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    for peer in ["127.0.0.1:9", "10.1.2.3:9", "169.254.169.254:80", "[::ffff:127.0.0.1]:9", "0.0.0.0:9"] {
        let req = peer_request(&mut c, Method::CreatePermission, peer, &[]);
        let msg = c.verify(&h.send(c.tuple, &req).unwrap());
        let want = if peer.starts_with('[') { 443 } else { 403 };
        assert_eq!(error_code(&msg), want, "peer {peer}");
    }
    let req = c.request(Method::CreatePermission, &[]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 400, "no XOR-PEER-ADDRESS");
}

#[test]
fn loopback_peers_only_when_allowed() {
    let mut cfg = config();
    cfg.peer_policy = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..PeerPolicyConfig::default() });
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    {
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    };
    let req = peer_request(&mut c, Method::CreatePermission, "127.0.0.1:9", &[]);
    assert_eq!(c.verify(&h.send(c.tuple, &req).unwrap()).message_type().class, Class::Success);
}

#[test]
fn send_indication_needs_a_permission_that_has_not_expired() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = relayed(&{
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    })[0];
    let ind = send_indication(PEER, b"hello");
    assert!(h.relay(c.tuple, &ind).is_none(), "no permission yet");
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    assert_eq!(c.verify(&h.send(c.tuple, &req).unwrap()).message_type().class, Class::Success);
    let (from, to, data) = h.relay(c.tuple, &ind).unwrap();
    assert_eq!((from.port(), to, &data[..]), (relay.port(), PEER.parse().unwrap(), &b"hello"[..]));
    h.advance(Duration::from_secs(300));
    assert!(h.relay(c.tuple, &ind).is_none(), "permission expired");
}

#[test]
fn channel_bind_and_channel_data_both_ways() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let advertised = relayed(&{
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    })[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let bad = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x3F, 0xFF, 0, 0])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &bad).unwrap())), 400);
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.verify(&h.send(c.tuple, &bind).unwrap()).message_type().class, Class::Success);
    // Same number to another peer, or the same peer on another number: 400.
    let clash = peer_request(
        &mut c,
        Method::ChannelBind,
        "93.184.216.34:5001",
        &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])],
    );
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &clash).unwrap())), 400);
    let clash = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x02, 0, 0])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &clash).unwrap())), 400);

    let (from, to, data) = h.relay(c.tuple, &channel_data(0x4001, b"media")).unwrap();
    assert_eq!((from, to, &data[..]), (bound_relay, PEER.parse().unwrap(), &b"media"[..]));
    assert!(h.relay(c.tuple, &channel_data(0x4002, b"x")).is_none(), "unbound channel");
    assert!(h.relay(c.tuple, &[0x40, 0x01, 0x00, 0x09, 1]).is_none(), "length past the end");

    // Peer to client over the channel: framed in place.
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"reply");
    let out = h
        .server
        .handle_peer(h.now().instant, bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5)
        .unwrap();
    assert_eq!(out.tuple, c.tuple);
    assert_eq!(&buf[out.start..out.end], &channel_data(0x4001, b"reply")[..]);
    // From an address without a permission: dropped.
    let stranger: SocketAddr = "93.184.216.99:1".parse().unwrap();
    assert!(h.server.handle_peer(h.now().instant, bound_relay, stranger, &mut buf, headroom, headroom + 5).is_none());
}

#[test]
fn peer_data_without_channel_becomes_data_indication() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let advertised = relayed(&{
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    })[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    c.verify(&h.send(c.tuple, &req).unwrap());
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"hello");
    let out = h
        .server
        .handle_peer(h.now().instant, bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5)
        .unwrap();
    let msg = Message::parse(&buf[out.start..out.end]).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::Data, Class::Indication));
    assert_eq!(
        attr::decode_xor_address(msg.get(attr::XOR_PEER_ADDRESS).unwrap(), msg.transaction_id()).unwrap(),
        PEER.parse().unwrap()
    );
    assert_eq!(msg.get(attr::DATA).unwrap(), b"hello");
}

#[test]
fn requests_without_allocation_get_437() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.learn_nonce(&mut h);
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 437);
    let req = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0, 0, 0])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 437);
    assert!(h.relay(c.tuple, &send_indication(PEER, b"x")).is_none());
    assert!(h.relay(c.tuple, &channel_data(0x4000, b"x")).is_none());
}

#[test]
fn unknown_method_request_is_400_and_garbage_is_dropped() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:1");
    let req = MessageBuilder::new(MessageType::new(Method::Other(0x0AB), Class::Request), &[1; 12]).finish();
    assert_eq!(error_code(&Message::parse(&h.send(t, &req).unwrap()).unwrap()), 400);
    for garbage in [&b""[..], b"\x00", b"\x00\x01\x00\x00", &[0xFF; 40], &[0x40, 0, 0, 0]] {
        assert!(h.send(t, garbage).is_none());
    }
    // Responses and indications other than Send are not answered.
    let resp = MessageBuilder::new(MessageType::new(Method::Binding, Class::Success), &[1; 12]).finish();
    assert!(h.send(t, &resp).is_none());
}

#[test]
fn stream_clients_get_padded_channel_data_and_lose_the_allocation_on_close() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    let advertised = relayed(&{
        let r = c.allocate(&mut h, &[]);
        c.verify(&r)
    })[0];
    let bound_relay = SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port());
    let bind = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.verify(&h.send(c.tuple, &bind).unwrap()).message_type().class, Class::Success);
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0xEEu8; headroom + 64];
    buf[headroom..headroom + 5].copy_from_slice(b"reply");
    let now = h.now().instant;
    let out = h.server.handle_peer(now, bound_relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + 5).unwrap();
    let mut want = channel_data(0x4001, b"reply");
    want.extend_from_slice(&[0, 0, 0]);
    assert_eq!(&buf[out.start..out.end], &want[..]);
    h.server.connection_closed(now, c.tuple, &mut h.sockets);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.sockets.open.is_empty());
    assert!(matches!(h.events().last(), Some(Event::AllocationEnded { reason: EndReason::ConnectionClosed, .. })));
}

fn discovery_config() -> ServerConfig {
    let mut cfg = config();
    cfg.nat_discovery = Some(crate::proto::NatDiscovery {
        primary_ip: "10.0.0.10".parse().unwrap(),
        alternate_ip: "10.0.0.11".parse().unwrap(),
        primary_port: 3478,
        alternate_port: 3479,
    });
    cfg
}

fn binding_with(attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &[9; 12]);
    for (code, value) in attrs {
        b.attr(*code, value);
    }
    b.finish()
}

#[test]
fn rfc5780_change_request_answers_from_the_other_address() {
    let mut h = Harness::new(discovery_config());
    let t = tuple("203.0.113.5:40000");
    let now = h.now();
    for (flags, from) in
        [(0u32, "10.0.0.10:3478"), (0x02, "10.0.0.10:3479"), (0x04, "10.0.0.11:3478"), (0x06, "10.0.0.11:3479")]
    {
        let attrs = if flags == 0 { vec![] } else { vec![(attr::CHANGE_REQUEST, flags.to_be_bytes().to_vec())] };
        assert!(h.server.handle_client(now, t, &binding_with(&attrs), &mut h.sockets).is_none());
        let out = h.server.poll_transmit().unwrap();
        let from: SocketAddr = from.parse().unwrap();
        let expect_redirect = (flags != 0).then_some((from, t.client));
        assert_eq!(out.redirect, expect_redirect, "flags {flags:#x}");
        let msg = Message::parse(&out.data).unwrap();
        assert_eq!(attr::decode_plain_address(msg.get(attr::RESPONSE_ORIGIN).unwrap()).unwrap(), from);
        assert_eq!(
            attr::decode_plain_address(msg.get(attr::OTHER_ADDRESS).unwrap()).unwrap(),
            "10.0.0.11:3479".parse().unwrap()
        );
    }
    // RESPONSE-PORT sends the answer to another port of the client.
    let attrs = vec![(attr::RESPONSE_PORT, vec![0x1F, 0x90, 0, 0])];
    assert!(h.server.handle_client(now, t, &binding_with(&attrs), &mut h.sockets).is_none());
    let out = h.server.poll_transmit().unwrap();
    assert_eq!(out.redirect, Some(("10.0.0.10:3478".parse().unwrap(), "203.0.113.5:8080".parse().unwrap())));
}

#[test]
fn rfc5780_attributes_only_where_configured() {
    let mut h = Harness::new(config());
    let t = tuple("203.0.113.5:40000");
    let reply = h.send(t, &binding_with(&[(attr::CHANGE_REQUEST, vec![0, 0, 0, 4])])).unwrap();
    assert_eq!(error_code(&Message::parse(&reply).unwrap()), 420);
    let reply = h.send(t, &binding_with(&[])).unwrap();
    let msg = Message::parse(&reply).unwrap();
    assert!(msg.get(attr::OTHER_ADDRESS).is_none() && msg.get(attr::RESPONSE_ORIGIN).is_none());
}

// ---- RFC 6062 TCP allocations ----

#[test]
fn tcp_allocation_connect_and_bind() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    let relay = relayed(&c.verify(&h.send(c.tuple, &req).unwrap()))[0];
    assert!(h.sockets.open.contains(&SocketAddr::new("10.0.0.10".parse().unwrap(), relay.port())));

    // Connect: the core asks the driver to connect, then answers with a CONNECTION-ID.
    let req = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert!(h.send(c.tuple, &req).is_none(), "answered once the driver reports");
    let Some(Command::ConnectPeer { id, peer, .. }) = h.server.poll_command() else { panic!("no ConnectPeer") };
    assert_eq!(peer, PEER.parse().unwrap());
    // A second Connect to the same peer while the first is open: 446.
    let again = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &again).unwrap())), 446);
    h.server.tcp_connect_result(h.now().instant, id, true);
    let reply = h.server.poll_transmit().unwrap();
    let msg = c.verify(&reply.data);
    assert_eq!(msg.message_type(), MessageType::new(Method::Connect, Class::Success));
    assert_eq!(attr::decode_u32(msg.get(attr::CONNECTION_ID).unwrap()).unwrap(), id);

    // ConnectionBind on a new data connection splices it.
    let mut data = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    data.username = c.username.clone();
    data.key = c.key.clone();
    data.tuple.transport = ClientTransport::Tcp;
    data.nonce = Message::parse(&h.send(data.tuple, &data.unauthenticated(Method::ConnectionBind, &[])).unwrap())
        .map(|m| m.get(attr::NONCE).unwrap().to_vec())
        .unwrap();
    let bind = data.request(Method::ConnectionBind, &[(attr::CONNECTION_ID, id.to_be_bytes().to_vec())]);
    assert_eq!(data.verify(&h.send(data.tuple, &bind).unwrap()).message_type().class, Class::Success);
    assert_eq!(h.server.poll_command(), Some(Command::Splice { id, data: data.tuple }));
    // The id is single use.
    let bind = data.request(Method::ConnectionBind, &[(attr::CONNECTION_ID, id.to_be_bytes().to_vec())]);
    assert_eq!(error_code(&data.verify(&h.send(data.tuple, &bind).unwrap())), 400);

    // Deleting the allocation closes its peer connections.
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    c.verify(&h.send(c.tuple, &req).unwrap());
    assert_eq!(h.server.poll_command(), Some(Command::ClosePeer { id }));
}

#[test]
fn tcp_allocation_refusals() {
    let mut h = Harness::new(config());
    // Over UDP, or with UDP-only attributes: 400.
    let mut udp_client = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    udp_client.learn_nonce(&mut h);
    let req = udp_client.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    assert_eq!(error_code(&udp_client.verify(&h.send(udp_client.tuple, &req).unwrap())), 400);
    let mut c = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(&mut h);
    let req =
        c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0]), (attr::EVEN_PORT, vec![0; 4])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 400);
    let req = c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    c.verify(&h.send(c.tuple, &req).unwrap());
    // A refused peer: 403, and no connect attempt.
    let req = peer_request(&mut c, Method::Connect, "127.0.0.1:7", &[]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 403);
    assert!(h.server.poll_command().is_none());
    // ChannelBind makes no sense on a TCP allocation.
    let req = peer_request(&mut c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0, 0, 0])]);
    assert_eq!(error_code(&c.verify(&h.send(c.tuple, &req).unwrap())), 400);
    // A peer that cannot be reached: 447.
    let req = peer_request(&mut c, Method::Connect, PEER, &[]);
    assert!(h.send(c.tuple, &req).is_none());
    let Some(Command::ConnectPeer { id, .. }) = h.server.poll_command() else { panic!("no ConnectPeer") };
    h.server.tcp_connect_result(h.now().instant, id, false);
    assert_eq!(error_code(&c.verify(&h.server.poll_transmit().unwrap().data)), 447);
}

#[test]
fn tcp_peer_connections_need_a_permission_and_expire_unbound() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.tuple.transport = ClientTransport::Tcp;
    c.learn_nonce(&mut h);
    let req = c.request(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    let relay = relayed(&c.verify(&h.send(c.tuple, &req).unwrap()))[0];
    let bound = SocketAddr::new("10.0.0.10".parse().unwrap(), relay.port());
    let now = h.now().instant;
    assert_eq!(h.server.tcp_peer_incoming(now, bound, PEER.parse().unwrap()), None, "no permission yet");
    let req = peer_request(&mut c, Method::CreatePermission, PEER, &[]);
    c.verify(&h.send(c.tuple, &req).unwrap());
    let id = h.server.tcp_peer_incoming(now, bound, PEER.parse().unwrap()).unwrap();
    let ind = h.server.poll_transmit().unwrap();
    let msg = Message::parse(&ind.data).unwrap();
    assert_eq!(msg.message_type(), MessageType::new(Method::ConnectionAttempt, Class::Indication));
    assert_eq!(attr::decode_u32(msg.get(attr::CONNECTION_ID).unwrap()).unwrap(), id);
    // Not bound within 30 s: closed.
    h.advance(Duration::from_secs(31));
    assert_eq!(h.server.poll_command(), Some(Command::ClosePeer { id }));
}

// ---- Abuse resistance ----

#[test]
fn challenges_are_rate_limited_per_source() {
    let mut cfg = config();
    cfg.unauthenticated_rate = 2;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let answered =
        (0..10).filter(|_| h.send(c.tuple, &c.unauthenticated(Method::Allocate, &[udp()])).is_some()).count();
    assert_eq!(answered, 4, "a burst of twice the rate, then silence");
    // Another source is unaffected, and time refills the bucket.
    let mut other = Client::rest("198.51.100.77:1", "bob", T0_UNIX + 3600);
    assert!(h.send(other.tuple, &other.unauthenticated(Method::Allocate, &[udp()])).is_some());
    h.elapsed += Duration::from_secs(1);
    assert!(h.send(c.tuple, &c.unauthenticated(Method::Allocate, &[udp()])).is_some());
}

#[test]
fn credentials_expiring_too_far_ahead_are_refused() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 10 * 365 * 86_400);
    assert_eq!(error_code(&Message::parse(&c.allocate(&mut h, &[])).unwrap()), 401);
    let mut ok = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 6 * 86_400);
    assert_eq!(
        {
            let r = ok.allocate(&mut h, &[]);
            ok.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );
}

#[test]
fn allocations_per_source_address_are_capped() {
    let mut cfg = config();
    cfg.quotas.per_source = 2;
    let mut h = Harness::new(cfg);
    for (i, want) in [(1, Class::Success), (2, Class::Success), (3, Class::Error)] {
        let mut c = Client::rest(&format!("203.0.113.5:{i}"), &format!("user{i}"), T0_UNIX + 3600);
        let msg = {
            let r = c.allocate(&mut h, &[]);
            c.verify(&r)
        };
        assert_eq!(msg.message_type().class, want);
        if want == Class::Error {
            assert_eq!(error_code(&msg), 486);
        }
    }
    let mut elsewhere = Client::rest("203.0.113.6:1", "user9", T0_UNIX + 3600);
    assert_eq!(
        {
            let r = elsewhere.allocate(&mut h, &[]);
            elsewhere.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );
}

// ---- Reload ----

#[test]
fn reload_rotates_secrets_without_dropping_live_allocations() {
    let mut h = Harness::new(config());
    let mut live = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(
        {
            let r = live.allocate(&mut h, &[]);
            live.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );

    let mut rotated = config();
    rotated.credentials.rest = Some(RestSecrets::new(["brand-new-secret"]).unwrap());
    rotated.peer_policy = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..PeerPolicyConfig::default() });
    rotated.realm = "other.example".into();
    assert_eq!(h.server.reload(rotated), vec!["realm"], "the realm needs a restart and is kept");
    assert_eq!(h.server.config().realm, REALM);

    // The call in progress keeps refreshing with the key it was created with.
    let req = live.request(Method::Refresh, &[lifetime(600)]);
    assert_eq!(lifetime_of(&live.verify(&h.send(live.tuple, &req).unwrap())), 600);
    // The new peer policy applies to new permissions at once.
    let req = peer_request(&mut live, Method::CreatePermission, "127.0.0.1:9", &[]);
    assert_eq!(live.verify(&h.send(live.tuple, &req).unwrap()).message_type().class, Class::Success);
    // New allocations need the new secret.
    let mut old = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&Message::parse(&old.allocate(&mut h, &[])).unwrap()), 401);
    let username = format!("{}:carol", T0_UNIX + 3600);
    let password = ice_config::rest_password(b"brand-new-secret", &username);
    let mut new = Client::with_password("203.0.113.5:3", &username, &password);
    assert_eq!(
        {
            let r = new.allocate(&mut h, &[]);
            new.verify(&r)
        }
        .message_type()
        .class,
        Class::Success
    );
}

// ---- Operations: drain, bandwidth caps, dropping a user ----

/// An allocation with a channel to PEER; returns the bound relay address.
fn allocation_with_channel(h: &mut Harness, c: &mut Client) -> SocketAddr {
    let advertised = relayed(&{
        let r = c.allocate(h, &[]);
        c.verify(&r)
    })[0];
    let bind = peer_request(c, Method::ChannelBind, PEER, &[(attr::CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0])]);
    assert_eq!(c.verify(&h.send(c.tuple, &bind).unwrap()).message_type().class, Class::Success);
    SocketAddr::new("10.0.0.10".parse().unwrap(), advertised.port())
}

fn from_peer(h: &mut Harness, relay: SocketAddr, len: usize) -> bool {
    let headroom = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; headroom + len + 4];
    h.server.handle_peer(h.now().instant, relay, PEER.parse().unwrap(), &mut buf, headroom, headroom + len).is_some()
}

#[test]
fn draining_redirects_new_allocations_and_keeps_existing_ones() {
    let mut cfg = config();
    let alternates: Vec<SocketAddr> = vec!["192.0.2.50:3478".parse().unwrap(), "192.0.2.51:3478".parse().unwrap()];
    cfg.alternate_servers = alternates.clone();
    cfg.alternate_servers.push("[2001:db8::50]:3478".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut live = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = allocation_with_channel(&mut h, &mut live);
    h.server.start_drain();
    assert!(h.server.is_draining());

    // New Allocates: 300 with the IPv4 alternates in turn, integrity-protected.
    let mut seen = Vec::new();
    for port in 2..4 {
        let mut c = Client::rest(&format!("203.0.113.6:{port}"), "carol", T0_UNIX + 3600);
        let reply = c.allocate(&mut h, &[]);
        let msg = c.verify(&reply);
        assert_eq!(error_code(&msg), 300);
        seen.push(attr::decode_plain_address(msg.get(attr::ALTERNATE_SERVER).unwrap()).unwrap());
    }
    assert_eq!(seen, alternates);
    assert_eq!(h.server.allocation_count(), 1);

    // The live allocation relays and refreshes as before.
    assert!(h.relay(live.tuple, &channel_data(0x4001, b"media")).is_some());
    assert!(from_peer(&mut h, relay, 100));
    let refresh = live.request(Method::Refresh, &[lifetime(600)]);
    assert_eq!(live.verify(&h.send(live.tuple, &refresh).unwrap()).message_type().class, Class::Success);
}

#[test]
fn draining_without_an_alternate_of_the_family_is_508() {
    let mut cfg = config();
    cfg.alternate_servers = vec!["[2001:db8::50]:3478".parse().unwrap()];
    let mut h = Harness::new(cfg);
    h.server.start_drain();
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = c.allocate(&mut h, &[]);
    let msg = c.verify(&reply);
    assert_eq!(error_code(&msg), 508);
    assert!(msg.get(attr::ALTERNATE_SERVER).is_none());
    assert_eq!(h.server.ports_in_use(), 0);
}

#[test]
fn per_allocation_cap_drops_over_the_rate_each_direction_on_its_own() {
    let mut cfg = config();
    cfg.bandwidth.per_allocation = 100_000;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let relay = allocation_with_channel(&mut h, &mut c);
    let payload = vec![0u8; 1000];
    let sent = (0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "one second's worth at 100 kB/s");
    // The other direction has its own allowance.
    let received = (0..150).filter(|_| from_peer(&mut h, relay, 1000)).count();
    assert_eq!(received, 100);
    assert_eq!(h.server.stats().bandwidth_dropped, [[50, 0], [50, 0]]);
    // Half a second later, half the allowance is back.
    h.advance(Duration::from_millis(500));
    let sent = (0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 50);
    // Dropped datagrams are not counted as relayed.
    assert_eq!(h.server.allocation(&c.tuple).unwrap().traffic.packets_to_peer, 150);
}

#[test]
fn per_user_cap_is_shared_by_the_users_allocations() {
    let mut cfg = config();
    cfg.bandwidth.per_user = 100_000;
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let mut other = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    allocation_with_channel(&mut h, &mut a);
    allocation_with_channel(&mut h, &mut b);
    allocation_with_channel(&mut h, &mut other);
    let payload = vec![0u8; 1000];
    let mut sent = (0..60).filter(|_| h.relay(a.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    sent += (0..60).filter(|_| h.relay(b.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "bob's two allocations share one allowance");
    assert!(h.relay(other.tuple, &channel_data(0x4001, &payload)).is_some(), "carol has her own");
    assert_eq!(h.server.stats().bandwidth_dropped[0], [0, 20]);
}

#[test]
fn per_user_cap_is_shared_across_workers() {
    let mut cfg = config();
    cfg.bandwidth.per_user = 100_000;
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let mut one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let mut two = Harness::with_server(Server::with_ledger(cfg, [2; 32], ledger));
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.6:1", "bob", T0_UNIX + 3600);
    allocation_with_channel(&mut one, &mut a);
    allocation_with_channel(&mut two, &mut b);
    let payload = vec![0u8; 1000];
    let mut sent = (0..60).filter(|_| one.relay(a.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    sent += (0..60).filter(|_| two.relay(b.tuple, &channel_data(0x4001, &payload)).is_some()).count();
    assert_eq!(sent, 100, "bob's allocations on two workers share one allowance");
}

#[test]
fn a_cap_set_by_reload_applies_to_live_allocations() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    allocation_with_channel(&mut h, &mut c);
    let payload = vec![0u8; 1000];
    assert_eq!((0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count(), 150);
    let mut capped = config();
    capped.bandwidth.per_allocation = 100_000;
    assert!(h.server.reload(capped).is_empty());
    assert_eq!((0..150).filter(|_| h.relay(c.tuple, &channel_data(0x4001, &payload)).is_some()).count(), 100);
}

#[test]
fn dropping_a_user_ends_only_their_allocations_and_frees_ports() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let mut other = Client::rest("203.0.113.5:3", "carol", T0_UNIX + 3600);
    for c in [&mut a, &mut b, &mut other] {
        let reply = c.allocate(&mut h, &[]);
        c.verify(&reply);
    }
    h.events();
    let now = h.now().instant;
    assert_eq!(h.server.drop_user(now, "bob", &mut h.sockets), 2);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.ports_in_use(), 1);
    assert_eq!(h.sockets.open.len(), 1);
    let ended =
        h.events().iter().filter(|e| matches!(e, Event::AllocationEnded { reason: EndReason::Dropped, .. })).count();
    assert_eq!(ended, 2);
    assert_eq!(h.server.drop_user(now, "nobody", &mut h.sockets), 0);
    // bob may allocate again at once.
    let mut again = Client::rest("203.0.113.5:4", "bob", T0_UNIX + 3600);
    let reply = again.allocate(&mut h, &[]);
    assert_eq!(again.verify(&reply).message_type().class, Class::Success);
}

#[test]
fn over_capacity_sends_new_allocations_to_the_fleet_and_serves_without_one() {
    let mut cfg = config();
    cfg.capacity = 1;
    let mut h = Harness::new(cfg);
    let mut first = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let reply = first.allocate(&mut h, &[]);
    assert_eq!(first.verify(&reply).message_type().class, Class::Success);
    // Full, but no other relay known: a soft limit, so the client is served.
    let mut second = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    let reply = second.allocate(&mut h, &[]);
    assert_eq!(second.verify(&reply).message_type().class, Class::Success);
    // With the fleet known: redirected to its best relays, in turn.
    let fleet: Vec<SocketAddr> = vec![
        "192.0.2.60:3478".parse().unwrap(),
        "192.0.2.61:3478".parse().unwrap(),
        "192.0.2.62:3478".parse().unwrap(),
    ];
    h.server.set_fleet_alternates(fleet.clone());
    let mut sent_to = Vec::new();
    for port in 3..6 {
        let mut c = Client::rest(&format!("203.0.113.5:{port}"), "carol", T0_UNIX + 3600);
        let reply = c.allocate(&mut h, &[]);
        let msg = c.verify(&reply);
        assert_eq!(error_code(&msg), 300);
        sent_to.push(attr::decode_plain_address(msg.get(attr::ALTERNATE_SERVER).unwrap()).unwrap());
    }
    assert_eq!(sent_to, vec![fleet[0], fleet[1], fleet[0]], "spread over the best two");
    assert_eq!(h.server.stats().redirects.get("capacity"), Some(&3));
    // Below capacity again: served here.
    let refresh = first.request(Method::Refresh, &[lifetime(0)]);
    first.verify(&h.send(first.tuple, &refresh).unwrap());
    let refresh = second.request(Method::Refresh, &[lifetime(0)]);
    second.verify(&h.send(second.tuple, &refresh).unwrap());
    let mut later = Client::rest("203.0.113.5:9", "dave", T0_UNIX + 3600);
    let reply = later.allocate(&mut h, &[]);
    assert_eq!(later.verify(&reply).message_type().class, Class::Success);
}
