//! Rate limit for answers to unauthenticated requests (401, 438 and other errors), per source
//! address, without per-source state: a fixed table of token buckets indexed by a keyed hash of the
//! address. A flood from spoofed sources cannot grow memory, and an attacker cannot aim collisions
//! at a victim's bucket without the key. Sharing a bucket with a colliding address only ever makes
//! the limit stricter, never looser.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::proto::time::Instant;

const BUCKETS: usize = 4096;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f32,
    refilled: Option<Instant>,
}

pub struct SourceLimiter {
    per_second: f32,
    burst: f32,
    hasher: RandomState,
    buckets: Box<[Bucket]>,
}

impl SourceLimiter {
    /// `per_second` answers per source, with bursts of twice that; 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        let per_second = per_second as f32;
        SourceLimiter {
            per_second,
            burst: (2.0 * per_second).max(1.0),
            hasher: RandomState::new(),
            buckets: vec![Bucket { tokens: 0.0, refilled: None }; BUCKETS].into_boxed_slice(),
        }
    }

    /// Takes one token for `ip`; false means: stay silent.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let index = (self.hasher.hash_one(ip) as usize) % BUCKETS;
        let b = &mut self.buckets[index];
        let elapsed = b.refilled.map_or(f32::INFINITY, |t| now.saturating_duration_since(t).as_secs_f32());
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.refilled = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let mut l = SourceLimiter::new(10);
        let ip: IpAddr = [198, 51, 100, 1].into();
        let t0 = Instant::EPOCH;
        let allowed = (0..100).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(allowed, 20, "burst of twice the rate");
        assert!(!l.allow(ip, t0 + Duration::from_millis(50)));
        assert!(l.allow(ip, t0 + Duration::from_millis(150)));
        // Another source has its own budget (barring a 1-in-4096 collision, which this pair avoids
        // with overwhelming probability under a random key; checked over several addresses).
        let others = (2..10u8).filter(|i| l.allow(IpAddr::from([198, 51, 100, *i]), t0)).count();
        assert!(others >= 7);
    }

    #[test]
    fn zero_disables() {
        let mut l = SourceLimiter::new(0);
        let t0 = Instant::EPOCH;
        assert!((0..10_000).all(|_| l.allow([192, 0, 2, 1].into(), t0)));
    }
}
