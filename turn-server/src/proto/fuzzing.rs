//! Entry points for the fuzz targets in `fuzz/`: every parser of network input, and the whole core
//! fed one datagram. Each must return normally on any input; a panic is a bug.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ice_config::{long_term_key, PasswordAlgorithm, RestSecrets};

use super::auth::CredentialStore;
use super::peer_policy::{PeerPolicy, PeerPolicyConfig};
use super::server::{BindError, Now, RelaySockets, Server, DATA_INDICATION_HEADROOM};
use super::stun::{attr, Message};
use super::{channel_data, ClientTransport, FiveTuple, Lifetimes, Quotas, RelayIp, ServerConfig};

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

struct NoSockets;

impl RelaySockets for NoSockets {
    fn open(&mut self, _addr: SocketAddr, _kind: super::server::SocketKind) -> Result<(), BindError> {
        Ok(())
    }
    fn close(&mut self, _addr: SocketAddr) {}
}

/// Feeds `data` to a fresh server as a client datagram, then as peer data on a relay, then moves
/// time past every lifetime.
pub fn server_datagram(data: &[u8]) {
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
    };
    let mut server = Server::new(cfg, [0; 32]);
    let t0 = Instant::now();
    let now = Now { instant: t0, unix_secs: 1_800_000_000 };
    let tuple = FiveTuple {
        client: SocketAddr::from(([198, 51, 100, 1], 4000)),
        server: SocketAddr::from(([192, 0, 2, 1], 3478)),
        transport: ClientTransport::Udp,
    };
    let _ = server.handle_client(now, tuple, data, &mut NoSockets);
    while server.poll_transmit().is_some() {}
    let mut buf = vec![0u8; DATA_INDICATION_HEADROOM + data.len() + 4];
    buf[DATA_INDICATION_HEADROOM..DATA_INDICATION_HEADROOM + data.len()].copy_from_slice(data);
    let relay = SocketAddr::from(([192, 0, 2, 1], 50000));
    let peer = SocketAddr::from(([93, 184, 216, 34], 9));
    let _ =
        server.handle_peer(t0, relay, peer, &mut buf, DATA_INDICATION_HEADROOM, DATA_INDICATION_HEADROOM + data.len());
    server.handle_timeout(t0 + Duration::from_secs(100_000), &mut NoSockets);
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_survive_edge_inputs() {
        for input in [&b""[..], &[0u8; 20], &[0x40, 0, 0xff, 0xff], &[0xff; 64]] {
            super::parse_message(input);
            super::server_datagram(input);
        }
    }
}
