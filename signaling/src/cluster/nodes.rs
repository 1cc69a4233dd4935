//! The node registry: which instance holds which sockets, so that when an instance dies without
//! running its disconnect handlers (SIGKILL, OOM, power), a surviving instance disconnects its
//! sockets on its behalf. Each instance refreshes a short-lived "alive" key; one whose key has
//! expired is reaped (once, under a lock) by feeding `Disconnected` for each of its sockets into
//! the state machine, which starts the usual reconnect grace and then ends the calls.

use std::time::Duration;

use redis::AsyncCommands;
use redis_link::Link;

/// How often an instance refreshes its key and looks for dead peers.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// An instance silent this long is dead.
pub const ALIVE_TTL: Duration = Duration::from_secs(5);
/// How long one reaper may take before another may retry.
const REAP_LOCK: Duration = Duration::from_secs(30);

/// This instance's entry in the registry.
#[derive(Clone)]
pub struct NodeRegistry {
    conn: Link,
    prefix: String,
    uid: String,
}

impl std::fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRegistry").field("uid", &self.uid).finish()
    }
}

impl NodeRegistry {
    /// Registers a new instance with a random id.
    pub async fn join(conn: Link, prefix: &str) -> redis::RedisResult<Self> {
        let uid = format!("{:016x}", rand::random::<u64>());
        let me = Self { conn, prefix: prefix.to_owned(), uid };
        me.heartbeat().await?;
        Ok(me)
    }

    /// This instance's id.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    fn alive_key(&self, uid: &str) -> String {
        format!("{}:node:{uid}", self.prefix)
    }

    fn sockets_key(&self, uid: &str) -> String {
        format!("{}:node:{uid}:sockets", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Refreshes the alive key.
    pub async fn heartbeat(&self) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let ttl = u64::try_from(ALIVE_TTL.as_millis()).unwrap_or(u64::MAX);
        let () = redis::pipe()
            .cmd("SET")
            .arg(self.alive_key(&self.uid))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(self.nodes_key())
            .arg(&self.uid)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Records a socket of `user` on this instance.
    pub async fn add(&self, sid: &str, user: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        c.hset(self.sockets_key(&self.uid), sid, user).await
    }

    /// Replaces this instance's recorded sockets with `sockets` `(sid, user)`, in one
    /// transaction: after an outage, Redis may have lost them (restart) or kept sockets that
    /// disconnected meanwhile.
    pub async fn replace_all(&self, sockets: &[(String, String)]) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let key = self.sockets_key(&self.uid);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !sockets.is_empty() {
            pipe.hset_multiple(&key, sockets).ignore();
        }
        pipe.query_async(&mut c).await
    }

    /// Forgets a socket (its disconnect was handled here).
    pub async fn remove(&self, sid: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        c.hdel(self.sockets_key(&self.uid), sid).await
    }

    /// Dead instances this one claimed, each with its sockets `(sid, user)`. The caller feeds
    /// them to the machine and then calls [`forget`](Self::forget).
    pub async fn claim_dead(&self) -> redis::RedisResult<Vec<(String, Vec<(String, String)>)>> {
        let mut c = self.conn.clone();
        let nodes: Vec<String> = c.smembers(self.nodes_key()).await?;
        let mut claimed = Vec::new();
        for uid in nodes.into_iter().filter(|u| *u != self.uid) {
            let alive: bool = c.exists(self.alive_key(&uid)).await?;
            if alive {
                continue;
            }
            let lock_ms = u64::try_from(REAP_LOCK.as_millis()).unwrap_or(u64::MAX);
            let locked: Option<String> = redis::cmd("SET")
                .arg(format!("{}:reaper", self.alive_key(&uid)))
                .arg(&self.uid)
                .arg("NX")
                .arg("PX")
                .arg(lock_ms)
                .query_async(&mut c)
                .await?;
            if locked.is_none() {
                continue;
            }
            let sockets: Vec<(String, String)> = c.hgetall(self.sockets_key(&uid)).await?;
            claimed.push((uid, sockets));
        }
        Ok(claimed)
    }

    /// Removes a reaped instance from the registry.
    pub async fn forget(&self, uid: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let () = redis::pipe()
            .del(self.sockets_key(uid))
            .ignore()
            .srem(self.nodes_key(), uid)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }
}
