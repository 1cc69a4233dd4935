//! Abuse resistance: rate-limited challenges, credential lifetimes, per-source caps.

use super::*;

#[test]
fn challenges_are_rate_limited_per_source() {
    let mut cfg = config();
    cfg.unauthenticated_rate = 2;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    let answered =
        (0..10).filter(|_| h.send(c.tuple, &c.unauthenticated(Method::Allocate, &[udp()])).is_some()).count();
    assert_eq!(answered, 4, "a burst of twice the rate, then silence");
    // Another source is unaffected, and time refills the bucket.
    let mut other = Client::rest("198.51.100.77:1", "bob", T0_UNIX + 3600);
    assert!(h.send(other.tuple, &other.unauthenticated(Method::Allocate, &[udp()])).is_some());
    h.elapsed += Duration::from_secs(1);
    assert!(h.send(c.tuple, &c.unauthenticated(Method::Allocate, &[udp()])).is_some());
}

#[test]
fn credentials_expiring_too_far_ahead_are_refused() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 10 * 365 * 86_400);
    assert_eq!(error_code(&Message::parse(&c.allocate(&mut h, &[])).unwrap()), 401);
    let mut ok = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 6 * 86_400);
    assert_eq!(ok.allocated(&mut h, &[]).message_type().class, Class::Success);
}

#[test]
fn allocations_per_source_address_are_capped() {
    let mut cfg = config();
    cfg.quotas.per_source = 2;
    let mut h = Harness::new(cfg);
    for (i, want) in [(1, Class::Success), (2, Class::Success), (3, Class::Error)] {
        let mut c = Client::rest(&format!("203.0.113.5:{i}"), &format!("user{i}"), T0_UNIX + 3600);
        let msg = c.allocated(&mut h, &[]);
        assert_eq!(msg.message_type().class, want);
        if want == Class::Error {
            assert_eq!(error_code(&msg), 486);
        }
    }
    let mut elsewhere = Client::rest("203.0.113.6:1", "user9", T0_UNIX + 3600);
    assert_eq!(elsewhere.allocated(&mut h, &[]).message_type().class, Class::Success);
}
