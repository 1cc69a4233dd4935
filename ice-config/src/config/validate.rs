//! Semantic checks on a parsed [`Config`].
//!
//! TOML and serde catch syntax and types; this catches values that parse but would make the relay
//! misbehave or refuse every client at runtime (reversed port ranges, zero lifetimes, no way to
//! authenticate). Each error names the key to fix, since operators read it from `--check-config`.

use super::{Config, ConfigError, RelayEndpoint};
use std::net::Ipv6Addr;

/// RFC 8489 limits REALM and SOFTWARE to fewer than 128 characters.
const MAX_STUN_TEXT_CHARS: usize = 127;

/// Why a config without a REST secret is refused, and what to put there: the relay and the
/// signaling service share the secret, so both say the same.
const NO_SECRET: &str = "is empty, so no client could get TURN credentials: set it to a secret shared by the \
                         relay and the signaling service, e.g. secrets = [\"<output of openssl rand -base64 48>\"]";

impl Config {
    /// Checks every value; the first problem found is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_realm()?;
        self.validate_auth()?;
        for (i, relay) in self.relays.iter().enumerate() {
            validate_relay(i, relay)?;
        }
        self.validate_turn()?;
        self.validate_call()?;
        self.validate_signaling()
    }

    /// [`validate`](Self::validate) plus what the signaling service needs to serve anyone: a
    /// REST secret to sign credentials, a relay to hand out, and a way to authenticate users.
    pub fn validate_for_signaling(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.auth.secrets.is_empty() {
            return Err(ConfigError::invalid("auth.secrets", NO_SECRET));
        }
        if self.relays.is_empty() {
            return Err(ConfigError::invalid("relays", "is empty: there is no relay to offer clients"));
        }
        let s = &self.signaling;
        if s.jwt_secret.is_none() && s.jwt_public_key.is_none() && s.api_keys.is_empty() {
            return Err(ConfigError::invalid(
                "signaling.jwt_secret",
                "none of signaling.jwt_secret, signaling.jwt_public_key or signaling.api_keys is set, so nobody could \
                 authenticate: set jwt_secret to the messenger backend's HS256 key (at least 16 bytes) or \
                 jwt_public_key to its PEM public key file",
            ));
        }
        Ok(())
    }

    fn validate_signaling(&self) -> Result<(), ConfigError> {
        let s = &self.signaling;
        if !s.socketio_path.starts_with('/') || s.socketio_path.len() < 2 || s.socketio_path.ends_with('/') {
            return Err(ConfigError::invalid(
                "signaling.socketio_path",
                format!("must start with '/' and not end with '/', e.g. \"/socket.io\", got {:?}", s.socketio_path),
            ));
        }
        if s.socketio_path.chars().any(|c| c.is_whitespace() || matches!(c, '?' | '#')) {
            return Err(ConfigError::invalid("signaling.socketio_path", "must be a plain URL path"));
        }
        if s.jwt_secret.as_deref().is_some_and(|k| k.len() < 16) {
            // HS256 with a short key is brute-forceable offline from any one token.
            return Err(ConfigError::invalid("signaling.jwt_secret", "must be at least 16 bytes"));
        }
        if s.jwt_public_key.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::invalid("signaling.jwt_public_key", "is an empty path"));
        }
        for (key, value) in [("signaling.jwt_issuer", &s.jwt_issuer), ("signaling.jwt_audience", &s.jwt_audience)] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::invalid(key, "is empty: leave it out to not check the claim"));
            }
        }
        if s.jwt_user_claim.is_empty() {
            return Err(ConfigError::invalid("signaling.jwt_user_claim", "is empty"));
        }
        if let Some(i) = s.api_keys.iter().position(|k| k.len() < 16) {
            return Err(ConfigError::invalid(format!("signaling.api_keys[{i}]"), "must be at least 16 bytes"));
        }
        if s.api_key_user_param.is_empty()
            || !s.api_key_user_param.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid("signaling.api_key_user_param", "must be letters, digits or '_'"));
        }
        for (i, origin) in s.cors_origins.iter().enumerate() {
            if let Err(why) = check_origin(origin) {
                return Err(ConfigError::invalid(format!("signaling.cors_origins[{i}]"), format!("{origin:?} {why}")));
            }
        }
        for (key, value) in [
            ("signaling.rate_limit_per_user", u64::from(s.rate_limit_per_user)),
            ("signaling.rate_limit_per_ip", u64::from(s.rate_limit_per_ip)),
            ("signaling.reconnect_grace_secs", s.reconnect_grace_secs),
            ("signaling.deadline_poll_ms", s.deadline_poll_ms),
            ("signaling.webhook_max_attempts", u64::from(s.webhook_max_attempts)),
            ("signaling.webhook_timeout_secs", s.webhook_timeout_secs),
            ("signaling.drain_timeout_secs", s.drain_timeout_secs),
            ("signaling.socket_connect_timeout_secs", s.socket_connect_timeout_secs),
            ("signaling.socket_connects_per_ip", u64::from(s.socket_connects_per_ip)),
            ("signaling.socket_auth_failures_per_ip", u64::from(s.socket_auth_failures_per_ip)),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        if let Some(addr) = s.metrics_listen {
            if addr.port() != 0 && addr == s.listen {
                return Err(ConfigError::invalid(
                    "signaling.metrics_listen",
                    "must differ from signaling.listen (metrics stay off the public port)",
                ));
            }
        }
        if s.max_event_bytes < 1024 {
            return Err(ConfigError::invalid(
                "signaling.max_event_bytes",
                "must be at least 1024 (an SDP does not fit in less)",
            ));
        }
        if s.max_message_bytes < s.max_event_bytes.saturating_add(1024) {
            return Err(ConfigError::invalid(
                "signaling.max_message_bytes",
                format!(
                    "({}) must exceed signaling.max_event_bytes ({}) by at least 1024, for the event's name \
                     and framing: events between the two get payload_too_large instead of a closed connection",
                    s.max_message_bytes, s.max_event_bytes
                ),
            ));
        }
        if s.socket_connect_timeout_secs > 60 {
            return Err(ConfigError::invalid(
                "signaling.socket_connect_timeout_secs",
                "must be at most 60: unauthenticated sessions would be held open",
            ));
        }
        if !(8..=4096).contains(&s.socket_send_queue) {
            return Err(ConfigError::invalid(
                "signaling.socket_send_queue",
                "must be 8-4096 packets (heartbeats and acks share the queue)",
            ));
        }
        if s.deadline_poll_ms > 5_000 {
            return Err(ConfigError::invalid(
                "signaling.deadline_poll_ms",
                "must be at most 5000: ring timeouts would fire late",
            ));
        }
        if let Some(url) = &s.redis_url {
            check_redis_url("signaling.redis_url", url)?;
        }
        if s.redis_prefix.is_empty() || s.redis_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::invalid("signaling.redis_prefix", "must be non-empty without spaces"));
        }
        if s.fleet && s.redis_url.is_none() {
            return Err(ConfigError::invalid(
                "signaling.fleet",
                "needs signaling.redis_url: the relays' registry lives in Redis",
            ));
        }
        if !(1..=16).contains(&s.fleet_relays) {
            return Err(ConfigError::invalid("signaling.fleet_relays", "must be 1-16 relays"));
        }
        if let Some(h) = &s.region_header {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::invalid("signaling.region_header", "must be an HTTP header name"));
            }
        }
        match (&s.webhook_url, &s.webhook_secret) {
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ConfigError::invalid("signaling.webhook_url", "must be an http:// or https:// URL"));
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "signaling.webhook_secret",
                    "is required when signaling.webhook_url is set (the backend must verify who calls it)",
                ));
            }
            (_, Some(secret)) if secret.len() < 16 => {
                return Err(ConfigError::invalid("signaling.webhook_secret", "must be at least 16 bytes"));
            }
            _ => {}
        }
        // pingTimeout above pingInterval is allowed by Engine.IO; both being 0 is caught in [call].
        Ok(())
    }

    fn validate_realm(&self) -> Result<(), ConfigError> {
        stun_text("realm", &self.realm)?;
        if self.realm.is_empty() {
            return Err(ConfigError::invalid("realm", "is empty"));
        }
        // RFC 8489's grammar makes REALM a quoted-string; quotes and backslashes would need
        // escaping that client stacks do not agree on.
        if self.realm.contains(['"', '\\']) {
            return Err(ConfigError::invalid("realm", "must not contain '\"' or '\\'"));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if let Some(i) = auth.secrets.iter().position(String::is_empty) {
            return Err(ConfigError::invalid(format!("auth.secrets[{i}]"), "is empty"));
        }
        if auth.credential_ttl_secs == 0 {
            return Err(ConfigError::invalid("auth.credential_ttl_secs", "must be greater than 0"));
        }
        auth.rest_separator_char()?;
        let users = auth.static_users()?;
        let rest_usable = self.turn.use_auth_secret && !auth.secrets.is_empty();
        if !rest_usable && users.is_empty() {
            // A relay that authenticates nobody is useless, and one that authenticates everybody
            // is an open relay; there is deliberately no "no auth" mode.
            // The packaged config ships with no secret, so this is the first error an operator
            // sees after installing: it says what to write, not only what is missing.
            if self.turn.use_auth_secret {
                return Err(ConfigError::invalid("auth.secrets", NO_SECRET));
            }
            return Err(ConfigError::invalid(
                "turn.use_auth_secret",
                "is false and no auth.users are set: no client could authenticate",
            ));
        }
        Ok(())
    }

    fn validate_turn(&self) -> Result<(), ConfigError> {
        let turn = &self.turn;
        if let Some(url) = &turn.redis_url {
            check_redis_url("turn.redis_url", url)?;
        }
        if !(1..=60).contains(&turn.registry_heartbeat_secs) {
            return Err(ConfigError::invalid("turn.registry_heartbeat_secs", "must be between 1 and 60"));
        }
        if turn.public_host.as_deref().is_some_and(|h| h.is_empty() || h.contains(['/', ' ', '?', '#'])) {
            return Err(ConfigError::invalid("turn.public_host", "must be a bare host name or IP address"));
        }
        if turn.listening_port == 0 {
            return Err(ConfigError::invalid("turn.listening_port", "must not be 0"));
        }
        if turn.min_port == 0 {
            return Err(ConfigError::invalid("turn.min_port", "must not be 0"));
        }
        if turn.min_port > turn.max_port {
            return Err(ConfigError::invalid(
                "turn.min_port",
                format!("({}) must not be greater than turn.max_port ({})", turn.min_port, turn.max_port),
            ));
        }
        for (key, value) in [
            ("turn.default_allocate_lifetime_secs", turn.default_allocate_lifetime_secs),
            ("turn.max_allocate_lifetime_secs", turn.max_allocate_lifetime_secs),
            ("turn.permission_lifetime_secs", turn.permission_lifetime_secs),
            ("turn.channel_lifetime_secs", turn.channel_lifetime_secs),
            ("turn.nonce_lifetime_secs", turn.nonce_lifetime_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        if turn.max_allocate_lifetime_secs < turn.default_allocate_lifetime_secs {
            return Err(ConfigError::invalid(
                "turn.max_allocate_lifetime_secs",
                format!(
                    "({}) must be >= turn.default_allocate_lifetime_secs ({})",
                    turn.max_allocate_lifetime_secs, turn.default_allocate_lifetime_secs
                ),
            ));
        }
        // The LIFETIME attribute is 32 bits; a larger value could not be sent to clients.
        if turn.max_allocate_lifetime_secs > u64::from(u32::MAX) {
            return Err(ConfigError::invalid(
                "turn.max_allocate_lifetime_secs",
                format!("must be at most {} (LIFETIME is 32 bits)", u32::MAX),
            ));
        }
        for (key, value) in [
            ("turn.stream_idle_timeout_secs", turn.stream_idle_timeout_secs),
            ("turn.stream_handshake_timeout_secs", turn.stream_handshake_timeout_secs),
            ("turn.max_connections_per_ip", u64::from(turn.max_connections_per_ip)),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must not be 0"));
            }
        }
        if let Some(alt) = turn.alt_listening_ip {
            match turn.listening_ips.as_slice() {
                [primary] if primary.is_ipv4() == alt.is_ipv4() && *primary != alt && !alt.is_unspecified() => {}
                _ => {
                    return Err(ConfigError::invalid(
                        "turn.alt_listening_ip",
                        "RFC 5780 needs exactly one turn.listening_ips entry, of the same family and different from it",
                    ))
                }
            }
        }
        let auth = &self.auth;
        if auth.max_credential_lifetime_secs > 0 && auth.credential_ttl_secs > auth.max_credential_lifetime_secs {
            return Err(ConfigError::invalid(
                "auth.credential_ttl_secs",
                format!(
                    "({}) exceeds auth.max_credential_lifetime_secs ({}): the relay would refuse every credential",
                    auth.credential_ttl_secs, auth.max_credential_lifetime_secs
                ),
            ));
        }
        if turn.tls_listening_ports.contains(&0) {
            return Err(ConfigError::invalid("turn.tls_listening_ports", "must not contain 0"));
        }
        if turn.cert.is_some() != turn.pkey.is_some() {
            let key = if turn.cert.is_some() { "turn.pkey" } else { "turn.cert" };
            return Err(ConfigError::invalid(key, "turn.cert and turn.pkey go together: set both or neither"));
        }
        if (turn.proxy_protocol_tcp || turn.proxy_protocol_tls) && turn.proxy_protocol_from.is_empty() {
            return Err(ConfigError::invalid(
                "turn.proxy_protocol_from",
                "is empty: a PROXY protocol listener would refuse every connection; name the proxies' addresses",
            ));
        }
        if turn.no_udp && turn.no_tcp && (turn.no_tls || turn.cert.is_none()) {
            return Err(ConfigError::invalid("turn.no_udp", "every transport is disabled: nothing to listen on"));
        }
        stun_text("turn.software", &turn.software)
    }

    fn validate_call(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("call.ring_timeout_secs", self.call.ring_timeout_secs),
            ("call.heartbeat_interval_secs", self.call.heartbeat_interval_secs),
            ("call.heartbeat_timeout_secs", self.call.heartbeat_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

fn validate_relay(i: usize, relay: &RelayEndpoint) -> Result<(), ConfigError> {
    let key = |field: &str| format!("relays[{i}].{field}");
    if relay.host.is_empty() {
        return Err(ConfigError::invalid(key("host"), "is empty"));
    }
    if let Err(why) = check_url_host(&relay.host) {
        return Err(ConfigError::invalid(key("host"), format!("{:?} {why}", relay.host)));
    }
    for (field, port) in [("udp_port", relay.udp_port), ("tcp_port", relay.tcp_port), ("tls_port", relay.tls_port)] {
        if port == 0 {
            return Err(ConfigError::invalid(key(field), "must not be 0"));
        }
    }
    for (n, t) in relay.transports.iter().enumerate() {
        if relay.transports[..n].contains(t) {
            return Err(ConfigError::invalid(key("transports"), format!("{:?} is listed twice", t.as_str())));
        }
    }
    if relay.transports.is_empty() && !relay.stun {
        return Err(ConfigError::invalid(
            key("transports"),
            "is empty and stun is false: this relay would offer clients nothing",
        ));
    }
    Ok(())
}

/// Whether `host` can be pasted into a `turn:` URL as is: a DNS name, an IPv4 literal or an
/// IPv6 literal (bare or bracketed). Anything else (scheme, port, path, spaces) would produce a
/// URL that browsers reject or, worse, silently parse differently.
fn check_url_host(host: &str) -> Result<(), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err("is not a valid bracketed IPv6 address"),
        };
    }
    if host.contains(':') {
        return match host.parse::<Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("contains ':' but is not an IPv6 address (give the port in udp_port/tcp_port/tls_port)"),
        };
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.chars().all(allowed) {
        return Err("must be a host name or IP address (letters, digits, '-', '.', '_')");
    }
    if host.starts_with('.') || host.starts_with('-') || host.contains("..") {
        return Err("is not a valid host name");
    }
    Ok(())
}

/// A browser `Origin`: `scheme://host[:port]` with nothing after it, or `*`.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("must start with https:// or http:// (or be \"*\")")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err("must be scheme://host[:port] with no path or trailing '/'");
    }
    Ok(())
}

/// REALM and SOFTWARE are UTF-8 strings under 128 characters; control characters would corrupt
/// logs and the quoted-string form of REALM.
fn stun_text(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.chars().count() > MAX_STUN_TEXT_CHARS {
        return Err(ConfigError::invalid(key, format!("must be at most {MAX_STUN_TEXT_CHARS} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(key, "must not contain control characters"));
    }
    Ok(())
}

/// Parsed in full here, so `--check-config` reports a bad Redis URL before a start does.
fn check_redis_url(key: &str, url: &str) -> Result<(), ConfigError> {
    redis_link::Target::parse(url).map(drop).map_err(|e| ConfigError::invalid(key, e.to_string()))
}
