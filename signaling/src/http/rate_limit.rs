//! Fixed one-minute windows per key (user or client address). Pure: time is an argument. Per
//! instance; with several instances the effective limit is per instance, which is enough to stop
//! one client hammering credential issuance.

use std::collections::HashMap;
use std::sync::Mutex;

/// Window length in seconds.
const WINDOW: u64 = 60;
/// Keys kept before old windows are swept.
const SWEEP_AT: usize = 10_000;

/// Counters.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request for `key` against `limit` per minute at `now_unix`; `Err(retry_after)`
    /// when over.
    pub fn check(&self, key: &str, limit: u32, now_unix: u64) -> Result<(), u64> {
        let window = now_unix - now_unix % WINDOW;
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, (start, _)| *start == window);
        }
        let entry = map.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return Err(window + WINDOW - now_unix);
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let l = RateLimiter::new();
        for _ in 0..3 {
            l.check("u:a", 3, 6_000).unwrap();
        }
        assert_eq!(l.check("u:a", 3, 6_010), Err(50));
        l.check("u:b", 3, 6_010).unwrap();
        l.check("u:a", 3, 6_060).unwrap();
    }
}
