//! `turn-server probe`: checks a deployment the way a client will use it. For each ICE URL it
//! connects, allocates with the given credentials, relays a datagram through the relay back to
//! itself, and reports addresses, round-trip time, and for failures the likely cause.

pub mod conn;

use std::net::SocketAddr;
use std::time::Duration;

use ice_config::{long_term_key, IceUrl, LongTermKey, PasswordAlgorithm, Scheme, Transport};
use serde::Serialize;

use self::conn::{Conn, Trust};
use crate::proto::stun::{attr, Class, Message, MessageBuilder, MessageType, Method, TransactionId};

/// Credentials to allocate with.
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub url: String,
    pub transport: &'static str,
    pub ok: bool,
    pub mapped: Option<SocketAddr>,
    pub relayed: Option<SocketAddr>,
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
    pub hint: Option<String>,
}

/// A failed step: what happened and what usually causes it.
struct Failure {
    error: String,
    hint: &'static str,
}

fn fail(error: impl Into<String>, hint: &'static str) -> Failure {
    Failure { error: error.into(), hint }
}

#[derive(Default)]
struct Progress {
    mapped: Option<SocketAddr>,
    relayed: Option<SocketAddr>,
    rtt: Option<Duration>,
}

pub fn probe(url: &IceUrl, creds: Option<&Credentials>, timeout: Duration, trust: &Trust<'_>) -> ProbeResult {
    let mut progress = Progress::default();
    let outcome = run(url, creds, timeout, trust, &mut progress);
    let (error, hint) = match outcome {
        Ok(()) => (None, None),
        Err(f) => (Some(f.error), Some(f.hint.to_owned())),
    };
    ProbeResult {
        url: url.to_string(),
        transport: url.transport.as_str(),
        ok: error.is_none(),
        mapped: progress.mapped,
        relayed: progress.relayed,
        rtt_ms: progress.rtt.map(|d| d.as_secs_f64() * 1000.0),
        error,
        hint,
    }
}

fn run(
    url: &IceUrl,
    creds: Option<&Credentials>,
    timeout: Duration,
    trust: &Trust<'_>,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let server = conn::resolve(url).map_err(|e| fail(e.to_string(), "the host name does not resolve: check DNS"))?;
    let mut conn = Conn::open(url, server, timeout, trust).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "nothing listens there: wrong port, or the listener is off",
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "no answer: a firewall drops it",
            _ if url.transport == Transport::Tls => {
                "TLS failed: certificate name or CA mismatch (--ca FILE), or not a TLS port"
            }
            _ => "cannot connect",
        };
        fail(e.to_string(), hint)
    })?;
    if url.scheme == Scheme::Stun {
        let tid = new_tid();
        let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &tid).finish();
        let (reply, rtt) = conn.transact(&req, &tid, timeout).map_err(no_answer)?;
        let msg = Message::parse(&reply).map_err(|e| fail(e.to_string(), "not a STUN server"))?;
        progress.mapped = xor_addr(&msg, attr::XOR_MAPPED_ADDRESS);
        progress.rtt = Some(rtt);
        return progress.mapped.map(|_| ()).ok_or_else(|| fail("no XOR-MAPPED-ADDRESS", "not a STUN server"));
    }
    let creds = creds.ok_or_else(|| fail("no credentials", "pass --secret, --username/--password or --signaling"))?;

    // Allocate: first unauthenticated to learn realm and nonce, as every client does.
    let udp = [17u8, 0, 0, 0];
    let tid = new_tid();
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &tid);
    b.attr(attr::REQUESTED_TRANSPORT, &udp);
    let (challenge, _) = conn.transact(&b.finish(), &tid, timeout).map_err(no_answer)?;
    let challenge = Message::parse(&challenge).map_err(|e| fail(e.to_string(), "not a TURN server"))?;
    let (Some(realm), Some(nonce)) = (challenge.get(attr::REALM), challenge.get(attr::NONCE)) else {
        return Err(fail(
            format!("expected 401, got {}", describe(&challenge)),
            "not a TURN server with long-term auth",
        ));
    };
    let realm = String::from_utf8_lossy(realm).into_owned();
    let nonce = nonce.to_vec();
    let key = long_term_key(PasswordAlgorithm::Md5, &creds.username, &realm, &creds.password);
    let session = Session { username: &creds.username, realm: &realm, nonce: &nonce, key: &key };

    let (reply, rtt) =
        session.request(&mut conn, Method::Allocate, &[(attr::REQUESTED_TRANSPORT, &udp)], None, timeout)?;
    let msg = Message::parse(&reply).map_err(|e| fail(e.to_string(), "garbled answer"))?;
    expect_success(&msg, "Allocate")?;
    progress.rtt = Some(rtt);
    progress.mapped = xor_addr(&msg, attr::XOR_MAPPED_ADDRESS);
    let relayed =
        xor_addr(&msg, attr::XOR_RELAYED_ADDRESS).ok_or_else(|| fail("no XOR-RELAYED-ADDRESS", "broken server"))?;
    progress.relayed = Some(relayed);

    // A datagram to our own relayed address comes back through the relay as a Data indication:
    // this proves the relay port range is reachable and the advertised address is right.
    let result = (|| {
        let (reply, _) = session.request(&mut conn, Method::CreatePermission, &[], Some(relayed), timeout)?;
        expect_success(
            &Message::parse(&reply).map_err(|e| fail(e.to_string(), "garbled answer"))?,
            "CreatePermission",
        )?;
        let payload = new_tid();
        let tid = new_tid();
        let mut send = MessageBuilder::new(MessageType::new(Method::Send, Class::Indication), &tid);
        send.xor_address(attr::XOR_PEER_ADDRESS, &relayed).attr(attr::DATA, &payload);
        conn.send(&send.finish()).map_err(|e| fail(e.to_string(), "connection lost"))?;
        let is_echo = |m: &Message<'_>| {
            m.message_type() == MessageType::new(Method::Data, Class::Indication)
                && m.get(attr::DATA) == Some(&payload[..])
        };
        let loop_rtt = conn.wait_for(timeout, is_echo).map_err(|_| {
            fail(
                "the relayed datagram did not come back",
                "the relay cannot reach its advertised address: firewall on the relay port range, or a wrong --external-ip",
            )
        })?;
        progress.rtt = Some(loop_rtt);
        Ok(())
    })();
    // Give the allocation back either way.
    let _ = session.request(&mut conn, Method::Refresh, &[(attr::LIFETIME, &[0, 0, 0, 0])], None, timeout);
    result
}

struct Session<'a> {
    username: &'a str,
    realm: &'a str,
    nonce: &'a [u8],
    key: &'a LongTermKey,
}

impl Session<'_> {
    fn request(
        &self,
        conn: &mut Conn,
        method: Method,
        attrs: &[(u16, &[u8])],
        peer: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Duration), Failure> {
        let tid = new_tid();
        let request = signed_request(method, &tid, attrs, peer, self.username, self.realm, self.nonce, self.key);
        conn.transact(&request, &tid, timeout).map_err(no_answer)
    }
}

/// A long-term-credential request as a client sends it: `attrs`, XOR-PEER-ADDRESS when a `peer`
/// is named, then USERNAME, REALM, NONCE, MESSAGE-INTEGRITY and FINGERPRINT. Shared with the
/// benchmark's load generator, so both speak to relays exactly alike.
#[allow(clippy::too_many_arguments)]
pub fn signed_request(
    method: Method,
    tid: &TransactionId,
    attrs: &[(u16, &[u8])],
    peer: Option<SocketAddr>,
    username: &str,
    realm: &str,
    nonce: &[u8],
    key: &LongTermKey,
) -> Vec<u8> {
    let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), tid);
    for (code, value) in attrs {
        b.attr(*code, value);
    }
    if let Some(peer) = peer {
        b.xor_address(attr::XOR_PEER_ADDRESS, &peer);
    }
    b.attr(attr::USERNAME, username.as_bytes()).attr(attr::REALM, realm.as_bytes());
    b.attr(attr::NONCE, nonce).integrity_sha1(key.as_bytes()).fingerprint();
    b.finish()
}

fn expect_success(msg: &Message<'_>, what: &str) -> Result<(), Failure> {
    if msg.message_type().class == Class::Success {
        return Ok(());
    }
    let code = msg.get(attr::ERROR_CODE).and_then(|v| attr::decode_error_code(v).ok()).map_or(0, |(c, _)| c);
    let hint = match code {
        401 => "401: secret mismatch or clock skew (REST usernames carry a unix expiry: check NTP on both ends)",
        403 => "403: the relay's peer policy refuses its own relayed address (loopback or private relay IP?)",
        437 => "437: allocation mismatch: a stale allocation on this 5-tuple",
        438 => "438: stale nonce twice: clock jumps on the server?",
        441 => "441: wrong credentials for this allocation",
        442 => "442: the relay does not offer UDP relaying",
        486 => "486: allocation quota reached for this user or address",
        508 => "508: the relay is out of ports or at its total quota",
        _ => "unexpected error from the server",
    };
    Err(fail(format!("{what} failed: {}", describe(msg)), hint))
}

fn describe(msg: &Message<'_>) -> String {
    match msg.get(attr::ERROR_CODE).and_then(|v| attr::decode_error_code(v).ok()) {
        Some((code, reason)) => format!("{code} {reason}"),
        None => format!("{:?} {:?}", msg.message_type().method, msg.message_type().class),
    }
}

fn no_answer(e: std::io::Error) -> Failure {
    let hint = match e.kind() {
        std::io::ErrorKind::TimedOut => "no answer: UDP/TCP blocked on the way, or nothing listens on that port",
        std::io::ErrorKind::ConnectionRefused => "port unreachable: nothing listens on that port",
        _ => "the connection failed",
    };
    fail(e.to_string(), hint)
}

fn xor_addr(msg: &Message<'_>, code: u16) -> Option<SocketAddr> {
    attr::decode_xor_address(msg.get(code)?, msg.transaction_id()).ok()
}

fn new_tid() -> TransactionId {
    rand::random()
}
