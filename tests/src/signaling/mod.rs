//! Harness for the signaling tests (`tests/tests/e2e/signaling_*.rs`): the built `signaling` binary
//! on a free loopback port, a minimal HTTP/1.1 client, HS256 tokens made here independently of
//! the service's JWT library, Socket.IO clients nobody here wrote (socket.io-client from npm,
//! python-socketio from PyPI) driven over JSON lines, and real `redis-server` and `nginx`.
//!
//! Every child is killed on drop and bounded in life; every wait is bounded in time. A missing
//! tool fails the test with the command that installs it (tests/run-all.sh runs those).
//!
//! One module a part: `instance` (the service itself), `http` (the HTTP client), `driver` and
//! `abuse` (Socket.IO clients, well-behaved and hostile), `redis`, `nginx`, `hooks` (a webhook
//! receiver); tokens, ports and call ids stay here.

mod abuse;
mod driver;
mod hooks;
mod http;
mod instance;
mod nginx;
mod redis;

pub use abuse::AbuseClient;
pub use driver::Driver;
pub use hooks::HookSink;
pub use http::{http, https_get, Response};
pub use instance::{Metrics, Signaling, SignalingBuilder};
pub use nginx::Nginx;
pub use redis::Redis;

/// Where the signaling tests have always found it.
pub use crate::free_port;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::find_program;

/// How long a signaling instance may take to answer `/healthz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default wait for an expected Socket.IO event or ack.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on any child's life.
pub(crate) const MAX_LIFE: Duration = Duration::from_secs(240);

/// The built `signaling` binary (`E2E_SIGNALING` overrides).
pub fn signaling_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_SIGNALING") {
        return PathBuf::from(p);
    }
    let p = crate::profile_dir().join("signaling");
    assert!(p.is_file(), "{} not found: run `cargo build -p signaling` first", p.display());
    p
}

/// A program the test needs, or a failure saying how to install it.
pub fn require(name: &str, install: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed. Install it with `{install}` (tests/run-all.sh does this), then rerun.")
    })
}

/// `base64url(HMAC-SHA256)` JWT with `claims`, written here without any JWT library.
pub fn hs256_token(secret: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// `sha256=<hex>` as the webhook signature header carries it, computed independently.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A fresh call id (UUID v4 text), as clients make them.
pub fn call_id() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}
