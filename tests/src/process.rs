//! Child processes that cannot outlive their test.
//!
//! Every child (our server, coturn's tools) runs under coreutils `timeout`, in its own process
//! group, with stdout and stderr going to files. Dropping the guard signals the whole group, so a
//! failing test leaves nothing behind; `timeout` bounds the child's life even when the test
//! process itself is killed and no `Drop` runs.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process group, signalled on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

/// What a child that ran to completion (or was stopped at its deadline) left behind.
#[derive(Debug)]
pub struct Finished {
    /// `None` when the deadline passed and the child was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// True when the child exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout, then stderr: all it said, for failure messages and searches.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The exit code, or a word saying why there is none.
    pub fn describe_status(&self) -> String {
        match self.status {
            None => format!("killed at its deadline after {:.1?}", self.elapsed),
            Some(s) => match s.code() {
                // coreutils `timeout` exits 124 when it had to stop the command.
                Some(124) => "stopped by its `timeout` wrapper (exit 124)".to_owned(),
                Some(code) => format!("exit code {code}"),
                None => format!("killed by a signal ({s})"),
            },
        }
    }
}

/// Spawns `program args...` as `timeout -k 5 <max_life> program args...` in a new process group.
///
/// Output goes to `<dir>/<name>.stdout` and `<dir>/<name>.stderr`.
pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path, max_life: Duration) -> ChildGuard {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let out = File::create(&stdout).expect("create stdout capture file");
    let err = File::create(&stderr).expect("create stderr capture file");
    let mut cmd = Command::new("timeout");
    cmd.arg("-k")
        .arg("5")
        .arg(format!("{}", max_life.as_secs().max(1)))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("could not start `timeout {}` for {name}: {e} (coreutils `timeout` must be on PATH)", program.display())
    });
    ChildGuard { child, name: name.to_owned(), stdout, stderr, status: None }
}

/// Runs a command to completion, killing it at `deadline`.
pub fn run(name: &str, program: &Path, args: &[String], dir: &Path, deadline: Duration) -> Finished {
    let start = Instant::now();
    // The wrapper's own limit is a backstop a little past ours.
    let mut guard = spawn(name, program, args, dir, deadline + Duration::from_secs(5));
    let status = guard.wait_until(start + deadline);
    if status.is_none() {
        guard.stop();
    }
    Finished { status, stdout: guard.stdout(), stderr: guard.stderr(), elapsed: start.elapsed() }
}

impl ChildGuard {
    /// The operating-system process id (of the `timeout` wrapper, which leads the group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited; remembers the status.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for exit until `deadline`; `None` if it is still running then.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: i32) {
        if self.status.is_some() {
            return;
        }
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: killpg has no memory-safety preconditions; the group is the one we created with
        // process_group(0), whose id is the leader's pid, and we have not reaped the leader yet.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }

    /// SIGTERM to the group, up to 3 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_until(Instant::now() + Duration::from_secs(3)).is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Path of the stderr capture file.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Path of the stdout capture file.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// The child's name as given to [`spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The last `lines` lines of `text`, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
