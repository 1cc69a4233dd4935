//! Throwaway network namespaces for the offload tests: each test builds its own, so tests run
//! in parallel and never touch the host's interfaces.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Deleted (with every interface in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// None (after saying why) where namespaces cannot be made: not root, no `ip`.
    pub fn new(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: offload tests need root (network namespaces, BPF)");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tsb-{}-{tag}-{n}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!("skipped: ip netns add: {}", String::from_utf8_lossy(&out.stderr));
                return None;
            }
            Err(e) => {
                eprintln!("skipped: running ip: {e}");
                return None;
            }
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
        Some(ns)
    }

    /// `ip -n <ns> ARGS`; panics with its stderr on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// ARGS run inside the namespace (`ip netns exec`); panics on failure; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it opens and the BPF
    /// program it attaches live there, and may be used from any thread afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on this thread only, with a namespace fd that stays open.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// A UDP counter (e.g. "InCsumErrors") from /proc/net/snmp (IPv4) and snmp6 (IPv6), summed.
    pub fn udp_counter(&self, name: &str) -> u64 {
        let snmp = self.exec(&["cat", "/proc/net/snmp"]);
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
        let (head, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let v4 = head
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(h, _)| *h == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no Udp {name} in /proc/net/snmp"));
        let snmp6 = self.exec(&["cat", "/proc/net/snmp6"]);
        let key = format!("Udp6{name}");
        let v6 = snmp6
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key.as_str())).then(|| it.next()).flatten()
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/net/snmp6"));
        v4 + v6
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd} {args:?}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a command exists (ethtool, bpftool are optional packages).
pub fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok()
}
