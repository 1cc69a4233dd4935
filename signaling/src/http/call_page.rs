//! `GET /call`: a call page for testing a deployment on real networks (a phone on mobile data, a
//! laptop on Wi-Fi): sign in with a user token in the fragment (`/call#token=...`), call another
//! user, and watch the selected ICE pair, RTT and bitrate live, with a force-relay switch. It is
//! built on the web client library (`clients/web/`), so it also shows that library working
//! through this deployment.
//!
//! Like `/diag` the page is public and holds no secret, and everything it runs is embedded: its
//! own HTML/CSS/script, the library's modules (`/call/lib/*.js`, listed by `build.rs`) and the
//! socket.io-client ES bundle (`/call/vendor/`, a byte-for-byte copy of the pinned npm package,
//! see `signaling/vendor/socket.io-client/`). The library imports `"socket.io-client"` by its bare
//! name, so the page carries an import map; the CSP allows that one inline script by its hash
//! and nothing else inline. `[signaling] call_page_enabled = false` (`--no-call-page`) answers
//! 404 on every route.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use sha2::{Digest, Sha256};

mod lib_files {
    include!(concat!(env!("OUT_DIR"), "/call_lib.rs"));
}
pub use lib_files::LIB;

const PAGE: &str = include_str!("call_page/call.html");
const APP: &str = include_str!("call_page/app.js");
const CHARTS: &str = include_str!("call_page/charts.js");
const STYLE: &str = include_str!("call_page/call.css");
const SOCKET_IO: &str = include_str!("../../vendor/socket.io-client/socket.io.esm.min.js");

/// Where the page learns the Socket.IO path (it differs behind nginx: `/calls/socket.io`).
const PATH_PLACEHOLDER: &str = "{{socketio_path}}";

const IMPORT_MAP_OPEN: &str = "<script type=\"importmap\">";

/// The page's only inline script: the import map, between its tags exactly as the browser hashes it.
fn import_map() -> &'static str {
    PAGE.split_once(IMPORT_MAP_OPEN).and_then(|(_, rest)| rest.split_once("</script>")).map_or("", |(map, _)| map)
}

/// `'sha256-...'` of the import map, for `script-src`.
static IMPORT_MAP_HASH: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(import_map().as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
});

/// The policy for every route: this origin's scripts plus the import map, style, fetches and
/// the Socket.IO WebSocket on this host; no frames, forms, plugins, base changes or inline code.
fn csp(host: Option<&str>) -> String {
    // 'self' covers ws:/wss: to this origin in CSP 3; browsers before it need the scheme named.
    let ws = host.map(|h| format!(" ws://{h} wss://{h}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self' {hash}; style-src 'self'; connect-src 'self'{ws}; \
         img-src 'self'; media-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash = *IMPORT_MAP_HASH
    )
}

/// The request's `Host`, when it is a plain host[:port] (it is echoed into a header).
fn host(headers: &HeaderMap) -> Option<&str> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then_some(h)
}

fn asset(headers: &HeaderMap, content_type: &'static str, body: String) -> Response {
    let csp = csp(host(headers));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
            // The page asks for the camera and microphone itself; nothing it could frame may.
            (header::HeaderName::from_static("permissions-policy"), "camera=(self), microphone=(self)".to_owned()),
        ],
        body,
    )
        .into_response()
}

const JS: &str = "text/javascript; charset=utf-8";

/// `&<>"'` escaped, for the Socket.IO path in an attribute.
fn escape_attr(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The page's routes for a service whose Socket.IO endpoint is at `socketio_path`, or none (so
/// 404) when disabled.
pub fn routes<S: Clone + Send + Sync + 'static>(enabled: bool, socketio_path: &str) -> Router<S> {
    if !enabled {
        return Router::new();
    }
    let page = PAGE.replace(PATH_PLACEHOLDER, &escape_attr(socketio_path));
    Router::new()
        .route("/call", get(move |h: HeaderMap| async move { asset(&h, "text/html; charset=utf-8", page) }))
        .route("/call/app.js", get(|h: HeaderMap| async move { asset(&h, JS, APP.to_owned()) }))
        .route("/call/charts.js", get(|h: HeaderMap| async move { asset(&h, JS, CHARTS.to_owned()) }))
        .route(
            "/call/call.css",
            get(|h: HeaderMap| async move { asset(&h, "text/css; charset=utf-8", STYLE.to_owned()) }),
        )
        .route(
            "/call/vendor/socket.io.esm.min.js",
            get(|h: HeaderMap| async move { asset(&h, JS, SOCKET_IO.to_owned()) }),
        )
        .route("/call/lib/{file}", get(library))
}

async fn library(headers: HeaderMap, Path(file): Path<String>) -> Response {
    match LIB.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => asset(&headers, JS, (*body).to_owned()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(enabled: bool, path: &str) -> Response {
        let app: Router = routes(enabled, "/calls/socket.io");
        let req = Request::get(path).header(header::HOST, "calls.example.org").body(Body::empty()).unwrap();
        app.oneshot(req).await.unwrap()
    }

    async fn body(r: Response) -> String {
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    /// Every route the page loads: its own files, the vendored bundle and the whole library.
    fn all_paths() -> Vec<String> {
        let mut paths: Vec<String> = ["/call", "/call/app.js", "/call/charts.js", "/call/call.css"]
            .into_iter()
            .chain(["/call/vendor/socket.io.esm.min.js"])
            .map(str::to_owned)
            .collect();
        paths.extend(LIB.iter().map(|(name, _)| format!("/call/lib/{name}")));
        paths
    }

    #[tokio::test]
    async fn enabled_serves_everything_with_a_strict_csp() {
        for path in all_paths() {
            let r = get_path(true, &path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"), "{csp}");
            assert!(csp.contains("connect-src 'self' ws://calls.example.org wss://calls.example.org;"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains('*'), "{csp}");
            let ctype = h[header::CONTENT_TYPE].to_str().unwrap();
            let want = match path.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => "text/css; charset=utf-8",
                _ => "text/html; charset=utf-8",
            };
            assert_eq!(ctype, want, "{path}");
        }
        assert_eq!(get_path(true, "/call/lib/nothing.js").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get_path(true, "/call/lib/..%2Fcli.rs").await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn disabled_is_404() {
        for path in all_paths() {
            assert_eq!(get_path(false, &path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn the_page_names_the_socketio_path_and_maps_the_bare_import() {
        let page = body(get_path(true, "/call").await).await;
        assert!(page.contains("content=\"/calls/socket.io\""), "{page}");
        assert!(!page.contains(PATH_PLACEHOLDER));
        let map: serde_json::Value = serde_json::from_str(import_map()).unwrap();
        assert_eq!(map["imports"]["socket.io-client"], "/call/vendor/socket.io.esm.min.js");
        assert_eq!(escape_attr("/a\"><x"), "/a&quot;&gt;&lt;x");
    }

    #[test]
    fn the_import_map_hash_is_the_one_browsers_compute() {
        // Hashed exactly as written between the tags (whitespace included), so an edit to the
        // map changes the hash with it instead of being blocked by the CSP.
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map().as_bytes()));
        assert_eq!(*IMPORT_MAP_HASH, format!("'sha256-{expected}'"));
        assert!(import_map().contains("socket.io-client"));
        // Exactly one inline script, and it is the import map.
        assert_eq!(PAGE.matches("<script").count(), PAGE.matches("<script type=\"module\" src=").count() + 1);
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere_and_nothing_is_inline() {
        for text in [PAGE, APP, CHARTS, STYLE].into_iter().chain(LIB.iter().map(|(_, t)| *t)) {
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
        }
        assert!(!PAGE.contains("<style") && !PAGE.contains(" style="));
        for handler in [" onclick", " onload", " onchange", " onsubmit", " oninput", "javascript:"] {
            assert!(!PAGE.contains(handler), "{handler}");
        }
        // The token is read from the fragment, never sent in a query string.
        assert!(!APP.contains("?token") && APP.contains("location.hash"));
    }

    #[test]
    fn the_library_is_embedded() {
        let names: Vec<&str> = LIB.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"index.js"), "clients/web/src/index.js is not embedded: {names:?}");
        assert!(APP.contains("from \"/call/lib/index.js\""));
    }

    #[test]
    fn host_is_echoed_only_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(host(&h), Some("127.0.0.1:8080"));
        h.insert(header::HOST, "a; script-src *".parse().unwrap());
        assert_eq!(host(&h), None);
    }
}
