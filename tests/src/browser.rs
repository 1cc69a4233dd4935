//! A private TMPDIR for one Chromium run, and the cleanup after it. Playwright makes the browser
//! profile there, so every Chromium process of the run carries the path in its command line: on
//! drop, any still alive is killed by pid (Playwright starts Chromium in its own process group, so
//! killing the driver's group can miss it), and the directory is removed.
//!
//! The directory lives directly under the system temp dir with a short name: Chromium puts a unix
//! socket in it, and a path under a deep checkout (target/e2e-logs/...) can pass the 108-byte
//! limit of socket paths, which makes Chromium abort at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::clients_dir;
use crate::process::Finished;
use crate::signaling::Signaling;
use crate::{process, tail, LogDir};

pub struct ChromiumRun {
    dir: PathBuf,
}

impl ChromiumRun {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("e2e-chr-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("browser tmp dir");
        ChromiumRun { dir }
    }

    /// What to pass as the driver's TMPDIR.
    pub fn tmpdir(&self) -> &Path {
        &self.dir
    }

    /// Runs `node tests/clients/browser/<script> <cfg>` with this run's TMPDIR, bounded to
    /// `deadline` plus 15 s (the script stops itself at `cfg.deadlineMs`): how it ended and the
    /// last JSON line it printed (`null` if none).
    pub fn drive(&self, node: &Path, script: &str, cfg: &Value, logs: &Path, deadline: Duration) -> (Finished, Value) {
        let args: Vec<String> = vec![
            format!("TMPDIR={}", self.dir.display()),
            node.display().to_string(),
            clients_dir().join("browser").join(script).display().to_string(),
            cfg.to_string(),
        ];
        let run = process::run(script, Path::new("/usr/bin/env"), &args, logs, deadline + Duration::from_secs(15));
        let result = run.stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
        (run, result)
    }

    /// Processes still running with this run's directory in their command line.
    pub fn survivors(&self) -> Vec<i32> {
        let needle = self.dir.display().to_string();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle.as_str()))
            })
            .filter_map(|pid| i32::try_from(pid).ok())
            .collect()
    }
}

impl Default for ChromiumRun {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ChromiumRun {
    fn drop(&mut self) {
        for pid in self.survivors() {
            // SAFETY: kill has no memory-safety preconditions; the pid runs with our profile dir.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- The /diag page driver (tests/clients/browser/diag.js) ----

const DRIVER_DEADLINE: Duration = Duration::from_secs(50);

/// Width, height and size of a PNG file, or why it is not one.
pub fn is_png(path: &Path) -> Result<(u32, u32, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return Err(format!("{} is not a PNG ({} bytes)", path.display(), bytes.len()));
    }
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Ok((be(16), be(20), bytes.len() as u64))
}

/// Opens `/diag#token=...` of `signaling` in Chromium through diag.js: the driver's JSON result,
/// the log directory (holding `diag.png`) and a description of the run for failure messages.
pub fn open_diag_page(signaling: &Signaling, name: &str, chromium: &Path, node: &Path) -> (Value, LogDir, String) {
    let logs = LogDir::new(name);
    let reaper = ChromiumRun::new();
    let cfg = json!({
        "chromium": chromium,
        "url": format!("{}/diag#token={}", signaling.url(), signaling.token("diag-operator", 600)),
        "screenshot": logs.path().join("diag.png"),
        "deadlineMs": DRIVER_DEADLINE.as_millis(),
    });
    let (run, result) = reaper.drive(node, "diag.js", &cfg, logs.path(), DRIVER_DEADLINE);
    drop(reaper);
    let context = format!(
        "driver {}\nresult: {}\n--- driver stderr (last 60 lines):\n{}",
        run.describe_status(),
        serde_json::to_string_pretty(&result).unwrap_or_default(),
        tail(&run.stderr, 60)
    );
    (result, logs, context)
}
