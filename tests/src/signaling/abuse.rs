//! The hostile clients of tests/clients/abuse.js (oversized frames, slow readers, floods), one
//! process per test.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::require;
use crate::clients_dir;

/// A running `tests/clients/abuse.js`, killed on drop.
pub struct AbuseClient {
    child: Child,
    rx: mpsc::Receiver<Value>,
}

impl AbuseClient {
    pub fn spawn(logs: &Path, mode: &str, url: &str, local: &str, args: &[&str]) -> Self {
        let node = require("node", "apt-get install -y nodejs npm");
        let dir = clients_dir();
        assert!(
            dir.join("node_modules").join("ws").is_dir(),
            "the ws package is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
        );
        let stderr = std::fs::File::create(logs.join(format!("abuse-{mode}.stderr"))).expect("stderr file");
        let mut child = Command::new(node)
            .arg(dir.join("abuse.js"))
            .args([mode, url, local])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("start abuse.js");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Self { child, rx }
    }

    /// The next line of `type` within `within`.
    pub fn next(&mut self, within: Duration, kind: &str) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

impl Drop for AbuseClient {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: killpg has no memory-safety preconditions; the group is the client's own.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}
