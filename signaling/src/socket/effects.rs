//! Performs the machine's effects once a transition is committed: emits to this instance's
//! sockets one by one and to the others' through the adapter (users and sockets are rooms, so
//! this reaches other instances), and queues webhooks.

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::operators::BroadcastOperators;
use socketioxide_core::adapter::errors::BroadcastError;

use super::{user_room, Gateway};
use crate::calls::{Effect, Target};
use crate::metrics::RedisComponent;
use crate::store::KvStore;

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    fn select(&self, to: &Target) -> BroadcastOperators<A> {
        match to {
            Target::User(u) => self.io.to(user_room(u)),
            Target::UserExcept(u, sid) => self.io.to(user_room(u)).except(sid.clone()),
            Target::Socket(sid) => self.io.to(sid.clone()),
        }
    }

    /// Local recipients are sent to directly, so that a full queue is pinned on its socket (a
    /// room broadcast reports failures without saying whose); they also keep getting events
    /// while the adapter's Redis is down. The rest go through the adapter, minus those.
    async fn deliver(&self, to: &Target, event: &'static str, data: &Value) {
        let local = self.select(to).local().sockets();
        for s in &local {
            self.send(s, event, data);
        }
        if matches!(to, Target::Socket(_)) && !local.is_empty() {
            return;
        }
        let done: Vec<String> = local.iter().map(|s| s.id.to_string()).collect();
        if let Err(e) = self.select(to).except(done).emit(event, data).await {
            if matches!(e, BroadcastError::Adapter(_)) {
                self.metrics.redis_error(RedisComponent::Adapter);
                tracing::warn!(?to, event, error = %e, "emit to other instances failed");
            } else {
                // A socket that joined meanwhile and already went away.
                tracing::debug!(?to, event, error = %e, "emit failed");
            }
        }
    }

    pub(super) async fn perform(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Emit { to, event, data } => self.deliver(&to, event.name(), &data).await,
                Effect::PushIfOffline { user, hook } => {
                    // Asking every instance who is online can take a round trip through Redis;
                    // the requester's ack must not wait for it.
                    let (io, webhook, metrics) = (self.io.clone(), self.webhook.clone(), self.metrics.clone());
                    tokio::spawn(async move {
                        match io.to(user_room(&user)).fetch_sockets().await {
                            Ok(sockets) if sockets.is_empty() => webhook.post(hook),
                            Ok(_) => {}
                            Err(e) => {
                                metrics.redis_error(RedisComponent::Adapter);
                                // Unsure whether a device is online: a redundant push beats a
                                // missed call.
                                tracing::warn!(error = %e, "could not list the callee's sockets; pushing anyway");
                                webhook.post(hook);
                            }
                        }
                    });
                }
                Effect::Webhook(hook) => self.webhook.post(hook),
            }
        }
    }
}
