//! Tells the messenger's backend about offers to offline users and missed calls, so it can send
//! FCM/APNs pushes. Posting happens on background tasks with retries and backoff; signaling
//! only enqueues (never waits), and a full queue or a dead backend costs a log line, not a call.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use crate::calls::Hook;

/// Events waiting to be posted; beyond this they are dropped (and logged).
const QUEUE: usize = 4096;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-signature-256";

/// Where hooks go, if anywhere.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: Option<mpsc::Sender<Hook>>,
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Target URL.
    pub url: String,
    /// HMAC key.
    pub secret: String,
    /// Attempts per event.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Webhook {
    /// A webhook that drops everything (no URL configured).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Starts the delivery task; must be called inside a tokio runtime.
    pub fn spawn(cfg: WebhookConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        let (tx, mut rx) = mpsc::channel::<Hook>(QUEUE);
        let cfg = Arc::new(cfg);
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        tokio::spawn(async move {
            while let Some(hook) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let (client, cfg) = (client.clone(), cfg.clone());
                tokio::spawn(async move {
                    deliver(&client, &cfg, &hook).await;
                    drop(permit);
                });
            }
        });
        Ok(Self { tx: Some(tx) })
    }

    /// Queues `hook` without waiting.
    pub fn post(&self, hook: Hook) {
        let Some(tx) = &self.tx else {
            tracing::debug!(event = hook.kind.name(), call = %hook.call_id, "no webhook_url: not posted");
            return;
        };
        if let Err(e) = tx.try_send(hook) {
            tracing::warn!(error = %e, "webhook queue full or closed: event dropped");
        }
    }
}

/// The JSON body for `hook`.
pub fn body(hook: &Hook) -> Vec<u8> {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(hook.at_ms);
    json!({
        "event": hook.kind.name(),
        "callId": hook.call_id,
        "callerId": hook.caller,
        "calleeId": hook.callee,
        "chatId": hook.chat_id,
        "callType": hook.call_type,
        "reason": hook.reason,
        "at": humantime::format_rfc3339_millis(at).to_string(),
    })
    .to_string()
    .into_bytes()
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this constructor cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

async fn deliver(client: &reqwest::Client, cfg: &WebhookConfig, hook: &Hook) {
    let body = body(hook);
    let sig = signature(&cfg.secret, &body);
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=cfg.max_attempts {
        let result = client
            .post(&cfg.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &sig)
            .header("x-signaling-event", hook.kind.name())
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(event = hook.kind.name(), call = %hook.call_id, attempt, "webhook delivered");
                return;
            }
            Ok(resp) => {
                tracing::warn!(event = hook.kind.name(), call = %hook.call_id, attempt, status = %resp.status(), "webhook refused");
            }
            Err(e) => {
                tracing::warn!(event = hook.kind.name(), call = %hook.call_id, attempt, error = %e, "webhook failed");
            }
        }
        if attempt < cfg.max_attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    tracing::error!(event = hook.kind.name(), call = %hook.call_id, attempts = cfg.max_attempts, "webhook given up");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::calls::{CallType, HookKind};

    #[test]
    fn signature_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"The quick brown fox jumps over the lazy dog",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn body_fields() {
        let hook = Hook {
            kind: HookKind::Missed,
            call_id: "c".into(),
            caller: "a".into(),
            callee: "b".into(),
            chat_id: "chat".into(),
            call_type: CallType::Audio,
            reason: Some("no-answer".into()),
            at_ms: 1_700_000_000_123,
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&hook)).unwrap();
        assert_eq!(v["event"], "call.missed");
        assert_eq!(v["calleeId"], "b");
        assert_eq!(v["callType"], "audio");
        assert_eq!(v["reason"], "no-answer");
        assert_eq!(v["at"], "2023-11-14T22:13:20.123Z");
    }
}
