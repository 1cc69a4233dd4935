//! Static long-term users in coturn's `--user` syntax (`name:password` or `name:0x<md5 key>`).
//!
//! Most deployments use REST credentials only, but a fixed user is handy for monitoring probes
//! and for clients that cannot fetch credentials. The key form keeps the password itself off the
//! server, which is why both forms exist.

use std::fmt;

use super::ConfigError;
use crate::keys::{long_term_key, long_term_key_from_hex, LongTermKey, PasswordAlgorithm};

/// What the config holds for a static user.
#[derive(Clone, PartialEq, Eq)]
pub enum StaticUserSecret {
    /// The plain password; keys for any algorithm can be derived from it.
    Password(String),
    /// A precomputed MD5 key, `MD5(name:realm:password)`: only valid for the configured realm.
    Key(LongTermKey),
}

impl StaticUserSecret {
    /// The key for `alg`, or `None` when only an MD5 key was configured and `alg` differs.
    pub fn key(&self, alg: PasswordAlgorithm, username: &str, realm: &str) -> Option<LongTermKey> {
        match self {
            Self::Password(password) => Some(long_term_key(alg, username, realm, password)),
            Self::Key(key) if key.algorithm() == alg => Some(key.clone()),
            Self::Key(_) => None,
        }
    }
}

impl fmt::Debug for StaticUserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Key(key) => write!(f, "Key({key:?})"),
        }
    }
}

/// Splits `name:password` / `name:0xHEX` at the first `:`.
///
/// As in coturn, a secret starting with `0x` is always read as a 32-digit MD5 key. Errors use the
/// key `auth.users` and never repeat the secret.
pub fn parse_static_user(s: &str) -> Result<(String, StaticUserSecret), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key: "auth.users".into(), message };
    let Some((name, secret)) = s.split_once(':') else {
        return Err(invalid("expected \"name:password\" or \"name:0x<md5 key>\"".into()));
    };
    if name.is_empty() {
        return Err(invalid("user name is empty".into()));
    }
    if secret.is_empty() {
        return Err(invalid(format!("user {name:?} has an empty password")));
    }
    let secret = if secret.starts_with("0x") || secret.starts_with("0X") {
        let key = long_term_key_from_hex(PasswordAlgorithm::Md5, secret)
            .map_err(|e| invalid(format!("user {name:?}: {e}")))?;
        StaticUserSecret::Key(key)
    } else {
        StaticUserSecret::Password(secret.to_string())
    };
    Ok((name.to_string(), secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn password_form() {
        let (name, secret) = parse_static_user("alice:pass").unwrap();
        assert_eq!(name, "alice");
        assert_eq!(secret, StaticUserSecret::Password("pass".into()));
    }

    #[test]
    fn password_may_contain_colons() {
        let (name, secret) = parse_static_user("alice:a:b:c").unwrap();
        assert_eq!(name, "alice");
        assert_eq!(secret, StaticUserSecret::Password("a:b:c".into()));
    }

    #[test]
    fn key_form() {
        // The derivation itself is checked against RFC vectors in keys.rs; here only the parsing.
        let expected = long_term_key(PasswordAlgorithm::Md5, "bob", "turn.example.org", "pw");
        let hex: String = expected.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        for form in [format!("bob:0x{hex}"), format!("bob:0X{}", hex.to_uppercase())] {
            let (name, secret) = parse_static_user(&form).unwrap();
            assert_eq!(name, "bob");
            assert_eq!(secret, StaticUserSecret::Key(expected.clone()));
        }
    }

    #[test]
    fn rejects_malformed_without_echoing_secret() {
        for (input, needle) in [
            ("alice", "expected"),
            (":pw", "user name is empty"),
            ("alice:", "empty password"),
            ("bob:0xnothexnothexnothexnothexnothex12", "not hexadecimal"),
            ("bob:0x1234", "32 hex digits"),
        ] {
            let err = parse_static_user(input).unwrap_err();
            let shown = err.to_string();
            assert!(shown.starts_with("auth.users: "), "{shown}");
            assert!(shown.contains(needle), "{input}: {shown}");
            assert!(!shown.contains("nothex") && !shown.contains("1234"), "{shown}");
        }
    }

    #[test]
    fn key_for_algorithm() {
        let password = StaticUserSecret::Password("TheMatrIX".into());
        for alg in [PasswordAlgorithm::Md5, PasswordAlgorithm::Sha256] {
            assert_eq!(password.key(alg, "u", "r"), Some(long_term_key(alg, "u", "r", "TheMatrIX")));
        }
        let md5 = long_term_key(PasswordAlgorithm::Md5, "u", "r", "p");
        let key = StaticUserSecret::Key(md5.clone());
        assert_eq!(key.key(PasswordAlgorithm::Md5, "u", "r"), Some(md5));
        assert_eq!(key.key(PasswordAlgorithm::Sha256, "u", "r"), None);
    }

    #[test]
    fn debug_redacts() {
        let shown = format!("{:?}", StaticUserSecret::Password("hunter2".into()));
        assert_eq!(shown, "Password(<redacted>)");
        let key = StaticUserSecret::Key(long_term_key(PasswordAlgorithm::Md5, "u", "r", "p"));
        assert_eq!(format!("{key:?}"), "Key(LongTermKey::Md5(<redacted>))");
    }
}
