//! The Socket.IO gateway (socketioxide, protocol v5): authenticates the handshake, puts each
//! socket in its user's room and its own room, turns client events into state machine inputs,
//! and performs the resulting effects through the adapter (so with Redis, rooms span instances).

mod connect;
mod effects;
mod request;

use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_core::adapter::DefinedAdapter;
use serde_json::Value;

use crate::auth::Authenticator;
use crate::calls::{ErrorCode, Event, Input, Reply};
use crate::store::{Engine, KvStore};
use crate::webhook::Webhook;

pub use request::{parse, ClientEvent};

/// Room holding every socket of `user`.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// Everything the handlers share.
pub struct Gateway<S, A: Adapter> {
    /// Call state.
    pub engine: Engine<S>,
    /// Emitting and room queries.
    pub io: SocketIo<A>,
    /// Token checks.
    pub auth: Authenticator,
    /// Allowed browser origins (`*` = any).
    pub origins: Vec<String>,
    /// Largest accepted payload.
    pub max_event_bytes: usize,
    /// Push notifications.
    pub webhook: Webhook,
}

/// Registers the default namespace with auth middleware and event handlers. The result is the
/// adapter's initialisation: `()` in memory, a future to await (Redis subscriptions) otherwise.
pub fn register<S: KvStore, A: Adapter + DefinedAdapter>(gateway: Arc<Gateway<S, A>>) -> A::InitRes {
    let io = gateway.io.clone();
    let on_connect = {
        let gw = gateway.clone();
        move |s: SocketRef<A>| {
            let gw = gw.clone();
            async move { gw.connected(s).await }
        }
    };
    let middleware = {
        let gw = gateway.clone();
        move |s: SocketRef<A>, TryData(auth): TryData<Value>| {
            let gw = gw.clone();
            async move { gw.authenticate(&s, auth.ok()) }
        }
    };
    io.ns("/", on_connect.with(middleware))
}

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    fn listen(self: &Arc<Self>, s: &SocketRef<A>) {
        for event in ClientEvent::ALL {
            let gw = self.clone();
            s.on(event.name(), move |s: SocketRef<A>, TryData(data): TryData<Value>, ack: AckSender<A>| {
                let gw = gw.clone();
                async move { gw.request(s, event, data.ok(), ack).await }
            });
        }
    }

    async fn request(&self, s: SocketRef<A>, event: ClientEvent, data: Option<Value>, ack: AckSender<A>) {
        let Some(principal) = s.extensions.get::<crate::auth::Principal>() else {
            // Unreachable: the middleware stores it before any handler can run.
            return;
        };
        let sid = s.id.to_string();
        let reply = match parse(event, &principal.user, &sid, data, self.max_event_bytes) {
            Ok(input) => self.run(input).await,
            Err(reply) => reply,
        };
        if let Reply::Err { code, call_id, .. } = &reply {
            tracing::info!(user = %principal.user, %sid, event = event.name(), error = code.as_str(), call = ?call_id, "request refused");
            let mut data = reply.to_json();
            data["code"] = data["error"].clone();
            if let Err(e) = s.emit(Event::Error.name(), &data) {
                tracing::debug!(error = %e, "call:error not sent");
            }
        }
        if let Err(e) = ack.send(&reply.to_json()) {
            tracing::debug!(error = %e, "ack not sent");
        }
    }

    /// Runs an input through the engine and performs its effects.
    pub async fn run(&self, input: Input) -> Reply {
        match self.engine.run(now_ms(), input).await {
            Ok((reply, effects)) => {
                self.perform(effects).await;
                reply
            }
            Err(e) => {
                tracing::error!(error = %e, "call store failed");
                Reply::Err { code: ErrorCode::Unavailable, call_id: None, winner: None }
            }
        }
    }
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
