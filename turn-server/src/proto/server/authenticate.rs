//! The long-term credential mechanism as a server runs it (RFC 8489 9.2.4), including RFC 8489's
//! password algorithm negotiation and RFC 8656's rule that requests on an allocation keep the
//! username that created it.

use ice_config::PasswordAlgorithm;

use super::super::allocation::FiveTuple;
use super::super::nonce::NonceCheck;
use super::super::stun::integrity::Integrity;
use super::super::stun::{attr, ErrorCode, Message, Method};
use super::reply::{password_algorithms_value, ResponseKey};
use super::{Now, Server};

/// Longest USERNAME accepted (RFC 8489 14.3: fewer than 509 bytes).
const MAX_USERNAME: usize = 508;

/// An authenticated request: who sent it and how to protect the answer.
pub(super) struct Authorized {
    pub username: String,
    pub quota_user: String,
    pub response_key: ResponseKey,
}

impl Server {
    /// Checks a TURN request's credentials. On failure the challenge or error is already queued and
    /// `None` is returned.
    pub(super) fn authenticate(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) -> Option<Authorized> {
        let method = req.message_type().method;
        let Some(algorithm) = req.integrity_algorithm() else {
            // The usual first request of a client: challenge it.
            self.reply_challenge(now, tuple, req, ErrorCode::Unauthorized);
            return None;
        };
        let (Some(username), Some(realm), Some(nonce)) =
            (req.get(attr::USERNAME), req.get(attr::REALM), req.get(attr::NONCE))
        else {
            self.reply_error_unauthenticated(
                now.instant,
                tuple,
                req,
                ErrorCode::BadRequest,
                "integrity without USERNAME, REALM and NONCE",
            );
            return None;
        };
        let Some(username) = std::str::from_utf8(username).ok().filter(|u| u.len() <= MAX_USERNAME) else {
            self.reply_error_unauthenticated(
                now.instant,
                tuple,
                req,
                ErrorCode::BadRequest,
                "USERNAME not UTF-8 or too long",
            );
            return None;
        };
        match self.nonces.check(nonce, tuple.client.ip(), now.unix_secs) {
            NonceCheck::Valid => {}
            stale => {
                tracing::debug!(client = %tuple.client, ?stale, "refused {}: stale nonce", method.name());
                self.reply_challenge(now, tuple, req, ErrorCode::StaleNonce);
                return None;
            }
        }
        let Some(password_algorithm) = self.negotiated_algorithm(req) else {
            self.reply_error_unauthenticated(
                now.instant,
                tuple,
                req,
                ErrorCode::BadRequest,
                "PASSWORD-ALGORITHM(S) mismatch",
            );
            return None;
        };
        if realm != self.cfg.realm.as_bytes() {
            tracing::debug!(client = %tuple.client, "refused {}: wrong realm", method.name());
            self.reply_challenge(now, tuple, req, ErrorCode::Unauthorized);
            return None;
        }

        // Requests on an existing allocation are checked with the key that created it: a secret
        // rotated away or a credential expired since then must not drop a call in progress.
        if let Some(alloc) = self.allocations.get(&tuple) {
            if alloc.username != username {
                let key = ResponseKey { key: alloc.key.clone(), algorithm };
                let why = format!("username {username:?} is not the allocation's");
                self.reply_error(tuple, req, ErrorCode::WrongCredentials, &key, &why);
                return None;
            }
            if alloc.key.algorithm() == password_algorithm
                && req.check_integrity(alloc.key.as_bytes()) == Integrity::Valid
            {
                self.stats.auth_successes += 1;
                return Some(Authorized {
                    username: alloc.username.clone(),
                    quota_user: alloc.quota_user.clone(),
                    response_key: ResponseKey { key: alloc.key.clone(), algorithm },
                });
            }
        }

        let enforce_expiry = method == Method::Allocate;
        match self.cfg.credentials.authenticate(
            req,
            username,
            &self.cfg.realm,
            password_algorithm,
            now.unix_secs,
            enforce_expiry,
        ) {
            Ok(ok) => {
                self.stats.auth_successes += 1;
                Some(Authorized {
                    username: username.to_owned(),
                    quota_user: ok.quota_user,
                    response_key: ResponseKey { key: ok.key, algorithm },
                })
            }
            Err(why) => {
                tracing::debug!(client = %tuple.client, username, reason = why.as_str(), "refused {}: 401", method.name());
                *self.stats.auth_failures.entry(why.label()).or_default() += 1;
                self.reply_challenge(now, tuple, req, ErrorCode::Unauthorized);
                None
            }
        }
    }

    /// The common start of every request on an existing allocation: authenticated, the allocation
    /// exists (else 437) and no comprehension-required attribute is unknown (else 420). Returns the
    /// key to protect the answer with; on `None` the error is already queued.
    pub(super) fn on_allocation(&mut self, now: Now, tuple: FiveTuple, req: &Message<'_>) -> Option<ResponseKey> {
        let key = self.authenticate(now, tuple, req)?.response_key;
        if !self.allocations.contains_key(&tuple) {
            self.reply_error(tuple, req, ErrorCode::AllocationMismatch, &key, "no allocation");
            return None;
        }
        let unknown: Vec<u16> = req.unknown_required().collect();
        if !unknown.is_empty() {
            self.reply_unknown(now.instant, tuple, req, &unknown, Some(&key));
            return None;
        }
        Some(key)
    }

    /// RFC 8489 9.2.4: PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS come together or not at all; the
    /// echoed list must be ours and the choice must be on it. Neither means MD5 (RFC 5389 clients).
    fn negotiated_algorithm(&self, req: &Message<'_>) -> Option<PasswordAlgorithm> {
        match (req.get(attr::PASSWORD_ALGORITHM), req.get(attr::PASSWORD_ALGORITHMS)) {
            (None, None) => Some(PasswordAlgorithm::Md5),
            (Some(chosen), Some(offered)) => {
                if offered != password_algorithms_value() {
                    return None;
                }
                let code = attr::decode_password_algorithm(chosen).ok()?;
                PasswordAlgorithm::from_code(code)
            }
            _ => None,
        }
    }
}
