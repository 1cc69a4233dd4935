//! CPU per relayed datagram, servers side by side. Every server under test runs at once (each
//! idle while another is measured) and the generator drives one after the other, round after
//! round. A single run's figure moves by a quarter on this shared machine; interleaving puts a
//! neighbour's burst on adjacent measurements of both servers alike, and the median of many
//! rounds, or of the per-round ratios, holds where one pair does not.

use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::client::Held;
use crate::load::{self, PeerRole, Spec};
use crate::net;
use crate::procfs;
use crate::report::{Better, Sink};
use crate::steps;
use crate::RunArgs;

/// A running server to measure: `LABEL:PID:ADDRESS`, e.g. `coturn:4242:127.0.0.1:34780`.
#[derive(Debug, Clone)]
pub struct UnderTest {
    pub label: String,
    pub pid: u32,
    pub server: SocketAddr,
}

impl FromStr for UnderTest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(label), Some(pid), Some(server)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("expected LABEL:PID:ADDRESS, got {s:?}"));
        };
        let pid = pid.parse().map_err(|_| format!("not a process id: {pid:?}"))?;
        let server = server.parse().map_err(|_| format!("not an address: {server:?}"))?;
        Ok(UnderTest { label: label.to_owned(), pid, server })
    }
}

/// The Prometheus endpoint of a server under test: `LABEL=ADDRESS`, e.g.
/// `turn-server=127.0.0.1:34800`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub label: String,
    pub addr: SocketAddr,
}

impl FromStr for Metrics {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (label, addr) = s.split_once('=').ok_or_else(|| format!("expected LABEL=ADDRESS, got {s:?}"))?;
        let addr = addr.parse().map_err(|_| format!("not an address: {addr:?}"))?;
        Ok(Metrics { label: label.to_owned(), addr })
    }
}

/// turn-server's counters: every datagram relayed, and those of them the kernel fast path relayed.
const RELAYED: &str = "turn_relayed_packets_total";
const OFFLOADED: &str = "turn_offloaded_packets_total";
/// Below this share of offloaded datagrams, a server holding an eBPF program is said to have
/// fallen back to userspace.
const OFFLOADED_ENOUGH: f64 = 0.99;

#[derive(Args, Clone)]
pub struct CpuArgs {
    /// A server to measure, as LABEL:PID:ADDRESS, all running at once; once per server, the
    /// baseline (whose figure the others are divided by) first.
    #[arg(long = "under-test", required = true)]
    pub servers: Vec<UnderTest>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Rounds; each measures every server once under each load shape.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
    /// Datagrams per second from the clients (and from the peer, when it sends on its own).
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Length of one measurement, seconds.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 50)]
    pub allocations: usize,
    /// Datagrams per sendmmsg from one client socket.
    #[arg(long, default_value_t = 8)]
    pub burst: usize,
    /// Send each burst as one UDP GSO message (see `relay --gso`).
    #[arg(long)]
    pub gso: bool,
    /// Names a second configuration (e.g. `netns`: the relay reached over veth): its rows get
    /// their own keys (`netns_charged_cpu_per_million`) and the name in their description.
    #[arg(long)]
    pub variant: Option<String>,
    /// A server's Prometheus endpoint, LABEL=ADDRESS (turn-server with `--prometheus`): read
    /// before and after the step, to say what share of the datagrams the kernel fast path relayed.
    #[arg(long = "metrics")]
    pub metrics: Vec<Metrics>,
}

/// The load shapes, each with the prefix of its record keys. The echo is the classic shape (and
/// coturn's own test client's); the talking peer is a call's, where both ends send on their own
/// clocks and the server cannot serve a datagram's echo in the wake-up that sent the datagram.
const SHAPES: [(PeerRole, &str); 2] = [(PeerRole::Echo, ""), (PeerRole::Talk, "talk_")];

fn describe(role: PeerRole, rate: f64) -> String {
    match role {
        PeerRole::Talk => format!("both ends sending {rate:.0}/s each"),
        _ => format!("echo at {rate:.0}/s"),
    }
}

/// A server with its own peer socket and allocations.
struct Subject {
    under: UnderTest,
    peer: UdpSocket,
    held: Held,
}

impl Subject {
    fn open(under: &UnderTest, args: &CpuArgs) -> anyhow::Result<Self> {
        let peer = steps::peer_socket(&args.run.net)?;
        let target = steps::target_at(under.server, &args.run.secret, &peer, &args.run.net)?;
        let allocs = steps::open(&target, args.allocations, 0, args.run.concurrency)
            .with_context(|| format!("{}: opening allocations", under.label))?
            .allocations;
        Ok(Subject { under: under.clone(), peer, held: Held::new(allocs) })
    }

    fn measure(&self, role: PeerRole, args: &CpuArgs) -> anyhow::Result<Reading> {
        let sockets: Vec<&UdpSocket> = self.held.allocations.iter().map(|a| &a.socket).collect();
        let relayed: Vec<SocketAddr> = self.held.allocations.iter().map(|a| a.relayed).collect();
        let spec = Spec {
            rate: args.rate,
            duration: Duration::from_secs_f64(args.seconds),
            payload: 120,
            peer: role,
            burst: args.burst,
            gso: args.gso,
        };
        let pid = self.under.pid;
        let (user0, system0) = procfs::cpu_times(pid)?;
        let switches0 = procfs::context_switches(pid)?;
        let ((bpf0, runs0), softirq0) = (procfs::bpf_stats(pid), procfs::softirq_time()?);
        let o = load::run(&sockets, &relayed, &self.peer, spec)?;
        let (user, system) = procfs::cpu_times(pid)?;
        let switches = procfs::context_switches(pid)?.saturating_sub(switches0);
        let (bpf, runs) = procfs::bpf_stats(pid);
        let (bpf, program_runs) = (bpf.saturating_sub(bpf0).as_secs_f64(), runs.saturating_sub(runs0));
        let softirq = procfs::softirq_time()?.saturating_sub(softirq0).as_secs_f64();
        if o.relayed() == 0 {
            bail!("{}: nothing was relayed ({}): the server is broken", self.under.label, describe(role, args.rate));
        }
        let (user, system) = (user.saturating_sub(user0).as_secs_f64(), system.saturating_sub(system0).as_secs_f64());
        let millions = o.relayed() as f64 / 1e6;
        Ok(Reading {
            cpu_per_million: (user + system) / millions,
            charged_per_million: (user + system + bpf) / millions,
            softirq_per_million: softirq / millions,
            system_share: if user + system > 0.0 { system / (user + system) } else { 0.0 },
            switches_per_thousand: switches as f64 / (millions * 1e3),
            loss: o.loss(role),
            program_runs,
        })
    }
}

/// One measurement of one server under one load shape.
#[derive(Debug, Clone, Copy)]
struct Reading {
    cpu_per_million: f64,
    /// The process's CPU plus the run time of its eBPF programs (the kernel fast path works in
    /// softirq context, charged to no process).
    charged_per_million: f64,
    /// Softirq time of the whole machine: the kernel's packet work on every side of the relay
    /// (generator, peer and server), wherever it ran.
    softirq_per_million: f64,
    system_share: f64,
    switches_per_thousand: f64,
    loss: f64,
    /// Packets its eBPF programs looked at (relayed or passed to the process).
    program_runs: u64,
}

pub fn run(args: &CpuArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    for m in &args.metrics {
        anyhow::ensure!(
            args.servers.iter().any(|s| s.label == m.label),
            "--metrics {}: no --under-test with that label",
            m.label
        );
    }
    let mut subjects = args.servers.iter().map(|s| Subject::open(s, args)).collect::<anyhow::Result<Vec<_>>>()?;
    let endpoint = |label: &str| args.metrics.iter().find(|m| m.label == label).map(|m| m.addr);
    let counters = |label: &str| -> anyhow::Result<Option<Vec<f64>>> {
        endpoint(label)
            .map(|addr| net::scrape(addr, &[RELAYED, OFFLOADED]).with_context(|| format!("{label}: metrics")))
            .transpose()
    };
    let before = subjects.iter().map(|s| counters(&s.under.label)).collect::<anyhow::Result<Vec<_>>>()?;
    // readings[server][shape][round]
    let mut readings = vec![vec![Vec::with_capacity(args.rounds); SHAPES.len()]; subjects.len()];
    for round in 1..=args.rounds {
        for (subject, theirs) in subjects.iter_mut().zip(readings.iter_mut()) {
            subject.held.keep_fresh().with_context(|| subject.under.label.clone())?;
            for ((role, _), shape) in SHAPES.iter().zip(theirs.iter_mut()) {
                let r = subject.measure(*role, args)?;
                eprintln!(
                    "[{}] round {round}/{}, {}: {:.3} CPU s per million, {:.1} switches per thousand, loss {:.2}%",
                    subject.under.label,
                    args.rounds,
                    describe(*role, args.rate),
                    r.cpu_per_million,
                    r.switches_per_thousand,
                    r.loss * 100.0
                );
                shape.push(r);
            }
        }
    }
    let (prefix, variant) = match &args.variant {
        Some(v) => (format!("{v}_"), format!(", {v}")),
        None => (String::new(), String::new()),
    };
    for (i, subject) in subjects.iter().enumerate() {
        let mut sink = Sink::open(&args.run.out, &subject.under.label)?;
        let runs: u64 = readings[i].iter().flatten().map(|r| r.program_runs).sum();
        // What share of the datagrams the kernel fast path relayed over the step, from the
        // server's own counters: the CPU rows of a server that fell back to userspace say so.
        let offloaded = match (&before[i], counters(&subject.under.label)?) {
            (Some(b), Some(a)) => {
                let (relayed, offloaded) = (a[0] - b[0], a[1] - b[1]);
                let share = if relayed > 0.0 { offloaded / relayed } else { 0.0 };
                let mut note = format!(
                    "{OFFLOADED} / {RELAYED} over the step: {offloaded:.0} of {relayed:.0}; its eBPF programs ran {runs} times"
                );
                if runs > 0 && share < OFFLOADED_ENOUGH {
                    note.push_str("; FELL BACK TO USERSPACE for the rest: its CPU rows here are not the fast path's");
                    eprintln!(
                        "[{}] WARNING: the kernel fast path relayed only {:.1}%",
                        subject.under.label,
                        share * 100.0
                    );
                }
                sink.record(
                    &format!("{prefix}offloaded_share"),
                    &format!("share of relayed datagrams the kernel fast path relayed (CPU step{variant})"),
                    Some(share * 100.0),
                    "%",
                    Better::Neither,
                    note,
                )?;
                Some(share)
            }
            _ => None,
        };
        for (j, (role, key)) in SHAPES.iter().enumerate() {
            let mine = &readings[i][j];
            let baseline = (i > 0).then(|| (&subjects[0].under.label, &readings[0][j]));
            let what = format!("{}, 120 B, {} allocations{variant}", describe(*role, args.rate), args.allocations);
            let cpu: Vec<f64> = mine.iter().map(|r| r.cpu_per_million).collect();
            let mut note = format!(
                "median of {} interleaved rounds of {:.0} s, range {}; system time {:.0}% (median); loss at most {:.2}%",
                mine.len(),
                args.seconds,
                range(&cpu),
                median(mine.iter().map(|r| r.system_share)) * 100.0,
                mine.iter().map(|r| r.loss).fold(0.0, f64::max) * 100.0
            );
            if let Some((label, theirs)) = baseline {
                let ratios: Vec<f64> = mine
                    .iter()
                    .zip(theirs.iter())
                    .filter(|(_, b)| b.cpu_per_million > 0.0)
                    .map(|(a, b)| a.cpu_per_million / b.cpu_per_million)
                    .collect();
                note.push_str(&format!(
                    "; per-round ratio to {label}: median {:.2}, range {}",
                    median(ratios.iter().copied()),
                    range(&ratios)
                ));
            }
            sink.record(
                &format!("{prefix}{key}cpu_per_million"),
                &format!("server CPU s per million relayed datagrams ({what})"),
                Some(median(cpu.iter().copied())),
                "CPU s",
                Better::Lower,
                note,
            )?;
            let charged: Vec<f64> = mine.iter().map(|r| r.charged_per_million).collect();
            let mut note = format!(
                "process CPU plus run_time_ns of the eBPF programs it holds (kernel.bpf_stats_enabled); median, range {}",
                range(&charged)
            );
            match offloaded {
                Some(share) if runs > 0 && share < OFFLOADED_ENOUGH => note.push_str(&format!(
                    "; NOT the fast path: it relayed only {:.1}% of the step's datagrams, the rest went through userspace",
                    share * 100.0
                )),
                Some(share) => note.push_str(&format!("; kernel fast path relayed {:.1}% of the step's datagrams", share * 100.0)),
                None => {}
            }
            sink.record(
                &format!("{prefix}{key}charged_cpu_per_million"),
                &format!("server CPU s per million, its eBPF program's run time included ({what})"),
                Some(median(charged.iter().copied())),
                "CPU s",
                Better::Lower,
                note,
            )?;
            let softirq: Vec<f64> = mine.iter().map(|r| r.softirq_per_million).collect();
            sink.record(
                &format!("{prefix}{key}softirq_per_million"),
                &format!("machine softirq s per million relayed datagrams ({what})"),
                Some(median(softirq.iter().copied())),
                "CPU s",
                Better::Lower,
                format!(
                    "/proc/stat softirq ticks, all CPUs, generator and peer included; median, range {}",
                    range(&softirq)
                ),
            )?;
            let switches: Vec<f64> = mine.iter().map(|r| r.switches_per_thousand).collect();
            sink.record(
                &format!("{prefix}{key}switches_per_thousand"),
                &format!("server context switches per thousand relayed datagrams ({what})"),
                Some(median(switches.iter().copied())),
                "switches",
                Better::Lower,
                format!("median, range {}", range(&switches)),
            )?;
        }
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn range(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}-{hi:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn a_server_under_test_reads_label_pid_and_address() {
        let u: UnderTest = "coturn:4242:127.0.0.1:34780".parse().expect("valid");
        assert_eq!((u.label.as_str(), u.pid, u.server.port()), ("coturn", 4242, 34780));
        assert!("coturn:x:127.0.0.1:1".parse::<UnderTest>().is_err());
        assert!("coturn:1".parse::<UnderTest>().is_err());
        let m: Metrics = "turn-server=127.0.0.1:34800".parse().expect("valid");
        assert_eq!((m.label.as_str(), m.addr.port()), ("turn-server", 34800));
        assert!("turn-server:127.0.0.1:1".parse::<Metrics>().is_err());
    }
}
