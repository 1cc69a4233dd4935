//! What the kernel says a server process used: CPU time and resident memory. CPU time, unlike
//! wall-clock throughput, does not drop when another engineer's compiler takes the core, which
//! is why the comparison leans on it.

use std::time::Duration;

use anyhow::{anyhow, Context};

/// utime and stime of the whole process (all threads), from `/proc/<pid>/stat`, apart: the
/// kernel's share is most of a relay's time.
pub fn cpu_times(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}: did the server exit?"))?;
    // The command name in field 2 may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("{path}: no ')' in {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| anyhow!("{path}: field {} unreadable", i + 3))
    };
    let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec() as f64);
    Ok((secs(field(11)?), secs(field(12)?)))
}

/// Context switches of every thread of the process, voluntary and not, summed over
/// `/proc/<pid>/task/*/status`: a relay that sleeps once per datagram pays a wake-up each time,
/// which at a fixed rate is most of what separates it from one that batches. Threads that ended
/// meanwhile are not counted, which is why it is read on a steady load.
pub fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}: did the server exit?"))? {
        let Ok(status) = task.and_then(|t| std::fs::read_to_string(t.path().join("status"))) else { continue };
        for line in status.lines() {
            let count = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"));
            total += count.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// VmRSS of the process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}: did the server exit?"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{path}: no VmRSS line"))
}

/// Number of threads, for the notes (coturn runs several, turn-server one worker).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// Time the process's eBPF programs have run, summed over the programs it holds (each counted
/// once, however many descriptors name it), from `run_time_ns` in `/proc/<pid>/fdinfo/*`. The
/// kernel keeps that figure only while `kernel.bpf_stats_enabled` is 1 (bench/run.sh turns it on
/// as root); otherwise, and for a server with no program, it is zero. This is the softirq time
/// the kernel fast path spends relaying, which no process is charged for.
pub fn bpf_run_time(pid: u32) -> Duration {
    bpf_stats(pid).0
}

/// [`bpf_run_time`] and the number of runs (`run_cnt`, every packet the programs looked at,
/// relayed or passed on), over the same programs.
pub fn bpf_stats(pid: u32) -> (Duration, u64) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (Duration::ZERO, 0) };
    let mut seen = std::collections::HashSet::new();
    let (mut total, mut runs) = (0u64, 0u64);
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(id), Some(ns)) = (field("prog_id:"), field("run_time_ns:")) {
            if seen.insert(id) {
                total += ns;
                runs += field("run_cnt:").unwrap_or(0);
            }
        }
    }
    (Duration::from_nanos(total), runs)
}

/// Time every CPU spent serving softirqs (the kernel's packet processing), from `/proc/stat`.
pub fn softirq_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu ")).ok_or_else(|| anyhow!("/proc/stat: no cpu line"))?;
    // cpu user nice system idle iowait irq softirq ...
    let ticks: u64 = cpu
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("/proc/stat: no softirq field in {cpu:?}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec() as f64))
}
