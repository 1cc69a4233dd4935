//! A connection to the primary that Sentinel names, following failovers. The `redis` crate's
//! Sentinel client finds the primary once; a `ConnectionManager` on that address would then
//! reconnect to the old primary forever (after a failover it is a replica: writes fail with
//! READONLY, and PUBLISH there reaches no one). So the primary is looked up again whenever a
//! command meets an outage, and every [`WATCH_EVERY`] by a watcher, and a new manager replaces
//! the old one, re-subscribed to every channel.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ProtocolVersion, RedisConnectionInfo, RedisError, RedisResult};

use crate::link::{authority, manager_config, Options};
use crate::outage::is_outage;
use crate::target::{Credentials, HostPort};

/// How often the watcher asks the Sentinels where the primary is: a failover that no command
/// noticed (reads on a demoted primary still succeed) is followed within this.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

struct Primary {
    address: String,
    conn: ConnectionManager,
}

pub(crate) struct SentinelLink {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    primary: RwLock<Primary>,
    channels: Mutex<BTreeSet<String>>,
    options: Options,
    db: i64,
    service: String,
}

impl SentinelLink {
    pub(crate) async fn connect(
        sentinels: &[HostPort],
        service: &str,
        db: i64,
        credentials: &Credentials,
        options: &Options,
    ) -> RedisResult<Self> {
        let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{}", authority(s))).collect();
        let mut info = RedisConnectionInfo::default().set_db(db);
        if let Some(user) = &credentials.username {
            info = info.set_username(user);
        }
        if let Some(password) = &credentials.password {
            info = info.set_password(password);
        }
        if options.push.is_some() {
            info = info.set_protocol(ProtocolVersion::RESP3);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
        let mut client = SentinelClient::build(urls, service.to_owned(), Some(node), SentinelServerType::Master)?;
        let primary = open(&mut client, options).await?;
        tracing::info!(service, primary = %primary.address, "Sentinel: connected to the primary");
        let link = Self {
            sentinel: tokio::sync::Mutex::new(client),
            primary: RwLock::new(primary),
            channels: Mutex::default(),
            options: options.clone(),
            db,
            service: service.to_owned(),
        };
        Ok(link)
    }

    /// Starts the watcher; it ends when the last handle to the link is dropped.
    pub(crate) fn watch(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(link) = weak.upgrade() else { return };
                link.follow().await;
            }
        });
    }

    pub(crate) fn db(&self) -> i64 {
        self.db
    }

    fn current(&self) -> ConnectionManager {
        self.primary.read().unwrap_or_else(PoisonError::into_inner).conn.clone()
    }

    /// Runs `f` on the current primary; an outage sends the link looking for the primary.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let result = f(self.current()).await;
        if let Err(e) = &result {
            if is_outage(e) {
                self.follow().await;
            }
        }
        result
    }

    pub(crate) async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner).insert(channel.to_owned());
        self.run(|mut c| async move { c.subscribe(channel).await }).await
    }

    pub(crate) async fn unsubscribe(&self, channel: &str) -> RedisResult<()> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner).remove(channel);
        self.run(|mut c| async move { c.unsubscribe(channel).await }).await
    }

    /// Asks the Sentinels for the primary and moves to it if it changed. One lookup at a time:
    /// callers that find one running go on (their command already failed and is reported).
    async fn follow(&self) {
        let Ok(mut sentinel) = self.sentinel.try_lock() else { return };
        let current = self.primary.read().unwrap_or_else(PoisonError::into_inner).address.clone();
        // The cheap question first; a new manager only when the answer changed.
        match primary_address(&mut sentinel, &self.service, &self.options).await {
            Ok(address) if address == current => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(service = %self.service, error = %e, "Sentinel: no answer about the primary");
                return;
            }
        }
        let found = match open(&mut sentinel, &self.options).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(service = %self.service, error = %e, "Sentinel: primary not reachable");
                return;
            }
        };
        if found.address == current {
            return;
        }
        let channels: Vec<String> =
            self.channels.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
        let mut conn = found.conn.clone();
        for channel in &channels {
            if let Err(e) = conn.subscribe(channel).await {
                tracing::warn!(service = %self.service, error = %e, "Sentinel: new primary refused a subscription");
                return;
            }
        }
        tracing::warn!(service = %self.service, from = %current, to = %found.address, "Sentinel: primary moved; following");
        let old = std::mem::replace(&mut *self.primary.write().unwrap_or_else(PoisonError::into_inner), found);
        // The old primary is a replica now and still relays what is published on the new one:
        // its subscriptions would deliver every message twice.
        let mut old = old.conn;
        for channel in &channels {
            let _ = old.unsubscribe(channel).await;
        }
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "Sentinel lookup timed out"))
}

/// Where the Sentinels say the primary is (`host:port`, as `ConnectionAddr` prints it).
async fn primary_address(client: &mut SentinelClient, service: &str, options: &Options) -> RedisResult<String> {
    let bound = options.connect_timeout + options.response_timeout;
    let ask = async {
        let sentinel = client.async_get_sentinel_client().await?;
        let mut conn = sentinel.get_multiplexed_async_connection().await?;
        let (host, port): (String, u16) =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(service).query_async(&mut conn).await?;
        Ok::<_, RedisError>(format!("{host}:{port}"))
    };
    tokio::time::timeout(bound, ask).await.map_err(|_| timed_out())?
}

/// The primary's address and a manager connected to it.
async fn open(client: &mut SentinelClient, options: &Options) -> RedisResult<Primary> {
    let bound = options.connect_timeout + options.response_timeout;
    let primary = tokio::time::timeout(bound, client.async_get_client()).await.map_err(|_| timed_out())??;
    let address = primary.get_connection_info().addr().to_string();
    let conn = ConnectionManager::new_with_config(primary, manager_config(options)).await?;
    Ok(Primary { address, conn })
}
