//! coturn's own load client, `turnutils_uclient`, as a neutral third party: neither server's
//! authors wrote the generator it measures with. Its summary lines are parsed (coturn 4.6 format).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use crate::report::{Better, Sink};
use crate::Common;

/// Runs of uclient before the step fails.
const UCLIENT_ATTEMPTS: usize = 3;

#[derive(Args, Clone)]
pub struct UclientArgs {
    /// Port of the turnutils_peer echo peer on 127.0.0.1.
    #[arg(long, default_value_t = 34790)]
    pub peer_port: u16,
    /// Clients (-m).
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
    /// Messages per client (-n).
    #[arg(long, default_value_t = 2000)]
    pub messages: u32,
    /// Message length (-l).
    #[arg(long, default_value_t = 120)]
    pub length: u32,
    /// Interval between one client's messages in ms (-z).
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u32,
    /// Upper bound on the run.
    #[arg(long, default_value_t = 90)]
    pub timeout_secs: u64,
}

#[derive(Debug, Default)]
struct Summary {
    sent: Option<f64>,
    received: Option<f64>,
    lost: Option<f64>,
    lost_pct: Option<f64>,
    transmit_secs: Option<f64>,
    rtt_avg_ms: Option<f64>,
    rtt_max_ms: Option<f64>,
    jitter_ms: Option<f64>,
}

/// The number right after `marker` in `line`.
fn number_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let num: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    num.parse().ok()
}

fn parse(out: &str) -> Summary {
    let mut s = Summary::default();
    for line in out.lines() {
        if line.contains("start_mclient: tot_send_msgs=") {
            s.sent = number_after(line, "tot_send_msgs=");
            s.received = number_after(line, "tot_recv_msgs=");
        } else if line.contains("Total lost packets") {
            s.lost = number_after(line, "Total lost packets");
            s.lost_pct = number_after(line, "(");
        } else if line.contains("Total transmit time is") {
            s.transmit_secs = number_after(line, "Total transmit time is");
        } else if line.contains("Average round trip delay") {
            s.rtt_avg_ms = number_after(line, "Average round trip delay");
            s.rtt_max_ms = number_after(line, "max =");
        } else if line.contains("Average jitter") {
            s.jitter_ms = number_after(line, "Average jitter");
        }
    }
    s
}

pub fn run(common: &Common, a: &UclientArgs) -> anyhow::Result<()> {
    let mut sink = Sink::open(&common.run.out, &common.label)?;
    let args: Vec<String> = [
        "-W",
        &common.run.secret,
        "-u",
        "uclient",
        "-c",
        "-m",
        &a.clients.to_string(),
        "-n",
        &a.messages.to_string(),
        "-l",
        &a.length.to_string(),
        "-z",
        &a.interval_ms.to_string(),
        "-e",
        "127.0.0.1",
        "-r",
        &a.peer_port.to_string(),
        "-p",
        &common.server.port().to_string(),
        &common.server.ip().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut failed_runs = Vec::new();
    let (output, wall, s, sent) = loop {
        // coreutils timeout bounds the run even if uclient waits forever for lost echoes.
        let started = Instant::now();
        let output = Command::new("timeout")
            .arg(format!("{}", a.timeout_secs))
            .arg("turnutils_uclient")
            .args(&args)
            .output()
            .context("cannot run turnutils_uclient (Debian package coturn)")?;
        let wall = started.elapsed();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let s = parse(&text);
        if let Some(sent) = s.sent {
            break (output, wall, s, sent);
        }
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        let why = format!("{}, {wall:.1?}: {}", output.status, tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        eprintln!("[{}] turnutils_uclient printed no summary ({why})", common.label);
        failed_runs.push(why);
        // uclient exits at the first error answer, and picks its channel numbers at random, so a
        // rare answer (a 400 to one ChannelBind among a hundred) would otherwise end the step.
        if failed_runs.len() == UCLIENT_ATTEMPTS {
            bail!(
                "turnutils_uclient {} printed no summary in {UCLIENT_ATTEMPTS} runs: {failed_runs:?}",
                args.join(" ")
            );
        }
    };
    let retried = if failed_runs.is_empty() {
        String::new()
    } else {
        format!("; {} earlier run(s) ended early: {}", failed_runs.len(), failed_runs.join("; "))
    };
    let what = format!("-m {} -n {} -l {} -z {}", a.clients, a.messages, a.length, a.interval_ms);
    let rate = match (s.received, s.transmit_secs) {
        (Some(r), Some(t)) if t > 0.0 => Some(r / t),
        _ => None,
    };
    let status = if output.status.success() { String::new() } else { format!("exit {}; ", output.status) };
    sink.record(
        "uclient_lost",
        &format!("turnutils_uclient lost packets % ({what})"),
        s.lost_pct,
        "%",
        Better::Lower,
        format!(
            "{status}sent {sent:.0}, received {}, lost {}",
            s.received.map_or("?".into(), |v| format!("{v:.0}")),
            s.lost.map_or("?".into(), |v| format!("{v:.0}"))
        ) + &retried,
    )?;
    sink.record(
        "uclient_rate",
        "turnutils_uclient echoed messages/s (received / its transmit time, whole seconds)",
        rate,
        "msg/s",
        Better::Higher,
        format!("transmit time {}s, wall {:.1}s", s.transmit_secs.unwrap_or(0.0), wall.as_secs_f64()),
    )?;
    sink.record(
        "uclient_rtt",
        "turnutils_uclient average round trip",
        s.rtt_avg_ms,
        "ms",
        Better::Lower,
        match s.rtt_max_ms {
            Some(m) => format!("max {m} ms"),
            None => String::new(),
        },
    )?;
    sink.record("uclient_jitter", "turnutils_uclient average jitter", s.jitter_ms, "ms", Better::Lower, "")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_coturn_4_6_summary() {
        let out = "6: : start_mclient: tot_send_msgs=2000, tot_recv_msgs=1990\n\
                   6: : Total transmit time is 6\n\
                   6: : Total lost packets 10 (0.500000%), total send dropped 0 (0.000000%)\n\
                   6: : Average round trip delay 0.046000 ms; min = 0 ms, max = 7 ms\n\
                   6: : Average jitter 1.971500 ms; min = 0 ms, max = 21 ms\n";
        let s = parse(out);
        assert_eq!(s.sent, Some(2000.0));
        assert_eq!(s.received, Some(1990.0));
        assert_eq!(s.lost, Some(10.0));
        assert_eq!(s.lost_pct, Some(0.5));
        assert_eq!(s.transmit_secs, Some(6.0));
        assert_eq!(s.rtt_avg_ms, Some(0.046));
        assert_eq!(s.rtt_max_ms, Some(7.0));
        assert_eq!(s.jitter_ms, Some(1.9715));
    }
}
