//! `Type=notify`: under systemd the relay reports READY once it listens, pings the watchdog when
//! asked to, says RELOADING/READY around SIGHUP and STOPPING on SIGTERM. The test plays systemd: it
//! binds the notification socket and reads what arrives.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::notify::NotifySocket;

#[test]
fn notifies_ready_watchdog_reloading_and_stopping() {
    let mut socket = NotifySocket::bind("relay").unwrap();
    let ports = e2e::PortBlock::reserve();
    let mut child = Command::new(e2e::server_binary())
        .args(["-L", "127.0.0.1", "-p", &ports.listen_port().to_string()])
        .args(["--min-port", &ports.relay_min().to_string(), "--max-port", &ports.relay_max().to_string()])
        .args(["--use-auth-secret", "--static-auth-secret", "s"])
        .env("NOTIFY_SOCKET", socket.path())
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let ok = socket.wait_for("READY=1", Duration::from_secs(10))
        && socket.wait_for("WATCHDOG=1", Duration::from_secs(2))
        && {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            socket.wait_for("RELOADING=1", Duration::from_secs(5)) && socket.wait_for("READY=1", Duration::from_secs(5))
        }
        && {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            socket.wait_for("STOPPING=1", Duration::from_secs(5))
        };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.try_wait().unwrap();
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(ok, "notifications seen: {:?}", socket.seen);
    assert!(status.is_some_and(|s| s.success()), "SIGTERM must end the relay cleanly: {status:?}");
}
