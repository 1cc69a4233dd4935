//! Loads relay.bpf.o (TC ingress, through TCX links) or relay_xdp.bpf.o (XDP, through XDP
//! links) and owns its maps. Nothing is pinned: dropping the `Offload` (or the process dying)
//! closes the link and program fds, and the kernel detaches and frees everything.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::{Xdp, XdpFlags};
use aya::util::KernelVersion;
use aya::Ebpf;

use super::error::{chain, errno_of, not_permitted};
use super::maps::{entries, ChannelKey, ChannelValue, CounterValue, PeerKey, PeerValue};
use super::next_hop::NextHops;
use super::slots::Slots;
use super::{egress, ifaces, Counters, Hook, OffloadError, Route, Slot, XdpMode};

/// `max_entries` of the maps in relay_maps.h.
pub(crate) const CAPACITY: u32 = 65536;
const TC_PROGRAM: &str = "turn_relay";
const XDP_PROGRAM: &str = "turn_relay_xdp";
// BPF_NOEXIST: a second binding of the same channel or peer is a bug upstream, not an update.
const NOEXIST: u64 = 1;
/// The kernel-internal "operation not supported" some attach paths leak to userspace.
const ENOTSUPP: i32 = 524;

#[cfg(not(offload_unbuilt))]
fn object(hook: Hook) -> Result<&'static [u8], OffloadError> {
    Ok(match hook {
        Hook::Tc => aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o")),
        Hook::Xdp => aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay_xdp.bpf.o")),
    })
}

#[cfg(offload_unbuilt)]
fn object(_: Hook) -> Result<&'static [u8], OffloadError> {
    Err(OffloadError::NotBuilt(env!("TURN_OFFLOAD_UNBUILT")))
}

fn program_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Tc => TC_PROGRAM,
        Hook::Xdp => XDP_PROGRAM,
    }
}

/// The kernel fast path: the program attached on some interfaces and its maps.
pub struct Offload {
    hook: Hook,
    interfaces: Vec<String>,
    /// XDP only: how the program runs on each interface, in `interfaces` order.
    xdp_modes: Vec<XdpMode>,
    program_id: u32,
    inner: Mutex<Inner>,
    /// XDP only: the Ethernet next hops (a lock of its own: refreshing them reads the
    /// neighbour table, which installs and removes of other channels need not wait for).
    next_hops: Option<Mutex<NextHops>>,
}

/// Where each direction's rewritten datagrams go when the FIB will not say (see `egress`).
struct Egress {
    to_peer: egress::Egress,
    to_client: egress::Egress,
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
        f.debug_struct("Offload")
            .field("hook", &self.hook)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
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
fn load_program(hook: Hook) -> Result<Ebpf, OffloadError> {
    let bytes = object(hook)?;
    let mut ebpf = Ebpf::load(bytes).map_err(|e| match errno_of(&e) {
        Some(libc::EPERM) => not_permitted("creating the offload maps"),
        _ => OffloadError::Program(format!("loading the object: {}", chain(&e))),
    })?;
    let name = program_name(hook);
    let program =
        ebpf.program_mut(name).ok_or_else(|| OffloadError::Program(format!("no program {name} in the object")))?;
    let (loaded, kind) = match hook {
        Hook::Tc => {
            let tc: &mut SchedClassifier = program.try_into().map_err(|e| OffloadError::Program(chain(&e)))?;
            (tc.load(), "TC (sched_cls)")
        }
        Hook::Xdp => {
            let xdp: &mut Xdp = program.try_into().map_err(|e| OffloadError::Program(chain(&e)))?;
            (xdp.load(), "XDP")
        }
    };
    loaded.map_err(|e| match errno_of(&e) {
        Some(libc::EPERM) => not_permitted(&format!("loading the {kind} program")),
        Some(libc::EINVAL) => OffloadError::Unsupported(format!(
            "it does not take this {kind} program or one of its helpers: {}",
            chain(&e)
        )),
        // Anything else here is the verifier refusing the program: its log says why.
        _ => OffloadError::Program(format!("the kernel refused the program: {}", chain(&e))),
    })?;
    Ok(ebpf)
}

fn attach_tc(ebpf: &mut Ebpf, interface: &str) -> Result<(), OffloadError> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(TC_PROGRAM)
        .ok_or_else(|| OffloadError::Program(format!("no program {TC_PROGRAM}")))?
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

/// Attaches the XDP program through a link (so it goes with the process): in driver mode where
/// the device's driver takes it, else in generic mode (after the skb is built: lo, and devices
/// without XDP support).
fn attach_xdp(ebpf: &mut Ebpf, interface: &str) -> Result<XdpMode, OffloadError> {
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| OffloadError::Program(format!("no program {XDP_PROGRAM}")))?
        .try_into()
        .map_err(|e| OffloadError::Program(chain(&e)))?;
    let refused = |e: &aya::programs::ProgramError| match errno_of(e) {
        Some(libc::EPERM) => not_permitted(&format!("attaching XDP to {interface}")),
        Some(libc::ENODEV) => OffloadError::Interface(format!("{interface}: no such interface")),
        // dev_xdp_attach: a program (or link) is already there, in this mode or the other.
        Some(libc::EBUSY) | Some(libc::EEXIST) => OffloadError::Interface(format!(
            "{interface} already has an XDP program, and an interface takes only one (another relay with \
             --offload xdp, or another XDP tool: `bpftool net show dev {interface}`); use --offload tc there"
        )),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP) => {
            OffloadError::Unsupported(format!("attaching XDP to {interface}: {}", chain(e)))
        }
        _ if matches!(e, aya::programs::ProgramError::UnknownInterface { .. }) => {
            OffloadError::Interface(format!("{interface}: no such interface"))
        }
        _ => OffloadError::Interface(format!("attaching XDP to {interface}: {}", chain(e))),
    };
    match program.attach(interface, XdpFlags::DRV_MODE) {
        Ok(_) => return Ok(XdpMode::Native),
        // The driver has no XDP, or not for this device's setup (MTU, offloads): generic.
        Err(e) if matches!(errno_of(&e), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP)) => {}
        Err(e) => return Err(refused(&e)),
    }
    program.attach(interface, XdpFlags::SKB_MODE).map(|_| XdpMode::Generic).map_err(|e| refused(&e))
}

fn program_id(ebpf: &Ebpf, hook: Hook) -> Result<u32, OffloadError> {
    let name = program_name(hook);
    let program = ebpf.program(name).ok_or_else(|| OffloadError::Program(format!("no program {name}")))?;
    program.info().map(|info| info.id()).map_err(|e| OffloadError::Program(format!("reading its id: {}", chain(&e))))
}

impl Offload {
    /// Loads the program and attaches it at ingress on each named interface (empty = every
    /// interface that is up, including lo).
    pub fn load(hook: Hook, interfaces: &[String]) -> Result<Offload, OffloadError> {
        let interfaces = if interfaces.is_empty() { ifaces::up_interfaces()? } else { interfaces.to_vec() };
        if interfaces.is_empty() {
            return Err(OffloadError::Interface("no interface is up".into()));
        }
        if hook == Hook::Xdp {
            need_xdp_links()?;
        }
        let mut ebpf = load_program(hook)?;
        let mut xdp_modes = Vec::new();
        for interface in &interfaces {
            match hook {
                Hook::Tc => attach_tc(&mut ebpf, interface)?,
                Hook::Xdp => xdp_modes.push(attach_xdp(&mut ebpf, interface)?),
            }
        }
        let program_id = program_id(&ebpf, hook)?;
        let next_hops = match hook {
            Hook::Tc => None,
            Hook::Xdp => {
                let map = ebpf
                    .take_map("next_hops")
                    .ok_or_else(|| OffloadError::Map("no map next_hops in the object".into()))?;
                let map = HashMap::try_from(map).map_err(|e| map_err("next_hops", &e))?;
                let ports =
                    ebpf.take_map("ports").ok_or_else(|| OffloadError::Map("no map ports in the object".into()))?;
                let ports = HashMap::try_from(ports).map_err(|e| map_err("ports", &e))?;
                let mut attached = Vec::new();
                for (interface, mode) in interfaces.iter().zip(&xdp_modes) {
                    attached.push((ifaces::index(interface)?, *mode));
                }
                Some(Mutex::new(NextHops::new(map, ports, &attached)))
            }
        };
        let mut take =
            |name: &str| ebpf.take_map(name).ok_or_else(|| OffloadError::Map(format!("no map {name} in the object")));
        let (channels, peers, counters) = (take("channels")?, take("peers")?, take("counters")?);
        let channels = HashMap::try_from(channels).map_err(|e| map_err("channels", &e))?;
        let peers = HashMap::try_from(peers).map_err(|e| map_err("peers", &e))?;
        let counters = PerCpuArray::try_from(counters).map_err(|e| map_err("counters", &e))?;
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| OffloadError::Map(format!("counting CPUs ({what}): {e}")))?;
        let inner = Inner { channels, peers, counters, cpus, slots: Slots::new(CAPACITY), _ebpf: ebpf };
        Ok(Offload { hook, interfaces, xdp_modes, program_id, inner: Mutex::new(inner), next_hops })
    }

    /// XDP: each interface with the mode the program runs in there (empty for TC).
    pub fn xdp_modes(&self) -> impl Iterator<Item = (&str, XdpMode)> {
        self.interfaces.iter().map(String::as_str).zip(self.xdp_modes.iter().copied())
    }

    /// XDP, for the startup log: each interface, its mode, and for a native one whether frames
    /// may leave through it now (see next_hop.rs).
    pub fn xdp_summary(&self) -> Vec<String> {
        let next_hops = self.next_hops.as_ref().map(lock);
        self.interfaces
            .iter()
            .zip(&self.xdp_modes)
            .map(|(interface, mode)| match mode {
                XdpMode::Generic => format!("{interface}: generic"),
                XdpMode::Native if next_hops.as_ref().is_some_and(|n| n.takes_frames(interface)) => {
                    format!("{interface}: native")
                }
                XdpMode::Native => format!("{interface}: native, takes no XDP frames (none leave through it)"),
            })
            .collect()
    }

    /// XDP: reads the devices' XDP features and the neighbour table again and brings `ports` and
    /// the next hops up to date, at most once a second whoever calls (every worker's tick does);
    /// nothing for TC.
    pub fn refresh(&self) {
        if let Some(next_hops) = &self.next_hops {
            lock(next_hops).refresh(Instant::now());
        }
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
        lock(&self.inner)
    }

    /// Installs both directions of one channel; allocates a counter slot (zeroed).
    pub fn install(&self, route: &Route) -> Result<Slot, OffloadError> {
        entries(route, 0)?; // refuse a bad route before taking a slot
                            // Route lookups read /proc and the interface list: done before the lock every worker
                            // installing or removing a channel takes.
        let egress = Egress { to_peer: egress::lookup(route.peer.ip()), to_client: egress::lookup(route.client.ip()) };
        // The next hops go in first: until they do, the program passes what would need them.
        if let Some(next_hops) = &self.next_hops {
            let mut next_hops = lock(next_hops);
            next_hops.add(route.peer.ip(), egress.to_peer);
            next_hops.add(route.client.ip(), egress.to_client);
        }
        let mut inner = self.lock();
        let result = match inner.slots.take() {
            Some(slot) => {
                let result = inner.install(route, slot, &egress);
                if result.is_err() {
                    inner.slots.give_back(slot);
                }
                result.map(|()| Slot(slot))
            }
            None => Err(OffloadError::Full),
        };
        drop(inner);
        if result.is_err() {
            self.forget_next_hops(route);
        }
        result
    }

    fn forget_next_hops(&self, route: &Route) {
        if let Some(next_hops) = &self.next_hops {
            let mut next_hops = lock(next_hops);
            next_hops.remove(route.peer.ip());
            next_hops.remove(route.client.ip());
        }
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
        drop(inner);
        self.forget_next_hops(route);
        counters
    }
}

impl Inner {
    fn install(&mut self, route: &Route, slot: u32, egress: &Egress) -> Result<(), OffloadError> {
        let (ck, mut cv, pk, mut pv) = entries(route, slot)?;
        cv.egress = egress.to_peer.egress;
        pv.egress = egress.to_client.egress;
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock leaves maps that are still consistent entry by entry.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// XDP links (Linux 5.9) detach the program when the relay's descriptors close; the older
/// netlink attachment would outlive a relay that crashed, relaying for a process that is gone.
fn need_xdp_links() -> Result<(), OffloadError> {
    match KernelVersion::current() {
        Ok(v) if v < KernelVersion::new(5, 9, 0) => {
            Err(OffloadError::Unsupported(format!("XDP offload needs XDP links (Linux 5.9 or later), this is {v}")))
        }
        // An unreadable version: the attach itself will say whether links work.
        _ => Ok(()),
    }
}

/// Whether offload could load here. TC: loads the program (the verifier's verdict) and attaches
/// it to `lo` for a moment (the kernel's TCX support and this process's rights), then drops
/// both. XDP: loads the program only: lo takes one XDP program, and a running relay with
/// `--offload xdp` holds it, so a check beside that relay must not try to attach there.
pub fn probe(hook: Hook) -> Result<(), OffloadError> {
    match hook {
        Hook::Tc => drop(Offload::load(Hook::Tc, &["lo".to_string()])?),
        Hook::Xdp => {
            need_xdp_links()?;
            drop(load_program(Hook::Xdp)?);
        }
    }
    Ok(())
}

// The driver shares one Offload between its workers.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Offload>();
};
