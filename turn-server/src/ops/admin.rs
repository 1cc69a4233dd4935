//! The admin interface: what coturn's telnet CLI offers, as token-protected HTTP on a local port
//! (coturn's `cli-ip`/`cli-port`/`cli-password`), answered with JSON for `turn-server admin` and
//! for scripts.
//!
//! - `GET /allocations[?user=U]`: every allocation with user, 5-tuple, relayed addresses, age and
//!   traffic;
//! - `DELETE /users/{user}/allocations`: ends a user's allocations;
//! - `GET /config`: the effective configuration (secrets redacted) and the relay's state;
//! - `POST /reload`: re-reads the config file, as SIGHUP does.

use std::rc::Rc;

use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::control::Control;
use super::http::{Request, Response};
use crate::proto::allocation::{Allocation, RelayTransport};

pub async fn serve(listener: TcpListener, control: Rc<Control>, token: String) {
    super::http::serve(listener, move |request| handle(&control, &token, request)).await;
}

fn handle(control: &Control, token: &str, request: &Request) -> Response {
    if !authorized(request, token) {
        let mut refused = Response::json(401, &json!({ "error": "missing or wrong bearer token" }));
        refused.headers.push("WWW-Authenticate: Bearer realm=\"turn-server admin\"".into());
        return refused;
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["allocations"]) => {
            let user = request.query_value("user").map(str::to_owned);
            let now = crate::net::clock::now().instant;
            let per_worker = control.workers.each(move |w| {
                w.with_server(|server| {
                    server
                        .allocations()
                        .filter(|a| user.as_deref().is_none_or(|u| a.username == u || a.quota_user == u))
                        .map(|a| allocation_json(a, now))
                        .collect::<Vec<Value>>()
                })
            });
            let list: Vec<Value> = per_worker.into_iter().flatten().collect();
            Response::json(200, &json!({ "allocations": list }))
        }
        ("DELETE", ["users", user, "allocations"]) => {
            let dropped = control.workers.drop_user(user);
            tracing::info!(user, dropped, "admin: user's allocations dropped");
            Response::json(200, &json!({ "user": user, "dropped": dropped }))
        }
        ("GET", ["config"]) => {
            let (allocations, draining) = (control.workers.allocation_count(), control.workers.is_draining());
            Response::json(
                200,
                &json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "allocations": allocations,
                    "draining": draining,
                    "config": control.effective_config(),
                }),
            )
        }
        ("POST", ["reload"]) => match control.reload("admin") {
            Ok(r) => Response::json(
                200,
                &json!({ "reloaded": true, "needs_restart": r.needs_restart, "log_level_changed": r.log_level_changed }),
            ),
            Err(e) => Response::json(422, &json!({ "reloaded": false, "error": e })),
        },
        (_, ["allocations"] | ["users", _, "allocations"] | ["config"] | ["reload"]) => {
            Response::json(405, &json!({ "error": format!("{} not allowed on {}", request.method, request.path) }))
        }
        _ => Response::json(404, &json!({ "error": format!("no such resource: {}", request.path) })),
    }
}

fn authorized(request: &Request, token: &str) -> bool {
    let Some(given) = request.authorization.as_deref().and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

fn allocation_json(a: &Allocation, now: crate::proto::Instant) -> Value {
    let t = a.traffic;
    json!({
        "username": a.username,
        "user": a.quota_user,
        "transport": a.tuple.transport.as_str(),
        "client": a.tuple.client.to_string(),
        "server": a.tuple.server.to_string(),
        "relayed": a.relays.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "relay_transport": match a.relay_transport { RelayTransport::Udp => "udp", RelayTransport::Tcp => "tcp" },
        "age_secs": now.saturating_duration_since(a.created).as_secs(),
        "expires_in_secs": a.expires.saturating_duration_since(now).as_secs(),
        "permissions": a.permissions.iter().filter(|p| p.expires > now).map(|p| p.ip.to_string()).collect::<Vec<_>>(),
        "channels": a.channels.iter().filter(|c| c.expires > now).count(),
        "packets_to_peer": t.packets_to_peer,
        "bytes_to_peer": t.bytes_to_peer,
        "packets_from_peer": t.packets_from_peer,
        "bytes_from_peer": t.bytes_from_peer,
    })
}
