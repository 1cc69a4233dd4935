//! Loads relay.bpf.o, attaches it at TC ingress with TCX links and owns its maps. Nothing is
//! pinned: dropping the `Offload` (or the process dying) closes the link and program fds, and
//! the kernel detaches and frees everything.

use std::sync::{Mutex, MutexGuard};

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::Ebpf;

use super::error::{chain, errno_of, not_permitted};
use super::maps::{entries, ChannelKey, ChannelValue, CounterValue, PeerKey, PeerValue};
use super::slots::Slots;
use super::{egress, ifaces, Counters, Hook, OffloadError, Route, Slot};

/// `max_entries` of the maps in relay.bpf.c.
pub(crate) const CAPACITY: u32 = 65536;
const PROGRAM: &str = "turn_relay";
// BPF_NOEXIST: a second binding of the same channel or peer is a bug upstream, not an update.
const NOEXIST: u64 = 1;
/// The kernel-internal "operation not supported" some attach paths leak to userspace.
const ENOTSUPP: i32 = 524;

#[cfg(not(offload_unbuilt))]
fn object() -> Result<&'static [u8], OffloadError> {
    Ok(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o")))
}

#[cfg(offload_unbuilt)]
fn object() -> Result<&'static [u8], OffloadError> {
    Err(OffloadError::NotBuilt(env!("TURN_OFFLOAD_UNBUILT")))
}

/// The kernel fast path: the program attached on some interfaces and its maps.
pub struct Offload {
    interfaces: Vec<String>,
    program_id: u32,
    inner: Mutex<Inner>,
}

/// Where each direction's rewritten datagrams go when the FIB will not say (see `egress`).
struct Egress {
    to_peer: u32,
    to_client: u32,
}

struct Inner {
    channels: HashMap<MapData, ChannelKey, ChannelValue>,
    peers: HashMap<MapData, PeerKey, PeerValue>,
    counters: PerCpuArray<MapData, CounterValue>,
    cpus: usize,
    slots: Slots,
    // Last: owns the program and its links (dropping it detaches).
    _ebpf: Ebpf,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload").field("interfaces", &self.interfaces).finish_non_exhaustive()
    }
}

fn map_err(what: &str, err: &(dyn std::error::Error + 'static)) -> OffloadError {
    match errno_of(err) {
        Some(libc::EPERM) => not_permitted(what),
        Some(libc::E2BIG) | Some(libc::ENOMEM) | Some(libc::ENOSPC) => OffloadError::Full,
        Some(libc::EEXIST) => OffloadError::AlreadyInstalled,
        _ => OffloadError::Map(format!("{what}: {}", chain(err))),
    }
}

/// Loads the object and the program into the kernel, attached nowhere yet.
fn load_program() -> Result<Ebpf, OffloadError> {
    let bytes = object()?;
    let mut ebpf = Ebpf::load(bytes).map_err(|e| match errno_of(&e) {
        Some(libc::EPERM) => not_permitted("creating the offload maps"),
        _ => OffloadError::Program(format!("loading the object: {}", chain(&e))),
    })?;
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| OffloadError::Program(format!("no program {PROGRAM} in the object")))?
        .try_into()
        .map_err(|e| OffloadError::Program(chain(&e)))?;
    program.load().map_err(|e| match errno_of(&e) {
        Some(libc::EPERM) => not_permitted("loading the TC program"),
        Some(libc::EINVAL) => OffloadError::Unsupported(format!(
            "it does not take this TC (sched_cls) program or one of its helpers: {}",
            chain(&e)
        )),
        // Anything else here is the verifier refusing the program: its log says why.
        _ => OffloadError::Program(format!("the kernel refused the program: {}", chain(&e))),
    })?;
    Ok(ebpf)
}

fn attach(ebpf: &mut Ebpf, interface: &str) -> Result<(), OffloadError> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| OffloadError::Program(format!("no program {PROGRAM}")))?
        .try_into()
        .map_err(|e| OffloadError::Program(chain(&e)))?;
    // Last in the TCX chain: whatever else is attached (another relay process on the same
    // interface) runs first, and ours passes on what it does not relay.
    let options = TcAttachOptions::TcxOrder(LinkOrder::last());
    program.attach_with_options(interface, TcAttachType::Ingress, options).map(|_| ()).map_err(|e| match errno_of(&e) {
        Some(libc::EPERM) => not_permitted(&format!("attaching to {interface}")),
        Some(libc::ENODEV) => OffloadError::Interface(format!("{interface}: no such interface")),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => OffloadError::Unsupported(format!(
            "attaching to {interface} needs TCX links (Linux 6.6 or later): {}",
            chain(&e)
        )),
        _ => OffloadError::Interface(format!("attaching to {interface}: {}", chain(&e))),
    })
}

fn program_id(ebpf: &mut Ebpf) -> Result<u32, OffloadError> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| OffloadError::Program(format!("no program {PROGRAM}")))?
        .try_into()
        .map_err(|e| OffloadError::Program(chain(&e)))?;
    program.info().map(|info| info.id()).map_err(|e| OffloadError::Program(format!("reading its id: {}", chain(&e))))
}

impl Offload {
    /// Loads the program and attaches it at ingress on each named interface (empty = every
    /// interface that is up, including lo).
    pub fn load(hook: Hook, interfaces: &[String]) -> Result<Offload, OffloadError> {
        match hook {
            Hook::Tc => {}
        }
        let interfaces = if interfaces.is_empty() { ifaces::up_interfaces()? } else { interfaces.to_vec() };
        if interfaces.is_empty() {
            return Err(OffloadError::Interface("no interface is up".into()));
        }
        let mut ebpf = load_program()?;
        for interface in &interfaces {
            attach(&mut ebpf, interface)?;
        }
        let program_id = program_id(&mut ebpf)?;
        let mut take =
            |name: &str| ebpf.take_map(name).ok_or_else(|| OffloadError::Map(format!("no map {name} in the object")));
        let (channels, peers, counters) = (take("channels")?, take("peers")?, take("counters")?);
        let channels = HashMap::try_from(channels).map_err(|e| map_err("channels", &e))?;
        let peers = HashMap::try_from(peers).map_err(|e| map_err("peers", &e))?;
        let counters = PerCpuArray::try_from(counters).map_err(|e| map_err("counters", &e))?;
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| OffloadError::Map(format!("counting CPUs ({what}): {e}")))?;
        let inner = Inner { channels, peers, counters, cpus, slots: Slots::new(CAPACITY), _ebpf: ebpf };
        Ok(Offload { interfaces, program_id, inner: Mutex::new(inner) })
    }

    /// The kernel's id of the loaded program (`bpftool prog show id N`), for the startup log.
    pub fn program_id(&self) -> u32 {
        self.program_id
    }

    /// The interfaces the program is attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under the lock leaves maps that are still consistent entry by entry.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs both directions of one channel; allocates a counter slot (zeroed).
    pub fn install(&self, route: &Route) -> Result<Slot, OffloadError> {
        entries(route, 0)?; // refuse a bad route before taking a slot
                            // Route lookups read /proc and the interface list: done before the lock every worker
                            // installing or removing a channel takes.
        let egress = Egress { to_peer: egress::hint(route.peer.ip()), to_client: egress::hint(route.client.ip()) };
        let mut inner = self.lock();
        let slot = inner.slots.take().ok_or(OffloadError::Full)?;
        let result = inner.install(route, slot, egress);
        if result.is_err() {
            inner.slots.give_back(slot);
        }
        result.map(|()| Slot(slot))
    }

    /// Cumulative counters of a live slot, summed over CPUs.
    pub fn read(&self, slot: Slot) -> Result<Counters, OffloadError> {
        let inner = self.lock();
        if !inner.slots.in_use(slot.0) {
            return Err(OffloadError::UnknownSlot(slot.0));
        }
        inner.read(slot.0)
    }

    /// Removes both map entries, returns the slot's final cumulative counters and frees the
    /// slot. A packet that another CPU's program run had already matched before the entries
    /// went may still add to the slot after the read: at most the few packets in flight at that
    /// instant go uncounted. The slot is zeroed again only when reused, oldest freed first.
    pub fn remove(&self, route: &Route, slot: Slot) -> Result<Counters, OffloadError> {
        let (ck, _, pk, _) = entries(route, slot.0)?;
        let mut inner = self.lock();
        if !inner.slots.in_use(slot.0) {
            return Err(OffloadError::UnknownSlot(slot.0));
        }
        let gone = |r: Result<(), aya::maps::MapError>, what: &str| match r {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(map_err(what, &e)),
        };
        let a = gone(inner.channels.remove(&ck), "removing a channel");
        let b = gone(inner.peers.remove(&pk), "removing a peer");
        a.and(b)?;
        let counters = inner.read(slot.0);
        inner.slots.give_back(slot.0);
        counters
    }
}

impl Inner {
    fn install(&mut self, route: &Route, slot: u32, egress: Egress) -> Result<(), OffloadError> {
        let (ck, mut cv, pk, mut pv) = entries(route, slot)?;
        cv.egress = egress.to_peer;
        pv.egress = egress.to_client;
        let zeros = PerCpuValues::try_from(vec![CounterValue::default(); self.cpus])
            .map_err(|e| OffloadError::Map(format!("zeroing counters: {e}")))?;
        self.counters.set(slot, zeros, 0).map_err(|e| map_err("zeroing counters", &e))?;
        self.channels.insert(ck, cv, NOEXIST).map_err(|e| map_err("adding a channel", &e))?;
        if let Err(e) = self.peers.insert(pk, pv, NOEXIST) {
            // Leave nothing half-installed.
            let _ = self.channels.remove(&ck);
            return Err(map_err("adding a peer", &e));
        }
        Ok(())
    }

    fn read(&self, slot: u32) -> Result<Counters, OffloadError> {
        let per_cpu = self.counters.get(&slot, 0).map_err(|e| map_err("reading counters", &e))?;
        let mut total = Counters::default();
        for value in per_cpu.iter() {
            value.add_to(&mut total);
        }
        Ok(total)
    }
}

/// Whether offload could load here: loads the program (the verifier's verdict) and attaches it
/// to `lo` for a moment (the kernel's TCX support and this process's rights), then drops both.
pub fn probe() -> Result<(), OffloadError> {
    let offload = Offload::load(Hook::Tc, &["lo".to_string()])?;
    drop(offload);
    Ok(())
}

// The driver shares one Offload between its workers.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Offload>();
};
