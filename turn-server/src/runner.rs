//! Starting and stopping the relay: bind listeners (so errors surface before "ready"), run the
//! worker, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;

use crate::net::{socket, Worker};
use crate::proto::Server;
use crate::settings::Settings;

/// Binds every listener; an IPv6 wildcard that the host cannot offer is skipped with a warning
/// when an IPv4 listener exists, so a default config runs on IPv4-only hosts.
pub fn bind_listeners(listen: &[SocketAddr]) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let mut sockets = Vec::new();
    for addr in listen {
        match socket::bind_listener(*addr) {
            Ok(s) => sockets.push(s),
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() && listen.iter().any(SocketAddr::is_ipv4) => {
                tracing::warn!(%addr, error = %e, "IPv6 unavailable; listening on IPv4 only");
            }
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (ports below 1024 need CAP_NET_BIND_SERVICE)"
                } else if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (another process, coturn perhaps, holds it)"
                } else {
                    ""
                };
                return Err(anyhow::anyhow!("cannot listen on udp {addr}: {e}{hint}"));
            }
        }
    }
    Ok(sockets)
}

/// Runs the relay until SIGINT or SIGTERM.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listeners = bind_listeners(&settings.listen)?;
        let seed: [u8; 32] = rand::random();
        let worker = Worker::new(Server::new(settings.server, seed), listeners).context("cannot register sockets")?;
        for addr in worker.local_addrs() {
            tracing::info!(%addr, "listening on udp");
        }
        tokio::select! {
            () = worker.run() => {}
            signal = shutdown_signal() => {
                tracing::info!(signal, allocations = worker.allocation_count(), "shutting down");
            }
        }
        Ok(())
    })
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
