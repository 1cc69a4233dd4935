//! The core's one notion of time: a point on the driver's monotonic clock, counted from an epoch
//! the driver picks. The core never reads a clock; it compares and adds these. Being a plain
//! duration, it lets tests start at a fixed epoch and move time by hand, exactly and repeatably.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A monotonic instant, as the time since the driver's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The driver's epoch (tests start here).
    pub const EPOCH: Instant = Instant(Duration::ZERO);

    pub const fn from_epoch(since: Duration) -> Self {
        Instant(since)
    }

    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
    }
}

/// Stops at the epoch: nothing here is earlier than the driver's start.
impl Sub<Duration> for Instant {
    type Output = Instant;

    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d))
    }
}
