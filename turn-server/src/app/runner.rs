//! Starting and stopping the relay: bind listeners (so errors surface before "ready"), run the
//! worker, stop at once on SIGINT (Ctrl-C), drain on SIGTERM (systemd's stop) and stop after.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use anyhow::Context;

use std::rc::Rc;

use crate::app::settings::Settings;
use crate::net::{socket, steering, Listeners, StreamOptions, Worker, WorkerPool, WorkerSpec};
use crate::ops::control::Control;
use crate::ops::logging::LogControl;
use crate::ops::systemd;
use crate::proto::{Ledger, Server};

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
                    " (another process holds it: coturn, or another turn-server)"
                } else {
                    ""
                };
                return Err(anyhow::anyhow!("cannot listen on {transport} {addr}: {e}{hint}"));
            }
        }
    }
    Ok(sockets)
}

/// The listening UDP sockets of each datagram worker: `first` (one per address) for the first,
/// and for each further worker one more per address joining the SO_REUSEPORT group of the first,
/// which is then steered by client transport address (IP and port). Where the kernel refuses the
/// steering program, the relay runs one datagram worker, as it always has there. No UDP
/// listeners, no datagram worker.
fn datagram_worker_sockets(settings: &Settings, first: Vec<UdpSocket>) -> anyhow::Result<Vec<Vec<UdpSocket>>> {
    if first.is_empty() {
        return Ok(Vec::new());
    }
    let workers = settings.workers.max(1);
    let mut extra = Vec::new();
    for _ in 1..workers {
        let mut sockets = Vec::new();
        for s in &first {
            let addr = s.local_addr().context("a listening socket has no address")?;
            sockets.push(socket::join_listener(addr).with_context(|| format!("cannot add a worker on udp {addr}"))?);
        }
        extra.push(sockets);
    }
    if !extra.is_empty() {
        for s in &first {
            let addr = s.local_addr().context("a listening socket has no address")?;
            if let Err(e) = steering::steer_by_client_address(s, addr.is_ipv6(), workers as u32) {
                tracing::warn!(%addr, error = %e, "cannot steer clients to workers; running one worker");
                extra.clear();
                break;
            }
        }
    }
    Ok(std::iter::once(first).chain(extra).collect())
}

pub use crate::ops::control::Reloader;

/// Runs the relay until SIGINT, or SIGTERM and the drain after it; SIGHUP re-reads the
/// configuration through `reload`. `log` lets a reload change the log level.
pub fn run(settings: Settings, reload: Option<Reloader>, log: Option<LogControl>) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut listeners = bind_listeners(&settings)?;
        // Bound with the relay's own listeners, before any worker answers: a taken port fails
        // the start, and whoever sees the relay answer STUN can already scrape it.
        let metrics_listener = match settings.metrics {
            Some(addr) => Some((addr, bind_local(addr, "metrics", "--prometheus-port").await?)),
            None => None,
        };
        let admin_listener = match &settings.admin {
            Some(admin) => Some((admin, bind_local(admin.addr, "the admin interface", "--admin-port").await?)),
            None => None,
        };
        for s in &listeners.udp {
            if let Ok(addr) = s.local_addr() {
                tracing::info!(%addr, "listening on udp");
            }
        }
        let udp_sets = datagram_worker_sockets(&settings, std::mem::take(&mut listeners.udp))?;
        // Loaded before the workers start, so every channel they bind can be offloaded; dropped
        // (detached) when this future ends, and by the kernel if the process dies.
        let offload = crate::net::fast_path::load(settings.offload)?;
        let ledger = Arc::new(Ledger::new(&settings.server, rand::random()));
        let streams = StreamOptions {
            limits: settings.stream_limits,
            tls_files: settings.tls_files.clone(),
            proxy: settings.proxy_protocol.clone(),
        };
        let specs: Vec<WorkerSpec> = udp_sets
            .into_iter()
            .map(|udp| WorkerSpec {
                server: settings.server.clone(),
                ledger: ledger.clone(),
                seed: rand::random(),
                udp,
                offload: offload.clone(),
            })
            .collect();
        let local = Server::with_ledger(settings.server.clone(), rand::random(), ledger);
        let worker = Worker::new("streams", local, listeners, streams, offload.clone()).context("cannot start")?;
        for (transport, addr) in worker.local_addrs() {
            tracing::info!(%addr, "listening on {transport}");
        }
        let worker = Rc::new(worker);
        let workers = Rc::new(WorkerPool::start(worker.clone(), specs).context("cannot start a worker thread")?);
        let n = workers.datagram_workers();
        if n > 0 {
            tracing::info!("relaying UDP on {n} worker thread{}", if n == 1 { "" } else { "s" });
        }
        let registry_wake = Rc::new(tokio::sync::Notify::new());
        let control = Rc::new(Control::new(
            workers.clone(),
            settings.effective_config.clone(),
            reload,
            log,
            registry_wake.clone(),
        ));
        if let Some(registry) = settings.registry.clone() {
            tracing::info!(id = %registry.identity.id, urls = ?registry.identity.urls, "registering in the fleet registry");
            tokio::task::spawn_local(crate::ops::registry::run(registry, workers.clone(), registry_wake));
        }
        if let Some((addr, listener)) = metrics_listener {
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            let scraped = control.clone();
            tokio::task::spawn_local(crate::ops::metrics::serve(listener, move || scraped.metrics_text()));
        }
        if let Some((admin, listener)) = admin_listener {
            if !admin.addr.ip().is_loopback() {
                tracing::warn!(addr = %admin.addr, "the admin interface listens beyond loopback: firewall it");
            }
            tracing::info!(addr = %admin.addr, "serving the admin interface");
            tokio::task::spawn_local(crate::ops::admin::serve(listener, control.clone(), admin.token.clone()));
        }
        tokio::task::spawn_local(reload_on_sighup(control.clone()));
        if let Some(every) = systemd::watchdog_interval() {
            tokio::task::spawn_local(async move {
                loop {
                    systemd::notify("WATCHDOG=1");
                    tokio::time::sleep(every).await;
                }
            });
        }
        // Registered before READY, so a stop right after it is not missed.
        let mut signals = ShutdownSignals::register();
        let running = worker.clone();
        let relaying = tokio::task::spawn_local(async move { running.run().await });
        systemd::notify("READY=1");
        let signal = signals.next().await;
        systemd::notify("STOPPING=1");
        tracing::info!(signal, allocations = workers.allocation_count(), "shutting down");
        if signal == "SIGTERM" {
            control.drain(settings.drain_timeout, signals.next()).await;
        }
        relaying.abort();
        if let Some(registry) = &settings.registry {
            crate::ops::registry::remove(registry).await;
        }
        Ok(())
    })
}

async fn bind_local(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot serve {what} on {addr} ({flag})"))
}

/// SIGHUP: the configuration (secrets, peer policy, quotas, caps, lifetimes, log level) and the
/// TLS certificate are re-read; anything invalid keeps what runs now, with the reason logged.
async fn reload_on_sighup(control: Rc<Control>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            let _ = control.reload("SIGHUP");
        }
    }
    #[cfg(not(unix))]
    let _ = control;
}

/// SIGINT and SIGTERM, registered once for the life of the process: a listener registered anew
/// would be woken by a signal that an earlier one already took (tokio remembers the last
/// delivery), so the drain would end at once on the SIGTERM that started it.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let term = async {
                match &mut self.term {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match &mut self.int {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = int => "SIGINT",
                _ = term => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
