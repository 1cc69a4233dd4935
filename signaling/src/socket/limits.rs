//! Per-source counters for the Socket.IO endpoint (new sessions, refused handshakes): the
//! shared constant-memory [`WindowLimiter`] keyed by source, so a flood from many addresses
//! cannot grow the service's memory. Pure: time is an argument.

use std::net::IpAddr;

use crate::limiter::WindowLimiter;

/// Fixed one-minute windows per source ([`source_of`]), in constant memory.
#[derive(Debug, Default)]
pub struct SourceLimiter(WindowLimiter<IpAddr>);

/// The unit a limit applies to: an IPv4 address, or the /64 of an IPv6 one (one subscriber
/// usually holds a whole /64). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::from(seg)
            }
        },
    }
}

impl SourceLimiter {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event from `source` at `now_unix`; `Err(retry_after_secs)` when it already had
    /// `limit` in this window (then it is not counted).
    pub fn hit(&self, source: IpAddr, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.0.hit(&source_of(source), limit, now_unix)
    }

    /// As [`hit`](Self::hit) without counting: is `source` already at `limit`?
    pub fn check(&self, source: IpAddr, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.0.check(&source_of(source), limit, now_unix)
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
    fn ipv6_counts_per_64_and_mapped_as_v4() {
        let l = SourceLimiter::new();
        l.hit(ip("2001:db8:1:2::1"), 1, 0).unwrap();
        assert!(l.hit(ip("2001:db8:1:2:ffff::9"), 1, 0).is_err());
        l.hit(ip("2001:db8:1:3::1"), 1, 0).unwrap();
        l.hit(ip("::ffff:192.0.2.7"), 1, 0).unwrap();
        assert!(l.hit(ip("192.0.2.7"), 1, 0).is_err());
    }
}
