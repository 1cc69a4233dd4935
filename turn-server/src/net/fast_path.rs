//! The driver's half of the kernel fast path: loading the eBPF program on the interfaces the relay
//! serves, carrying out the core's [`OffloadCommand`]s against its maps, and folding the program's
//! per-channel counters back into the core, so the session log, the metrics and the fleet
//! registry's load count what the kernel relayed.
//!
//! The core decides what is offloaded; this only obeys. A route the kernel refuses (map full)
//! simply stays in userspace, which relays whatever reaches it anyway.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ice_config::OffloadMode;

use crate::offload::{Counters, Hook, Offload, Route, Slot};
use crate::proto::{ChannelRoute, Event, FiveTuple, Instant, OffloadCommand, Server, TrafficSummary};

/// How often a worker folds its routes' counters into the core: the delay before metrics and
/// the registry's load see kernel-relayed traffic.
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// Loads the program for `mode` at ingress on every interface that is up: a peer's datagrams
/// arrive on whichever interface routes to it, not only on those holding the relay's addresses.
/// `auto` (TC) says in one line why it could not and returns `None`; `tc` and `xdp` fail the
/// start instead.
pub fn load(mode: OffloadMode) -> anyhow::Result<Option<Arc<Offload>>> {
    let Some(hook) = hook(mode) else { return Ok(None) };
    let loaded = Offload::load(hook, &[]);
    give_back_free_heap();
    match loaded {
        Ok(offload) if hook == Hook::Tc => {
            tracing::info!(
                interfaces = ?offload.interfaces(),
                program_id = offload.program_id(),
                "kernel fast path on: channel data is relayed at TC ingress"
            );
            Ok(Some(Arc::new(offload)))
        }
        Ok(offload) => {
            tracing::info!(
                interfaces = ?offload.xdp_summary(),
                program_id = offload.program_id(),
                "kernel fast path on: channel data is relayed at XDP"
            );
            Ok(Some(Arc::new(offload)))
        }
        Err(e) if mode == OffloadMode::Auto => {
            tracing::info!("kernel fast path off, relaying in userspace: {e}");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("--offload {}", mode.as_str())),
    }
}

/// The hook `mode` loads at, None for `off`. `auto` stays TC: XDP takes an interface's only XDP
/// slot, which an operator has to choose to give.
pub fn hook(mode: OffloadMode) -> Option<Hook> {
    match mode {
        OffloadMode::Off => None,
        OffloadMode::Xdp => Some(Hook::Xdp),
        OffloadMode::Auto | OffloadMode::Tc => Some(Hook::Tc),
    }
}

/// Loading parses the kernel's type information (megabytes, freed once the program is in): hand
/// the freed heap back to the system, or the relay's resident size keeps it for its whole life.
fn give_back_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the kernel; it takes no
    // pointers and every allocation stays valid.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One worker's routes in the kernel.
pub(super) struct FastPath {
    kernel: Arc<Offload>,
    routes: RefCell<HashMap<ChannelRoute, Installed>>,
    /// The last counts of routes withdrawn with their allocation, for its `AllocationEnded`
    /// event, which the core queued right after the withdrawals.
    ended: RefCell<HashMap<FiveTuple, TrafficSummary>>,
    next_fold: Cell<Option<Instant>>,
}

struct Installed {
    slot: Slot,
    /// The counts already folded into the core.
    folded: Counters,
}

impl FastPath {
    pub(super) fn new(kernel: Arc<Offload>) -> Self {
        FastPath {
            kernel,
            routes: RefCell::new(HashMap::new()),
            ended: RefCell::new(HashMap::new()),
            next_fold: Cell::new(None),
        }
    }

    pub(super) fn apply(&self, server: &mut Server, command: OffloadCommand) {
        match command {
            OffloadCommand::Install(route) => match self.kernel.install(&to_kernel(&route)) {
                Ok(slot) => {
                    self.routes.borrow_mut().insert(route, Installed { slot, folded: Counters::default() });
                }
                Err(e) => tracing::warn!(client = %route.tuple.client, peer = %route.peer, error = %e,
                    "channel stays in userspace"),
            },
            OffloadCommand::Remove(route) => {
                let Some(installed) = self.routes.borrow_mut().remove(&route) else { return };
                match self.kernel.remove(&to_kernel(&route), installed.slot) {
                    Ok(last) => {
                        let delta = since(&installed.folded, &last);
                        server.offloaded_traffic(&route.tuple, delta);
                        if server.allocation(&route.tuple).is_none() {
                            add(self.ended.borrow_mut().entry(route.tuple).or_default(), delta);
                        }
                    }
                    Err(e) => tracing::error!(client = %route.tuple.client, peer = %route.peer, error = %e,
                        "cannot withdraw a channel from the kernel"),
                }
            }
        }
    }

    /// Adds the kernel's last counts to an allocation's end (see `ended`).
    pub(super) fn complete(&self, event: &mut Event) {
        if let Event::AllocationEnded { tuple, traffic, .. } = event {
            if let Some(last) = self.ended.borrow_mut().remove(tuple) {
                add(traffic, last);
            }
        }
    }

    /// Folds every route's new counts into the core, at most every `FOLD_EVERY`; XDP's next
    /// hops follow the neighbour table on the same tick.
    pub(super) fn fold_due(&self, server: &mut Server, now: Instant) {
        if self.next_fold.get().is_some_and(|at| now < at) {
            return;
        }
        self.next_fold.set(Some(now + FOLD_EVERY));
        self.fold(server);
        self.kernel.refresh();
    }

    /// Folds every route's new counts into the core now (before the core's figures are read for
    /// a scrape, the admin interface or the fleet registry, so they are exact).
    pub(super) fn fold(&self, server: &mut Server) {
        for (route, installed) in self.routes.borrow_mut().iter_mut() {
            match self.kernel.read(installed.slot) {
                Ok(now) => {
                    let delta = since(&installed.folded, &now);
                    installed.folded = now;
                    if delta != TrafficSummary::default() {
                        server.offloaded_traffic(&route.tuple, delta);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read a channel's kernel counters"),
            }
        }
    }
}

fn to_kernel(r: &ChannelRoute) -> Route {
    Route { client: r.tuple.client, server: r.tuple.server, relay: r.relay, peer: r.peer, channel: r.number }
}

fn since(before: &Counters, now: &Counters) -> TrafficSummary {
    TrafficSummary {
        packets_to_peer: now.to_peer_packets.saturating_sub(before.to_peer_packets),
        bytes_to_peer: now.to_peer_bytes.saturating_sub(before.to_peer_bytes),
        packets_from_peer: now.from_peer_packets.saturating_sub(before.from_peer_packets),
        bytes_from_peer: now.from_peer_bytes.saturating_sub(before.from_peer_bytes),
    }
}

fn add(into: &mut TrafficSummary, t: TrafficSummary) {
    into.packets_to_peer += t.packets_to_peer;
    into.bytes_to_peer += t.bytes_to_peer;
    into.packets_from_peer += t.packets_from_peer;
    into.bytes_from_peer += t.bytes_from_peer;
}
