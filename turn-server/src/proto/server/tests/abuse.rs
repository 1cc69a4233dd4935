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

#[test]
fn the_challenge_rate_limit_is_one_per_source_for_the_whole_relay() {
    let mut cfg = config();
    cfg.unauthenticated_rate = 2;
    let ledger = Arc::new(Ledger::new(&cfg, [9; 32]));
    let mut one = Harness::with_server(Server::with_ledger(cfg.clone(), [1; 32], ledger.clone()));
    let mut two = Harness::with_server(Server::with_ledger(cfg.clone(), [2; 32], ledger));
    // One host's 5-tuples, spread over two workers: its burst (4) is shared, not doubled.
    let mut a = Client::rest("203.0.113.5:1000", "bob", T0_UNIX + 3600);
    let mut b = Client::rest("203.0.113.5:1001", "bob", T0_UNIX + 3600);
    let mut answered = 0;
    for _ in 0..10 {
        answered += usize::from(one.send(a.tuple, &a.unauthenticated(Method::Allocate, &[udp()])).is_some());
        answered += usize::from(two.send(b.tuple, &b.unauthenticated(Method::Allocate, &[udp()])).is_some());
    }
    assert_eq!(answered, 4, "a burst of twice the rate for the relay, then silence on every worker");
    assert_eq!(one.server.stats().unauthenticated_suppressed + two.server.stats().unauthenticated_suppressed, 16);
    // Another source is unaffected; time refills the one bucket for both workers.
    let mut other = Client::rest("198.51.100.77:1", "bob", T0_UNIX + 3600);
    assert!(two.send(other.tuple, &other.unauthenticated(Method::Allocate, &[udp()])).is_some());
    one.elapsed += Duration::from_secs(1);
    two.elapsed += Duration::from_secs(1);
    assert!(one.send(a.tuple, &a.unauthenticated(Method::Allocate, &[udp()])).is_some());
    assert!(two.send(b.tuple, &b.unauthenticated(Method::Allocate, &[udp()])).is_some());
    assert!(one.send(a.tuple, &a.unauthenticated(Method::Allocate, &[udp()])).is_none());

    // A reload on every worker applies the new rate to the shared limiter, buckets full again.
    cfg.unauthenticated_rate = 5;
    for h in [&mut one, &mut two] {
        let now = h.now();
        h.server.reload(now, cfg.clone());
    }
    let answered =
        (0..20).filter(|_| two.send(b.tuple, &b.unauthenticated(Method::Allocate, &[udp()])).is_some()).count();
    assert_eq!(answered, 10);
}
