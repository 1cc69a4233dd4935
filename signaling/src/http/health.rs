//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Redis too, if used, and
//! not draining after SIGTERM; with `signaling.fleet`, how fresh the relay list is).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

/// Always 200 while the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when every dependency answers, 503 with the reason otherwise.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining", "reason": "shutting down"})));
    }
    let fleet = state.fleet.as_ref().map(|f| f.status());
    // A degraded fleet alone keeps the instance in rotation: it still hands out relays (the last
    // read, or [[relays]]), and every instance shares the same Redis anyway.
    let (code, mut body) = match (state.ready)().await {
        Ok(()) if fleet.as_ref().is_some_and(|f| f.state != "ok") => (StatusCode::OK, json!({"status": "degraded"})),
        Ok(()) => (StatusCode::OK, json!({"status": "ready"})),
        // Out of rotation while Redis is unreachable (an instance that reaches it serves more),
        // but still serving: calls between this instance's own sockets continue in memory.
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "degraded", "reason": why})),
    };
    if let Some(f) = fleet {
        body["fleet"] = json!(f);
    }
    (code, Json(body))
}
