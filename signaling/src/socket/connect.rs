//! The handshake: origin and token checks (refusals reach the client as `connect_error` with
//! the reason), rooms, the token-expiry disconnect, and the pending offer for a late device.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tokio::task::AbortHandle;

use super::{user_room, Gateway};
use crate::auth::{bearer, AuthError, Principal};
use crate::calls::Input;
use crate::metrics::AuthEndpoint;
use crate::store::KvStore;

/// Why a connection was refused; the text is the `connect_error` message.
#[derive(thiserror::Error, Debug)]
pub enum Refused {
    /// Origin header not in `cors_origins`.
    #[error("origin not allowed")]
    Origin,
    /// Token problem.
    #[error("unauthorized: {0}")]
    Auth(#[from] AuthError),
}

/// A browser origin from the configured list, or the service's own origin: native clients
/// (python-engineio, Starscream on iOS) send `Origin: <the URL they connect to>`, which is not
/// a cross-site request.
pub fn origin_allowed(allowed: &[String], origin: &str, host: Option<&str>) -> bool {
    if allowed.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

/// Aborts the token-expiry timer when the socket goes first.
#[derive(Clone)]
struct ExpiryTimer(AbortHandle);

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    /// The connect middleware.
    pub(super) fn authenticate(&self, s: &SocketRef<A>, auth: Option<Value>) -> Result<(), Refused> {
        let headers = &s.req_parts().headers;
        if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
            let host = headers.get("host").and_then(|v| v.to_str().ok());
            if !origin_allowed(&self.origins, origin, host) {
                self.metrics.auth_failure(AuthEndpoint::Socket, "origin");
                tracing::info!(%origin, "socket refused: origin");
                return Err(Refused::Origin);
            }
        }
        // The token comes from the handshake auth payload or, for native clients that set
        // headers, from Authorization; never from the query string (it ends up in logs).
        let from_auth = auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str).map(str::to_owned);
        let from_header =
            headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer).map(str::to_owned);
        let now = super::now_ms() / 1000;
        let principal = from_auth.or(from_header).ok_or(AuthError::Missing).and_then(|token| {
            self.auth.verify_jwt(&token, now).inspect_err(|e| {
                tracing::info!(error = %e, "socket refused: token");
            })
        });
        let principal = principal.inspect_err(|e| {
            self.metrics.auth_failure(AuthEndpoint::Socket, e.reason());
            let peer = s.req_parts().extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            self.guard.failed(self.guard.source(headers, peer), now);
        })?;
        s.extensions.insert(principal);
        Ok(())
    }

    /// The connect handler, after the middleware accepted (and registered the event handlers,
    /// see `register`). socketioxide calls it after sending the CONNECT packet, so the client's
    /// first events may already wait in the socket's queue; they are served once the socket is
    /// in its rooms.
    pub(super) fn connected(self: Arc<Self>, s: SocketRef<A>) {
        let Some(principal) = s.extensions.get::<Principal>() else { return };
        let sid = s.id.to_string();
        // Its own room makes the socket addressable from any instance through the adapter.
        s.join([user_room(&principal.user), sid.clone()]);
        tracing::info!(user = %principal.user, %sid, transport = ?s.transport_type(), "socket connected");
        self.metrics.socket_delta(1);
        self.serve(&s, principal.user.clone());
        s.extensions.insert(Present(Arc::new(AtomicBool::new(true))));
        {
            let gw = self.clone();
            s.on_disconnect(move |s: SocketRef<A>| {
                let gw = gw.clone();
                async move { gw.left(&s).await }
            });
        }
        if let Some(exp) = principal.expires_at {
            let wait = Duration::from_secs(exp.saturating_sub(super::now_ms() / 1000));
            let s2 = s.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                tracing::info!(sid = %s2.id, "token expired: disconnecting");
                let _ = s2.emit(
                    "call:error",
                    &serde_json::json!({"ok": false, "error": "token_expired", "code": "token_expired"}),
                );
                let _ = s2.disconnect();
            });
            s.extensions.insert(ExpiryTimer(task.abort_handle()));
        }
        // A phone woken by a push connects while the call still rings: give it the offer now.
        let gw = self.clone();
        tokio::spawn(async move { gw.run(Input::Connected { user: principal.user.clone(), sid }).await });
    }
}

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    /// A socket is gone (disconnect handler, or a drain closing it): stop its expiry timer,
    /// uncount it, and queue its disconnect for the state machine behind its pending requests.
    /// Runs once per socket whichever comes first.
    pub(super) async fn left(&self, s: &SocketRef<A>) {
        let Some(present) = s.extensions.get::<Present>() else { return };
        if !present.0.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(timer) = s.extensions.get::<ExpiryTimer>() {
            timer.0.abort();
        }
        let user = s.extensions.get::<Principal>().map(|p| p.user).unwrap_or_default();
        tracing::info!(%user, sid = %s.id, "socket disconnected");
        self.metrics.socket_delta(-1);
        self.gone(s).await;
    }

    /// Records the disconnect of every socket on this instance, before the drain closes their
    /// transports: socketioxide's `SocketIo::close` drops its namespaces first, so it never runs
    /// the disconnect handlers itself.
    pub async fn leave_all_local(&self) {
        for s in self.io.local().sockets() {
            self.left(&s).await;
        }
    }
}

/// Set while the socket counts as connected; [`Gateway::left`] clears it exactly once.
#[derive(Clone)]
struct Present(Arc<AtomicBool>);

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins() {
        let list = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(&list, "https://app.example", None));
        assert!(origin_allowed(&list, "HTTPS://APP.EXAMPLE", None));
        assert!(!origin_allowed(&list, "https://evil.example", Some("calls.example")));
        assert!(origin_allowed(&list, "https://calls.example", Some("calls.example")));
        assert!(origin_allowed(&list, "http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(!origin_allowed(&list, "http://127.0.0.1:8081", Some("127.0.0.1:8080")));
        assert!(origin_allowed(&["*".to_owned()], "https://any.example", None));
        assert!(!origin_allowed(&[], "https://any.example", None));
    }
}
