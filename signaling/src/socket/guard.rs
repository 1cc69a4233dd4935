//! Checks on the HTTP request that opens a Socket.IO session, before engine.io creates the session
//! or completes the WebSocket upgrade: the `Origin` allow-list, the per-source limits on new
//! sessions and on refused handshakes, and a token sent as `Authorization: Bearer`. A request
//! refused here costs one HTTP response and no session, heartbeat task or upgrade.
//!
//! Browsers cannot set headers on a WebSocket, so socket.io-client sends its token in the
//! Socket.IO CONNECT packet, after the upgrade; for those clients the handshake middleware
//! (`connect.rs`) checks it and `socket_connect_timeout_secs` bounds how long a session that
//! never sends it stays open.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::connect::origin_allowed;
use super::conns::Connections;
use super::limits::SourceLimiter;
use crate::auth::{bearer, Authenticator};
use crate::metrics::{AuthEndpoint, Metrics};

/// Shared by the pre-upgrade check and the handshake middleware (which records refusals).
#[derive(Debug)]
pub struct Guard {
    /// `socketio_path`: requests under it are checked, others pass.
    pub path: String,
    /// Allowed browser origins (`*` = any).
    pub origins: Vec<String>,
    /// Take the client address from proxy headers.
    pub trust_proxy: bool,
    /// New sessions per minute per source.
    pub connects_per_ip: u32,
    /// Refused handshakes per minute per source.
    pub failures_per_ip: u32,
    /// New sessions counted per source.
    pub connects: SourceLimiter,
    /// Refused handshakes counted per source.
    pub failures: SourceLimiter,
    /// Verifies a header token before the upgrade.
    pub auth: Authenticator,
    /// Refusals are counted in `signaling_auth_failures_total{endpoint="socket"}`.
    pub metrics: Arc<Metrics>,
    /// The server's TCP connections; upgrades of polling sessions are recorded there.
    pub conns: Arc<Connections>,
}

/// Why the request was refused before a session existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// `Origin` not allowed: 403.
    Origin,
    /// Too many new sessions or refused handshakes from this source: 429 with `Retry-After`.
    RateLimited(u64),
    /// An `Authorization` header that does not verify: 401.
    Unauthorized(&'static str),
}

impl IntoResponse for Early {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Early::Origin => (StatusCode::FORBIDDEN, "origin not allowed"),
            Early::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Early::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        let mut resp = (status, axum::Json(serde_json::json!({"error": error}))).into_response();
        if let Early::RateLimited(secs) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl Guard {
    /// The source a request counts against: the TCP peer, or the proxy's client address.
    pub fn source(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer?;
        Some(crate::http::client_ip(headers, peer, self.trust_proxy).parse().unwrap_or(peer.ip()))
    }

    /// Records a refused handshake of `source`, so repeated guessing is cut off before the token
    /// check (and its signature verification) runs again.
    pub fn failed(&self, source: Option<IpAddr>, now_unix: u64) {
        if let Some(ip) = source {
            let _ = self.failures.hit(ip, self.failures_per_ip, now_unix);
        }
    }

    /// The decision for one request under the Socket.IO path. Only requests that open a session
    /// (no `sid` in the query) are counted and token-checked; the requests of an open session
    /// (polls, posts, the upgrade) belong to one that already passed.
    pub fn check(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        source: Option<IpAddr>,
        now_unix: u64,
    ) -> Result<(), Early> {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            if !origin_allowed(&self.origins, origin, host) {
                return Err(Early::Origin);
            }
        }
        let opens_session = !query.unwrap_or("").split('&').any(|kv| kv.starts_with("sid="));
        if !opens_session {
            return Ok(());
        }
        if let Some(ip) = source {
            self.failures.check(ip, self.failures_per_ip, now_unix).map_err(Early::RateLimited)?;
            self.connects.hit(ip, self.connects_per_ip, now_unix).map_err(Early::RateLimited)?;
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value.to_str().ok().and_then(bearer).ok_or(Early::Unauthorized("malformed"))?;
            self.auth.verify_jwt(token, now_unix).map_err(|e| Early::Unauthorized(e.reason()))?;
        }
        Ok(())
    }
}

/// The session a request upgrades to a WebSocket: `transport=websocket` with a `sid`.
pub fn upgraded_session(query: Option<&str>) -> Option<&str> {
    let (mut ws, mut sid) = (false, None);
    for kv in query?.split('&') {
        match kv.split_once('=') {
            Some(("transport", "websocket")) => ws = true,
            Some(("sid", v)) if !v.is_empty() => sid = Some(v),
            _ => {}
        }
    }
    sid.filter(|_| ws)
}

/// The axum middleware around the Socket.IO layer.
pub async fn layer(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(guard.path.as_str()) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let source = guard.source(req.headers(), peer);
    let now = super::now_ms() / 1000;
    match guard.check(req.headers(), req.uri().query(), source, now) {
        Ok(()) => {
            let upgrade = upgraded_session(req.uri().query()).map(str::to_owned);
            let resp = next.run(req).await;
            // Recorded once engine.io accepted it, so a request naming someone else's session
            // cannot take its place.
            if let (Some(sid), Some(peer)) = (upgrade, peer) {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    guard.conns.upgraded(&sid, peer);
                }
            }
            resp
        }
        Err(early) => {
            let reason = match early {
                Early::Origin => "origin",
                Early::RateLimited(_) => "rate_limited",
                Early::Unauthorized(reason) => {
                    guard.failed(source, now);
                    reason
                }
            };
            guard.metrics.auth_failure(AuthEndpoint::Socket, reason);
            tracing::info!(source = ?source, reason, "socket request refused before the session");
            early.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ice_config::config::SignalingConfig;

    fn guard() -> Guard {
        let cfg = SignalingConfig {
            jwt_secret: Some("0123456789abcdef0123456789abcdef".into()),
            cors_origins: vec!["https://app.example".into()],
            ..SignalingConfig::default()
        };
        Guard {
            path: "/socket.io".into(),
            origins: cfg.cors_origins.clone(),
            trust_proxy: false,
            connects_per_ip: 3,
            failures_per_ip: 2,
            connects: SourceLimiter::new(),
            failures: SourceLimiter::new(),
            auth: Authenticator::from_config(&cfg).unwrap(),
            metrics: Arc::new(Metrics::new()),
            conns: Connections::new(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const Q: Option<&str> = Some("EIO=4&transport=websocket");
    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn origin_is_checked_on_every_request() {
        let g = guard();
        let evil = headers(&[("origin", "https://evil.example"), ("host", "calls.example")]);
        assert_eq!(g.check(&evil, Q, IP, 0), Err(Early::Origin));
        assert_eq!(g.check(&evil, Some("EIO=4&transport=polling&sid=abc"), IP, 0), Err(Early::Origin));
        assert_eq!(g.check(&headers(&[("origin", "https://app.example")]), Q, IP, 0), Ok(()));
        assert_eq!(g.check(&HeaderMap::new(), Q, IP, 0), Ok(()));
    }

    #[test]
    fn new_sessions_are_limited_per_source_but_session_requests_are_not() {
        let g = guard();
        for _ in 0..3 {
            g.check(&HeaderMap::new(), Q, IP, 0).unwrap();
        }
        assert_eq!(g.check(&HeaderMap::new(), Q, IP, 10), Err(Early::RateLimited(50)));
        assert_eq!(g.check(&HeaderMap::new(), Some("EIO=4&transport=websocket&sid=x"), IP, 10), Ok(()));
        assert_eq!(g.check(&HeaderMap::new(), Q, Some("192.0.2.9".parse().unwrap()), 10), Ok(()));
    }

    #[test]
    fn upgrades_of_a_session_are_recognised() {
        assert_eq!(upgraded_session(Some("EIO=4&transport=websocket&sid=abc")), Some("abc"));
        assert_eq!(upgraded_session(Some("sid=abc&EIO=4&transport=websocket")), Some("abc"));
        assert_eq!(upgraded_session(Some("EIO=4&transport=polling&sid=abc")), None);
        assert_eq!(upgraded_session(Some("EIO=4&transport=websocket")), None);
        assert_eq!(upgraded_session(Some("EIO=4&transport=websocket&sid=")), None);
        assert_eq!(upgraded_session(None), None);
    }

    #[test]
    fn failures_cut_a_source_off_and_bad_header_tokens_are_refused() {
        let g = guard();
        let forged = headers(&[("authorization", "Bearer a.b.c")]);
        assert!(matches!(g.check(&forged, Q, IP, 0), Err(Early::Unauthorized(_))));
        assert!(matches!(g.check(&headers(&[("authorization", "Basic x")]), Q, IP, 0), Err(Early::Unauthorized(_))));
        g.failed(IP, 0);
        g.failed(IP, 0);
        assert_eq!(g.check(&HeaderMap::new(), Q, IP, 0), Err(Early::RateLimited(60)));
    }
}
