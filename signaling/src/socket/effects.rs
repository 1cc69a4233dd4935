//! Performs the machine's effects once a transition is committed: emits through the adapter
//! (users and sockets are rooms, so this reaches other instances) and queues webhooks.

use socketioxide::adapter::Adapter;
use socketioxide_core::adapter::errors::BroadcastError;

use super::{user_room, Gateway};
use crate::calls::{Effect, Target};
use crate::metrics::RedisComponent;
use crate::store::KvStore;

impl<S: KvStore, A: Adapter> Gateway<S, A> {
    pub(super) async fn perform(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Emit { to, event, data } => {
                    let op = match &to {
                        Target::User(u) => self.io.to(user_room(u)),
                        Target::UserExcept(u, sid) => self.io.to(user_room(u)).except(sid.clone()),
                        Target::Socket(sid) => self.io.to(sid.clone()),
                    };
                    if let Err(e) = op.emit(event.name(), &data).await {
                        // A recipient that just went away is normal; the state is already right.
                        // Failing to reach the other instances is not.
                        if matches!(e, BroadcastError::Adapter(_)) {
                            self.metrics.redis_error(RedisComponent::Adapter);
                            tracing::warn!(?to, event = event.name(), error = %e, "emit through the adapter failed");
                            // The Redis adapter publishes before it delivers locally, so a broken
                            // Redis connection would also cut off this instance's own sockets.
                            let local = self.io.local();
                            let op = match &to {
                                Target::User(u) => local.to(user_room(u)),
                                Target::UserExcept(u, sid) => local.to(user_room(u)).except(sid.clone()),
                                Target::Socket(sid) => local.to(sid.clone()),
                            };
                            if let Err(e) = op.emit(event.name(), &data).await {
                                tracing::debug!(?to, event = event.name(), error = %e, "local emit failed");
                            }
                        } else {
                            tracing::debug!(?to, event = event.name(), error = %e, "emit failed");
                        }
                    }
                }
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
