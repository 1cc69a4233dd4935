//! `Type=notify`: under systemd the relay reports READY once it listens, pings the watchdog when
//! asked to, says RELOADING/READY around SIGHUP and STOPPING on SIGTERM. The test plays systemd: it
//! binds the notification socket and reads what arrives.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Collects notifications until one equals `want`, bounded by `within`.
fn wait_for(socket: &UnixDatagram, want: &str, within: Duration, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return true;
                }
            }
            Err(_) => break,
        }
    }
    false
}

/// Deletes the socket file however the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn notifies_ready_watchdog_reloading_and_stopping() {
    // Directly under the temp dir: a unix socket path must stay under 108 bytes, which a socket in
    // a deep checkout's target/e2e-logs can exceed.
    let path = std::env::temp_dir().join(format!("e2e-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    let _remove = RemoveOnDrop(path.clone());
    let ports = e2e::PortBlock::reserve();
    let mut child = Command::new(e2e::server_binary())
        .args(["-L", "127.0.0.1", "-p", &ports.listen_port().to_string()])
        .args(["--min-port", &ports.relay_min().to_string(), "--max-port", &ports.relay_max().to_string()])
        .args(["--use-auth-secret", "--static-auth-secret", "s"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut seen = Vec::new();
    let ok = wait_for(&socket, "READY=1", Duration::from_secs(10), &mut seen)
        && wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2), &mut seen)
        && {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            wait_for(&socket, "RELOADING=1", Duration::from_secs(5), &mut seen)
                && wait_for(&socket, "READY=1", Duration::from_secs(5), &mut seen)
        }
        && {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            wait_for(&socket, "STOPPING=1", Duration::from_secs(5), &mut seen)
        };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.try_wait().unwrap();
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(ok, "notifications seen: {seen:?}");
    assert!(status.is_some_and(|s| s.success()), "SIGTERM must end the relay cleanly: {status:?}");
}
