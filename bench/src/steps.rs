//! The measurements, one function per subcommand: each drives a running server and appends its
//! records. They report; they never judge speed. They fail only when something is broken (the
//! server does not answer, allocations fail, nothing is relayed).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use ice_config::RestSecrets;
use turn_server::proto::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};

use crate::client::{self, Allocation, Target};
use crate::load::{self, Outcome, PeerRole, Spec};
use crate::net::NetArgs;
use crate::procfs;
use crate::report::{Better, Sink};
use crate::Common;

/// Loss below which a rate counts as sustained.
const MAX_LOSS: f64 = 0.01;
/// A failing probe with less loss than this is tried once more.
const RETRY_BELOW_LOSS: f64 = 0.10;
/// A probe whose sender reached less than this share of its target rate measured the generator.
const MIN_OFFERED: f64 = 0.95;
/// Bound on opening one batch of allocations.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Args, Clone)]
pub struct RelayArgs {
    /// ChannelData payload sizes for the saturation search.
    #[arg(long, value_delimiter = ',', default_value = "120,1200")]
    pub payloads: Vec<usize>,
    /// Allocation counts for the saturation search.
    #[arg(long, value_delimiter = ',', default_value = "50,500")]
    pub allocations: Vec<usize>,
    /// Length of each load probe, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// First rate tried by the saturation search, datagrams/s.
    #[arg(long, default_value_t = 20_000.0)]
    pub start_rate: f64,
    /// Highest rate the search tries.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_rate: f64,
    /// Bisection steps after the first failing rate.
    #[arg(long, default_value_t = 3)]
    pub bisect: usize,
    /// Offered rate for the latency step.
    #[arg(long, default_value_t = 5_000.0)]
    pub latency_rate: f64,
    /// Allocations used by the latency step.
    #[arg(long, default_value_t = 50)]
    pub fixed_allocations: usize,
    /// Datagrams per sendmmsg from one client socket.
    #[arg(long, default_value_t = 8)]
    pub burst: usize,
    /// Send each burst as one UDP GSO message. On loopback the server then receives super-packets
    /// a kernel fast path for single datagrams passes by (a network card delivers datagrams).
    #[arg(long)]
    pub gso: bool,
    /// Names a second configuration of the same server (e.g. `all-cores`): its rows get their
    /// own keys and the name in their description.
    #[arg(long)]
    pub variant: Option<String>,
    /// Only the saturation search (no latency step).
    #[arg(long)]
    pub saturation_only: bool,
}

pub fn wait_ready(server: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    // From loopback to a loopback server; else from whichever local address routes to it.
    let local: std::net::IpAddr = match server.ip() {
        ip if ip.is_loopback() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).context("bind probe socket")?;
    socket.set_read_timeout(Some(Duration::from_millis(100))).context("read timeout")?;
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    // An answer to any request sent so far counts: a server still starting (loading its eBPF
    // program, say) answers the queued ones late and in order, behind the newest.
    let mut sent: Vec<TransactionId> = Vec::new();
    while start.elapsed() < timeout {
        let tid: TransactionId = rand::random();
        let req = MessageBuilder::new(MessageType::new(Method::Binding, Class::Request), &tid).finish();
        let _ = socket.send_to(&req, server);
        sent.push(tid);
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if n >= 20 && sent.iter().any(|t| buf[8..20] == t[..]) {
                return Ok(());
            }
        }
    }
    bail!("{server} did not answer a STUN Binding request within {timeout:?}")
}

/// The socket the relay's allocations send to: large buffers so that the generator's side never
/// drops what the relay delivered.
pub(crate) fn peer_socket(net: &NetArgs) -> anyhow::Result<UdpSocket> {
    let peer = net.peer_socket()?;
    let sock = socket2::SockRef::from(&peer);
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    Ok(peer)
}

fn target(common: &Common, peer: &UdpSocket) -> anyhow::Result<Target> {
    target_at(common.server, &common.run.secret, peer, &common.run.net)
}

pub(crate) fn target_at(server: SocketAddr, secret: &str, peer: &UdpSocket, net: &NetArgs) -> anyhow::Result<Target> {
    Ok(Target {
        server,
        peer: peer.local_addr().context("peer address")?,
        secrets: RestSecrets::new([secret]).context("REST secret")?,
        net: net.clone(),
    })
}

/// Opens `n` more allocations (users numbered from `offset`), failing if more than 1% fail.
pub(crate) fn open(target: &Target, n: usize, offset: usize, concurrency: usize) -> anyhow::Result<client::OpenReport> {
    let report = client::open_many(target, n, offset, concurrency, Instant::now() + OPEN_DEADLINE);
    if report.allocations.len() * 100 < n * 99 {
        bail!(
            "only {} of {n} allocations opened in {:.1?} ({} failed; first error: {})",
            report.allocations.len(),
            report.elapsed,
            report.failures,
            report.first_error.as_deref().unwrap_or("none: out of time")
        );
    }
    Ok(report)
}

pub fn memory(common: &Common, counts: &[usize]) -> anyhow::Result<()> {
    let mut sink = Sink::open(&common.run.out, &common.label)?;
    let peer = peer_socket(&common.run.net)?;
    let target = target(common, &peer)?;
    std::thread::sleep(Duration::from_millis(500));
    let idle = procfs::rss_kib(common.pid)?;
    let threads = procfs::threads(common.pid).map(|t| format!("{t} threads")).unwrap_or_default();
    sink.record("rss_idle", "VmRSS idle", Some(idle as f64 / 1024.0), "MiB", Better::Lower, threads)?;
    let mut held: Vec<Allocation> = Vec::new();
    let mut opening = Duration::ZERO;
    let mut failures = 0;
    for &count in counts {
        if count <= held.len() {
            continue;
        }
        let report = open(&target, count - held.len(), held.len(), common.run.concurrency)?;
        opening += report.elapsed;
        failures += report.failures;
        held.extend(report.allocations);
        // Let the server finish whatever it defers (log lines, timers) before reading.
        std::thread::sleep(Duration::from_secs(1));
        let rss = procfs::rss_kib(common.pid)?;
        let per = (rss.saturating_sub(idle)) as f64 / held.len() as f64;
        sink.record(
            &format!("rss_per_alloc_{count}"),
            &format!("VmRSS growth per allocation, {count} allocations"),
            Some(per),
            "KiB",
            Better::Lower,
            format!("VmRSS {:.1} MiB with {} allocations", rss as f64 / 1024.0, held.len()),
        )?;
    }
    let rate = held.len() as f64 / opening.as_secs_f64().max(1e-9);
    sink.record(
        "alloc_rate",
        &format!(
            "allocations completed/s (401 + Allocate + CreatePermission + ChannelBind), {} in flight",
            common.run.concurrency
        ),
        Some(rate),
        "alloc/s",
        Better::Higher,
        format!(
            "{} allocations in {opening:.2?}, {failures} failed, {} requests retransmitted",
            held.len(),
            client::RETRANSMITTED.load(std::sync::atomic::Ordering::Relaxed)
        ),
    )?;
    Ok(())
}

/// Share of one core the server used over a probe: its process (all threads) and the run time
/// of the eBPF programs it holds (softirq time no process is charged for).
#[derive(Debug, Clone, Copy)]
struct Busy {
    process: f64,
    program: f64,
}

/// Runs `probe`, noting how busy the server `pid` was meanwhile against what it delivered.
fn measured(
    pid: u32,
    busy: &mut Vec<(f64, Busy)>,
    probe: impl FnOnce() -> anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (user0, system0) = procfs::cpu_times(pid)?;
    let program0 = procfs::bpf_run_time(pid);
    let o = probe()?;
    let (user, system) = procfs::cpu_times(pid)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let process = (user + system).saturating_sub(user0 + system0).as_secs_f64() / secs;
    let program = procfs::bpf_run_time(pid).saturating_sub(program0).as_secs_f64() / secs;
    busy.push((delivered(&o), Busy { process, program }));
    Ok(o)
}

pub fn relay(common: &Common, args: &RelayArgs) -> anyhow::Result<()> {
    let mut sink = Sink::open(&common.run.out, &common.label)?;
    let peer = peer_socket(&common.run.net)?;
    let target = target(common, &peer)?;
    let most = args.allocations.iter().copied().chain([args.fixed_allocations]).max().unwrap_or(1);
    let mut held = client::Held::new(open(&target, most, 0, common.run.concurrency)?.allocations);
    let probe =
        |allocs: &[Allocation], n: usize, payload: usize, rate: f64, secs: f64, role: PeerRole, burst: usize| {
            let sockets: Vec<&UdpSocket> = allocs.iter().take(n).map(|a| &a.socket).collect();
            let relayed: Vec<SocketAddr> = allocs.iter().take(n).map(|a| a.relayed).collect();
            let spec =
                Spec { rate, duration: Duration::from_secs_f64(secs), payload, peer: role, burst, gso: args.gso };
            load::run(&sockets, &relayed, &peer, spec)
        };

    for &payload in &args.payloads {
        for &n in &args.allocations {
            held.keep_fresh()?;
            let mut peak: f64 = 0.0;
            // (delivered/s, server busy) of every probe: how loaded the server's core was.
            let mut busy: Vec<(f64, Busy)> = Vec::new();
            let mut run = |rate: f64| -> anyhow::Result<Outcome> {
                let mut o = measured(common.pid, &mut busy, || {
                    probe(&held.allocations, n, payload, rate, args.seconds, PeerRole::Count, args.burst)
                })?;
                for attempt in 0..2 {
                    eprintln!(
                        "[{}]   {payload} B x {n}: asked {rate:.0}/s, offered {:.0}/s, delivered {:.0}/s, loss {:.2}%",
                        common.label,
                        o.offered_rate(),
                        delivered(&o),
                        o.loss(PeerRole::Count) * 100.0
                    );
                    peak = peak.max(delivered(&o));
                    std::thread::sleep(Duration::from_millis(200));
                    // A marginal failure is most often another process taking the server's core
                    // for a few ms (the listener's buffer then overflows): one more try.
                    let marginal = (MAX_LOSS..RETRY_BELOW_LOSS).contains(&o.loss(PeerRole::Count));
                    if attempt == 1 || !marginal {
                        break;
                    }
                    o = measured(common.pid, &mut busy, || {
                        probe(&held.allocations, n, payload, rate, args.seconds, PeerRole::Count, args.burst)
                    })?;
                }
                Ok(o)
            };
            let found = saturate(&mut run, args)?;
            let mut note = match (found.generator_bound, found.best) {
                (true, _) => format!("generator-bound: the generator could not offer more ({} probes)", found.probes),
                (false, Some(_)) => format!("{} probes, first failing rate {:.0}/s", found.probes, found.first_fail),
                (false, None) => format!("no rate down to {:.0}/s had loss under 1%", found.first_fail),
            };
            if let Some((_, b)) = found.best.and_then(|best| {
                busy.iter().filter(|(d, _)| *d <= best + 0.5).max_by(|a, b| a.0.total_cmp(&b.0)).copied()
            }) {
                note.push_str(&format!(
                    "; server busy during that probe: {:.0}% of a core ({:.0}% the process, {:.0}% its eBPF program)",
                    (b.process + b.program) * 100.0,
                    b.process * 100.0,
                    b.program * 100.0
                ));
            }
            let (key, what) = match &args.variant {
                Some(v) => (format!("{v}_"), format!(", {v}")),
                None => (String::new(), String::new()),
            };
            sink.record(
                &format!("{key}sat_{payload}_{n}"),
                &format!(
                    "relayed datagrams/s at <1% loss, ChannelData client->peer, {payload} B, {n} allocations{what}"
                ),
                found.best,
                "dgram/s",
                Better::Higher,
                note,
            )?;
            sink.record(
                &format!("{key}peak_{payload}_{n}"),
                &format!("peak delivered datagrams/s at any loss, {payload} B, {n} allocations{what}"),
                Some(peak),
                "dgram/s",
                Better::Higher,
                "",
            )?;
        }
    }

    if args.saturation_only {
        return Ok(());
    }
    let n = args.fixed_allocations;
    held.keep_fresh()?;
    let o = probe(&held.allocations, n, 120, args.latency_rate, args.seconds, PeerRole::Echo, 1)?;
    let direct_sockets = load::direct_sockets(n, target.peer, &common.run.net)?;
    let direct: Vec<&UdpSocket> = direct_sockets.iter().collect();
    let base = load::run(
        &direct,
        &[],
        &peer,
        Spec {
            rate: args.latency_rate,
            duration: Duration::from_secs_f64(args.seconds),
            payload: 120,
            peer: PeerRole::Echo,
            burst: 1,
            gso: false,
        },
    )?;
    let loss_pct = o.loss(PeerRole::Echo) * 100.0;
    let mut rtts = o.rtts;
    rtts.sort_unstable();
    let mut base_rtts = base.rtts;
    base_rtts.sort_unstable();
    let us = |v: Option<u64>| v.map(|ns| ns as f64 / 1000.0);
    let what = format!("echo at {:.0}/s, 120 B, {n} allocations", args.latency_rate);
    let loss = format!("{} round trips, loss {loss_pct:.2}%", rtts.len());
    for (key, label, p) in [("rtt_p50", "p50", 50.0), ("rtt_p99", "p99", 99.0), ("rtt_max", "max", 100.0)] {
        let note = if key == "rtt_p50" { loss.clone() } else { String::new() };
        sink.record(
            key,
            &format!("round trip via relay {label} ({what})"),
            us(load::percentile(&rtts, p)),
            "us",
            Better::Lower,
            note,
        )?;
    }
    let added = |p: f64| match (load::percentile(&rtts, p), load::percentile(&base_rtts, p)) {
        (Some(a), Some(b)) => Some((a as f64 - b as f64) / 1000.0),
        _ => None,
    };
    sink.record(
        "rtt_added_p50",
        "round trip added by the relay, p50 (via relay minus direct)",
        added(50.0),
        "us",
        Better::Lower,
        "",
    )?;
    sink.record(
        "rtt_direct_p50",
        "generator baseline: round trip straight to the peer, p50",
        us(load::percentile(&base_rtts, 50.0)),
        "us",
        Better::Neither,
        "",
    )?;
    Ok(())
}

/// Datagrams per second that reached the peer.
fn delivered(o: &Outcome) -> f64 {
    o.peer_received as f64 / o.send_elapsed.as_secs_f64().max(1e-9)
}

struct Found {
    best: Option<f64>,
    first_fail: f64,
    probes: usize,
    generator_bound: bool,
}

/// Doubles the rate from `start_rate` until loss reaches 1% (or the generator cannot keep up),
/// then bisects between the last good and first bad rate. At most 7 + 5 + `bisect` probes.
fn saturate(run: &mut impl FnMut(f64) -> anyhow::Result<Outcome>, args: &RelayArgs) -> anyhow::Result<Found> {
    let mut probes = 0;
    let mut best: Option<f64> = None;
    let mut good = 0.0;
    let mut bad = None;
    let mut rate = args.start_rate;
    let mut generator_bound = false;
    for _ in 0..7 {
        let o = run(rate)?;
        probes += 1;
        if o.peer_received == 0 {
            bail!("nothing reached the peer at {rate:.0}/s: the relay relays nothing");
        }
        if o.loss(PeerRole::Count) >= MAX_LOSS {
            bad = Some(rate);
            break;
        }
        best = Some(best.unwrap_or(0.0).max(delivered(&o)));
        good = rate;
        if o.offered_rate() < MIN_OFFERED * rate {
            generator_bound = true;
            break;
        }
        if rate >= args.max_rate {
            break;
        }
        rate = (rate * 2.0).min(args.max_rate);
    }
    let first_fail = bad.unwrap_or(rate);
    if best.is_none() {
        // The first rate already lost too much: halve until one holds.
        for _ in 0..5 {
            rate /= 2.0;
            let o = run(rate)?;
            probes += 1;
            if o.loss(PeerRole::Count) < MAX_LOSS {
                best = Some(delivered(&o));
                good = rate;
                break;
            }
            bad = Some(rate);
        }
    }
    if let (Some(mut hi), false) = (bad, generator_bound) {
        if best.is_some() {
            for _ in 0..args.bisect {
                let mid = (good + hi) / 2.0;
                let o = run(mid)?;
                probes += 1;
                if o.loss(PeerRole::Count) < MAX_LOSS && o.offered_rate() >= MIN_OFFERED * mid {
                    best = Some(best.unwrap_or(0.0).max(delivered(&o)));
                    good = mid;
                } else {
                    hi = mid;
                }
            }
        }
    }
    Ok(Found { best, first_fail, probes, generator_bound })
}
