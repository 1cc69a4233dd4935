//! `GET /v1/ice-servers`: the `iceServers` array for `RTCPeerConnection`, with a fresh TURN REST
//! credential bound to the caller's user id, and the call timing every client must share.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use ice_config::ice_servers as build_ice_servers;

use super::{ApiError, AppState};
use crate::auth::bearer;
use crate::fleet::Source;
use crate::metrics::AuthEndpoint;

/// The handler; every answer is counted by result.
pub async fn ice_servers(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let result = issue(&state, peer, &query, &headers);
    state.metrics.ice_request(match &result {
        Ok(_) => "ok",
        Err(e) => e.code,
    });
    result
}

fn issue(
    state: &AppState,
    peer: SocketAddr,
    query: &std::collections::HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_unix = now.as_secs();
    let sig = &state.config.signaling;
    let ip = client_ip(headers, peer, sig.trust_proxy_headers);
    state.limiter.hit(&format!("ip:{ip}"), sig.rate_limit_per_ip, now_unix).map_err(ApiError::rate_limited)?;
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer).ok_or_else(|| {
        state.metrics.auth_failure(AuthEndpoint::Http, crate::auth::AuthError::Missing.reason());
        ApiError::unauthorized("missing bearer token")
    })?;
    let api_user = query.get(state.auth.api_key_user_param()).map(String::as_str);
    let principal = state.auth.authenticate(token, api_user, now_unix).map_err(|e| {
        tracing::debug!(%ip, error = %e, "ice-servers: unauthorized");
        state.metrics.auth_failure(AuthEndpoint::Http, e.reason());
        match e {
            crate::auth::AuthError::ApiKeyWithoutUser(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::unauthorized(e.to_string()),
        }
    })?;
    state
        .limiter
        .hit(&format!("user:{}", principal.user), sig.rate_limit_per_user, now_unix)
        .map_err(ApiError::rate_limited)?;

    let ttl = state.config.auth.credential_ttl_secs;
    let bucket = sig.credential_bucket_secs.min(ttl / 2);
    let cred = state.secrets.issue_bucketed(Some(&principal.user), now_unix, ttl, bucket);
    let servers = match &state.fleet {
        Some(fleet) => {
            let region_header = sig.region_header.as_deref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
            let region = crate::fleet::request_region(query.get("region").map(String::as_str), region_header);
            let (chosen, source) = fleet.pick(region);
            state.metrics.fleet_served(source.as_str());
            if source == Source::Static {
                build_ice_servers(&state.config.relays, &cred)
            } else {
                let chosen: Vec<_> = chosen.iter().collect();
                crate::fleet::select::ice_servers(&chosen, &cred)
            }
        }
        None => build_ice_servers(&state.config.relays, &cred),
    };
    let expires = UNIX_EPOCH + Duration::from_secs(cred.expires_at);
    let call = &state.config.call;
    let body = json!({
        "iceServers": servers,
        "ttl": cred.expires_at.saturating_sub(now_unix),
        "expiresAt": humantime::format_rfc3339_seconds(expires).to_string(),
        "serverTime": u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        "call": {
            "ringTimeoutSecs": call.ring_timeout_secs,
            "heartbeatIntervalSecs": call.heartbeat_interval_secs,
            "heartbeatTimeoutSecs": call.heartbeat_timeout_secs,
            "reconnectGraceSecs": sig.reconnect_grace_secs,
        },
    });
    tracing::debug!(user = %principal.user, expires_at = cred.expires_at, "ice-servers issued");
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The client's address: the TCP peer, or (behind a trusted proxy) `X-Real-IP` / the last
/// `X-Forwarded-For` entry, which is the one the proxy itself appended.
pub(crate) fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_proxy: bool) -> String {
    if trust_proxy {
        let real = headers.get("x-real-ip").and_then(|v| v.to_str().ok()).map(str::trim);
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim);
        if let Some(ip) = [real, forwarded].into_iter().flatten().find(|s| s.parse::<std::net::IpAddr>().is_ok()) {
            return ip.to_owned();
        }
    }
    peer.ip().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxy_headers_only_when_trusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 203.0.113.9"));
        assert_eq!(client_ip(&h, peer, false), "127.0.0.1");
        assert_eq!(client_ip(&h, peer, true), "203.0.113.9");
        h.insert("x-real-ip", HeaderValue::from_static("198.51.100.2"));
        assert_eq!(client_ip(&h, peer, true), "198.51.100.2");
        h.insert("x-real-ip", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(&h, peer, true), "203.0.113.9");
    }
}
