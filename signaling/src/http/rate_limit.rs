//! Fixed one-minute windows per key (user or client address) for the REST routes: the shared
//! constant-memory [`WindowLimiter`](crate::limiter::WindowLimiter), so requests with ever new
//! users or addresses cannot grow memory. Per instance; with several instances the effective
//! limit is per instance, which is enough to stop one client hammering credential issuance.

/// Counters, keyed `ip:<address>` or `user:<id>` (one table: a collision between the two kinds
/// can only limit early).
pub type RateLimiter = crate::limiter::WindowLimiter<str>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let l = RateLimiter::new();
        for _ in 0..3 {
            l.hit("u:a", 3, 6_000).unwrap();
        }
        assert_eq!(l.hit("u:a", 3, 6_010), Err(50));
        l.hit("u:b", 3, 6_010).unwrap();
        l.hit("u:a", 3, 6_060).unwrap();
    }
}
