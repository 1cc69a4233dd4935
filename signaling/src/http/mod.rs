//! The HTTP side: `GET /v1/ice-servers`, `/healthz`, `/readyz`, `/diag`, `/call`, CORS, and the router the
//! Socket.IO layer is mounted on.

mod call_page;
mod diag;
mod error;
mod health;
mod ice;
pub mod metrics;
pub mod rate_limit;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use tower_http::cors::{AllowOrigin, CorsLayer};

use ice_config::{Config, RestSecrets};

use crate::auth::Authenticator;
pub use error::ApiError;
pub(crate) use ice::client_ip;
use rate_limit::RateLimiter;

/// Readiness probe: resolves to `Err(reason)` when a dependency (Redis) is unreachable.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Token verification.
    pub auth: Authenticator,
    /// The whole config (relays, auth, call timing, signaling).
    pub config: Arc<Config>,
    /// REST secrets for signing TURN credentials.
    pub secrets: RestSecrets,
    /// Per-user and per-IP limits.
    pub limiter: Arc<RateLimiter>,
    /// Readiness.
    pub ready: ReadyCheck,
    /// Counters of ICE config requests and refused credentials.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set on SIGTERM: `/readyz` answers 503 so load balancers stop routing here.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The relays' registry, with `signaling.fleet`; `None`: `[[relays]]` only.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}

/// The routes. CORS is applied by the caller around these and the Socket.IO layer together, so
/// long-polling answers carry the same headers as the REST API.
pub fn router(state: AppState) -> Router {
    let diag = state.config.signaling.diag_enabled;
    Router::new()
        .merge(diag::routes(diag))
        .merge(call_page::routes(state.config.signaling.call_page_enabled, &state.config.signaling.socketio_path))
        .route("/v1/ice-servers", get(ice::ice_servers))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}

/// CORS for the configured origins.
pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Origins were validated in ice-config; one that still fails to be a header value is
        // skipped rather than allowing everything.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
