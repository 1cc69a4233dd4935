//! Long-term credential lookup (RFC 8489 9.2): which key, if any, makes a request's
//! MESSAGE-INTEGRITY valid. REST usernames are checked against every configured secret so that a
//! secret can be rotated while clients still hold credentials signed with the old one.

use std::collections::HashMap;

use ice_config::{long_term_key, parse_rest_username, LongTermKey, PasswordAlgorithm, RestSecrets, StaticUserSecret};

use super::stun::integrity::Integrity;
use super::stun::Message;

/// Where credentials come from.
#[derive(Clone, Default)]
pub struct CredentialStore {
    pub rest: Option<RestSecrets>,
    pub rest_separator: char,
    pub static_users: HashMap<String, StaticUserSecret>,
    /// REST usernames expiring further ahead than this are refused; `None` = no limit.
    pub max_lifetime_secs: Option<u64>,
}

/// A request whose integrity checked out.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub key: LongTermKey,
    /// Who the allocation quota is counted against: the REST user id, else the whole username.
    pub quota_user: String,
    /// Unix time the REST credential expires; `None` for static users.
    pub expires_at: Option<u64>,
}

/// Why authentication failed; every case is answered 401 with a fresh nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    UnknownUser,
    /// REST username past its expiry (checked only when an allocation is being created).
    Expired,
    /// REST username expiring further ahead than the configured maximum credential lifetime.
    LifetimeTooLong,
    BadIntegrity,
    /// A precomputed MD5 key cannot answer a SHA-256 password algorithm.
    AlgorithmUnavailable,
}

impl AuthFailure {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::Expired => "expired",
            AuthFailure::LifetimeTooLong => "lifetime_too_long",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::AlgorithmUnavailable => "algorithm_unavailable",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown user",
            AuthFailure::Expired => "credential expired",
            AuthFailure::LifetimeTooLong => "credential lifetime exceeds the maximum",
            AuthFailure::BadIntegrity => "bad message integrity (wrong password or secret)",
            AuthFailure::AlgorithmUnavailable => "password algorithm unavailable for this user",
        }
    }
}

impl CredentialStore {
    /// Finds the key for `username` that validates `msg`. `enforce_expiry` is false for requests on
    /// an existing allocation, so a call does not drop when its credential expires mid-call.
    pub fn authenticate(
        &self,
        msg: &Message<'_>,
        username: &str,
        realm: &str,
        alg: PasswordAlgorithm,
        now_unix: u64,
        enforce_expiry: bool,
    ) -> Result<Authenticated, AuthFailure> {
        if let Some(secret) = self.static_users.get(username) {
            let key = secret.key(alg, username, realm).ok_or(AuthFailure::AlgorithmUnavailable)?;
            return match msg.check_integrity(key.as_bytes()) {
                Integrity::Valid => Ok(Authenticated { key, quota_user: username.to_owned(), expires_at: None }),
                _ => Err(AuthFailure::BadIntegrity),
            };
        }
        let rest = self.rest.as_ref().ok_or(AuthFailure::UnknownUser)?;
        let parsed = parse_rest_username(username, self.rest_separator).map_err(|_| AuthFailure::UnknownUser)?;
        if enforce_expiry && parsed.expires_at <= now_unix {
            return Err(AuthFailure::Expired);
        }
        if enforce_expiry && self.max_lifetime_secs.is_some_and(|max| parsed.expires_at > now_unix.saturating_add(max))
        {
            return Err(AuthFailure::LifetimeTooLong);
        }
        for password in rest.candidate_passwords(username) {
            let key = long_term_key(alg, username, realm, &password);
            if msg.check_integrity(key.as_bytes()) == Integrity::Valid {
                let quota_user = parsed.user_id.unwrap_or(username).to_owned();
                return Ok(Authenticated { key, quota_user, expires_at: Some(parsed.expires_at) });
            }
        }
        Err(AuthFailure::BadIntegrity)
    }
}
