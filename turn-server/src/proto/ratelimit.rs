//! Rate limit for answers to unauthenticated requests (401, 438 and other errors), per source
//! address, without per-source state: a fixed table of token buckets indexed by a keyed hash of the
//! address. A flood from spoofed sources cannot grow memory, and an attacker cannot aim collisions
//! at a victim's bucket without the key. Sharing a bucket with a colliding address only ever makes
//! the limit stricter, never looser.
//!
//! One limiter serves the whole relay (it lives in the `Ledger`): a host's 5-tuples are spread
//! over the datagram workers, and its limit must not grow with their number. So it takes no lock
//! and needs no `&mut`: each bucket is one atomic "theoretical arrival time" (the generic cell
//! rate algorithm, as `bandwidth::SharedBuckets`), the time its debt is paid, updated with one
//! compare-and-swap. An answer pushes it one interval (1 s / rate) later and is allowed while that
//! stays within one burst (twice the rate) of `now`: the token bucket, kept as a time.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::proto::time::Instant;

const BUCKETS: usize = 4096;
const NANOS_PER_SEC: u64 = 1_000_000_000;

pub struct SourceLimiter {
    /// Answers per second per source; 0 disables the limit. Reload changes it.
    per_second: AtomicU32,
    hasher: RandomState,
    /// Per bucket: nanoseconds after the driver's epoch when its debt is paid (0: full).
    due: Box<[AtomicU64]>,
}

impl SourceLimiter {
    /// `per_second` answers per source, with bursts of twice that; 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        SourceLimiter {
            per_second: AtomicU32::new(per_second),
            hasher: RandomState::new(),
            due: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A new rate, from a reload: every bucket starts full again, as a new limiter's would. Each
    /// worker applies its reload; only the first, which changes the rate, empties the table.
    pub fn set_rate(&self, per_second: u32) {
        if self.per_second.swap(per_second, Ordering::Relaxed) != per_second {
            for due in self.due.iter() {
                due.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Takes one token for `ip`; false means: stay silent.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let per_second = u64::from(self.per_second.load(Ordering::Relaxed));
        if per_second == 0 {
            return true;
        }
        let interval = NANOS_PER_SEC / per_second;
        let window = interval.saturating_mul(2 * per_second);
        let now = u64::try_from(now.since_epoch().as_nanos()).unwrap_or(u64::MAX);
        let index = (self.hasher.hash_one(ip) as usize) % BUCKETS;
        // Relaxed: the value stands alone; nothing else is published through it.
        self.due[index]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |due| {
                let next = due.max(now).saturating_add(interval);
                (next <= now.saturating_add(window)).then_some(next)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let l = SourceLimiter::new(10);
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
    fn refills_keep_fractions_and_idle_time_is_not_saved_beyond_the_burst() {
        let l = SourceLimiter::new(3);
        let ip: IpAddr = [198, 51, 100, 1].into();
        let t0 = Instant::EPOCH + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| l.allow(ip, t0)).count(), 6);
        // One token per 333 ms: polled every millisecond for a second, three answers, not zero
        // (a refill rounded down at each look would lose them all).
        let allowed = (1..=1000).filter(|ms| l.allow(ip, t0 + Duration::from_millis(*ms))).count();
        assert_eq!(allowed, 3);
        // An hour idle refills one burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| l.allow(ip, later)).count(), 6);
    }

    #[test]
    fn zero_disables() {
        let l = SourceLimiter::new(0);
        let t0 = Instant::EPOCH;
        assert!((0..10_000).all(|_| l.allow([192, 0, 2, 1].into(), t0)));
    }

    #[test]
    fn a_new_rate_applies_at_once_with_full_buckets() {
        let l = SourceLimiter::new(1);
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::EPOCH;
        assert_eq!((0..10).filter(|_| l.allow(ip, t0)).count(), 2);
        l.set_rate(5);
        assert_eq!((0..100).filter(|_| l.allow(ip, t0)).count(), 10);
        // The same rate again (another worker's reload) leaves the buckets as they are.
        l.set_rate(5);
        assert!(!l.allow(ip, t0));
        l.set_rate(0);
        assert!((0..100).all(|_| l.allow(ip, t0)));
    }

    #[test]
    fn threads_sharing_a_limiter_never_exceed_the_burst_together() {
        let l = Arc::new(SourceLimiter::new(50));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::EPOCH;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.allow(ip, t0)).count())
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().expect("no panic")).sum();
        assert_eq!(allowed, 100, "one burst for the relay, however many threads ask");
    }
}
