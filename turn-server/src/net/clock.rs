//! The driver's clock: the one place the relay reads the time it hands to the core. The core counts
//! time from an epoch (`proto::Instant`); here that epoch is the first read in the process, so
//! every worker thread speaks the same time.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proto::{Instant, Now};

static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();

fn epoch() -> std::time::Instant {
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Both clocks, now.
pub fn now() -> Now {
    let instant = Instant::from_epoch(std::time::Instant::now().saturating_duration_since(epoch()));
    let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Now { instant, unix_secs }
}

/// A core instant on the monotonic clock, for sleeping until it.
pub fn to_std(at: Instant) -> std::time::Instant {
    epoch() + at.since_epoch()
}

/// How long from now until `at` (zero if it has passed).
pub fn until(at: Instant) -> Duration {
    to_std(at).saturating_duration_since(std::time::Instant::now())
}
