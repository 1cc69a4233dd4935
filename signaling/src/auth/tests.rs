//! Token verification against tokens signed here with each algorithm.
#![allow(clippy::unwrap_used)]

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef-test-secret";
fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn cfg() -> SignalingConfig {
    SignalingConfig {
        jwt_secret: Some(SECRET.into()),
        api_keys: vec!["server-key-0123456789".into()],
        ..SignalingConfig::default()
    }
}

fn hs(claims: serde_json::Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

#[test]
fn valid_hs256_token() {
    let a = Authenticator::from_config(&cfg()).unwrap();
    let p = a.verify_jwt(&hs(json!({"sub": "alice", "exp": now() + 60})), now()).unwrap();
    assert_eq!(p, Principal { user: "alice".into(), expires_at: Some(now() + 60) });
    // Numeric ids are common in messenger backends.
    let p = a.verify_jwt(&hs(json!({"sub": 42, "exp": now() + 60})), now()).unwrap();
    assert_eq!(p.user, "42");
}

#[test]
fn time_claims() {
    let a = Authenticator::from_config(&SignalingConfig { jwt_leeway_secs: 0, ..cfg() }).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    assert_eq!(a.verify_jwt(&hs(json!({"sub": "a", "exp": now - 10})), now), Err(AuthError::Expired));
    assert_eq!(
        a.verify_jwt(&hs(json!({"sub": "a", "exp": now + 60, "nbf": now + 30})), now),
        Err(AuthError::NotYetValid)
    );
    assert!(matches!(a.verify_jwt(&hs(json!({"sub": "a"})), now), Err(AuthError::Claims(_))));
}

#[test]
fn signature_algorithm_and_garbage() {
    let a = Authenticator::from_config(&cfg()).unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let other = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "a", "exp": exp}),
        &EncodingKey::from_secret(b"another-secret-of-16"),
    )
    .unwrap();
    assert_eq!(a.verify_jwt(&other, now()), Err(AuthError::BadSignature));
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &json!({"sub": "a", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(a.verify_jwt(&hs384, now()), Err(AuthError::Algorithm(_))));
    // alg "none" with no signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIn0.";
    assert!(a.verify_jwt(none, now()).is_err());
    assert_eq!(a.verify_jwt("not-a-jwt", now()), Err(AuthError::Malformed));
    // RS256 token but no public key configured.
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(testdata("rsa-private.pem")).unwrap()).unwrap();
    let rs = encode(&Header::new(Algorithm::RS256), &json!({"sub": "a", "exp": exp}), &rsa).unwrap();
    assert!(matches!(a.verify_jwt(&rs, now()), Err(AuthError::Algorithm(_))));
}

#[test]
fn issuer_audience_and_user_claim() {
    let a = Authenticator::from_config(&SignalingConfig {
        jwt_issuer: Some("https://m.example".into()),
        jwt_audience: Some("calls".into()),
        jwt_user_claim: "uid".into(),
        ..cfg()
    })
    .unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let ok = hs(json!({"uid": "u1", "iss": "https://m.example", "aud": "calls", "exp": exp}));
    assert_eq!(a.verify_jwt(&ok, now()).unwrap().user, "u1");
    assert_eq!(
        a.verify_jwt(&hs(json!({"uid": "u1", "iss": "x", "aud": "calls", "exp": exp})), now()),
        Err(AuthError::Issuer)
    );
    assert_eq!(
        a.verify_jwt(&hs(json!({"uid": "u1", "iss": "https://m.example", "aud": "x", "exp": exp})), now()),
        Err(AuthError::Audience)
    );
    assert!(a.verify_jwt(&hs(json!({"uid": "u1", "aud": "calls", "exp": exp})), now()).is_err());
    assert_eq!(
        a.verify_jwt(&hs(json!({"sub": "u1", "iss": "https://m.example", "aud": "calls", "exp": exp})), now()),
        Err(AuthError::NoUser("uid".into()))
    );
}

#[test]
fn unconfigured_audience_is_not_checked() {
    let a = Authenticator::from_config(&cfg()).unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    assert!(a.verify_jwt(&hs(json!({"sub": "a", "aud": "anything", "exp": exp})), now()).is_ok());
}

#[test]
fn rs256_and_es256_public_keys() {
    let exp = jsonwebtoken::get_current_timestamp() + 60;
    let rsa = Authenticator::from_config(&SignalingConfig {
        jwt_public_key: Some(testdata("rsa-public.pem")),
        ..SignalingConfig::default()
    })
    .unwrap();
    let key = EncodingKey::from_rsa_pem(&std::fs::read(testdata("rsa-private.pem")).unwrap()).unwrap();
    let token = encode(&Header::new(Algorithm::RS256), &json!({"sub": "r", "exp": exp}), &key).unwrap();
    assert_eq!(rsa.verify_jwt(&token, now()).unwrap().user, "r");
    let ec = Authenticator::from_config(&SignalingConfig {
        jwt_public_key: Some(testdata("ec-public.pem")),
        ..SignalingConfig::default()
    })
    .unwrap();
    let key = EncodingKey::from_ec_pem(&std::fs::read(testdata("ec-private.pem")).unwrap()).unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &json!({"sub": "e", "exp": exp}), &key).unwrap();
    assert_eq!(ec.verify_jwt(&token, now()).unwrap().user, "e");
    // An ES256 token is not accepted by the RSA-only verifier.
    assert!(rsa.verify_jwt(&token, now()).is_err());
    assert!(matches!(
        Authenticator::from_config(&SignalingConfig {
            jwt_public_key: Some(testdata("README")),
            ..SignalingConfig::default()
        }),
        Err(KeyError::Format(_))
    ));
}

#[test]
fn api_keys_need_a_user() {
    let a = Authenticator::from_config(&cfg()).unwrap();
    assert_eq!(a.authenticate("server-key-0123456789", Some("bob"), now()).unwrap().user, "bob");
    assert_eq!(a.authenticate("server-key-0123456789", None, now()), Err(AuthError::ApiKeyWithoutUser("user".into())));
    assert!(a.authenticate("server-key-012345678", Some("bob"), now()).is_err());
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer  abc "), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearer "), None);
    assert!(valid_user_id("u-1"));
    assert!(!valid_user_id(""));
    assert!(!valid_user_id("a|b"));
    assert!(!valid_user_id(&"x".repeat(129)));
}
