//! Per-source counters for the Socket.IO endpoint (new sessions, refused handshakes) in a
//! fixed-size table, so a flood from many addresses cannot grow the service's memory. Pure: time
//! is an argument.
//!
//! Each source hashes (with per-process random keys, so an attacker cannot aim collisions) to
//! two slots of the table and its count is the smaller of the two, as in a count-min sketch.
//! Collisions can only overcount: a source may be limited early, never late.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

/// Window length in seconds.
const WINDOW: u64 = 60;
/// Slots in the table: 2 x 4096 x 12 bytes, whatever the number of sources.
const SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Slot {
    window: u64,
    count: u32,
}

/// Fixed one-minute windows per source, in constant memory.
pub struct SourceLimiter {
    slots: Mutex<Vec<[Slot; 2]>>,
    hashers: [std::collections::hash_map::RandomState; 2],
}

impl Default for SourceLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimiter").field("slots", &SLOTS).finish()
    }
}

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
        Self { slots: Mutex::new(vec![[Slot::default(); 2]; SLOTS]), hashers: Default::default() }
    }

    fn index(&self, source: IpAddr, which: usize) -> usize {
        let mut h = self.hashers[which].build_hasher();
        source_of(source).hash(&mut h);
        (std::hash::Hasher::finish(&h) % SLOTS as u64) as usize
    }

    /// Counts one event from `source` at `now_unix`; `Err(retry_after_secs)` when it already had
    /// `limit` in this window (then it is not counted).
    pub fn hit(&self, source: IpAddr, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.apply(source, limit, now_unix, true)
    }

    /// As [`hit`](Self::hit) without counting: is `source` already at `limit`?
    pub fn check(&self, source: IpAddr, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.apply(source, limit, now_unix, false)
    }

    fn apply(&self, source: IpAddr, limit: u32, now_unix: u64, count: bool) -> Result<(), u64> {
        let window = now_unix - now_unix % WINDOW;
        let idx = [self.index(source, 0), self.index(source, 1)];
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = u32::MAX;
        for (which, &i) in idx.iter().enumerate() {
            let slot = &mut slots[i][which];
            if slot.window != window {
                *slot = Slot { window, count: 0 };
            }
            seen = seen.min(slot.count);
        }
        if seen >= limit {
            return Err(window + WINDOW - now_unix);
        }
        if count {
            for (which, &i) in idx.iter().enumerate() {
                let slot = &mut slots[i][which];
                slot.count = slot.count.saturating_add(1);
            }
        }
        Ok(())
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
    fn limits_per_source_and_window() {
        let l = SourceLimiter::new();
        for _ in 0..3 {
            l.hit(ip("192.0.2.1"), 3, 6_000).unwrap();
        }
        assert_eq!(l.check(ip("192.0.2.1"), 3, 6_010), Err(50));
        assert_eq!(l.hit(ip("192.0.2.1"), 3, 6_010), Err(50));
        l.hit(ip("192.0.2.2"), 3, 6_010).unwrap();
        l.hit(ip("192.0.2.1"), 3, 6_060).unwrap();
    }

    #[test]
    fn check_does_not_count() {
        let l = SourceLimiter::new();
        for _ in 0..10 {
            l.check(ip("192.0.2.1"), 1, 0).unwrap();
        }
        l.hit(ip("192.0.2.1"), 1, 0).unwrap();
        assert!(l.check(ip("192.0.2.1"), 1, 0).is_err());
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

    #[test]
    fn memory_is_fixed_and_most_sources_are_unaffected_by_a_flood() {
        let l = SourceLimiter::new();
        // 100k distinct flooding sources, each at the limit: the table does not grow, and a
        // fresh source is still let in unless both its slots collide with heavy ones.
        for i in 0..100_000u32 {
            let _ = l.hit(IpAddr::from(i.to_be_bytes()), 1, 0);
        }
        assert_eq!(l.slots.lock().unwrap().len(), SLOTS);
        let let_in = (0..100u32).filter(|i| l.check(IpAddr::from((0xC000_0000 + i).to_be_bytes()), 60, 0).is_ok());
        assert_eq!(let_in.count(), 100);
    }
}
