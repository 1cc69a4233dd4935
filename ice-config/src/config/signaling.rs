//! `[signaling]`: the call signaling service's own keys.
//!
//! They live in the shared file so one document describes a deployment, but only the signaling
//! binary reads them; the relay ignores this table. Secrets the relay also needs (REST secrets)
//! stay in `[auth]`, and timing clients must agree on stays in `[call]`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[signaling]`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalingConfig {
    /// HTTP listen address for `/v1/`, health and Socket.IO; port 0 picks a free port (logged).
    pub listen: SocketAddr,
    /// Path the Socket.IO endpoint is served under (socket.io-client's `path` option).
    pub socketio_path: String,
    /// HS256 shared secret of the messenger's backend.
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) of the messenger's backend.
    pub jwt_public_key: Option<PathBuf>,
    /// Required `iss` claim, when set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub jwt_audience: Option<String>,
    /// Claim holding the user id.
    pub jwt_user_claim: String,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub jwt_leeway_secs: u64,
    /// Static API keys for server-to-server calls; the user is named in a query parameter.
    pub api_keys: Vec<String>,
    /// Query parameter naming the user on API-key requests.
    pub api_key_user_param: String,
    /// Browser origins allowed for CORS and Socket.IO; `"*"` allows any.
    pub cors_origins: Vec<String>,
    /// Requests per minute one user may make to `/v1/ice-servers`.
    pub rate_limit_per_user: u32,
    /// Requests per minute one client address may make to `/v1/`.
    pub rate_limit_per_ip: u32,
    /// Take the client address from `X-Real-IP`/`X-Forwarded-For` (only behind a proxy).
    pub trust_proxy_headers: bool,
    /// Credential expiry is rounded up to a multiple of this, so repeated requests match; capped
    /// at half of `auth.credential_ttl_secs`; 0 disables rounding.
    pub credential_bucket_secs: u64,
    /// How long a party whose socket dropped may take to reconnect before the call ends.
    pub reconnect_grace_secs: u64,
    /// Largest accepted event payload (an SDP is typically 2-10 KiB); a larger event gets a
    /// `payload_too_large` error and the connection stays.
    pub max_event_bytes: usize,
    /// The Socket.IO engine's limit: the largest WebSocket message or frame, or polling body, read
    /// at all. Above it the WebSocket is closed from the frame header, before its payload is read
    /// (a polling POST gets 413), so the client hears no reason. Must leave room above
    /// `max_event_bytes` for an event's name and framing.
    pub max_message_bytes: usize,
    /// Redis URL; when set, instances share rooms and call state through it.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can share a Redis.
    pub redis_prefix: String,
    /// How often each instance looks for due ring/grace deadlines, in milliseconds.
    pub deadline_poll_ms: u64,
    /// URL POSTed for offers to offline users and missed calls (push notifications).
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key for the webhook signature header.
    pub webhook_secret: Option<String>,
    /// Attempts per webhook event before it is dropped (logged).
    pub webhook_max_attempts: u32,
    /// Timeout of one webhook request.
    pub webhook_timeout_secs: u64,
    /// Serve the ICE diagnostics page at `GET /diag` (public; it holds no secret and fetches
    /// the ICE config with the token the operator types in). Off: 404.
    pub diag_enabled: bool,
    /// Serve the test call page at `GET /call` (public, like `/diag`: sign-in is a user token in
    /// the URL fragment, and calls go through the same Socket.IO endpoint). Off: 404.
    pub call_page_enabled: bool,
    /// Local listener for Prometheus `/metrics`, apart from the public port (behind nginx the
    /// public one must never expose it). Off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Upper bound on the SIGTERM drain: warning clients, closing their sockets and recording
    /// their disconnects in the store.
    pub drain_timeout_secs: u64,
    /// Seconds a client has, after opening an engine.io session, to send its Socket.IO CONNECT
    /// (which carries the token); sessions that never authenticate are closed after it.
    pub socket_connect_timeout_secs: u64,
    /// Packets queued towards one socket; the send that finds them all waiting drops the socket
    /// (a client that stopped reading), or its next heartbeat does for long-polling.
    pub socket_send_queue: usize,
    /// New Socket.IO sessions per minute from one client address (an IPv6 /64 counts as one).
    pub socket_connects_per_ip: u32,
    /// Refused Socket.IO handshakes (bad, expired or missing token) per minute from one client
    /// address before its new sessions are refused without looking at the token.
    pub socket_auth_failures_per_ip: u32,
    /// Build `/v1/ice-servers` from the relays' records in Redis (`redis_url`, `redis_prefix`)
    /// instead of `[[relays]]`, which stay the fallback when the registry has no usable relay.
    pub fleet: bool,
    /// Relays handed to one client from the registry: several, so ICE can fall back to another
    /// relay by itself when one is unreachable from the client's network.
    pub fleet_relays: usize,
    /// Request header carrying the client's region (set by nginx from GeoIP); unset: only the
    /// `region=` query parameter is looked at.
    pub region_header: Option<String>,
    /// How long the last registry read is served while Redis is unreachable; after it the static
    /// `[[relays]]` are served, since a fleet that old may have moved or emptied.
    pub fleet_stale_secs: u64,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            socketio_path: "/socket.io".into(),
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_user_claim: "sub".into(),
            jwt_leeway_secs: 30,
            api_keys: Vec::new(),
            api_key_user_param: "user".into(),
            cors_origins: Vec::new(),
            rate_limit_per_user: 30,
            rate_limit_per_ip: 120,
            trust_proxy_headers: false,
            credential_bucket_secs: 600,
            reconnect_grace_secs: 20,
            max_event_bytes: 64 * 1024,
            // Half of socket.io's own default (maxHttpBufferSize, 1 MB): a 300 KB event still
            // gets its payload_too_large, and one client's message costs at most this much.
            max_message_bytes: 512 * 1024,
            redis_url: None,
            redis_prefix: "signaling".into(),
            deadline_poll_ms: 250,
            webhook_url: None,
            webhook_secret: None,
            webhook_max_attempts: 5,
            webhook_timeout_secs: 5,
            diag_enabled: true,
            call_page_enabled: true,
            metrics_listen: None,
            drain_timeout_secs: 10,
            socket_connect_timeout_secs: 5,
            socket_send_queue: 64,
            socket_connects_per_ip: 60,
            socket_auth_failures_per_ip: 20,
            fleet: false,
            fleet_relays: 2,
            region_header: None,
            fleet_stale_secs: 60,
        }
    }
}

impl fmt::Debug for SignalingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logged at startup: secrets and API keys are shown only as present or absent.
        let redact = |o: &Option<String>| if o.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("SignalingConfig")
            .field("listen", &self.listen)
            .field("socketio_path", &self.socketio_path)
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_user_claim", &self.jwt_user_claim)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("api_keys", &format_args!("<{} redacted>", self.api_keys.len()))
            .field("api_key_user_param", &self.api_key_user_param)
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit_per_user", &self.rate_limit_per_user)
            .field("rate_limit_per_ip", &self.rate_limit_per_ip)
            .field("trust_proxy_headers", &self.trust_proxy_headers)
            .field("credential_bucket_secs", &self.credential_bucket_secs)
            .field("reconnect_grace_secs", &self.reconnect_grace_secs)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("deadline_poll_ms", &self.deadline_poll_ms)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &redact(&self.webhook_secret))
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_timeout_secs", &self.webhook_timeout_secs)
            .field("diag_enabled", &self.diag_enabled)
            .field("call_page_enabled", &self.call_page_enabled)
            .field("metrics_listen", &self.metrics_listen)
            .field("drain_timeout_secs", &self.drain_timeout_secs)
            .field("socket_connect_timeout_secs", &self.socket_connect_timeout_secs)
            .field("socket_send_queue", &self.socket_send_queue)
            .field("socket_connects_per_ip", &self.socket_connects_per_ip)
            .field("socket_auth_failures_per_ip", &self.socket_auth_failures_per_ip)
            .field("fleet", &self.fleet)
            .field("fleet_relays", &self.fleet_relays)
            .field("region_header", &self.region_header)
            .field("fleet_stale_secs", &self.fleet_stale_secs)
            .finish()
    }
}

/// `redis://user:password@host` with the password hidden.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_are_not_logged() {
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://<redacted>@h:6379/0");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        let c = SignalingConfig { jwt_secret: Some("topsecret".into()), ..SignalingConfig::default() };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
