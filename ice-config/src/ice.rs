//! The browser's `RTCIceServer` dictionary and how relay endpoints turn into it.
//!
//! Web, Android and iOS clients pass the `iceServers` array unchanged to `RTCPeerConnection`, so
//! the JSON shape and the URL syntax (RFC 7064 `stun:`, RFC 7065 `turn:`/`turns:`) must be exactly
//! what WebRTC stacks accept; this module is the single place that produces them.

use std::fmt;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::config::RelayEndpoint;
use crate::credentials::RestCredential;

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username; absent for STUN entries.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    /// TURN password; absent for STUN entries.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<String>,
}

/// How a client reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TURN over UDP, the fast path.
    Udp,
    /// TURN over TCP, for networks that drop UDP.
    Tcp,
    /// TURN over TLS over TCP, for networks that only pass HTTPS-looking traffic.
    Tls,
}

impl Transport {
    /// The order clients should try transports in: cheapest first.
    pub const PREFERENCE: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The lowercase name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `iceServers` for `relays`, all TURN entries carrying `credential`.
///
/// Per relay: a `stun:` entry when `stun` is set (on the UDP port), then one TURN entry with a
/// URL per offered transport in the order UDP, TCP, TLS regardless of the configured order, so
/// clients try the cheapest path first. A relay offering no transport gets no TURN entry.
pub fn ice_servers(relays: &[RelayEndpoint], credential: &RestCredential) -> Vec<IceServer> {
    let mut servers = Vec::with_capacity(relays.len() * 2);
    for relay in relays {
        let host = url_host(&relay.host);
        if relay.stun {
            servers.push(IceServer {
                urls: vec![format!("stun:{host}:{}", relay.udp_port)],
                username: None,
                credential: None,
            });
        }
        let urls: Vec<String> = Transport::PREFERENCE
            .iter()
            .filter(|t| relay.transports.contains(t))
            .map(|t| match t {
                Transport::Udp => format!("turn:{host}:{}?transport=udp", relay.udp_port),
                Transport::Tcp => format!("turn:{host}:{}?transport=tcp", relay.tcp_port),
                Transport::Tls => format!("turns:{host}:{}?transport=tcp", relay.tls_port),
            })
            .collect();
        if !urls.is_empty() {
            servers.push(IceServer {
                urls,
                username: Some(credential.username.clone()),
                credential: Some(credential.password.clone()),
            });
        }
    }
    servers
}

/// Brackets a bare IPv6 literal, since `turn:2001:db8::1:3478` cannot be parsed back.
fn url_host(host: &str) -> String {
    if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn relay(host: &str, transports: &[Transport], stun: bool) -> RelayEndpoint {
        RelayEndpoint {
            host: host.into(),
            udp_port: 3478,
            tcp_port: 3479,
            tls_port: 443,
            transports: transports.to_vec(),
            stun,
        }
    }

    fn cred() -> RestCredential {
        RestCredential { username: "1700000000:alice".into(), password: "pw".into(), expires_at: 1_700_000_000 }
    }

    #[test]
    fn exact_json_for_one_relay() {
        let servers =
            ice_servers(&[relay("turn.example.org", &[Transport::Udp, Transport::Tcp, Transport::Tls], true)], &cred());
        assert_eq!(
            serde_json::to_string(&servers).unwrap(),
            r#"[{"urls":["stun:turn.example.org:3478"]},{"urls":["turn:turn.example.org:3478?transport=udp","turn:turn.example.org:3479?transport=tcp","turns:turn.example.org:443?transport=tcp"],"username":"1700000000:alice","credential":"pw"}]"#
        );
    }

    #[test]
    fn transports_follow_preference_order_and_dedupe() {
        let servers = ice_servers(&[relay("h", &[Transport::Tls, Transport::Udp, Transport::Tls], false)], &cred());
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].urls, vec!["turn:h:3478?transport=udp", "turns:h:443?transport=tcp"]);
    }

    #[test]
    fn no_stun_entry_when_disabled() {
        let servers = ice_servers(&[relay("h", &[Transport::Tcp], false)], &cred());
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].urls, vec!["turn:h:3479?transport=tcp"]);
        assert_eq!(servers[0].username.as_deref(), Some("1700000000:alice"));
        assert_eq!(servers[0].credential.as_deref(), Some("pw"));
    }

    #[test]
    fn no_turn_entry_without_transports() {
        let servers = ice_servers(&[relay("h", &[], true)], &cred());
        assert_eq!(servers, vec![IceServer { urls: vec!["stun:h:3478".into()], username: None, credential: None }]);
        assert!(ice_servers(&[relay("h", &[], false)], &cred()).is_empty());
        assert!(ice_servers(&[], &cred()).is_empty());
    }

    #[test]
    fn ipv6_literals_are_bracketed() {
        let servers = ice_servers(&[relay("2001:db8::1", &[Transport::Udp, Transport::Tls], true)], &cred());
        assert_eq!(servers[0].urls, vec!["stun:[2001:db8::1]:3478"]);
        assert_eq!(
            servers[1].urls,
            vec!["turn:[2001:db8::1]:3478?transport=udp", "turns:[2001:db8::1]:443?transport=tcp"]
        );
    }

    #[test]
    fn ipv4_and_bracketed_hosts_are_kept() {
        assert_eq!(url_host("203.0.113.5"), "203.0.113.5");
        assert_eq!(url_host("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("turn.example.org"), "turn.example.org");
    }

    #[test]
    fn several_relays_keep_their_order() {
        let servers =
            ice_servers(&[relay("a", &[Transport::Udp], true), relay("b", &[Transport::Udp], false)], &cred());
        let urls: Vec<&str> = servers.iter().flat_map(|s| s.urls.iter().map(String::as_str)).collect();
        assert_eq!(urls, vec!["stun:a:3478", "turn:a:3478?transport=udp", "turn:b:3478?transport=udp"]);
    }

    #[test]
    fn ice_server_json_round_trips_and_omits_absent_fields() {
        let stun: IceServer = serde_json::from_str(r#"{"urls":["stun:h:1"]}"#).unwrap();
        assert_eq!(stun.username, None);
        assert_eq!(serde_json::to_string(&stun).unwrap(), r#"{"urls":["stun:h:1"]}"#);
        let turn = IceServer {
            urls: vec!["turn:h:1?transport=udp".into()],
            username: Some("u".into()),
            credential: Some("c".into()),
        };
        let json = serde_json::to_string(&turn).unwrap();
        assert_eq!(serde_json::from_str::<IceServer>(&json).unwrap(), turn);
    }

    #[test]
    fn transport_names() {
        for (t, s) in [(Transport::Udp, "udp"), (Transport::Tcp, "tcp"), (Transport::Tls, "tls")] {
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Transport>(&format!("\"{s}\"")).unwrap(), t);
        }
        assert!(serde_json::from_str::<Transport>("\"UDP\"").is_err());
        assert!(serde_json::from_str::<Transport>("\"dtls\"").is_err());
    }
}
