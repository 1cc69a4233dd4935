//! Relay port bookkeeping for one relay IP: which ports of the configured range this server holds.
//! Kept in the core so leaks (through reservations, expiry or errors) are visible to unit tests.

use rand::Rng;

pub struct PortPool {
    min: u16,
    max: u16,
    used: Vec<u64>,
    in_use: usize,
}

impl PortPool {
    pub fn new(min: u16, max: u16) -> Self {
        PortPool { min, max, used: vec![0; 1024], in_use: 0 }
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    pub fn is_used(&self, port: u16) -> bool {
        self.used[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    fn set(&mut self, port: u16, used: bool) {
        let word = &mut self.used[usize::from(port / 64)];
        let bit = 1u64 << (port % 64);
        if used && *word & bit == 0 {
            *word |= bit;
            self.in_use += 1;
        } else if !used && *word & bit != 0 {
            *word &= !bit;
            self.in_use -= 1;
        }
    }

    /// A free port from a random starting point, skipping `exclude` (ports that failed to bind this
    /// round). With `even`, an even port; with `pair`, an even port whose successor is free too.
    pub fn pick(&self, rng: &mut impl Rng, even: bool, pair: bool, exclude: &[u16]) -> Option<u16> {
        if self.min > self.max {
            return None;
        }
        let span = u32::from(self.max - self.min) + 1;
        let start = rng.gen_range(0..span);
        (0..span).map(|i| (self.min as u32 + (start + i) % span) as u16).find(|&p| {
            let ok_even = !(even || pair) || p % 2 == 0;
            let ok_pair = !pair || (p < self.max && !self.is_used(p + 1) && !exclude.contains(&(p + 1)));
            ok_even && ok_pair && !self.is_used(p) && !exclude.contains(&p)
        })
    }

    pub fn take(&mut self, port: u16) {
        self.set(port, true);
    }

    pub fn release(&mut self, port: u16) {
        self.set(port, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn picks_within_range_and_tracks_use() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut pool = PortPool::new(50000, 50003);
        let mut got = Vec::new();
        while let Some(p) = pool.pick(&mut rng, false, false, &[]) {
            assert!((50000..=50003).contains(&p));
            pool.take(p);
            got.push(p);
        }
        got.sort();
        assert_eq!(got, vec![50000, 50001, 50002, 50003]);
        assert_eq!(pool.in_use(), 4);
        pool.release(50002);
        pool.release(50002);
        assert_eq!(pool.in_use(), 3);
        assert_eq!(pool.pick(&mut rng, false, false, &[]), Some(50002));
        assert_eq!(pool.pick(&mut rng, false, false, &[50002]), None);
    }

    #[test]
    fn even_and_pair_constraints() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut pool = PortPool::new(50001, 50004);
        for _ in 0..20 {
            let p = pool.pick(&mut rng, true, false, &[]).unwrap_or(0);
            assert_eq!(p % 2, 0);
        }
        pool.take(50003);
        // 50002's successor is taken and 50004 has none in range.
        assert_eq!(pool.pick(&mut rng, true, true, &[]), None);
        pool.release(50003);
        assert_eq!(pool.pick(&mut rng, true, true, &[]), Some(50002));
    }

    #[test]
    fn empty_range_yields_nothing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert_eq!(PortPool::new(5, 4).pick(&mut rng, false, false, &[]), None);
    }
}
