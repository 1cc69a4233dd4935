//! The metrics listener: `GET /metrics` on `signaling.metrics_listen`, a socket of its own so the
//! public port (behind nginx) never exposes it. Each scrape checks the store first, so
//! `signaling_redis_up` is as fresh as the scrape.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::ReadyCheck;
use crate::metrics::{Metrics, RedisComponent};

/// A scrape must answer even when Redis hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    store_up: ReadyCheck,
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, store_up: ReadyCheck) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Scrape { metrics, store_up });
    axum::serve(listener, app).await
}

async fn scrape(State(s): State<Scrape>) -> Response {
    let up = matches!(tokio::time::timeout(PING_TIMEOUT, (s.store_up)()).await, Ok(Ok(())));
    if !up {
        s.metrics.redis_error(RedisComponent::Store);
    }
    s.metrics.redis_up(up);
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
