//! The Socket.IO Redis adapter's pub/sub driver, on a connection that comes back. The driver
//! socketioxide-redis ships holds one multiplexed connection: once Redis restarts, that
//! connection and its subscriptions are gone for good and cross-instance delivery stays broken
//! until the process restarts. This one runs on a [`Link`], which reconnects, follows Sentinel
//! failovers and cluster slots, and re-subscribes every channel by itself (sharded pub/sub on a
//! cluster), and it fails publishes at once while the shared [`RedisHealth`] is down, so an emit
//! during an outage falls back to local delivery without waiting for a Redis timeout.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use redis::{FromRedisValue, PushInfo, PushKind};
use redis_link::{Link, Options, Target};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::RedisHealth;

/// Why a pub/sub operation failed.
#[derive(thiserror::Error, Debug)]
pub enum DriverError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis is known to be down; not tried.
    #[error("Redis unreachable")]
    Unreachable,
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Cloning shares the connection and the subscriptions.
#[derive(Clone)]
pub struct ReconnectingDriver {
    conn: Link,
    handlers: Handlers,
    health: RedisHealth,
}

impl std::fmt::Debug for ReconnectingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingDriver").field("up", &self.health.is_up()).finish()
    }
}

impl ReconnectingDriver {
    /// Connects to `target` with `options` (timeouts) plus a receiver for the messages.
    pub async fn connect(target: &Target, options: Options, health: RedisHealth) -> redis::RedisResult<Self> {
        let handlers: Handlers = Arc::default();
        let sink = handlers.clone();
        let options = Options { push: Some(Arc::new(move |push: PushInfo| route(push, &sink))), ..options };
        let conn = Link::connect(target, &options).await?;
        Ok(Self { conn, handlers, health })
    }

    /// Sends one command, so that after an outage the connection notices it is dead,
    /// reconnects and re-subscribes now rather than at the next emit.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop)
    }

    fn check_health(&self) -> Result<(), DriverError> {
        if self.health.is_up() {
            Ok(())
        } else {
            Err(DriverError::Unreachable)
        }
    }

    fn observe<T>(&self, result: redis::RedisResult<T>) -> Result<T, DriverError> {
        result.map_err(|e| {
            self.health.observe(&e);
            DriverError::Redis(e)
        })
    }
}

/// Hands a published message to the stream subscribed to its channel. A full stream drops the
/// message (as the stock driver does): the adapter's consumer is the only reader, and blocking
/// the connection's reader would stall every other channel.
fn route(push: PushInfo, handlers: &Handlers) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(chan), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(chan), Ok(payload)) = (String::from_redis_value(chan), Vec::<u8>::from_redis_value(payload)) else {
        tracing::warn!("pub/sub message that is not (channel, bytes): dropped");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(tx) = handlers.get(&chan) {
        if let Err(e) = tx.try_send((chan, payload)) {
            tracing::warn!(error = %e, "adapter stream full: message dropped");
        }
    }
}

impl Driver for ReconnectingDriver {
    type Error = DriverError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.check_health()?;
        self.observe(self.conn.publish(&chan, &val).await)
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        // Registered first: a message published right after the SUBSCRIBE lands must find it.
        let (tx, rx) = mpsc::channel(size);
        self.handlers.write().unwrap_or_else(PoisonError::into_inner).insert(chan.clone(), tx);
        self.observe(self.conn.subscribe(&chan).await)?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(PoisonError::into_inner).remove(&chan);
        self.observe(self.conn.unsubscribe(&chan).await)
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        self.check_health()?;
        self.observe(self.conn.subscribers(chan).await)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(chan: &str, payload: &[u8]) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![redis::Value::BulkString(chan.into()), redis::Value::BulkString(payload.to_vec())],
        }
    }

    #[test]
    fn messages_reach_their_channel_only() {
        let handlers: Handlers = Arc::default();
        let (tx, mut rx) = mpsc::channel(2);
        handlers.write().unwrap().insert("a".into(), tx);
        route(message("a", b"1"), &handlers);
        route(message("b", b"2"), &handlers);
        route(PushInfo { kind: PushKind::Subscribe, data: vec![] }, &handlers);
        route(PushInfo { kind: PushKind::Message, data: vec![redis::Value::Nil] }, &handlers);
        assert_eq!(rx.try_recv().unwrap(), ("a".to_owned(), b"1".to_vec()));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_full_stream_drops_instead_of_blocking() {
        let handlers: Handlers = Arc::default();
        let (tx, mut rx) = mpsc::channel(1);
        handlers.write().unwrap().insert("a".into(), tx);
        route(message("a", b"1"), &handlers);
        route(message("a", b"2"), &handlers);
        assert_eq!(rx.try_recv().unwrap().1, b"1".to_vec());
        assert!(rx.try_recv().is_err());
    }
}
