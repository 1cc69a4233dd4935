//! Wires the parts together and runs them: the store (memory or Redis), the Socket.IO layer
//! (local or Redis adapter), the HTTP routes, the deadline poller, and shutdown on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;

use ice_config::Config;

use crate::auth::Authenticator;
use crate::calls::{Deadline, Input, Timing};
use crate::cluster::{resp3_url, NodeRegistry, RedisStore, HEARTBEAT};
use crate::http::{self, rate_limit::RateLimiter, AppState, ReadyCheck};
use crate::socket::{self, Gateway};
use crate::store::{Engine, Keys, KvStore, MemoryStore};
use crate::webhook::{Webhook, WebhookConfig};

/// Terminal records are kept this long so retries and late events still find them.
const RECORD_TTL: Duration = Duration::from_secs(600);
/// An accepted call's record outlives the call by at most this (refreshed on each write).
const MAX_CALL: Duration = Duration::from_secs(86_400);
/// Deadlines claimed per poll.
const CLAIM_BATCH: usize = 64;

/// Runs the service on `listener` (already bound) until SIGTERM/SIGINT.
pub async fn run(cfg: Config, listener: TcpListener) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let sig = &cfg.signaling;
    let auth = Authenticator::from_config(sig).context("signaling.jwt_public_key")?;
    let webhook = match (&sig.webhook_url, &sig.webhook_secret) {
        (Some(url), Some(secret)) => Webhook::spawn(WebhookConfig {
            url: url.clone(),
            secret: secret.clone(),
            max_attempts: sig.webhook_max_attempts,
            timeout: Duration::from_secs(sig.webhook_timeout_secs),
        })?,
        _ => Webhook::disabled(),
    };
    let timing = Timing {
        ring_timeout_ms: cfg.call.ring_timeout_secs.saturating_mul(1000),
        grace_ms: sig.reconnect_grace_secs.saturating_mul(1000),
        record_ttl_ms: RECORD_TTL.as_millis() as u64,
        max_call_ms: MAX_CALL.as_millis() as u64,
    };
    let keys = Keys::new(&sig.redis_prefix);
    let builder = socketio_builder(&cfg);
    match &sig.redis_url {
        Some(url) => {
            let client = redis::Client::open(resp3_url(url)).context("signaling.redis_url")?;
            let adapter = RedisAdapterCtr::new_with_redis_config(
                &client,
                RedisAdapterConfig::new().with_prefix(format!("{}-socket.io", sig.redis_prefix)),
            )
            .await
            .context("connecting the Socket.IO Redis adapter")?;
            let (layer, io) = builder.with_adapter::<RedisAdapter<_>>(adapter).build_layer();
            let store = RedisStore::connect(client.clone(), keys.deadlines()).await.context("connecting to Redis")?;
            let nodes = NodeRegistry::join(client, &sig.redis_prefix).await.context("registering with Redis")?;
            tracing::info!(node = nodes.uid(), "joined the cluster");
            let engine = Engine::new(store, &sig.redis_prefix, timing);
            let gw = gateway(&cfg, auth.clone(), webhook, io.clone(), engine, Some(nodes.clone()));
            tokio::spawn(reap_dead_nodes(gw.clone(), nodes));
            socket::register(gw.clone()).await.map_err(|e| anyhow::anyhow!("Socket.IO Redis adapter: {e}"))?;
            tracing::info!("call state and rooms in Redis (several instances may run)");
            serve(cfg.clone(), auth, listener, layer, gw).await
        }
        None => {
            let (layer, io) = builder.build_layer();
            let engine = Engine::new(MemoryStore::new(), "mem", timing);
            let gw = gateway(&cfg, auth.clone(), webhook, io.clone(), engine, None);
            socket::register(gw.clone());
            tracing::info!("call state in memory (single instance)");
            serve(cfg.clone(), auth, listener, layer, gw).await
        }
    }
}

fn socketio_builder(cfg: &Config) -> SocketIoBuilder {
    let max_payload = (cfg.signaling.max_event_bytes as u64).saturating_mul(2).max(100_000);
    SocketIo::builder()
        .req_path(cfg.signaling.socketio_path.clone())
        .ping_interval(Duration::from_secs(cfg.call.heartbeat_interval_secs))
        .ping_timeout(Duration::from_secs(cfg.call.heartbeat_timeout_secs))
        .max_payload(max_payload)
}

fn gateway<S: KvStore, A: Adapter>(
    cfg: &Config,
    auth: Authenticator,
    webhook: Webhook,
    io: SocketIo<A>,
    engine: Engine<S>,
    nodes: Option<NodeRegistry>,
) -> Arc<Gateway<S, A>> {
    Arc::new(Gateway {
        engine,
        io,
        auth,
        origins: cfg.signaling.cors_origins.clone(),
        max_event_bytes: cfg.signaling.max_event_bytes,
        webhook,
        tasks: Arc::new(()),
        nodes,
    })
}

async fn serve<S: KvStore + Clone, A: Adapter + DefinedAdapter>(
    cfg: Arc<Config>,
    auth: Authenticator,
    listener: TcpListener,
    layer: SocketIoLayer<A>,
    gw: Arc<Gateway<S, A>>,
) -> anyhow::Result<()> {
    let ready: ReadyCheck = {
        let store = gw.engine.store().clone();
        Arc::new(move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }.boxed()
        })
    };
    let state = AppState {
        auth,
        secrets: cfg.rest_secrets()?,
        config: cfg.clone(),
        limiter: Arc::new(RateLimiter::new()),
        ready,
    };
    let cors = http::cors_layer(&cfg.signaling.cors_origins);
    // CORS outermost: Socket.IO long-polling from a page on a configured origin needs it too.
    let app = http::router(state).layer(layer).layer(cors);
    let poller = tokio::spawn(poll_deadlines(gw.clone(), Duration::from_millis(cfg.signaling.deadline_poll_ms)));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, socketio_path = %cfg.signaling.socketio_path, "signaling listening");
    let io = gw.io.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: closing sockets");
        // Disconnecting runs each socket's disconnect handler, which starts the reconnect grace
        // of its calls, so clients that reconnect to another instance keep their calls.
        io.close().await;
    };
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")?;
    // Let the socket tasks record their disconnects (bounded: a hung store must not block exit).
    for _ in 0..100 {
        if Arc::strong_count(&gw.tasks) <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poller.abort();
    tracing::info!(unfinished = Arc::strong_count(&gw.tasks) - 1, "stopped");
    Ok(())
}

/// Claims due deadlines from the store (any instance may, exactly one gets each) and feeds them
/// to the machine.
async fn poll_deadlines<S: KvStore, A: Adapter>(gw: Arc<Gateway<S, A>>, every: Duration) {
    let lease = (every * 20).max(Duration::from_secs(5)).as_millis() as u64;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due = match gw.engine.store().claim_due(socket::now_ms(), lease, CLAIM_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deadlines");
                continue;
            }
        };
        for member in due {
            let Some(d) = Deadline::from_member(&member) else {
                tracing::warn!(%member, "unknown deadline member");
                continue;
            };
            tracing::debug!(call = %d.call_id, kind = ?d.kind, "deadline due");
            gw.run(Input::Deadline { call_id: d.call_id, kind: d.kind }).await;
        }
    }
}

/// Keeps this instance's registry entry alive and disconnects, through the state machine, the
/// sockets of instances that stopped doing so (crashed without running disconnect handlers).
async fn reap_dead_nodes<S: KvStore, A: Adapter>(gw: Arc<Gateway<S, A>>, nodes: NodeRegistry) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = nodes.heartbeat().await {
            tracing::warn!(error = %e, "node heartbeat failed");
            continue;
        }
        let dead = match nodes.claim_dead().await {
            Ok(dead) => dead,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for dead nodes");
                continue;
            }
        };
        for (uid, sockets) in dead {
            tracing::warn!(node = %uid, sockets = sockets.len(), "instance died: disconnecting its sockets");
            for (sid, user) in sockets {
                gw.run(Input::Disconnected { user, sid }).await;
            }
            if let Err(e) = nodes.forget(&uid).await {
                tracing::warn!(node = %uid, error = %e, "could not forget dead node");
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
