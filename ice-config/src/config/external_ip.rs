//! The relay's public address when it runs behind 1:1 NAT (coturn's `external-ip`).
//!
//! On most clouds the relay socket is bound to a private address while clients must be told the
//! public one in XOR-RELAYED-ADDRESS; `PUBLIC/PRIVATE` says which private address maps to which
//! public one, and a bare `PUBLIC` applies to every relay address of that family.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ip_range::ParseAddrError;

/// A public address, optionally tied to the private address it is NATed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExternalIp {
    /// The address clients are told.
    pub public: IpAddr,
    /// The local address it maps to; `None` means every relay address of the same family.
    pub private: Option<IpAddr>,
}

impl ExternalIp {
    /// Whether this entry applies to a relay socket bound to `local`.
    pub fn applies_to(&self, local: IpAddr) -> bool {
        match self.private {
            Some(private) => private == local,
            None => self.public.is_ipv4() == local.is_ipv4(),
        }
    }
}

impl FromStr for ExternalIp {
    type Err = ParseAddrError;

    /// Accepts `PUBLIC` or `PUBLIC/PRIVATE` of one family; the public address may not be
    /// unspecified, since telling clients `0.0.0.0` would break every allocation.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = |part: &str| {
            part.trim()
                .parse::<IpAddr>()
                .map_err(|_| ParseAddrError::new("external IP", s, format!("{:?} is not an IP address", part.trim())))
        };
        let (public, private) = match s.split_once('/') {
            Some((public, private)) => (addr(public)?, Some(addr(private)?)),
            None => (addr(s)?, None),
        };
        if public.is_unspecified() {
            return Err(ParseAddrError::new("external IP", s, "the public address must not be unspecified"));
        }
        if let Some(private) = private {
            if private.is_ipv4() != public.is_ipv4() {
                return Err(ParseAddrError::new(
                    "external IP",
                    s,
                    "public and private addresses are of different address families",
                ));
            }
        }
        Ok(Self { public, private })
    }
}

impl fmt::Display for ExternalIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.private {
            Some(private) => write!(f, "{}/{private}", self.public),
            None => write!(f, "{}", self.public),
        }
    }
}

impl Serialize for ExternalIp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExternalIp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_only() {
        let e: ExternalIp = "203.0.113.5".parse().unwrap();
        assert_eq!(e.public, ip("203.0.113.5"));
        assert_eq!(e.private, None);
        assert_eq!(e.to_string(), "203.0.113.5");
    }

    #[test]
    fn public_and_private() {
        let e: ExternalIp = "203.0.113.5/10.0.0.5".parse().unwrap();
        assert_eq!(e.private, Some(ip("10.0.0.5")));
        assert_eq!(e.to_string(), "203.0.113.5/10.0.0.5");
        let v6: ExternalIp = " 2001:db8::1 / fd00::1 ".parse().unwrap();
        assert_eq!(v6.public, ip("2001:db8::1"));
        assert_eq!(v6.private, Some(ip("fd00::1")));
        assert_eq!(v6.to_string(), "2001:db8::1/fd00::1");
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "/",
            "203.0.113.5/",
            "/10.0.0.5",
            "host.example",
            "203.0.113.5/10.0.0.5/1",
            "0.0.0.0",
            "::/fd00::1",
            "203.0.113.5/fd00::1",
            "2001:db8::1/10.0.0.5",
        ] {
            assert!(bad.parse::<ExternalIp>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn unspecified_private_is_allowed() {
        // Binding the relay to 0.0.0.0 and announcing the public address is a valid setup.
        let e: ExternalIp = "203.0.113.5/0.0.0.0".parse().unwrap();
        assert_eq!(e.private, Some(ip("0.0.0.0")));
    }

    #[test]
    fn applies_to() {
        let mapped: ExternalIp = "203.0.113.5/10.0.0.5".parse().unwrap();
        assert!(mapped.applies_to(ip("10.0.0.5")));
        assert!(!mapped.applies_to(ip("10.0.0.6")));
        let any_v4: ExternalIp = "203.0.113.5".parse().unwrap();
        assert!(any_v4.applies_to(ip("10.0.0.6")));
        assert!(!any_v4.applies_to(ip("fd00::1")));
    }

    #[test]
    fn serde_uses_strings() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct W {
            e: ExternalIp,
        }
        let w: W = toml::from_str(r#"e = "203.0.113.5/10.0.0.5""#).unwrap();
        assert_eq!(toml::to_string(&w).unwrap().trim(), r#"e = "203.0.113.5/10.0.0.5""#);
        let err = toml::from_str::<W>(r#"e = "nope""#).unwrap_err();
        assert!(err.to_string().contains("not an IP address"), "{err}");
    }
}
