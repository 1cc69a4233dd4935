//! What an operator can do to a running relay, whether by signal or through the admin interface:
//! reload the configuration, drain, and read the state. One place, so SIGHUP and `admin reload`
//! cannot drift apart.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::logging::LogControl;
use super::metrics::{DriverGauges, Sample};
use super::systemd;
use crate::app::settings::Settings;
use crate::net::{Worker, WorkerPool};

/// Produces fresh settings from the config file and flags.
pub type Reloader = Box<dyn Fn() -> anyhow::Result<Settings>>;

/// How often a drain looks whether the last allocation has gone.
const DRAIN_POLL: Duration = Duration::from_millis(200);

pub struct Control {
    pub workers: Rc<WorkerPool>,
    reloader: Option<Reloader>,
    log: Option<LogControl>,
    reloads_ok: Cell<u64>,
    reloads_invalid: Cell<u64>,
    /// The redacted TOML of what runs now.
    effective_config: RefCell<String>,
    /// Makes the registry publish at once (a drain must be known to the fleet immediately).
    registry_wake: Rc<tokio::sync::Notify>,
}

/// The outcome of a reload that was applied.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Settings that differ in the file but need a restart (the old values stay).
    pub needs_restart: Vec<&'static str>,
    pub log_level_changed: bool,
}

impl Control {
    /// `effective_config`: the redacted TOML of the settings the worker starts with.
    pub fn new(
        workers: Rc<WorkerPool>,
        effective_config: String,
        reloader: Option<Reloader>,
        log: Option<LogControl>,
        registry_wake: Rc<tokio::sync::Notify>,
    ) -> Self {
        Control {
            workers,
            reloader,
            log,
            reloads_ok: Cell::new(0),
            reloads_invalid: Cell::new(0),
            effective_config: RefCell::new(effective_config),
            registry_wake,
        }
    }

    /// Re-reads the configuration. Invalid: what runs stays, the reason is returned and logged,
    /// and the refusal counted. The TLS certificate is re-read too; a broken one keeps the old.
    pub fn reload(&self, origin: &str) -> Result<Reloaded, String> {
        systemd::notify("RELOADING=1");
        let result = self.apply_reload();
        match &result {
            Ok(r) if r.needs_restart.is_empty() => tracing::info!(origin, "configuration reloaded"),
            Ok(r) => {
                tracing::warn!(origin, ignored = ?r.needs_restart, "configuration reloaded; these changes need a restart")
            }
            Err(e) => tracing::error!(origin, error = %e, "invalid configuration; keeping the current one"),
        }
        let counter = if result.is_ok() { &self.reloads_ok } else { &self.reloads_invalid };
        counter.set(counter.get() + 1);
        systemd::notify("READY=1");
        result
    }

    fn apply_reload(&self) -> Result<Reloaded, String> {
        let Some(reloader) = &self.reloader else { return Err("this relay runs without a config to reload".into()) };
        // Resolving validates everything (log level included), so nothing below can half-apply.
        let settings = reloader().map_err(|e| format!("{e:#}"))?;
        let tls = self.workers.local().reload_tls();
        let log_level_changed = match &self.log {
            Some(log) => log.apply(&settings.log_level)?,
            None => false,
        };
        *self.effective_config.borrow_mut() = settings.effective_config.clone();
        let needs_restart = self.workers.reload_config(settings.server);
        if let Err(e) = tls {
            tracing::error!(error = %e, "TLS certificate reload failed; keeping the current certificate");
        }
        Ok(Reloaded { needs_restart, log_level_changed })
    }

    pub fn effective_config(&self) -> String {
        self.effective_config.borrow().clone()
    }

    pub fn metrics_text(&self) -> String {
        let sample = Sample::total(self.workers.each(Worker::metrics_sample));
        let driver = DriverGauges { reloads_ok: self.reloads_ok.get(), reloads_invalid: self.reloads_invalid.get() };
        super::metrics::render(&sample, driver)
    }

    /// SIGTERM: refuse or redirect new allocations and let existing ones run until they end or
    /// `timeout` passes; `stop_now` (a second signal) cuts it short.
    pub async fn drain(&self, timeout: Duration, stop_now: impl std::future::Future<Output = &'static str>) {
        let left = self.workers.allocation_count();
        if left == 0 || timeout.is_zero() {
            tracing::info!(allocations = left, "stopping");
            return;
        }
        self.workers.start_drain();
        self.registry_wake.notify_one();
        tracing::info!(
            allocations = left,
            timeout_secs = timeout.as_secs(),
            "draining: new allocations are redirected or refused; existing ones keep relaying"
        );
        systemd::notify(&format!("STATUS=draining, {left} allocations left"));
        let deadline = Instant::now() + timeout;
        let mut reported = left;
        tokio::pin!(stop_now);
        loop {
            tokio::select! {
                () = tokio::time::sleep(DRAIN_POLL) => {}
                signal = &mut stop_now => {
                    let left = self.workers.allocation_count();
                    tracing::info!(signal, allocations = left, "second signal: stopping now");
                    return;
                }
            }
            let left = self.workers.allocation_count();
            if left == 0 {
                tracing::info!("drained: the last allocation has ended; stopping");
                return;
            }
            if Instant::now() >= deadline {
                tracing::info!(allocations = left, "drain timeout passed; stopping");
                return;
            }
            if left != reported {
                reported = left;
                systemd::notify(&format!("STATUS=draining, {left} allocations left"));
            }
        }
    }
}
