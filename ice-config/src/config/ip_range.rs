//! Inclusive IP address ranges for the relay's peer allow/deny lists.
//!
//! Operators write peers the way coturn takes them (`10.0.0.5`, `10.0.0.0/8`, `A-B`), and the
//! relay asks one question per CreatePermission: is this address inside? Storing every form as an
//! inclusive `start..=end` pair answers that with two integer comparisons.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an address, range or external-ip string was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseAddrError {
    what: &'static str,
    input: String,
    reason: String,
}

impl ParseAddrError {
    pub(crate) fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self { what, input: input.to_string(), reason: reason.into() }
    }

    /// Why the input was rejected, without the input itself.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

impl IpRange {
    /// `start..=end`; both of one family and `start <= end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, ParseAddrError> {
        let ordered = match (start, end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
            (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
            _ => {
                return Err(ParseAddrError::new(
                    "IP range",
                    &format!("{start}-{end}"),
                    "start and end are of different address families",
                ))
            }
        };
        if !ordered {
            return Err(ParseAddrError::new("IP range", &format!("{start}-{end}"), "start is greater than end"));
        }
        Ok(Self { start, end })
    }

    /// The range holding exactly `ip`.
    pub fn single(ip: IpAddr) -> Self {
        Self { start: ip, end: ip }
    }

    /// The block `addr/prefix`; host bits in `addr` are cleared rather than refused, so
    /// `10.1.2.3/8` means `10.0.0.0/8`.
    pub fn from_cidr(addr: IpAddr, prefix: u8) -> Result<Self, ParseAddrError> {
        match addr {
            IpAddr::V4(a) => {
                if prefix > 32 {
                    return Err(ParseAddrError::new(
                        "CIDR",
                        &format!("{addr}/{prefix}"),
                        "IPv4 prefix length must be at most 32",
                    ));
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let start = u32::from(a) & mask;
                Ok(Self { start: IpAddr::V4(Ipv4Addr::from(start)), end: IpAddr::V4(Ipv4Addr::from(start | !mask)) })
            }
            IpAddr::V6(a) => {
                if prefix > 128 {
                    return Err(ParseAddrError::new(
                        "CIDR",
                        &format!("{addr}/{prefix}"),
                        "IPv6 prefix length must be at most 128",
                    ));
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                let start = u128::from(a) & mask;
                Ok(Self { start: IpAddr::V6(Ipv6Addr::from(start)), end: IpAddr::V6(Ipv6Addr::from(start | !mask)) })
            }
        }
    }

    /// First address in the range.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// Last address in the range (inclusive).
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// Whether `ip` is inside. Families never mix: `::ffff:10.0.0.1` is not in `10.0.0.0/8`;
    /// reducing such forms first is the caller's job (see the relay's peer policy).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.start, self.end, ip) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(x)) => s <= x && x <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(x)) => s <= x && x <= e,
            _ => false,
        }
    }

    /// The prefix length when the range is exactly one CIDR block.
    fn cidr_prefix(&self) -> Option<u8> {
        let (start, end, bits) = match (self.start, self.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e)), 32),
            (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
            _ => return None,
        };
        // A block is `start` with its low host bits clear and `end` with them all set, i.e.
        // `start ^ end` is a run of low one-bits covering exactly the zero bits of `start`.
        let host = start ^ end;
        let is_low_ones = host & host.wrapping_add(1) == 0;
        if !is_low_ones || start & host != 0 {
            return None;
        }
        let host_bits = 128 - host.leading_zeros();
        u8::try_from(bits - host_bits).ok()
    }
}

impl fmt::Display for IpRange {
    /// A single address prints bare, a CIDR block as `addr/len`, anything else as `start-end`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            return write!(f, "{}", self.start);
        }
        match self.cidr_prefix() {
            Some(prefix) => write!(f, "{}/{prefix}", self.start),
            None => write!(f, "{}-{}", self.start, self.end),
        }
    }
}

impl FromStr for IpRange {
    type Err = ParseAddrError;

    /// Accepts `ADDR`, `ADDR/PREFIX` or `START-END`, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let addr = |part: &str| {
            part.trim()
                .parse::<IpAddr>()
                .map_err(|_| ParseAddrError::new("IP range", s, format!("{:?} is not an IP address", part.trim())))
        };
        if let Some((ip, prefix)) = text.split_once('/') {
            let ip = addr(ip)?;
            let prefix_text = prefix.trim();
            // u8::from_str accepts '+'; a prefix is plain digits.
            if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseAddrError::new("IP range", s, "prefix length is not a number"));
            }
            let prefix = prefix_text
                .parse::<u8>()
                .map_err(|_| ParseAddrError::new("IP range", s, "prefix length is too large"))?;
            return Self::from_cidr(ip, prefix).map_err(|e| ParseAddrError::new("IP range", s, e.reason));
        }
        if let Some((start, end)) = text.split_once('-') {
            return Self::new(addr(start)?, addr(end)?).map_err(|e| ParseAddrError::new("IP range", s, e.reason));
        }
        Ok(Self::single(addr(text)?))
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
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

    fn range(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    #[test]
    fn single_address() {
        let r = range("192.168.1.10");
        assert_eq!(r.start(), ip("192.168.1.10"));
        assert_eq!(r.end(), ip("192.168.1.10"));
        assert!(r.contains(ip("192.168.1.10")));
        assert!(!r.contains(ip("192.168.1.9")));
        assert!(!r.contains(ip("192.168.1.11")));
        assert_eq!(IpRange::single(ip("::1")), range("::1"));
    }

    #[test]
    fn cidr_edges_v4() {
        let r = range("10.0.0.0/8");
        assert!(r.contains(ip("10.0.0.0")));
        assert!(r.contains(ip("10.255.255.255")));
        assert!(!r.contains(ip("9.255.255.255")));
        assert!(!r.contains(ip("11.0.0.0")));
    }

    #[test]
    fn cidr_edges_v6() {
        let r = range("fd00::/8");
        assert!(r.contains(ip("fd00::")));
        assert!(r.contains(ip("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!r.contains(ip("fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!r.contains(ip("fe00::")));
    }

    #[test]
    fn cidr_zero_and_full_prefixes() {
        let all4 = range("0.0.0.0/0");
        assert_eq!(all4.start(), ip("0.0.0.0"));
        assert_eq!(all4.end(), ip("255.255.255.255"));
        assert!(all4.contains(ip("8.8.8.8")));
        assert!(!all4.contains(ip("::1")));
        let all6 = range("::/0");
        assert_eq!(all6.end(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(!all6.contains(ip("127.0.0.1")));
        assert_eq!(range("1.2.3.4/32"), IpRange::single(ip("1.2.3.4")));
        assert_eq!(range("2001:db8::7/128"), IpRange::single(ip("2001:db8::7")));
    }

    #[test]
    fn cidr_host_bits_are_normalized() {
        let r = range("10.1.2.3/8");
        assert_eq!(r, range("10.0.0.0/8"));
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert_eq!(range("fd12:3456::1/16").to_string(), "fd12::/16");
    }

    #[test]
    fn cidr_rejects_bad_prefixes() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/256",
            "10.0.0.0/8/8",
            "/8",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn dash_range_edges() {
        let r = range("192.168.1.10-192.168.1.20");
        assert!(r.contains(ip("192.168.1.10")));
        assert!(r.contains(ip("192.168.1.20")));
        assert!(!r.contains(ip("192.168.1.9")));
        assert!(!r.contains(ip("192.168.1.21")));
        assert_eq!(range(" 1.1.1.1 - 1.1.1.1 "), IpRange::single(ip("1.1.1.1")));
        let v6 = range("2001:db8::1-2001:db8::ff");
        assert!(v6.contains(ip("2001:db8::80")));
        assert!(!v6.contains(ip("2001:db8::100")));
    }

    #[test]
    fn dash_range_rejects_reversed_and_mixed() {
        let err = "192.168.1.20-192.168.1.10".parse::<IpRange>().unwrap_err();
        assert_eq!(err.reason(), "start is greater than end");
        let err = "10.0.0.1-::1".parse::<IpRange>().unwrap_err();
        assert_eq!(err.reason(), "start and end are of different address families");
        assert!("10.0.0.1-".parse::<IpRange>().is_err());
        assert!("-10.0.0.1".parse::<IpRange>().is_err());
        assert!(IpRange::new(ip("::2"), ip("::1")).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", " ", "localhost", "10.0.0", "10.0.0.256", "1.2.3.4.5", "[::1]"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn families_never_mix_in_contains() {
        assert!(!range("0.0.0.0/0").contains(ip("::ffff:10.0.0.1")));
        assert!(!range("::/0").contains(ip("10.0.0.1")));
    }

    #[test]
    fn display_picks_the_shortest_exact_form() {
        assert_eq!(range("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(range("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(range("::/0").to_string(), "::/0");
        assert_eq!(range("10.0.0.0-10.0.0.255").to_string(), "10.0.0.0/24");
        assert_eq!(range("10.0.0.1-10.0.0.2").to_string(), "10.0.0.1-10.0.0.2");
        assert_eq!(range("10.0.0.0-10.0.0.2").to_string(), "10.0.0.0-10.0.0.2");
        assert_eq!(range("10.0.0.1/32").to_string(), "10.0.0.1");
        assert_eq!(range("fe80::/10").to_string(), "fe80::/10");
        assert_eq!(range("::1-::3").to_string(), "::1-::3");
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.0/8", "1.2.3.4", "1.2.3.4-1.2.3.9", "fc00::/7", "::1", "2001:db8::-2001:db8::5"] {
            assert_eq!(range(&range(s).to_string()), range(s));
        }
    }

    #[test]
    fn serde_uses_strings() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct W {
            r: Vec<IpRange>,
        }
        let w: W = toml::from_str(r#"r = ["10.0.0.0/8", "1.1.1.1-1.1.1.2"]"#).unwrap();
        assert_eq!(w.r, vec![range("10.0.0.0/8"), range("1.1.1.1-1.1.1.2")]);
        assert_eq!(toml::to_string(&w).unwrap().trim(), r#"r = ["10.0.0.0/8", "1.1.1.1-1.1.1.2"]"#);
        let err = toml::from_str::<W>(r#"r = ["10.0.0.0/99"]"#).unwrap_err();
        assert!(err.to_string().contains("prefix length"), "{err}");
    }

    #[test]
    fn error_message_names_input_and_reason() {
        let err = "1.2.3.4/40".parse::<IpRange>().unwrap_err();
        assert_eq!(err.to_string(), r#"invalid IP range "1.2.3.4/40": IPv4 prefix length must be at most 32"#);
    }
}
