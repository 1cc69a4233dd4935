//! ICE server URLs as clients write them: RFC 7064 `stun:` and RFC 7065 `turn:`/`turns:`. The
//! relay's probe reads them from flags, configs and `iceServers` answers, the signaling service
//! from `--turn-url`; one grammar here keeps the two from disagreeing on what a URL means.
//!
//! ```text
//! stun:HOST[:PORT]                    UDP, port 3478
//! turn:HOST[:PORT][?transport=udp|tcp] UDP unless tcp is asked for, port 3478
//! turns:HOST[:PORT][?transport=tcp]   TLS over TCP, port 5349
//! ```
//! HOST is a name, an IPv4 address or an IPv6 address in brackets. Schemes and the transport
//! are matched without regard to case, as URI schemes are.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::Transport;

/// Which of the three URL schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Stun,
    Turn,
    Turns,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none (RFC 7064 / RFC 7065).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Stun | Scheme::Turn => 3478,
            Scheme::Turns => 5349,
        }
    }
}

/// A parsed `stun:`, `turn:` or `turns:` URL. Displays as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrl {
    pub scheme: Scheme,
    /// A name or an address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// How a client reaches the server: `Udp` for `stun:`, `Tls` for `turns:`.
    pub transport: Transport,
    raw: String,
}

impl IceUrl {
    /// The URL as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for IceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A URL that is not one of the forms above; says which URL and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: UrlErrorKind,
}

/// What is wrong with a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlErrorKind {
    #[error("expected stun:, turn: or turns:")]
    NoScheme,
    #[error("unknown scheme {0:?}: expected stun, turn or turns")]
    UnknownScheme(String),
    #[error("unsupported query {0:?}: use ?transport=udp or ?transport=tcp")]
    Query(String),
    #[error("stun: URLs take no query ({0:?}): STUN here is UDP")]
    StunQuery(String),
    #[error("turns: is TLS over TCP: use ?transport=tcp or no query")]
    TurnsOverUdp,
    #[error("missing host")]
    NoHost,
    #[error("bad character {0:?} in host")]
    HostChar(char),
    #[error("IPv6 addresses go in brackets, e.g. [2001:db8::1]:3478")]
    UnbracketedIpv6,
    #[error("{0:?} in brackets is not an IPv6 address")]
    BadIpv6(String),
    #[error("missing ']' after the IPv6 address")]
    UnclosedBracket,
    #[error("{0:?} after the IPv6 address: expected :PORT")]
    AfterBracket(String),
    #[error("bad port {0:?}: expected 1 to 65535")]
    BadPort(String),
}

impl FromStr for IceUrl {
    type Err = UrlError;

    fn from_str(raw: &str) -> Result<Self, UrlError> {
        parse(raw).map_err(|reason| UrlError { url: raw.to_owned(), reason })
    }
}

fn parse(raw: &str) -> Result<IceUrl, UrlErrorKind> {
    let (scheme, rest) = raw.split_once(':').ok_or(UrlErrorKind::NoScheme)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "stun" => Scheme::Stun,
        "turn" => Scheme::Turn,
        "turns" => Scheme::Turns,
        _ => return Err(UrlErrorKind::UnknownScheme(scheme.to_owned())),
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((hostport, query)) => (hostport, Some(query)),
        None => (rest, None),
    };
    let asked = match query {
        None => None,
        Some(q) if scheme == Scheme::Stun => return Err(UrlErrorKind::StunQuery(q.to_owned())),
        Some(q) => match q.to_ascii_lowercase().as_str() {
            "transport=udp" => Some(Transport::Udp),
            "transport=tcp" => Some(Transport::Tcp),
            _ => return Err(UrlErrorKind::Query(q.to_owned())),
        },
    };
    let transport = match (scheme, asked) {
        (Scheme::Stun, _) | (Scheme::Turn, None) => Transport::Udp,
        (Scheme::Turn, Some(t)) => t,
        (Scheme::Turns, Some(Transport::Udp)) => return Err(UrlErrorKind::TurnsOverUdp),
        (Scheme::Turns, _) => Transport::Tls,
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(IceUrl { scheme, host, port: port.unwrap_or(scheme.default_port()), transport, raw: raw.to_owned() })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), UrlErrorKind> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(UrlErrorKind::UnclosedBracket)?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(UrlErrorKind::BadIpv6(v6.to_owned()));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UrlErrorKind::AfterBracket(after.to_owned())),
        };
        (v6, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(UrlErrorKind::UnbracketedIpv6);
        }
        if let Some(c) = host.chars().find(|&c| !is_reg_name_char(c)) {
            return Err(UrlErrorKind::HostChar(c));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(UrlErrorKind::NoHost);
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(UrlErrorKind::BadPort(p.to_owned())),
        },
    };
    Ok((host.to_owned(), port))
}

/// RFC 3986 `reg-name`: unreserved, percent-encoded and sub-delimiter characters (which also
/// covers IPv4 addresses).
fn is_reg_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=".contains(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(s: &str) -> IceUrl {
        s.parse().unwrap()
    }

    fn fields(s: &str) -> (Scheme, String, u16, Transport) {
        let u = url(s);
        (u.scheme, u.host, u.port, u.transport)
    }

    fn reason(s: &str) -> UrlErrorKind {
        s.parse::<IceUrl>().unwrap_err().reason
    }

    #[test]
    fn the_forms_clients_use() {
        use Transport::*;
        assert_eq!(fields("stun:turn.example.org"), (Scheme::Stun, "turn.example.org".into(), 3478, Udp));
        assert_eq!(
            fields("turn:turn.example.org:3479?transport=tcp"),
            (Scheme::Turn, "turn.example.org".into(), 3479, Tcp)
        );
        assert_eq!(fields("turn:192.0.2.1:3478?transport=udp"), (Scheme::Turn, "192.0.2.1".into(), 3478, Udp));
        assert_eq!(fields("turn:h"), (Scheme::Turn, "h".into(), 3478, Udp));
        assert_eq!(fields("turns:h:443?transport=tcp"), (Scheme::Turns, "h".into(), 443, Tls));
        assert_eq!(fields("turns:h"), (Scheme::Turns, "h".into(), 5349, Tls));
    }

    #[test]
    fn ipv6_addresses_in_brackets_with_and_without_a_port() {
        assert_eq!(fields("turn:[2001:db8::1]:3479?transport=tcp").1, "2001:db8::1");
        assert_eq!(fields("turn:[2001:db8::1]:3479?transport=tcp").2, 3479);
        assert_eq!(fields("stun:[::1]").2, 3478);
        assert_eq!(fields("turns:[::1]").2, 5349);
    }

    #[test]
    fn scheme_and_transport_ignore_case_and_the_url_displays_as_written() {
        assert_eq!(fields("TURN:h?transport=TCP"), (Scheme::Turn, "h".into(), 3478, Transport::Tcp));
        assert_eq!(url("TURN:h?transport=TCP").to_string(), "TURN:h?transport=TCP");
        assert_eq!(url("turns:h").as_str(), "turns:h");
    }

    #[test]
    fn rejects_say_what_is_wrong() {
        use UrlErrorKind::*;
        assert_eq!(reason("turn.example.org"), NoScheme);
        assert_eq!(reason("http://x"), UnknownScheme("http".into()));
        assert_eq!(reason("stuns:h"), UnknownScheme("stuns".into()));
        assert_eq!(reason("turn:h?transport=sctp"), Query("transport=sctp".into()));
        assert_eq!(reason("turn:h?"), Query(String::new()));
        assert_eq!(reason("stun:h:1?transport=udp"), StunQuery("transport=udp".into()));
        assert_eq!(reason("turns:h:443?transport=udp"), TurnsOverUdp);
        assert_eq!(reason("turn:"), NoHost);
        assert_eq!(reason("turn::3478"), NoHost);
        assert_eq!(reason("turn:[]:3478"), BadIpv6(String::new()));
        assert_eq!(reason("turn:[h]"), BadIpv6("h".into()));
        assert_eq!(reason("turn:[::1"), UnclosedBracket);
        assert_eq!(reason("turn:[::1]3478"), AfterBracket("3478".into()));
        assert_eq!(reason("turn:2001:db8::1"), UnbracketedIpv6);
        assert_eq!(reason("turn::1"), NoHost);
        assert_eq!(reason("turn:user@h"), HostChar('@'));
        assert_eq!(reason("turn://h"), HostChar('/'));
        for bad in ["turn:h:0", "turn:h:99999", "turn:h:x", "turn:h:", "turn:h:+1", "turn:[::1]:"] {
            assert!(matches!(reason(bad), BadPort(_)), "{bad}");
        }
    }

    #[test]
    fn the_message_names_the_url() {
        let e = "turn:h:99999".parse::<IceUrl>().unwrap_err();
        assert_eq!(e.to_string(), r#""turn:h:99999": bad port "99999": expected 1 to 65535"#);
    }

    #[test]
    fn every_url_ice_servers_produces_parses_back() {
        use crate::{ice_servers, RelayEndpoint, RestCredential};
        let relays: Vec<RelayEndpoint> = ["turn.example.org", "192.0.2.7", "2001:db8::7"]
            .iter()
            .map(|h| RelayEndpoint {
                host: (*h).into(),
                udp_port: 3478,
                tcp_port: 3479,
                tls_port: 443,
                transports: Transport::PREFERENCE.to_vec(),
                stun: true,
            })
            .collect();
        let cred = RestCredential { username: "u".into(), password: "p".into(), expires_at: 0 };
        let urls: Vec<IceUrl> =
            ice_servers(&relays, &cred).iter().flat_map(|s| s.urls.iter()).map(|u| url(u)).collect();
        assert_eq!(urls.len(), 12);
        assert!(urls.iter().all(|u| relays.iter().any(|r| r.host == u.host)));
        let ports: Vec<(Transport, u16)> = urls[..4].iter().map(|u| (u.transport, u.port)).collect();
        assert_eq!(
            ports,
            [(Transport::Udp, 3478), (Transport::Udp, 3478), (Transport::Tcp, 3479), (Transport::Tls, 443)]
        );
    }
}
