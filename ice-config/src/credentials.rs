//! Time-limited TURN credentials (coturn's "use-auth-secret", a.k.a. the TURN REST API).
//!
//! The signaling service and the relay never talk to each other about users: they share one or
//! more secrets, the signaling service signs `<expiry>[:<user>]` usernames with the first one, and
//! the relay recomputes the password from any of them. A leaked credential therefore stops working
//! at its expiry, and secrets can be rotated by listing the new one first and keeping the old one
//! until every credential it signed has expired.

use std::fmt;

use base64::Engine as _;
use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Why a REST credential was refused or could not be built.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// No secret was configured, so nothing can be signed or verified.
    #[error("no REST API secret is configured")]
    NoSecrets,
    /// An empty secret would make every password publicly computable.
    #[error("a REST API secret is empty")]
    EmptySecret,
    /// The username is not `<unix-expiry>[<separator><user-id>]`.
    #[error("malformed REST username: {0}")]
    Malformed(String),
    /// The credential was valid until `expired_at` (unix seconds).
    #[error("credential expired at unix time {expired_at}")]
    Expired {
        /// The expiry carried in the username.
        expired_at: u64,
    },
    /// The password matches none of the configured secrets.
    #[error("password does not match any configured secret")]
    BadPassword,
}

/// The parts of a REST username, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestUsername<'a> {
    /// Unix time after which the credential is refused.
    pub expires_at: u64,
    /// The application's user id, if the username carried one.
    pub user_id: Option<&'a str>,
}

/// `base64(HMAC-SHA1(secret, username))`, the password coturn derives for a REST username.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1(secret, username.as_bytes()))
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    // RFC 2104 reduces any key to one block (hash if longer, zero-pad if shorter). Doing that
    // here lets us use the infallible fixed-size constructor instead of `new_from_slice`, whose
    // error arm is unreachable for HMAC but would otherwise need an unwrap.
    let mut block = Key::<Hmac<Sha1>>::default();
    if key.len() > block.len() {
        let digest = Sha1::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <Hmac<Sha1> as KeyInit>::new(&block);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Splits `<unix-expiry>[<separator><user-id>]`.
///
/// The user id may itself contain the separator: only the first one splits.
pub fn parse_rest_username(username: &str, separator: char) -> Result<RestUsername<'_>, CredentialError> {
    let (expiry, user_id) = match username.split_once(separator) {
        Some((_, "")) => {
            return Err(CredentialError::Malformed(format!("empty user id after separator {separator:?}")));
        }
        Some((expiry, user)) => (expiry, Some(user)),
        None => (username, None),
    };
    if expiry.is_empty() {
        return Err(CredentialError::Malformed("missing expiry timestamp".into()));
    }
    // u64::from_str accepts a leading '+', which coturn would not; insist on digits only.
    if !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CredentialError::Malformed("expiry timestamp is not a decimal number".into()));
    }
    let expires_at = expiry
        .parse::<u64>()
        .map_err(|_| CredentialError::Malformed("expiry timestamp does not fit in 64 bits".into()))?;
    Ok(RestUsername { expires_at, user_id })
}

/// A credential handed to a client: the `username`/`credential` of an `RTCIceServer`.
#[derive(Clone, PartialEq, Eq)]
pub struct RestCredential {
    /// `<expires_at>[:<user-id>]`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
    /// Unix time after which the relay refuses it.
    pub expires_at: u64,
}

impl fmt::Debug for RestCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials end up in logs through `?cred`; the password alone grants relay access.
        f.debug_struct("RestCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The shared secrets, first one signing, all of them verifying.
#[derive(Clone)]
pub struct RestSecrets {
    secrets: Vec<String>,
}

impl fmt::Debug for RestSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestSecrets").field("count", &self.secrets.len()).finish()
    }
}

impl RestSecrets {
    /// Takes the secrets in priority order; refuses an empty list or an empty secret.
    pub fn new<I, S>(secrets: I) -> Result<Self, CredentialError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let secrets: Vec<String> = secrets.into_iter().map(Into::into).collect();
        if secrets.is_empty() {
            return Err(CredentialError::NoSecrets);
        }
        if secrets.iter().any(String::is_empty) {
            return Err(CredentialError::EmptySecret);
        }
        Ok(Self { secrets })
    }

    /// Number of secrets (at least one).
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Always false: construction refuses an empty list. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Signs a credential valid for `ttl_secs` from `now_unix` with the first secret.
    pub fn issue(&self, user_id: Option<&str>, now_unix: u64, ttl_secs: u64) -> RestCredential {
        self.sign(user_id, now_unix.saturating_add(ttl_secs))
    }

    /// Like [`issue`](Self::issue), with the expiry rounded up to a multiple of `bucket_secs`.
    ///
    /// Every request inside one bucket gets the identical credential, so clients and caches see
    /// a stable ICE config and the relay's nonce/key caches stay warm. The lifetime is therefore
    /// between `ttl_secs` and `ttl_secs + bucket_secs - 1`. A bucket of 0 disables rounding.
    pub fn issue_bucketed(
        &self,
        user_id: Option<&str>,
        now_unix: u64,
        ttl_secs: u64,
        bucket_secs: u64,
    ) -> RestCredential {
        let exact = now_unix.saturating_add(ttl_secs);
        let expires_at = match bucket_secs {
            0 => exact,
            // Near u64::MAX no larger multiple exists; the exact expiry is the best we can do.
            b => exact.checked_next_multiple_of(b).unwrap_or(exact),
        };
        self.sign(user_id, expires_at)
    }

    fn sign(&self, user_id: Option<&str>, expires_at: u64) -> RestCredential {
        let username = match user_id {
            Some(user) => format!("{expires_at}:{user}"),
            None => expires_at.to_string(),
        };
        let password = rest_password(self.signing_secret().as_bytes(), &username);
        RestCredential { username, password, expires_at }
    }

    fn signing_secret(&self) -> &str {
        // `new` guarantees at least one secret; an empty str here would only ever sign with the
        // empty key, never panic.
        self.secrets.first().map(String::as_str).unwrap_or_default()
    }

    /// The password each secret yields for `username`, signing secret first.
    ///
    /// The relay never sees the password itself: it derives a long-term key from each candidate
    /// and checks MESSAGE-INTEGRITY with it.
    pub fn candidate_passwords<'s>(&'s self, username: &'s str) -> impl Iterator<Item = String> + 's {
        self.secrets.iter().map(move |secret| rest_password(secret.as_bytes(), username))
    }

    /// Checks a username/password pair as a client presented it.
    ///
    /// The password is compared in constant time against every secret (no early exit, so timing
    /// does not reveal which secret matched); expiry is checked only after the password matched,
    /// so the answer to a forged password is always [`CredentialError::BadPassword`].
    pub fn verify<'u>(
        &self,
        username: &'u str,
        password: &str,
        now_unix: u64,
        separator: char,
    ) -> Result<RestUsername<'u>, CredentialError> {
        let parsed = parse_rest_username(username, separator)?;
        let mut matched = subtle::Choice::from(0);
        for candidate in self.candidate_passwords(username) {
            matched |= candidate.as_bytes().ct_eq(password.as_bytes());
        }
        if !bool::from(matched) {
            return Err(CredentialError::BadPassword);
        }
        if parsed.expires_at <= now_unix {
            return Err(CredentialError::Expired { expired_at: parsed.expires_at });
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // Computed independently with python3: base64(hmac.new(b"north", msg, sha1).digest()).
    const NORTH_ALICE: &str = "Cd/49soE35ICqcJF/bCTn8Z4OyE=";
    const NORTH_NO_USER: &str = "CWyHi3zCeWqXBir9thl4m+iZPRY=";

    fn secrets(list: &[&str]) -> RestSecrets {
        RestSecrets::new(list.iter().copied()).unwrap()
    }

    #[test]
    fn rest_password_matches_independent_hmac() {
        assert_eq!(rest_password(b"north", "1700000000:alice"), NORTH_ALICE);
        assert_eq!(rest_password(b"north", "1700000000"), NORTH_NO_USER);
    }

    #[test]
    fn rest_password_key_lengths_around_the_block_size() {
        // HMAC-SHA1's block is 64 bytes: 64 is padded, 65 and 200 are hashed first.
        // Expected values from python3 hmac/base64.
        assert_eq!(rest_password(&[7u8; 64], "1"), "IriUVBQoS5zaPFDSuNoWXXUdst8=");
        assert_eq!(rest_password(&[7u8; 65], "1"), "xZocWEZej8zI3SiwkbBRq9wXwJg=");
        assert_eq!(rest_password(&[7u8; 200], "1"), "6CX4ZwawrOoP0g7f7Jcdv8oUyNU=");
        assert_eq!(rest_password(b"", "1"), "nq0XwTu1W/PiJ/j+Yl83j0JCEDg=");
    }

    #[test]
    fn parse_with_and_without_user() {
        assert_eq!(
            parse_rest_username("1700000000:alice", ':').unwrap(),
            RestUsername { expires_at: 1_700_000_000, user_id: Some("alice") }
        );
        assert_eq!(parse_rest_username("42", ':').unwrap(), RestUsername { expires_at: 42, user_id: None });
    }

    #[test]
    fn parse_splits_at_first_separator_only() {
        let parsed = parse_rest_username("10:user:with:colons", ':').unwrap();
        assert_eq!(parsed.user_id, Some("user:with:colons"));
    }

    #[test]
    fn parse_custom_separator() {
        let parsed = parse_rest_username("10-bob:x", '-').unwrap();
        assert_eq!(parsed.expires_at, 10);
        assert_eq!(parsed.user_id, Some("bob:x"));
        // With another separator the ':' is part of the expiry and makes it malformed.
        assert!(matches!(parse_rest_username("10:bob", '-'), Err(CredentialError::Malformed(_))));
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            ":alice",
            "abc",
            "abc:alice",
            "+10",
            "-10",
            " 10",
            "10 ",
            "1e9:alice",
            "10:",
            "18446744073709551616",
            "١٢٣", // Arabic-Indic digits are not ASCII digits
        ] {
            assert!(
                matches!(parse_rest_username(bad, ':'), Err(CredentialError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
    }

    #[test]
    fn parse_accepts_u64_max() {
        let parsed = parse_rest_username("18446744073709551615", ':').unwrap();
        assert_eq!(parsed.expires_at, u64::MAX);
    }

    #[test]
    fn new_rejects_empty_list_and_empty_secret() {
        assert_eq!(RestSecrets::new(Vec::<String>::new()).unwrap_err(), CredentialError::NoSecrets);
        assert_eq!(RestSecrets::new(["a", ""]).unwrap_err(), CredentialError::EmptySecret);
    }

    #[test]
    fn len_and_is_empty() {
        let s = secrets(&["a", "b"]);
        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
    }

    #[test]
    fn debug_hides_secrets() {
        let s = secrets(&["topsecret", "other"]);
        let shown = format!("{s:?}");
        assert!(!shown.contains("topsecret"));
        assert!(shown.contains("count: 2"));
    }

    #[test]
    fn issue_signs_with_first_secret() {
        let s = secrets(&["north", "south"]);
        let cred = s.issue(Some("alice"), 1_699_999_000, 1_000);
        assert_eq!(cred.username, "1700000000:alice");
        assert_eq!(cred.password, NORTH_ALICE);
        assert_eq!(cred.expires_at, 1_700_000_000);
        let anon = s.issue(None, 1_699_999_000, 1_000);
        assert_eq!(anon.username, "1700000000");
        assert_eq!(anon.password, NORTH_NO_USER);
    }

    #[test]
    fn issue_saturates_instead_of_overflowing() {
        let cred = secrets(&["k"]).issue(None, u64::MAX - 1, 10);
        assert_eq!(cred.expires_at, u64::MAX);
    }

    #[test]
    fn credential_debug_redacts_password() {
        let cred = secrets(&["north"]).issue(Some("alice"), 0, 10);
        let shown = format!("{cred:?}");
        assert!(!shown.contains(&cred.password));
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("10:alice"));
    }

    #[test]
    fn bucketed_rounds_up_and_is_stable_within_bucket() {
        let s = secrets(&["k"]);
        let a = s.issue_bucketed(Some("u"), 1_000, 86_400, 3_600);
        let b = s.issue_bucketed(Some("u"), 1_000 + 2_599, 86_400, 3_600);
        assert_eq!(a, b);
        assert_eq!(a.expires_at, 90_000);
        assert_eq!(a.expires_at % 3_600, 0);
        // Crossing the bucket boundary moves to the next bucket.
        let c = s.issue_bucketed(Some("u"), 1_000 + 2_601, 86_400, 3_600);
        assert_eq!(c.expires_at, 93_600);
    }

    #[test]
    fn bucketed_keeps_exact_multiples() {
        let cred = secrets(&["k"]).issue_bucketed(None, 3_600, 3_600, 3_600);
        assert_eq!(cred.expires_at, 7_200);
    }

    #[test]
    fn bucketed_zero_means_no_rounding() {
        let s = secrets(&["k"]);
        assert_eq!(s.issue_bucketed(Some("u"), 1_234, 10, 0), s.issue(Some("u"), 1_234, 10));
    }

    #[test]
    fn bucketed_near_max_does_not_overflow() {
        let cred = secrets(&["k"]).issue_bucketed(None, u64::MAX - 5, 1, 1_000);
        assert_eq!(cred.expires_at, u64::MAX - 4);
    }

    #[test]
    fn candidate_passwords_one_per_secret_in_order() {
        let s = secrets(&["north", "south"]);
        let got: Vec<String> = s.candidate_passwords("1700000000:alice").collect();
        assert_eq!(got, vec![NORTH_ALICE.to_string(), rest_password(b"south", "1700000000:alice")]);
    }

    #[test]
    fn verify_accepts_any_secret() {
        let old = secrets(&["south"]);
        let rotated = secrets(&["north", "south"]);
        let cred = old.issue(Some("bob"), 100, 50);
        let parsed = rotated.verify(&cred.username, &cred.password, 149, ':').unwrap();
        assert_eq!(parsed.expires_at, 150);
        assert_eq!(parsed.user_id, Some("bob"));
    }

    #[test]
    fn verify_rejects_wrong_password() {
        let s = secrets(&["north"]);
        let cred = s.issue(None, 100, 50);
        assert_eq!(s.verify(&cred.username, "nope", 100, ':'), Err(CredentialError::BadPassword));
        assert_eq!(s.verify(&cred.username, "", 100, ':'), Err(CredentialError::BadPassword));
        let other = secrets(&["south"]);
        assert_eq!(other.verify(&cred.username, &cred.password, 100, ':'), Err(CredentialError::BadPassword));
    }

    #[test]
    fn verify_rejects_tampered_username() {
        let s = secrets(&["north"]);
        let cred = s.issue(Some("alice"), 100, 50);
        assert_eq!(s.verify("9999:alice", &cred.password, 100, ':'), Err(CredentialError::BadPassword));
    }

    #[test]
    fn verify_expiry_boundary() {
        let s = secrets(&["north"]);
        let cred = s.issue(None, 100, 50);
        assert!(s.verify(&cred.username, &cred.password, 149, ':').is_ok());
        assert_eq!(
            s.verify(&cred.username, &cred.password, 150, ':'),
            Err(CredentialError::Expired { expired_at: 150 })
        );
        assert_eq!(
            s.verify(&cred.username, &cred.password, 10_000, ':'),
            Err(CredentialError::Expired { expired_at: 150 })
        );
    }

    #[test]
    fn verify_reports_malformed_username() {
        let s = secrets(&["north"]);
        assert!(matches!(s.verify("alice", "x", 0, ':'), Err(CredentialError::Malformed(_))));
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(CredentialError::Expired { expired_at: 5 }.to_string(), "credential expired at unix time 5");
        assert_eq!(CredentialError::Malformed("x".into()).to_string(), "malformed REST username: x");
        assert_eq!(CredentialError::NoSecrets.to_string(), "no REST API secret is configured");
    }
}
