//! `turn-bench`: the load generator behind `bench/run.sh`, which starts coturn and turn-server
//! with the same settings and runs each subcommand against one then the other. Each subcommand
//! appends JSON-line records to `--out`; `table` turns them into the side-by-side comparison.
//! Everything stays on 127.0.0.1 unless told other local addresses and network namespaces
//! (`--client-ip`, `--peer-ip`, `--client-netns`, `--peer-netns`: bench/run.sh's veth topology),
//! and every loop is bounded in count and time.

mod churn;
mod client;
mod cpu;
mod load;
mod net;
mod procfs;
mod report;
mod steps;
mod uclient;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "turn-bench", about = "Measures a TURN server the same way as another, for side-by-side ratios")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every measuring subcommand needs: the server, its process, the secret, where results go.
#[derive(Args, Clone)]
pub struct Common {
    /// Name of the server in the table (e.g. coturn, turn-server).
    #[arg(long)]
    pub label: String,
    /// The relay's UDP listening address.
    #[arg(long, default_value = "127.0.0.1:34780")]
    pub server: SocketAddr,
    /// The relay's process id, for /proc readings.
    #[arg(long)]
    pub pid: u32,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What every measurement needs whichever servers it drives.
#[derive(Args, Clone)]
pub struct RunArgs {
    /// The REST secret (`--static-auth-secret`) every server runs with.
    #[arg(long)]
    pub secret: String,
    /// JSON-lines file the records are appended to.
    #[arg(long)]
    pub out: PathBuf,
    /// Allocations in flight at once while opening them.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub net: net::NetArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Waits until a STUN Binding request on `--server` is answered.
    Ready {
        #[arg(long, default_value = "127.0.0.1:34780")]
        server: SocketAddr,
        #[arg(long, default_value = "10s", value_parser = parse_secs)]
        timeout: Duration,
    },
    /// VmRSS idle and with N allocations held; allocations completed per second while opening them.
    Memory {
        #[command(flatten)]
        common: Common,
        /// Cumulative allocation counts at which VmRSS is read.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        counts: Vec<usize>,
    },
    /// Saturation search and round-trip latency.
    Relay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        relay: steps::RelayArgs,
    },
    /// CPU per million relayed datagrams of several servers running at once, measured in turn,
    /// round after round.
    Cpu {
        #[command(flatten)]
        args: cpu::CpuArgs,
    },
    /// coturn's turnutils_uclient against the server, through a running turnutils_peer.
    Uclient {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: uclient::UclientArgs,
    },
    /// The soak's UDP churn (bench/soak.sh): rounds of allocations opened, used at a moderate
    /// rate and deleted, until `--seconds` have passed.
    Churn {
        #[command(flatten)]
        args: churn::ChurnArgs,
    },
    /// Prints the table of the records in FILE, servers as columns in the order given.
    Table {
        file: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "coturn,turn-server")]
        servers: Vec<String>,
    },
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim_end_matches('s');
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a duration in seconds: {s}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ready { server, timeout } => steps::wait_ready(server, timeout),
        Command::Memory { common, counts } => steps::memory(&common, &counts),
        Command::Relay { common, relay } => steps::relay(&common, &relay),
        Command::Cpu { args } => cpu::run(&args),
        Command::Uclient { common, args } => uclient::run(&common, &args),
        Command::Churn { args } => churn::run(&args),
        Command::Table { file, servers } => {
            print!("{}", report::table(&file, &servers).context("cannot build the table")?);
            Ok(())
        }
    }
}
