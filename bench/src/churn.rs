//! The soak's UDP churn (`bench/soak.sh`): rounds of allocations that open, carry a moderate echo
//! load and are deleted, for as long as asked. The REST secret is read from a file at every
//! round, so the soak can rotate it under a running churn the way a signaling service starts
//! signing with a new secret once the relays accept it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::client::{self, Allocation};
use crate::load::{self, PeerRole, Spec};
use crate::steps;

#[derive(Args, Clone)]
pub struct ChurnArgs {
    /// The relay's UDP listening address.
    #[arg(long)]
    pub server: std::net::SocketAddr,
    /// File holding the REST secret to sign with (its first line), read again at every round.
    #[arg(long)]
    pub secret_file: PathBuf,
    /// Stop starting rounds after this many seconds.
    #[arg(long)]
    pub seconds: u64,
    /// Upper bound on rounds, whatever the time.
    #[arg(long, default_value_t = 100_000)]
    pub max_rounds: u64,
    /// Allocations opened, used and deleted per round.
    #[arg(long, default_value_t = 20)]
    pub allocations: usize,
    /// Datagrams per second from all of a round's clients together; the peer echoes each.
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// How long each round's traffic lasts, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub traffic_secs: f64,
    /// Datagram payload in bytes (a voice frame's size).
    #[arg(long, default_value_t = 160)]
    pub payload: usize,
    #[command(flatten)]
    pub net: crate::net::NetArgs,
}

/// Allocations that may fail to open or delete in a round before the round counts as failed: a
/// shared two-core machine stalls a retransmission now and then, a leak or a refused credential
/// fails every allocation.
const TOLERATED_FAILURES_PERCENT: usize = 10;

/// Give up opening a round's allocations after this long.
const OPEN_DEADLINE: Duration = Duration::from_secs(20);

pub fn run(args: &ChurnArgs) -> anyhow::Result<()> {
    let peer = steps::peer_socket(&args.net)?;
    let start = Instant::now();
    let mut failed_rounds = 0u64;
    let mut round = 0u64;
    while round < args.max_rounds && start.elapsed() < Duration::from_secs(args.seconds) {
        let secret = std::fs::read_to_string(&args.secret_file)
            .with_context(|| format!("read {}", args.secret_file.display()))?;
        let secret = secret.lines().next().unwrap_or_default().trim().to_owned();
        let target = steps::target_at(args.server, &secret, &peer, &args.net)?;
        let outcome = one_round(&target, &peer, args, round);
        let elapsed = start.elapsed().as_secs();
        match outcome {
            Ok(line) => println!("[{elapsed}s] round {round}: {line}"),
            Err(e) => {
                failed_rounds += 1;
                println!("[{elapsed}s] round {round} FAILED: {e:#}");
                // A relay that refuses everything answers at once: no busy loop against it.
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        round += 1;
    }
    println!("churn against {}: {round} rounds, {failed_rounds} failed", args.server);
    if round == 0 || failed_rounds * 100 > round * TOLERATED_FAILURES_PERCENT as u64 {
        bail!("{failed_rounds} of {round} churn rounds failed against {}", args.server);
    }
    Ok(())
}

fn one_round(
    target: &client::Target,
    peer: &std::net::UdpSocket,
    args: &ChurnArgs,
    round: u64,
) -> anyhow::Result<String> {
    let n = args.allocations;
    let offset = (round as usize).wrapping_mul(n) % 1_000_000;
    let report = client::open_many(target, n, offset, 4, Instant::now() + OPEN_DEADLINE);
    let opened = report.allocations.len();
    let allocs: Vec<Allocation> = report.allocations;
    let traffic = if allocs.is_empty() {
        None
    } else {
        let sockets: Vec<&std::net::UdpSocket> = allocs.iter().map(|a| &a.socket).collect();
        let spec = Spec {
            rate: args.rate,
            duration: Duration::from_secs_f64(args.traffic_secs),
            payload: args.payload.max(load::MIN_PAYLOAD),
            peer: PeerRole::Echo,
            burst: 1,
            gso: false,
        };
        Some(load::run(&sockets, &[], peer, spec)?)
    };
    let mut delete_failures = 0;
    let mut first_delete_error = None;
    for a in allocs {
        if let Err(e) = a.delete() {
            delete_failures += 1;
            first_delete_error.get_or_insert(format!("{e:#}"));
        }
    }
    let (sent, echoed) = traffic.as_ref().map_or((0, 0), |o| (o.sent, o.clients_received));
    let line = format!("opened {opened}/{n}, sent {sent}, echoed {echoed}, deleted {}", opened - delete_failures);
    let tolerated = n * TOLERATED_FAILURES_PERCENT / 100;
    if n - opened > tolerated || delete_failures > tolerated || (sent > 0 && echoed * 2 < sent) {
        bail!(
            "{line}; first open error: {}; first delete error: {}",
            report.first_error.as_deref().unwrap_or("none"),
            first_delete_error.as_deref().unwrap_or("none")
        );
    }
    Ok(line)
}
