//! `GET /diag`: an ICE diagnostics page in the spirit of WebRTC's "Trickle ICE" sample, for this
//! deployment's own config. The operator pastes a user token (or deep-links `#token=...`, never
//! the query string); the page fetches `/v1/ice-servers` with it and gathers candidates against
//! each entry in its own `RTCPeerConnection`, showing host/srflx/relay counts, the relay
//! addresses and a hint when no relay candidate came back.
//!
//! The page is public (it holds no secret): the data behind it needs the user's token. It loads
//! nothing from elsewhere; script and style are separate embedded routes so the CSP can be
//! `'self'` only, with no inline code. `[signaling] diag_enabled = false` (`--no-diag`) answers
//! 404 on all three.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("diag.html");
const SCRIPT: &str = include_str!("diag.js");
const STYLE: &str = include_str!("diag.css");

/// Only this origin's script, style and fetches; no frames, forms, plugins or base changes.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The page's routes, or none (so 404) when disabled.
pub fn routes<S: Clone + Send + Sync + 'static>(enabled: bool) -> Router<S> {
    if !enabled {
        return Router::new();
    }
    Router::new().route("/diag", get(page)).route("/diag.js", get(script)).route("/diag.css", get(style))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_path(enabled: bool, path: &str) -> Response {
        let app: Router = routes(enabled);
        app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn enabled_serves_the_page_with_a_strict_csp() {
        let r = get_path(true, "/diag").await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        for (path, ctype) in [("/diag.js", "text/javascript; charset=utf-8"), ("/diag.css", "text/css; charset=utf-8")]
        {
            let r = get_path(true, path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ctype);
        }
    }

    #[tokio::test]
    async fn disabled_is_404() {
        for path in ["/diag", "/diag.js", "/diag.css"] {
            assert_eq!(get_path(false, path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn page_loads_nothing_from_elsewhere_and_has_no_inline_code() {
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
        }
        assert!(!PAGE.contains("<script>") && !PAGE.contains("<style") && !PAGE.contains(" style="));
        assert!(!PAGE.contains("onclick") && !PAGE.contains("onload"));
        // The token is read from the fragment, never sent in a query string.
        assert!(!SCRIPT.contains("?token") && SCRIPT.contains("location.hash"));
    }
}
