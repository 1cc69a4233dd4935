//! Wires the parts together and runs them: the store (memory or Redis), the Socket.IO layer
//! (local or Redis adapter), the HTTP routes, the metrics listener, the deadline poller, systemd
//! notifications, and the drain on SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use std::future::IntoFuture as _;
use tokio::net::TcpListener;
use tokio::time::Instant;

use ice_config::Config;

use crate::auth::Authenticator;
use crate::calls::{Deadline, Input, Timing};
use redis_link::{Link, Options, Target};

use crate::cluster::{NodeRegistry, ReconnectingDriver, RedisHealth, RedisStore, HEARTBEAT};
use crate::fleet::Fleet;
use crate::http::{self, rate_limit::RateLimiter, AppState, ReadyCheck};
use crate::metrics::{Metrics, RedisComponent};
use crate::socket::{self, Gateway};
use crate::store::{Engine, FailoverStore, Keys, KvStore, MemoryStore};
use crate::webhook::{Webhook, WebhookConfig};

/// Terminal records are kept this long so retries and late events still find them.
const RECORD_TTL: Duration = Duration::from_secs(600);
/// An accepted call's record outlives the call by at most this (refreshed on each write).
const MAX_CALL: Duration = Duration::from_secs(86_400);
/// Deadlines claimed per poll.
const CLAIM_BATCH: usize = 64;
/// The client event sent to every socket before a drain closes it.
pub const SHUTDOWN_EVENT: &str = "server:shutdown";
/// Between the shutdown event and closing the sockets: lets the event and pending acks leave, and
/// load balancers polling `/readyz` see the 503 (capped at a quarter of the drain timeout).
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

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
    let metrics = Arc::new(Metrics::new());
    let builder = socketio_builder(&cfg);
    match &sig.redis_url {
        Some(url) => {
            let target = Target::parse(url).context("signaling.redis_url")?;
            // On a cluster the prefix becomes a hash tag: the scripts need every key in one slot.
            let prefix = target.keyspace(&sig.redis_prefix);
            let health = RedisHealth::new();
            let driver = ReconnectingDriver::connect(&target, Options::default(), health.clone())
                .await
                .with_context(|| format!("connecting the Socket.IO Redis adapter to {target}"))?;
            let adapter = RedisAdapterCtr::new_with_driver(
                driver.clone(),
                RedisAdapterConfig::new().with_prefix(format!("{}-socket.io", sig.redis_prefix)),
            );
            let (layer, io) = builder.with_adapter::<CustomRedisAdapter<_, ReconnectingDriver>>(adapter).build_layer();
            let conn = Link::connect(&target, &Options::default())
                .await
                .with_context(|| format!("connecting to Redis at {target}"))?;
            let keys = Keys::new(&prefix);
            let store = FailoverStore::new(RedisStore::new(conn.clone(), keys.deadlines()), health.clone());
            let nodes = NodeRegistry::join(conn, &prefix).await.context("registering with Redis")?;
            tracing::info!(node = nodes.uid(), redis = %target, "joined the cluster");
            let engine = Engine::new(store, &prefix, timing).with_metrics(metrics);
            let gw = gateway(&cfg, auth.clone(), webhook, io.clone(), engine, Some(nodes.clone()));
            tokio::spawn(reap_dead_nodes(gw.clone(), nodes.clone(), health));
            tokio::spawn(recover_from_outages(gw.clone(), driver, nodes));
            socket::register(gw.clone()).await.map_err(|e| anyhow::anyhow!("Socket.IO Redis adapter: {e}"))?;
            tracing::info!("call state and rooms in Redis (several instances may run)");
            let fleet = sig.fleet.then(|| {
                // The record TTL the relays write: three of their heartbeats (same shared file).
                let fresh_secs = cfg.turn.registry_heartbeat_secs.saturating_mul(3);
                let fleet =
                    Arc::new(Fleet::new(sig.fleet_relays, fresh_secs, Duration::from_secs(sig.fleet_stale_secs)));
                fleet.spawn(target.clone(), prefix.clone(), gw.metrics.clone());
                tracing::info!(relays = sig.fleet_relays, fresh_secs, "ICE configs from the relays' registry");
                fleet
            });
            serve(cfg.clone(), auth, listener, layer, gw, fleet).await
        }
        None => {
            let (layer, io) = builder.build_layer();
            let engine = Engine::new(MemoryStore::new(), "mem", timing).with_metrics(metrics);
            let gw = gateway(&cfg, auth.clone(), webhook, io.clone(), engine, None);
            socket::register(gw.clone());
            tracing::info!("call state in memory (single instance)");
            serve(cfg.clone(), auth, listener, layer, gw, None).await
        }
    }
}

fn socketio_builder(cfg: &Config) -> SocketIoBuilder {
    // Between max_event_bytes and this, events reach the handler and get payload_too_large.
    let max_payload = cfg.signaling.max_message_bytes as u64;
    SocketIo::builder()
        .req_path(cfg.signaling.socketio_path.clone())
        .ping_interval(Duration::from_secs(cfg.call.heartbeat_interval_secs))
        .ping_timeout(Duration::from_secs(cfg.call.heartbeat_timeout_secs))
        .max_payload(max_payload)
        // WebSocket messages get the same bound as a polling body. engineioxide's defaults (64 MiB
        // messages, 16 MiB frames) would let one client make the server buffer megabytes before
        // any size check; tungstenite refuses a frame from its header, before reading it.
        .ws_max_message_size(usize::try_from(max_payload).unwrap_or(usize::MAX))
        .ws_max_frame_size(usize::try_from(max_payload).unwrap_or(usize::MAX))
        // Each queued packet can be up to max_payload bytes: this bounds a non-reading client's
        // memory, and a full queue makes the next heartbeat ping fail, which closes the session.
        .max_buffer_size(cfg.signaling.socket_send_queue)
        // socketioxide waits 45 s by default for the CONNECT packet that carries the token.
        .connect_timeout(Duration::from_secs(cfg.signaling.socket_connect_timeout_secs))
}

fn gateway<S: KvStore, A: Adapter>(
    cfg: &Config,
    auth: Authenticator,
    webhook: Webhook,
    io: SocketIo<A>,
    engine: Engine<S>,
    nodes: Option<NodeRegistry>,
) -> Arc<Gateway<S, A>> {
    let engine_metrics = engine.metrics().clone();
    Arc::new(Gateway {
        engine,
        io,
        auth: auth.clone(),
        origins: cfg.signaling.cors_origins.clone(),
        max_event_bytes: cfg.signaling.max_event_bytes,
        webhook,
        tasks: Arc::new(()),
        nodes,
        guard: Arc::new(socket::guard::Guard {
            path: cfg.signaling.socketio_path.clone(),
            origins: cfg.signaling.cors_origins.clone(),
            trust_proxy: cfg.signaling.trust_proxy_headers,
            connects_per_ip: cfg.signaling.socket_connects_per_ip,
            failures_per_ip: cfg.signaling.socket_auth_failures_per_ip,
            connects: socket::limits::SourceLimiter::new(),
            failures: socket::limits::SourceLimiter::new(),
            auth: auth.clone(),
            metrics: engine_metrics.clone(),
            conns: socket::conns::Connections::new(),
        }),
        metrics: engine_metrics,
    })
}

async fn serve<S: KvStore + Clone, A: Adapter + DefinedAdapter>(
    cfg: Arc<Config>,
    auth: Authenticator,
    listener: TcpListener,
    layer: SocketIoLayer<A>,
    gw: Arc<Gateway<S, A>>,
    fleet: Option<Arc<Fleet>>,
) -> anyhow::Result<()> {
    let ready: ReadyCheck = {
        let store = gw.engine.store().clone();
        Arc::new(move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }.boxed()
        })
    };
    let metrics = gw.metrics.clone();
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        auth,
        secrets: cfg.rest_secrets()?,
        config: cfg.clone(),
        limiter: Arc::new(RateLimiter::new()),
        ready: ready.clone(),
        metrics: metrics.clone(),
        draining: draining.clone(),
        fleet,
    };
    let metrics_task = match cfg.signaling.metrics_listen {
        Some(addr) => {
            let l =
                TcpListener::bind(addr).await.with_context(|| format!("binding signaling.metrics_listen {addr}"))?;
            tracing::info!(addr = %l.local_addr()?, "metrics at /metrics");
            Some(tokio::spawn(http::metrics::serve(l, metrics.clone(), ready)))
        }
        None => None,
    };
    let cors = http::cors_layer(&cfg.signaling.cors_origins);
    // CORS outermost: Socket.IO long-polling from a page on a configured origin needs it too. The
    // guard sits outside the Socket.IO layer, so it refuses before a session or upgrade exists.
    let guard = axum::middleware::from_fn_with_state(gw.guard.clone(), socket::guard::layer);
    let app = http::router(state).layer(layer).layer(guard).layer(cors);
    let poller = tokio::spawn(poll_deadlines(gw.clone(), Duration::from_millis(cfg.signaling.deadline_poll_ms)));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, socketio_path = %cfg.signaling.socketio_path, "signaling listening");
    // Ready for systemd once the listener is bound and the store answered at startup (with Redis,
    // `run` connected to it first). A later Redis outage leaves the unit active: /readyz reports it
    // (503) and `signaling_redis_up` drops, so the load balancer, not systemd, reacts.
    sdnotify::notify("READY=1");
    let watchdog = sdnotify::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                sdnotify::notify("WATCHDOG=1");
            }
        })
    });
    let drain_timeout = Duration::from_secs(cfg.signaling.drain_timeout_secs);
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel::<Instant>();
    let shutdown = {
        let (gw, draining) = (gw.clone(), draining.clone());
        async move {
            shutdown_signal().await;
            let deadline = Instant::now() + drain_timeout;
            let _ = deadline_tx.send(deadline);
            drain(&gw, &draining, deadline).await;
        }
    };
    let server = axum::serve(gw.guard.conns.listen(listener), app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .into_future();
    let mut deadline = None;
    tokio::pin!(server);
    tokio::pin!(deadline_rx);
    loop {
        tokio::select! {
            result = &mut server => {
                result.context("HTTP server")?;
                break;
            }
            at = &mut deadline_rx, if deadline.is_none() => {
                deadline = Some(at.unwrap_or_else(|_| Instant::now()));
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                // A client that keeps an HTTP connection open must not hold the process.
                tracing::warn!("drain deadline passed with connections open: stopping");
                break;
            }
        }
    }
    // Let the socket tasks record their disconnects (bounded: a hung store must not block exit).
    let deadline = deadline.unwrap_or_else(|| Instant::now() + drain_timeout);
    while Arc::strong_count(&gw.tasks) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poller.abort();
    for task in [metrics_task.map(|t| t.abort_handle()), watchdog.map(|t| t.abort_handle())].into_iter().flatten() {
        task.abort();
    }
    tracing::info!(unfinished = Arc::strong_count(&gw.tasks) - 1, "stopped");
    Ok(())
}

/// SIGTERM: stop being ready, tell every local client to reconnect elsewhere, then close the
/// sockets at the transport. socket.io-client reconnects by itself after a transport close
/// (reason "transport close") but not after a Socket.IO DISCONNECT packet ("io server
/// disconnect"), so the sockets are not disconnected one by one. Each socket's disconnect is
/// recorded first, which starts the reconnect grace of its calls, so clients that reconnect to
/// another instance and `call:sync` keep their calls.
async fn drain<S: KvStore, A: Adapter>(gw: &Gateway<S, A>, draining: &AtomicBool, deadline: Instant) {
    let io = &gw.io;
    draining.store(true, Ordering::Relaxed);
    gw.metrics.draining();
    sdnotify::notify("STOPPING=1");
    let sockets = io.local().sockets().len();
    tracing::info!(sockets, "draining: telling clients to reconnect elsewhere");
    // Only this instance's sockets: through the Redis adapter a plain emit would reach every instance.
    if let Err(e) = io.local().emit(SHUTDOWN_EVENT, &serde_json::json!({"reason": "shutdown", "reconnect": true})).await
    {
        tracing::warn!(error = %e, "shutdown notice not sent to every socket");
    }
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(SHUTDOWN_NOTICE.min(left / 4)).await;
    tracing::info!("draining: closing sockets");
    gw.leave_all_local().await;
    if tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), io.close()).await.is_err() {
        tracing::warn!("draining: closing the sockets outlived the drain timeout");
    }
    tracing::info!("draining: sockets closed, finishing open HTTP requests");
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
                gw.metrics.redis_error(RedisComponent::Store);
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
/// The heartbeat is also what notices an outage on an idle instance, within a second.
async fn reap_dead_nodes<S: KvStore, A: Adapter>(gw: Arc<Gateway<S, A>>, nodes: NodeRegistry, health: RedisHealth) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !health.is_up() {
            continue;
        }
        if let Err(e) = nodes.heartbeat().await {
            gw.metrics.redis_error(RedisComponent::Nodes);
            health.observe(&e);
            tracing::warn!(error = %e, "node heartbeat failed");
            continue;
        }
        let dead = match nodes.claim_dead().await {
            Ok(dead) => dead,
            Err(e) => {
                gw.metrics.redis_error(RedisComponent::Nodes);
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

/// While the link is down, tries Redis every heartbeat; once it answers, hands it the calls made
/// meanwhile (the store) and records this instance's sockets again (a restarted Redis lost
/// them, and the reaper needs them).
async fn recover_from_outages<S: KvStore, A: Adapter>(
    gw: Arc<Gateway<FailoverStore<S>, A>>,
    driver: ReconnectingDriver,
    nodes: NodeRegistry,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = gw.engine.store();
        if store.health().is_up() {
            continue;
        }
        // The adapter first: its manager reconnects (and re-subscribes) when a command fails,
        // so this ping may fail once more. Only when it answers does the store switch back,
        // so that "up" means both calls and cross-instance delivery go through Redis.
        if let Err(e) = driver.ping().await {
            tracing::debug!(error = %e, "Socket.IO adapter connection not back yet");
            continue;
        }
        let moved = match store.recover().await {
            Ok(None) => continue,
            Ok(Some(moved)) => moved,
            Err(e) => {
                tracing::debug!(error = %e, "Redis still unreachable");
                continue;
            }
        };
        tracing::info!(
            records = moved.records,
            deadlines = moved.deadlines,
            "Redis back: local call state handed over"
        );
        let sockets: Vec<(String, String)> = gw
            .io
            .local()
            .sockets()
            .into_iter()
            .filter_map(|s| s.extensions.get::<crate::auth::Principal>().map(|p| (s.id.to_string(), p.user.clone())))
            .collect();
        if let Err(e) = nodes.replace_all(&sockets).await {
            tracing::warn!(error = %e, "node registry: sockets not recorded again");
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
