//! Counter slots: indexes into the program's `counters` array, one per offloaded channel.

use std::collections::VecDeque;

/// Hands out 0..capacity; freed slots are reused oldest first, so a slot freed a moment ago
/// (whose last in-flight packet may still be counting, see `Offload::remove`) waits longest.
#[derive(Debug)]
pub(crate) struct Slots {
    capacity: u32,
    next: u32,
    free: VecDeque<u32>,
    used: Vec<bool>,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Self {
        Slots { capacity, next: 0, free: VecDeque::new(), used: Vec::new() }
    }

    pub(crate) fn take(&mut self) -> Option<u32> {
        let slot = if self.next < self.capacity {
            self.next += 1;
            self.used.push(false);
            self.next - 1
        } else {
            self.free.pop_front()?
        };
        if let Some(used) = self.used.get_mut(slot as usize) {
            *used = true;
        }
        Some(slot)
    }

    pub(crate) fn in_use(&self, slot: u32) -> bool {
        self.used.get(slot as usize).copied().unwrap_or(false)
    }

    pub(crate) fn give_back(&mut self, slot: u32) {
        if let Some(used) = self.used.get_mut(slot as usize) {
            if *used {
                *used = false;
                self.free.push_back(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_then_reuses_oldest_freed_first() {
        let mut s = Slots::new(3);
        assert_eq!((s.take(), s.take(), s.take(), s.take()), (Some(0), Some(1), Some(2), None));
        s.give_back(2);
        s.give_back(0);
        s.give_back(0);
        assert!(!s.in_use(0) && s.in_use(1));
        assert_eq!((s.take(), s.take(), s.take()), (Some(2), Some(0), None));
    }
}
