//! Why the kernel fast path could not do what was asked, in words an operator can act on.

use std::io;

/// One line each: these reach `--check-config` output and logs as they are.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("kernel offload is not in this build: {0}")]
    NotBuilt(&'static str),
    #[error("kernel offload is not permitted: {0}")]
    NotPermitted(String),
    #[error("this kernel cannot run the offload: {0}")]
    Unsupported(String),
    #[error("offload interface: {0}")]
    Interface(String),
    #[error("offload program: {0}")]
    Program(String),
    #[error("offload map: {0}")]
    Map(String),
    #[error("the offload maps are full (65536 channels)")]
    Full,
    #[error("offload needs the client and server of one address family, and the relay and peer of one: {0}")]
    FamilyMismatch(String),
    #[error("channel number {0:#06x} is outside 0x4000..=0x4FFF")]
    InvalidChannel(u16),
    #[error("this channel or peer is already offloaded")]
    AlreadyInstalled,
    #[error("offload slot {0} is not in use")]
    UnknownSlot(u32),
}

/// The first `io::Error` in an error's source chain (aya wraps the syscall's errno).
pub(crate) fn errno_of(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        cur = e.source();
    }
    None
}

/// The whole chain on one line: aya's outer messages alone ("the BPF_PROG_LOAD syscall
/// failed") do not say why.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out.replace('\n', " ")
}

/// EPERM from a BPF syscall: names the capabilities this process lacks.
pub(crate) fn not_permitted(what: &str) -> OffloadError {
    // Bits of CapEff in /proc/self/status (linux/capability.h).
    const NET_ADMIN: u32 = 12;
    const SYS_ADMIN: u32 = 21;
    const BPF: u32 = 39;
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    if !has(BPF) && !has(SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    let missing = if missing.is_empty() {
        "CAP_BPF and CAP_NET_ADMIN are held, but the kernel still refused (a seccomp filter, an LSM, or kernel.unprivileged_bpf_disabled?)".to_string()
    } else {
        format!("this process lacks {}", missing.join(" and "))
    };
    OffloadError::NotPermitted(format!("{what}: {missing}"))
}
