//! Who is calling: the messenger backend's JWT (HS256 secret or RS256/ES256 public key), or a
//! static API key for server-to-server requests. Shared by the REST routes and the Socket.IO
//! handshake so both accept exactly the same tokens.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use ice_config::SignalingConfig;

/// Longest user id accepted; ids become Redis keys and room names.
const MAX_USER_ID: usize = 128;

/// Why a request is not authenticated. The `Display` text goes to clients (401 body, connect
/// error), so it names the problem without echoing the token.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT, or a JWT signed with an algorithm we do not accept.
    #[error("malformed token")]
    Malformed,
    /// `alg` names no configured key.
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// Signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` passed.
    #[error("token expired")]
    Expired,
    /// `nbf` in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` missing or another claim malformed.
    #[error("token claims invalid: {0}")]
    Claims(String),
    /// `iss` is not the configured issuer.
    #[error("wrong token issuer")]
    Issuer,
    /// `aud` is not the configured audience.
    #[error("wrong token audience")]
    Audience,
    /// The user claim is missing, empty, too long or not a string/number.
    #[error("token has no usable user id in claim {0:?}")]
    NoUser(String),
    /// An API key request without the user parameter.
    #[error("API key requests must name the user in the {0:?} query parameter")]
    ApiKeyWithoutUser(String),
}

impl AuthError {
    /// A short stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Algorithm(_) => "algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Claims(_) => "claims",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::NoUser(_) => "no_user",
            Self::ApiKeyWithoutUser(_) => "api_key_without_user",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The messenger's user id.
    pub user: String,
    /// JWT `exp` (unix seconds); `None` for API keys.
    pub expires_at: Option<u64>,
}

/// Verifies tokens and API keys.
#[derive(Clone)]
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    es256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    leeway: u64,
    api_keys: Vec<String>,
    api_key_user_param: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("es256", &self.es256.is_some())
            .field("api_keys", &self.api_keys.len())
            .finish()
    }
}

/// The public key file could not be used.
#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither an RSA nor an EC public key in PEM.
    #[error("{0} is not a PEM RSA or EC (P-256) public key")]
    Format(String),
}

impl Authenticator {
    /// From `[signaling]`; reads `jwt_public_key` if set.
    pub fn from_config(cfg: &SignalingConfig) -> Result<Self, KeyError> {
        let (mut rs256, mut es256) = (None, None);
        if let Some(path) = &cfg.jwt_public_key {
            let (rsa, ec) = load_public_key(path)?;
            rs256 = rsa;
            es256 = ec;
        }
        Ok(Self {
            hs256: cfg.jwt_secret.as_deref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            rs256,
            es256,
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
            user_claim: cfg.jwt_user_claim.clone(),
            leeway: cfg.jwt_leeway_secs,
            api_keys: cfg.api_keys.clone(),
            api_key_user_param: cfg.api_key_user_param.clone(),
        })
    }

    /// The query parameter naming the user on API-key requests.
    pub fn api_key_user_param(&self) -> &str {
        &self.api_key_user_param
    }

    /// Verifies a JWT and extracts the user.
    pub fn verify_jwt(&self, token: &str, now_unix: u64) -> Result<Principal, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            Algorithm::ES256 => self.es256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::Algorithm(format!("{:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        match &self.issuer {
            Some(iss) => {
                // Without this, jsonwebtoken checks iss/aud only when the token carries them.
                validation.required_spec_claims.insert("iss".to_owned());
                validation.set_issuer(&[iss]);
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.required_spec_claims.insert("aud".to_owned());
                validation.set_audience(&[aud]);
            }
            None => validation.validate_aud = false,
        }
        let data = decode::<Map<String, Value>>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::Issuer,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::MissingRequiredClaim(c) => AuthError::Claims(format!("missing {c}")),
            ErrorKind::InvalidClaimFormat(c) => AuthError::Claims(format!("malformed {c}")),
            _ => AuthError::Malformed,
        })?;
        let claims = data.claims;
        let user = match claims.get(&self.user_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if !valid_user_id(&user) {
            return Err(AuthError::NoUser(self.user_claim.clone()));
        }
        let expires_at = claims.get("exp").and_then(Value::as_u64);
        // jsonwebtoken already refused expired tokens (with leeway); this guards a token whose
        // exp is so close that the leeway alone carried it.
        if expires_at.is_some_and(|exp| exp.saturating_add(self.leeway) < now_unix) {
            return Err(AuthError::Expired);
        }
        Ok(Principal { user, expires_at })
    }

    /// Whether `key` is one of the API keys (constant time over every key).
    pub fn is_api_key(&self, key: &str) -> bool {
        let mut matched = subtle::Choice::from(0);
        for k in &self.api_keys {
            matched |= k.as_bytes().ct_eq(key.as_bytes());
        }
        bool::from(matched)
    }

    /// A bearer credential: an API key (with `api_user` from the query) or a JWT.
    pub fn authenticate(&self, bearer: &str, api_user: Option<&str>, now_unix: u64) -> Result<Principal, AuthError> {
        if self.is_api_key(bearer) {
            return match api_user {
                Some(u) if valid_user_id(u) => Ok(Principal { user: u.to_owned(), expires_at: None }),
                _ => Err(AuthError::ApiKeyWithoutUser(self.api_key_user_param.clone())),
            };
        }
        self.verify_jwt(bearer, now_unix)
    }
}

/// Non-empty, bounded, printable, no separators we use in keys and deadline members.
pub fn valid_user_id(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_ID && user.chars().all(|c| !c.is_control() && c != '|')
}

/// `Authorization: Bearer X` -> `X`.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn load_public_key(path: &Path) -> Result<(Option<DecodingKey>, Option<DecodingKey>), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Some(k), None));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((None, Some(k)));
    }
    Err(KeyError::Format(path.display().to_string()))
}

#[cfg(test)]
mod tests;
