//! Refresh: extending, deleting, the maximum session length.

use super::*;

#[test]
fn refresh_extends_deletes_and_survives_credential_expiry() {
    let mut h = Harness::new(config());
    // The credential expires 60 s into the call.
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 60);
    c.allocated(&mut h, &[]);
    h.advance(Duration::from_secs(500));
    let req = c.request(Method::Refresh, &[lifetime(600)]);
    let msg = c.ask(&mut h, &req);
    assert_eq!(lifetime_of(&msg), 600, "a call must not drop when its credential expires");
    h.advance(Duration::from_secs(500));
    assert_eq!(h.server.allocation_count(), 1);
    // 1000 s in, the nonce from the start is stale: 438, then the delete goes through.
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    let stale = Message::parse(&h.send(c.tuple, &req).unwrap())
        .map(|m| (error_code(&m), m.get(attr::NONCE).unwrap().to_vec()))
        .unwrap();
    assert_eq!(stale.0, 438);
    c.nonce = stale.1;
    let req = c.request(Method::Refresh, &[lifetime(0)]);
    assert_eq!(lifetime_of(&c.ask(&mut h, &req)), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.sockets.open.is_empty());
    // Refresh without an allocation.
    let req = c.request(Method::Refresh, &[]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 437);
}

#[test]
fn refresh_is_bounded_by_max_session() {
    let mut cfg = config();
    cfg.lifetimes.max_session = Some(Duration::from_secs(900));
    cfg.nonce_lifetime_secs = 100_000;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    h.advance(Duration::from_secs(500));
    let req = c.request(Method::Refresh, &[lifetime(3600)]);
    assert_eq!(lifetime_of(&c.ask(&mut h, &req)), 400);
    h.advance(Duration::from_secs(401));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn refresh_with_other_family_is_443_and_other_username_441() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    c.allocated(&mut h, &[]);
    let req = c.request(Method::Refresh, &[(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    assert_eq!(error_code(&c.ask(&mut h, &req)), 443);
    let mut other = Client::rest("203.0.113.5:1", "eve", T0_UNIX + 3600);
    other.nonce = c.nonce.clone();
    let req = other.request(Method::Refresh, &[]);
    assert_eq!(error_code(&Message::parse(&h.send(c.tuple, &req).unwrap()).unwrap()), 441);
}
