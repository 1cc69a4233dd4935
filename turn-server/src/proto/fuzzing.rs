//! Entry points for the fuzz targets in `fuzz/`: every parser of network input, and the whole core
//! fed one datagram. Each must return normally on any input; a panic is a bug.

use std::net::SocketAddr;
use std::time::Duration;

use ice_config::{long_term_key, PasswordAlgorithm, RestSecrets};

use super::auth::CredentialStore;
use super::peer_policy::{PeerPolicy, PeerPolicyConfig};
use super::server::{Now, Output, Server, Transmit, DATA_INDICATION_HEADROOM};
use super::stun::{attr, Class, Message, MessageBuilder, MessageType, Method};
use super::{channel_data, ClientTransport, FiveTuple, Lifetimes, Quotas, RelayIp, ServerConfig};
use crate::proto::time::Instant;

/// Parses `data` as STUN (decoding every attribute and checking integrity) and as ChannelData.
pub fn parse_message(data: &[u8]) {
    let _ = channel_data::parse(data);
    let Ok(msg) = Message::parse(data) else { return };
    let tid = *msg.transaction_id();
    for a in msg.attributes() {
        match a.code {
            attr::XOR_MAPPED_ADDRESS | attr::XOR_PEER_ADDRESS | attr::XOR_RELAYED_ADDRESS => {
                let _ = attr::decode_xor_address(a.value, &tid);
            }
            attr::MAPPED_ADDRESS => {
                let _ = attr::decode_plain_address(a.value);
            }
            attr::ERROR_CODE => {
                let _ = attr::decode_error_code(a.value);
            }
            attr::CHANNEL_NUMBER => {
                let _ = attr::decode_channel_number(a.value);
            }
            attr::REQUESTED_ADDRESS_FAMILY | attr::ADDITIONAL_ADDRESS_FAMILY => {
                let _ = attr::decode_family(a.value);
            }
            attr::EVEN_PORT => {
                let _ = attr::decode_even_port(a.value);
            }
            attr::PASSWORD_ALGORITHM => {
                let _ = attr::decode_password_algorithm(a.value);
            }
            attr::RESERVATION_TOKEN => {
                let _ = attr::decode_reservation_token(a.value);
            }
            _ => {
                let _ = attr::decode_u32(a.value);
            }
        }
    }
    let _ = msg.unknown_required().count();
    let key = long_term_key(PasswordAlgorithm::Md5, "user", "realm", "pass");
    let _ = msg.check_integrity(key.as_bytes());
}

/// A driver whose binds all succeed: carries out `server`'s outputs until it has none, returning
/// the transmits.
fn drive(server: &mut Server, now: Now) -> Vec<Transmit> {
    let mut transmits = Vec::new();
    loop {
        match server.poll_output() {
            Output::OpenRelay { addr, .. } => server.relay_opened(now, addr, Ok(())),
            Output::Transmit(t) => transmits.push(t),
            Output::Timeout(_) => return transmits,
            Output::CloseRelay { .. } | Output::Tcp(_) | Output::Offload(_) | Output::Event(_) => {}
        }
    }
}

/// Feeds `data` to a fresh server as a client datagram, then as peer data on a relay, then moves
/// time past every lifetime.
pub fn server_datagram(data: &[u8]) {
    let mut server = fuzz_server();
    let t0 = Instant::EPOCH;
    let now = Now { instant: t0, unix_secs: 1_800_000_000 };
    let tuple = FiveTuple {
        client: SocketAddr::from(([198, 51, 100, 1], 4000)),
        server: SocketAddr::from(([192, 0, 2, 1], 3478)),
        transport: ClientTransport::Udp,
    };
    let _ = server.handle_client(now, tuple, data);
    drive(&mut server, now);

    // Behind authentication: an allocation made with valid credentials, then the fuzz bytes as a
    // request signed with the same credentials, so the checks after MESSAGE-INTEGRITY are reached.
    let session = FiveTuple { client: SocketAddr::from(([198, 51, 100, 2], 4000)), ..tuple };
    if let Some(nonce) = challenge(&mut server, now, session) {
        let allocate = signed(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])], &nonce, [1; 12]);
        let _ = server.handle_client(now, session, &allocate);
        drive(&mut server, now);
        let fuzzed = fuzzed_request(data, &nonce);
        let _ = server.handle_client(now, session, &fuzzed);
        drive(&mut server, now);
        let _ = server.handle_client(now, session, data);
        drive(&mut server, now);
    }
    let mut buf = vec![0u8; DATA_INDICATION_HEADROOM + data.len() + 4];
    buf[DATA_INDICATION_HEADROOM..DATA_INDICATION_HEADROOM + data.len()].copy_from_slice(data);
    let relay = SocketAddr::from(([192, 0, 2, 1], 50000));
    let peer = SocketAddr::from(([93, 184, 216, 34], 9));
    let _ =
        server.handle_peer(now, relay, peer, &mut buf, DATA_INDICATION_HEADROOM, DATA_INDICATION_HEADROOM + data.len());
    let later = now.after(Duration::from_secs(100_000));
    server.handle_timeout(later);
    drive(&mut server, later);
}

/// A server with one REST secret, relays in a small port range and RFC 5780 enabled.
fn fuzz_server() -> Server {
    let cfg = ServerConfig {
        realm: "realm".into(),
        software: Some("fuzz".into()),
        credentials: CredentialStore {
            rest: RestSecrets::new(["secret"]).ok(),
            rest_separator: ':',
            static_users: Default::default(),
            max_lifetime_secs: Some(86_400),
        },
        nonce_lifetime_secs: 600,
        unauthenticated_rate: 50,
        relay_ips: vec![RelayIp { bind: [192, 0, 2, 1].into(), advertised: [192, 0, 2, 1].into() }],
        min_port: 50000,
        max_port: 50010,
        lifetimes: Lifetimes::default(),
        quotas: Quotas::default(),
        peer_policy: PeerPolicy::new(PeerPolicyConfig::default()),
        no_stun: false,
        nat_discovery: Some(super::NatDiscovery {
            primary_ip: [192, 0, 2, 1].into(),
            alternate_ip: [192, 0, 2, 2].into(),
            primary_port: 3478,
            alternate_port: 3479,
        }),
        bandwidth: Default::default(),
        alternate_servers: Vec::new(),
        capacity: 0,
        nonce_keys: Vec::new(),
    };
    Server::new(cfg, [0; 32])
}

const FUZZ_USER: &str = "1800003600:fuzz";

/// The nonce a 401 hands out.
fn challenge(server: &mut Server, now: Now, tuple: FiveTuple) -> Option<Vec<u8>> {
    let mut b = MessageBuilder::new(MessageType::new(Method::Allocate, Class::Request), &[9; 12]);
    b.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let _ = server.handle_client(now, tuple, &b.finish());
    let reply = drive(server, now).into_iter().next()?;
    Message::parse(&reply.data).ok()?.get(attr::NONCE).map(<[u8]>::to_vec)
}

/// A request with USERNAME, REALM, NONCE and a valid MESSAGE-INTEGRITY for the fuzz user.
fn signed(method: Method, attrs: &[(u16, &[u8])], nonce: &[u8], tid: [u8; 12]) -> Vec<u8> {
    let password = ice_config::rest_password(b"secret", FUZZ_USER);
    let key = long_term_key(PasswordAlgorithm::Md5, FUZZ_USER, "realm", &password);
    let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), &tid);
    for (code, value) in attrs {
        b.attr(*code, value);
    }
    b.attr(attr::USERNAME, FUZZ_USER.as_bytes()).attr(attr::REALM, b"realm").attr(attr::NONCE, nonce);
    b.integrity_sha1(key.as_bytes()).fingerprint();
    b.finish()
}

/// Byte 0 picks the method, the rest is read as attribute type-length-value triples.
fn fuzzed_request(data: &[u8], nonce: &[u8]) -> Vec<u8> {
    const METHODS: [Method; 7] = [
        Method::Allocate,
        Method::Refresh,
        Method::CreatePermission,
        Method::ChannelBind,
        Method::Connect,
        Method::ConnectionBind,
        Method::Binding,
    ];
    let Some((selector, mut rest)) = data.split_first() else { return Vec::new() };
    let mut attrs: Vec<(u16, &[u8])> = Vec::new();
    while rest.len() >= 3 {
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(rest[2]).min(rest.len() - 3);
        attrs.push((code, &rest[3..3 + len]));
        rest = &rest[3 + len..];
    }
    signed(METHODS[usize::from(*selector) % METHODS.len()], &attrs, nonce, [2; 12])
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_survive_edge_inputs() {
        // The last input is a signed CreatePermission with one XOR-PEER-ADDRESS (code 0x0012).
        let create_permission = [2u8, 0x00, 0x12, 8, 0, 1, 0x11, 0x2b, 0x7c, 0xb8, 0xd8, 0x76];
        for input in [&b""[..], &[0u8; 20], &[0x40, 0, 0xff, 0xff], &[0xff; 64], &create_permission] {
            super::parse_message(input);
            super::server_datagram(input);
        }
    }

    #[test]
    fn signed_requests_get_past_authentication() {
        use super::*;
        let mut server = fuzz_server();
        let now = Now { instant: Instant::EPOCH, unix_secs: 1_800_000_000 };
        let tuple = FiveTuple {
            client: SocketAddr::from(([198, 51, 100, 2], 4000)),
            server: SocketAddr::from(([192, 0, 2, 1], 3478)),
            transport: ClientTransport::Udp,
        };
        let nonce = challenge(&mut server, now, tuple).expect("a 401 with a nonce");
        let allocate = signed(Method::Allocate, &[(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])], &nonce, [1; 12]);
        let _ = server.handle_client(now, tuple, &allocate);
        drive(&mut server, now);
        assert_eq!(server.allocation_count(), 1);
        let refresh_zero = [1u8, 0x00, 0x0D, 4, 0, 0, 0, 0];
        let _ = server.handle_client(now, tuple, &fuzzed_request(&refresh_zero, &nonce));
        drive(&mut server, now);
        assert_eq!(server.allocation_count(), 0, "the fuzzed Refresh(LIFETIME 0) was authenticated and applied");
    }
}
