//! Network namespaces made by a test, for NAT topologies: created with iproute2, deleted on drop
//! (also when the test fails), named `e2e-<pid>-<n>-<role>` so that parallel tests and leftovers
//! of a killed run never collide. Namespaces left behind by test processes that no longer exist
//! are deleted when the next one is created.
//!
//! Sockets belong to the namespace they were created in, whatever thread uses them later: the
//! tests create them on a short-lived thread that has joined the namespace ([`NetNs::run`]) and
//! then use them from anywhere. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); without it the
//! test fails and says so.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process;

static SEQ: AtomicUsize = AtomicUsize::new(0);

const PREFIX: &str = "e2e-";

/// Runs `ip args...` (bounded to 10 s) and panics with its stderr if it fails.
pub fn ip(args: &[&str]) {
    run_checked("ip", args);
}

/// Runs `program args...` (bounded to 10 s) and panics with its stderr if it fails.
pub fn run_checked(program: &str, args: &[&str]) -> String {
    let run = run_tool(program, args);
    assert!(
        run.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        run.describe_status(),
        run.stderr.trim(),
        if uid() != 0 { " (network namespaces need root: run the tests as root, as CI does)" } else { "" }
    );
    run.stdout
}

static RUN_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs `program args...` bounded to 10 s, its output captured in files that are removed after.
fn run_tool(program: &str, args: &[&str]) -> process::Finished {
    let path = which(program);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let dir = std::env::temp_dir();
    let name = format!("e2e-netns-{}-{}", std::process::id(), RUN_SEQ.fetch_add(1, Ordering::Relaxed));
    let run = process::run(&name, &path, &args, &dir, SETUP_TIMEOUT);
    let _ = std::fs::remove_file(dir.join(format!("{name}.stdout")));
    let _ = std::fs::remove_file(dir.join(format!("{name}.stderr")));
    run
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

fn which(program: &str) -> PathBuf {
    let package = match program {
        "ip" => "iproute2",
        "iptables" => "iptables",
        other => other,
    };
    crate::require_program(program, package)
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `e2e-<pid>-<n>-<role>`, failing the test with a clear message when not permitted.
    pub fn create(group: &str, role: &str) -> Self {
        let name = format!("{group}-{role}");
        let run = run_tool("ip", &["netns", "add", &name]);
        assert!(
            run.success(),
            "`ip netns add {name}` failed ({}): {}\nThis test builds a NAT out of network namespaces and needs \
             root (CAP_SYS_ADMIN, CAP_NET_ADMIN) in a sandbox that allows `ip netns add`; uid is {}. Run the \
             tests as root (CI does).",
            run.describe_status(),
            run.stderr.trim(),
            uid()
        );
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `ip netns exec <ns> program args...`, checked.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let path = which(program).display().to_string();
        let mut all = vec!["netns", "exec", self.name.as_str(), path.as_str()];
        all.extend_from_slice(args);
        run_checked("ip", &all)
    }

    /// `sysctl -w key=value` inside the namespace (per-namespace keys such as ip_forward).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("sysctl {key}={value} in {}: {e}", self.name));
    }

    /// Runs `f` on a thread that has joined this namespace and returns its result. Sockets it
    /// creates stay in the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                // SAFETY: setns has no memory-safety preconditions; the fd is open for the call and
                // only this thread's network namespace changes.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {}: {}", self.name, std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let run = run_tool("ip", &["netns", "delete", &self.name]);
        if !run.success() {
            eprintln!("warning: `ip netns delete {}` failed: {}", self.name, run.stderr.trim());
        }
    }
}

/// A fresh group prefix `e2e-<pid>-<n>`, after deleting namespaces of earlier test processes that
/// are gone (a run killed before its `Drop`s ran).
pub fn new_group() -> String {
    remove_stale();
    format!("{PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = run_tool("ip", &["netns", "delete", &name]);
        }
    }
}

/// A veth pair from `a` (interface `a_if`, address `a_addr` in CIDR form) to `b`.
pub fn veth(a: &NetNs, a_if: &str, a_addr: &str, b: &NetNs, b_if: &str, b_addr: &str) {
    ip(&["link", "add", "name", a_if, "netns", a.name(), "type", "veth", "peer", "name", b_if, "netns", b.name()]);
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
    }
}
