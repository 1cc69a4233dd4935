//! [`Link`]: one cloneable connection to whatever [`Target`] names, that outlives Redis
//! restarts (a `ConnectionManager` reconnects), Sentinel failovers (the primary is looked up
//! again) and cluster changes (the cluster client follows the slots). It runs commands like any
//! `redis` connection, and pub/sub on the same connection, re-subscribed after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Value};

use crate::sentinel::SentinelLink;
use crate::target::{Credentials, HostPort, Target};

/// Receives pub/sub messages (and other RESP3 pushes). Called on the connection's reader: it
/// must not block.
pub type PushSink = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// How a [`Link`] behaves in an outage.
#[derive(Clone)]
pub struct Options {
    /// Per connection attempt.
    pub connect_timeout: Duration,
    /// Per command: a Redis that stopped answering fails requests after this, rather than
    /// holding them.
    pub response_timeout: Duration,
    /// Pub/sub receiver; the link then speaks RESP3.
    pub push: Option<PushSink>,
}

impl Default for Options {
    /// A request fails within about two seconds when Redis is gone, and the next one tries to
    /// reconnect again (the `redis` defaults wait much longer and retry six times).
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(1), response_timeout: Duration::from_secs(2), push: None }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("push", &self.push.is_some())
            .finish()
    }
}

/// A connection to a [`Target`]; cloning shares it.
#[derive(Clone)]
pub struct Link {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelLink>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Server(_) => "server",
            Kind::Cluster(_) => "cluster",
            Kind::Sentinel(_) => "sentinel",
        };
        f.debug_struct("Link").field("kind", &kind).finish()
    }
}

impl Link {
    /// Connects to `target` (the first connection must succeed: a wrong URL or password is
    /// reported at start, not retried forever).
    pub async fn connect(target: &Target, options: &Options) -> RedisResult<Self> {
        let kind = match target {
            Target::Server(url) => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
                if options.push.is_some() {
                    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                    info = info.set_redis_settings(settings);
                }
                let client = redis::Client::open(info)?;
                Kind::Server(ConnectionManager::new_with_config(client, manager_config(options)).await?)
            }
            Target::Cluster { nodes, credentials } => Kind::Cluster(cluster(nodes, credentials, options).await?),
            Target::Sentinel { sentinels, service, db, credentials } => {
                let link = Arc::new(SentinelLink::connect(sentinels, service, *db, credentials, options).await?);
                link.watch();
                Kind::Sentinel(link)
            }
        };
        Ok(Self { kind })
    }

    /// Subscribes to `channel` (sharded pub/sub on a cluster, so the channel lives on one
    /// shard instead of being broadcast to every node). Kept across reconnects.
    pub async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        match &self.kind {
            Kind::Server(c) => c.clone().subscribe(channel).await,
            Kind::Cluster(c) => c.clone().ssubscribe(channel).await,
            Kind::Sentinel(s) => s.subscribe(channel).await,
        }
    }

    /// Undoes [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, channel: &str) -> RedisResult<()> {
        match &self.kind {
            Kind::Server(c) => c.clone().unsubscribe(channel).await,
            Kind::Cluster(c) => c.clone().sunsubscribe(channel).await,
            Kind::Sentinel(s) => s.unsubscribe(channel).await,
        }
    }

    /// Publishes `payload` on `channel`.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> RedisResult<()> {
        let verb = if self.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
        let mut conn = self.clone();
        redis::cmd(verb).arg(channel).arg(payload).query_async::<Value>(&mut conn).await.map(drop)
    }

    /// How many connections subscribe to `channel`.
    pub async fn subscribers(&self, channel: &str) -> RedisResult<u16> {
        let verb = if self.is_cluster() { "SHARDNUMSUB" } else { "NUMSUB" };
        let mut conn = self.clone();
        let (_, count): (String, u16) = redis::cmd("PUBSUB").arg(verb).arg(channel).query_async(&mut conn).await?;
        Ok(count)
    }

    fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            Kind::Server(c) => c.req_packed_command(cmd),
            Kind::Cluster(c) => c.req_packed_command(cmd),
            Kind::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move { s.run(|mut c| async move { c.req_packed_command(cmd).await }).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            Kind::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    s.run(|mut c| async move { c.req_packed_commands(pipeline, offset, count).await }).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Server(c) => c.get_db(),
            Kind::Cluster(c) => c.get_db(),
            Kind::Sentinel(s) => s.db(),
        }
    }
}

/// The manager settings for one server (also each primary found through Sentinel).
pub(crate) fn manager_config(options: &Options) -> ConnectionManagerConfig {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    match &options.push {
        Some(sink) => config.set_push_sender(push_sender(sink)).set_automatic_resubscription(),
        None => config,
    }
}

/// `sink` in the shape the `redis` crate's connections take (a sink cannot fail).
fn push_sender(sink: &PushSink) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static {
    let sink = sink.clone();
    move |push| {
        sink(push);
        Ok(())
    }
}

/// `host:port` as a URL authority (IPv6 in brackets).
pub(crate) fn authority((host, port): &HostPort) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn cluster(nodes: &[HostPort], credentials: &Credentials, options: &Options) -> RedisResult<ClusterConnection> {
    let seeds: Vec<String> = nodes.iter().map(|n| format!("redis://{}", authority(n))).collect();
    let mut builder = ClusterClientBuilder::new(seeds)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.response_timeout)
        .retries(2);
    if let Some(user) = &credentials.username {
        builder = builder.username(user);
    }
    if let Some(password) = &credentials.password {
        builder = builder.password(password);
    }
    let mut config = redis::cluster::ClusterConfig::new();
    if let Some(sink) = &options.push {
        builder = builder.use_protocol(ProtocolVersion::RESP3);
        config = config.set_push_sender(push_sender(sink));
    }
    builder.build()?.get_async_connection_with_config(config).await
}
