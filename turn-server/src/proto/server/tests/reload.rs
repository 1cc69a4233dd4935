//! Reloading the configuration under live allocations.

use super::*;

#[test]
fn reload_rotates_secrets_without_dropping_live_allocations() {
    let mut h = Harness::new(config());
    let mut live = Client::rest("203.0.113.5:1", "bob", T0_UNIX + 3600);
    assert_eq!(live.allocated(&mut h, &[]).message_type().class, Class::Success);

    let mut rotated = config();
    rotated.credentials.rest = Some(RestSecrets::new(["brand-new-secret"]).unwrap());
    rotated.peer_policy = PeerPolicy::new(PeerPolicyConfig { allow_loopback: true, ..PeerPolicyConfig::default() });
    rotated.realm = "other.example".into();
    assert_eq!(h.server.reload(h.now(), rotated), vec!["realm"], "the realm needs a restart and is kept");
    assert_eq!(h.server.config().realm, REALM);

    // The call in progress keeps refreshing with the key it was created with.
    let req = live.request(Method::Refresh, &[lifetime(600)]);
    assert_eq!(lifetime_of(&live.ask(&mut h, &req)), 600);
    // The new peer policy applies to new permissions at once.
    let req = peer_request(&mut live, Method::CreatePermission, "127.0.0.1:9", &[]);
    assert_eq!(live.ask(&mut h, &req).message_type().class, Class::Success);
    // New allocations need the new secret.
    let mut old = Client::rest("203.0.113.5:2", "bob", T0_UNIX + 3600);
    assert_eq!(error_code(&Message::parse(&old.allocate(&mut h, &[])).unwrap()), 401);
    let username = format!("{}:carol", T0_UNIX + 3600);
    let password = ice_config::rest_password(b"brand-new-secret", &username);
    let mut new = Client::with_password("203.0.113.5:3", &username, &password);
    assert_eq!(new.allocated(&mut h, &[]).message_type().class, Class::Success);
}
