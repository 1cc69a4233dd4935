//! Fixed one-minute windows per key in a fixed-size table, shared by every per-client limit of
//! the service (new Socket.IO sessions and refused handshakes per source address, REST requests
//! per address and per user), so a flood with ever new keys cannot grow the service's memory
//! and no request pays for a sweep. Pure: time is an argument.
//!
//! Each key hashes (with per-process random keys, so an attacker cannot aim collisions) to two
//! slots of the table and its count is the smaller of the two, as in a count-min sketch.
//! Collisions can only overcount: a key may be limited early, never late.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Mutex;

/// Window length in seconds.
const WINDOW: u64 = 60;
/// Slots in the table: 2 x 4096 x 16 bytes, whatever the number of keys.
const SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Slot {
    window: u64,
    count: u32,
}

/// Fixed one-minute windows per key of type `K`, in constant memory.
pub struct WindowLimiter<K: ?Sized> {
    slots: Mutex<Vec<[Slot; 2]>>,
    hashers: [RandomState; 2],
    // Only hashed, never stored: the limiter is Send + Sync whatever K is.
    key: PhantomData<fn(&K)>,
}

impl<K: Hash + ?Sized> Default for WindowLimiter<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: ?Sized> std::fmt::Debug for WindowLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowLimiter").field("slots", &SLOTS).finish()
    }
}

impl<K: Hash + ?Sized> WindowLimiter<K> {
    /// An empty table.
    pub fn new() -> Self {
        Self { slots: Mutex::new(vec![[Slot::default(); 2]; SLOTS]), hashers: Default::default(), key: PhantomData }
    }

    fn index(&self, key: &K, which: usize) -> usize {
        (self.hashers[which].hash_one(key) % SLOTS as u64) as usize
    }

    /// Counts one event of `key` at `now_unix`; `Err(retry_after_secs)` when it already had
    /// `limit` in this window (then it is not counted).
    pub fn hit(&self, key: &K, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.apply(key, limit, now_unix, true)
    }

    /// As [`hit`](Self::hit) without counting: is `key` already at `limit`?
    pub fn check(&self, key: &K, limit: u32, now_unix: u64) -> Result<(), u64> {
        self.apply(key, limit, now_unix, false)
    }

    fn apply(&self, key: &K, limit: u32, now_unix: u64, count: bool) -> Result<(), u64> {
        let window = now_unix - now_unix % WINDOW;
        let idx = [self.index(key, 0), self.index(key, 1)];
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

    #[test]
    fn check_does_not_count() {
        let l = WindowLimiter::<u32>::new();
        for _ in 0..10 {
            l.check(&1, 1, 0).unwrap();
        }
        l.hit(&1, 1, 0).unwrap();
        assert!(l.check(&1, 1, 0).is_err());
    }

    #[test]
    fn memory_is_fixed_and_most_keys_are_unaffected_by_a_flood() {
        let l = WindowLimiter::<u32>::new();
        // 100k distinct flooding keys, each at the limit: the table does not grow, and a fresh
        // key is still let in unless both its slots collide with heavy ones.
        for i in 0..100_000u32 {
            let _ = l.hit(&i, 1, 0);
        }
        assert_eq!(l.slots.lock().unwrap().len(), SLOTS);
        let let_in = (0..100u32).filter(|i| l.check(&(0xC000_0000 + i), 60, 0).is_ok());
        assert_eq!(let_in.count(), 100);
    }
}
