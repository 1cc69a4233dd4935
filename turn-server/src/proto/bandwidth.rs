//! Bandwidth caps (coturn's `max-bps`, and a per-user cap): token buckets in bytes, refilled from
//! the time the driver hands in, so they are tested by moving `now` like everything else here.
//!
//! Over the rate a datagram is dropped, not queued: a relay that buffered for a slow allowance
//! would add latency to a real-time call and memory to an abusive one.

use crate::proto::time::Instant;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The smallest burst a bucket allows, whatever the rate: one largest UDP payload, so a low cap
/// still lets every datagram through eventually instead of starving big ones for ever.
const MIN_BURST: u64 = 65_536;

/// Bytes per second a cap allows; 0 means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BandwidthCaps {
    pub per_allocation: u64,
    pub per_user: u64,
}

/// Which way a datagram travels; each direction has its own allowance (as coturn counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToPeer = 0,
    FromPeer = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ToPeer, Direction::FromPeer];

    pub fn label(self) -> &'static str {
        match self {
            Direction::ToPeer => "to_peer",
            Direction::FromPeer => "from_peer",
        }
    }
}

/// One allowance: `tokens` bytes now, refilled at the cap's rate up to one second's worth.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: u64,
    /// The instant up to which refills have been credited. Advanced only by the time the credited
    /// bytes stand for, so fractions of a byte are not lost between closely spaced packets.
    credited_until: Instant,
}

impl TokenBucket {
    /// A full bucket: a new allocation may start with a burst.
    pub fn new(now: Instant, rate: u64) -> Self {
        TokenBucket { tokens: burst(rate), credited_until: now }
    }

    /// Takes `bytes` if the allowance at `rate` bytes/s has them.
    pub fn take(&mut self, now: Instant, bytes: u64, rate: u64) -> bool {
        self.refill(now, rate);
        if self.tokens < bytes {
            return false;
        }
        self.tokens -= bytes;
        true
    }

    fn refill(&mut self, now: Instant, rate: u64) {
        let burst = burst(rate);
        let elapsed = now.saturating_duration_since(self.credited_until);
        let earned = elapsed.as_nanos().saturating_mul(u128::from(rate)) / 1_000_000_000;
        let earned = u64::try_from(earned).unwrap_or(u64::MAX);
        if earned == 0 {
            return;
        }
        let room = burst.saturating_sub(self.tokens);
        if earned >= room {
            // Full: time beyond what filled it is not saved up.
            self.tokens = burst;
            self.credited_until = now;
        } else {
            self.tokens += earned;
            let nanos = u128::from(earned) * 1_000_000_000 / u128::from(rate.max(1));
            self.credited_until += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
    }
}

fn burst(rate: u64) -> u64 {
    rate.max(MIN_BURST)
}

/// The two directions' buckets of one holder (an allocation or a user).
#[derive(Debug, Clone, Copy)]
pub struct DirectionalBuckets([TokenBucket; 2]);

impl DirectionalBuckets {
    pub fn new(now: Instant, rate: u64) -> Self {
        DirectionalBuckets([TokenBucket::new(now, rate); 2])
    }

    pub fn take(&mut self, now: Instant, direction: Direction, bytes: u64, rate: u64) -> bool {
        self.0[direction as usize].take(now, bytes, rate)
    }

    /// Gives back what `take` just took, when a second cap refused the same datagram.
    pub fn refund(&mut self, direction: Direction, bytes: u64) {
        let bucket = &mut self.0[direction as usize];
        bucket.tokens = bucket.tokens.saturating_add(bytes);
    }
}

/// A user's two allowances, shared by every worker serving the user's allocations without a lock:
/// each direction is one atomic "theoretical arrival time" (the generic cell rate algorithm). A
/// datagram of `bytes` pushes it `bytes / rate` later; it passes while that stays within one burst
/// of `now`. This is the token bucket above, kept as the time its debt runs out instead of a count,
/// so one compare-and-swap updates it.
#[derive(Debug)]
pub struct SharedBuckets {
    /// Times are nanoseconds since this (the moment the buckets were made, full).
    base: Instant,
    due: [AtomicU64; 2],
}

impl SharedBuckets {
    pub fn new(now: Instant) -> Self {
        SharedBuckets { base: now, due: [AtomicU64::new(0), AtomicU64::new(0)] }
    }

    /// Takes `bytes` if the allowance at `rate` bytes/s has them.
    pub fn take(&self, now: Instant, direction: Direction, bytes: u64, rate: u64) -> bool {
        let now = nanos(now.saturating_duration_since(self.base));
        let cost = nanos_for(bytes, rate);
        let window = nanos_for(burst(rate), rate);
        let due = &self.due[direction as usize];
        // Relaxed: the value stands alone; nothing else is published through it.
        due.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            let next = d.max(now).saturating_add(cost);
            (next <= now.saturating_add(window)).then_some(next)
        })
        .is_ok()
    }

    /// Gives back what `take` just took, when another cap refused the same datagram.
    pub fn refund(&self, direction: Direction, bytes: u64, rate: u64) {
        let cost = nanos_for(bytes, rate);
        let _ = self.due[direction as usize]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d.saturating_sub(cost)));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long `rate` bytes/s takes to earn `bytes`.
fn nanos_for(bytes: u64, rate: u64) -> u64 {
    let n = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = 100_000;

    #[test]
    fn a_full_bucket_allows_one_second_of_traffic_then_refuses() {
        let t0 = Instant::EPOCH;
        let mut b = TokenBucket::new(t0, RATE);
        let passed = (0..200).filter(|_| b.take(t0, 1000, RATE)).count();
        assert_eq!(passed, 100);
        assert!(!b.take(t0, 1, RATE));
    }

    #[test]
    fn refills_at_the_rate_and_keeps_fractions_of_a_byte() {
        let t0 = Instant::EPOCH;
        let mut b = TokenBucket::new(t0, RATE);
        assert!(b.take(t0, RATE, RATE));
        // 10 µs at 100 kB/s is one byte: many tiny steps must add up, not round down to nothing.
        let mut now = t0;
        for _ in 0..1000 {
            now += Duration::from_micros(3);
            let _ = b.take(now, 0, RATE);
        }
        // 3 ms = 300 bytes.
        assert!(b.take(now, 300, RATE));
        assert!(!b.take(now, 1, RATE));
    }

    #[test]
    fn idle_time_is_not_saved_beyond_the_burst() {
        let t0 = Instant::EPOCH;
        let mut b = TokenBucket::new(t0, RATE);
        assert!(b.take(t0, RATE, RATE));
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(later, RATE, RATE));
        assert!(!b.take(later, 1, RATE));
    }

    #[test]
    fn a_low_cap_still_lets_a_large_datagram_through() {
        let t0 = Instant::EPOCH;
        let mut b = TokenBucket::new(t0, 1000);
        assert!(b.take(t0, 1200, 1000));
        assert!(b.take(t0, 60_000, 1000));
        assert!(!b.take(t0, 60_000, 1000));
        // 60 s at 1 kB/s earns 60 kB.
        assert!(b.take(t0 + Duration::from_secs(60), 60_000, 1000));
    }

    #[test]
    fn directions_are_separate() {
        let t0 = Instant::EPOCH;
        let mut b = DirectionalBuckets::new(t0, RATE);
        assert!(b.take(t0, Direction::ToPeer, RATE, RATE));
        assert!(!b.take(t0, Direction::ToPeer, 1, RATE));
        assert!(b.take(t0, Direction::FromPeer, RATE, RATE));
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let t0 = Instant::EPOCH + Duration::from_secs(10);
        let mut b = TokenBucket::new(t0, RATE);
        assert!(b.take(t0, RATE, RATE));
        assert!(!b.take(t0 - Duration::from_secs(5), 1, RATE));
    }

    #[test]
    fn shared_buckets_allow_one_burst_then_refill_at_the_rate() {
        let t0 = Instant::EPOCH;
        let b = SharedBuckets::new(t0);
        let passed = (0..200).filter(|_| b.take(t0, Direction::ToPeer, 1000, RATE)).count();
        assert_eq!(passed, 100);
        assert!(b.take(t0, Direction::FromPeer, 1000, RATE), "directions are separate");
        // 10 ms at 100 kB/s earns 1000 bytes, not more.
        let later = t0 + Duration::from_millis(10);
        assert!(b.take(later, Direction::ToPeer, 1000, RATE));
        assert!(!b.take(later, Direction::ToPeer, 1, RATE));
        b.refund(Direction::ToPeer, 1000, RATE);
        assert!(b.take(later, Direction::ToPeer, 1000, RATE), "a refund is spendable at once");
    }

    #[test]
    fn shared_buckets_do_not_save_idle_time_beyond_the_burst() {
        let b = SharedBuckets::new(Instant::EPOCH);
        let later = Instant::EPOCH + Duration::from_secs(3600);
        assert!(b.take(later, Direction::ToPeer, RATE, RATE));
        assert!(!b.take(later, Direction::ToPeer, 1, RATE));
    }
}
