//! ICE server URLs as clients write them (RFC 7064 `stun:`, RFC 7065 `turn:`/`turns:`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Stun,
    Turn,
    Turns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    raw: String,
}

impl fmt::Display for IceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for IceUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw.split_once(':').ok_or_else(|| format!("{raw:?}: expected stun:, turn: or turns:"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "stun" => Scheme::Stun,
            "turn" => Scheme::Turn,
            "turns" => Scheme::Turns,
            other => return Err(format!("{raw:?}: unknown scheme {other:?} (stun, turn or turns)")),
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = split_host_port(hostport).ok_or_else(|| format!("{raw:?}: bad host or port"))?;
        let default_port = if scheme == Scheme::Turns { 5349 } else { 3478 };
        let transport = match (scheme, query.strip_prefix("transport=")) {
            (Scheme::Turns, _) => Transport::Tls,
            (_, Some("tcp")) => Transport::Tcp,
            (_, Some("udp") | None) if query.is_empty() || query == "transport=udp" => Transport::Udp,
            _ => return Err(format!("{raw:?}: unsupported query {query:?} (transport=udp or transport=tcp)")),
        };
        if scheme == Scheme::Stun && transport != Transport::Udp {
            return Err(format!("{raw:?}: stun: URLs are probed over UDP"));
        }
        Ok(IceUrl { scheme, host, port: port.unwrap_or(default_port), transport, raw: raw.to_owned() })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_owned(), Some(port.parse().ok()?))),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_owned(), None)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_forms_clients_use() {
        let u: IceUrl = "turn:turn.example.org:3478?transport=udp".parse().unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.transport),
            (Scheme::Turn, "turn.example.org", 3478, Transport::Udp)
        );
        let u: IceUrl = "turn:[2001:db8::1]?transport=tcp".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("2001:db8::1", 3478, Transport::Tcp));
        let u: IceUrl = "turns:turn.example.org:443?transport=tcp".parse().unwrap();
        assert_eq!((u.port, u.transport), (443, Transport::Tls));
        let u: IceUrl = "stun:127.0.0.1".parse().unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Stun, 3478));
        assert_eq!("turns:h".parse::<IceUrl>().unwrap().port, 5349);
    }

    #[test]
    fn rejects_what_it_cannot_probe() {
        for bad in ["http://x", "turn:", "turn:h:99999", "turn:h?transport=sctp", "stun:h?transport=tcp", "turn:[::1"] {
            assert!(bad.parse::<IceUrl>().is_err(), "{bad}");
        }
    }
}
