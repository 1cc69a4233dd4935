//! Starting and stopping the relay: bind listeners (so errors surface before "ready"), run the
//! worker, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;

use std::rc::Rc;

use crate::net::{socket, Listeners, StreamOptions, Worker};
use crate::ops::systemd;
use crate::proto::Server;
use crate::settings::Settings;

/// Binds every listener; an IPv6 wildcard that the host cannot offer is skipped with a warning
/// when an IPv4 listener exists, so a default config runs on IPv4-only hosts.
pub fn bind_listeners(settings: &Settings) -> anyhow::Result<Listeners> {
    Ok(Listeners {
        udp: bind_each(&settings.listen, "udp", socket::bind_listener)?,
        tcp: bind_each(&settings.tcp_listen, "tcp", socket::bind_tcp_listener)?,
        tls: bind_each(&settings.tls_listen, "tls", socket::bind_tcp_listener)?,
    })
}

fn bind_each<T>(
    listen: &[SocketAddr],
    transport: &str,
    bind: impl Fn(SocketAddr) -> std::io::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut sockets = Vec::new();
    for addr in listen {
        match bind(*addr) {
            Ok(s) => sockets.push(s),
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() && listen.iter().any(SocketAddr::is_ipv4) => {
                tracing::warn!(%addr, transport, error = %e, "IPv6 unavailable; listening on IPv4 only");
            }
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (ports below 1024 need CAP_NET_BIND_SERVICE)"
                } else if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (another process, coturn perhaps, holds it)"
                } else {
                    ""
                };
                return Err(anyhow::anyhow!("cannot listen on {transport} {addr}: {e}{hint}"));
            }
        }
    }
    Ok(sockets)
}

/// Produces fresh settings from the config file and flags, for SIGHUP.
pub type Reloader = Box<dyn Fn() -> anyhow::Result<Settings>>;

/// Runs the relay until SIGINT or SIGTERM; SIGHUP re-reads the configuration through `reload`.
pub fn run(settings: Settings, reload: Option<Reloader>) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listeners = bind_listeners(&settings)?;
        let seed: [u8; 32] = rand::random();
        let streams = StreamOptions { limits: settings.stream_limits, tls_files: settings.tls_files.clone() };
        let worker = Worker::new(Server::new(settings.server, seed), listeners, streams).context("cannot start")?;
        for (transport, addr) in worker.local_addrs() {
            tracing::info!(%addr, "listening on {transport}");
        }
        let worker = Rc::new(worker);
        tokio::task::spawn_local(reload_on_sighup(worker.clone(), reload));
        if let Some(addr) = settings.metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr} (--prometheus-port)"))?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            let scraped = worker.clone();
            tokio::task::spawn_local(crate::ops::metrics::serve(listener, move || scraped.metrics_text()));
        }
        if let Some(every) = systemd::watchdog_interval() {
            tokio::task::spawn_local(async move {
                loop {
                    systemd::notify("WATCHDOG=1");
                    tokio::time::sleep(every).await;
                }
            });
        }
        systemd::notify("READY=1");
        tokio::select! {
            () = worker.run() => {}
            signal = shutdown_signal() => {
                systemd::notify("STOPPING=1");
                tracing::info!(signal, allocations = worker.allocation_count(), "shutting down");
            }
        }
        Ok(())
    })
}

/// SIGHUP reloads what can change without dropping allocations: for now the TLS certificate.
/// SIGHUP: the configuration (secrets, peer policy, quotas, lifetimes) and the TLS certificate are
/// re-read; anything invalid keeps what runs now, with the reason logged.
async fn reload_on_sighup(worker: Rc<Worker>, reload: Option<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            systemd::notify("RELOADING=1");
            if let Some(reload) = &reload {
                match reload() {
                    Ok(settings) => {
                        let ignored = worker.reload_config(settings.server);
                        if ignored.is_empty() {
                            tracing::info!("SIGHUP: configuration reloaded");
                        } else {
                            tracing::warn!(?ignored, "SIGHUP: configuration reloaded; these changes need a restart");
                        }
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "SIGHUP: invalid configuration; keeping the current one"
                    ),
                }
            }
            match worker.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; keeping the current certificate"),
            }
            systemd::notify("READY=1");
        }
    }
    #[cfg(not(unix))]
    let _ = (worker, reload);
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
