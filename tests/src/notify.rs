//! Playing systemd for `Type=notify` tests: a notification socket the service under test is
//! pointed at with `NOTIFY_SOCKET`, and a bounded wait for one state line.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A bound notification socket, its file removed however the test ends.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every datagram received so far, for failure messages.
    pub seen: Vec<String>,
}

impl NotifySocket {
    /// Directly under /tmp: a unix socket path must stay under 108 bytes, which a socket in a
    /// deep checkout's target/e2e-logs can exceed.
    pub fn bind(tag: &str) -> std::io::Result<Self> {
        let path = PathBuf::from(format!("/tmp/e2e-notify-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        Ok(NotifySocket { socket, path, seen: Vec::new() })
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Collects notifications until a line equals `want`; false when `within` passes first.
    pub fn wait_for(&mut self, want: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            if self.socket.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = msg.lines().any(|l| l == want);
                    self.seen.push(msg);
                    if hit {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        false
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
