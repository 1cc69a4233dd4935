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
