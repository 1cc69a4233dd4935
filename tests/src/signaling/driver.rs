//! Socket.IO clients nobody here wrote (socket.io-client under node, python-socketio), driven
//! over the JSON-line protocol of tests/clients/driver.js.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{require, EVENT_TIMEOUT};
use crate::{clients_dir, tail};

/// A Socket.IO client process (node socket.io-client or python-socketio) speaking the JSON-line
/// protocol of tests/clients/driver.js, hosting any number of named clients.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Value>,
    backlog: Vec<Value>,
    req: u64,
    kind: &'static str,
    stderr: PathBuf,
}

impl Driver {
    /// socket.io-client (npm) under node.
    pub fn node(logs: &Path) -> Self {
        let node = require("node", "apt-get install -y nodejs npm");
        let dir = clients_dir();
        assert!(
            dir.join("node_modules").join("socket.io-client").is_dir(),
            "socket.io-client is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
        );
        Self::spawn("node", &node, &[dir.join("driver.js")], logs)
    }

    /// python-socketio (PyPI), from tests/clients/.venv when present.
    pub fn python(logs: &Path) -> Self {
        let venv = clients_dir().join(".venv").join("bin").join("python");
        let python = if venv.is_file() { venv } else { require("python3", "apt-get install -y python3") };
        let probe = Command::new(&python).args(["-c", "import socketio"]).output().expect("run python");
        assert!(
            probe.status.success(),
            "python-socketio is not installed for {}: run `python3 -m venv tests/clients/.venv && \
             tests/clients/.venv/bin/pip install -r tests/clients/requirements.txt` (tests/run-all.sh does this)",
            python.display()
        );
        Self::spawn("python", &python, &[clients_dir().join("py_driver.py")], logs)
    }

    pub(crate) fn spawn(kind: &'static str, program: &Path, args: &[PathBuf], logs: &Path) -> Self {
        let stderr = logs.join(format!("{kind}-driver.stderr"));
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .env("E2E_CONTRACT_LOG", crate::contract::log_dir())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} driver: {e}", program.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("driver printed a non-JSON line: {line}"),
                }
            }
        });
        Self { child, stdin, rx, backlog: Vec::new(), req: 0, kind, stderr }
    }

    pub(crate) fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{} driver stdin: {e}; stderr:\n{}", self.kind, self.stderr_tail()));
    }

    fn stderr_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.stderr).unwrap_or_default(), 30)
    }

    /// The first message matching `pred` (from the backlog, then new ones) within `within`.
    pub fn wait_for(&mut self, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_for(within, &pred).unwrap_or_else(|| {
            panic!(
                "{} driver: no {what} within {within:?}; unconsumed messages:\n{}\ndriver stderr:\n{}",
                self.kind,
                self.backlog.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
                self.stderr_tail()
            )
        })
    }

    fn try_wait_for(&mut self, within: Duration, pred: &impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.rx.recv_timeout(left);
            if let Ok(v) = &next {
                crate::contract::fail_on_violation(v);
            }
            match next {
                Ok(v) if pred(&v) => return Some(v),
                Ok(v) => self.backlog.push(v),
                Err(_) => return None,
            }
        }
    }

    /// Connects client `id`; `Ok(sid)` or `Err(connect_error message)`.
    pub fn connect(&mut self, id: &str, url: &str, token: Option<&str>, extra: Value) -> Result<String, String> {
        let mut cmd = json!({"op": "connect", "id": id, "url": url});
        if let Some(t) = token {
            cmd["token"] = json!(t);
        }
        if let Value::Object(map) = extra {
            for (k, v) in map {
                cmd[k] = v;
            }
        }
        self.send(cmd);
        let id2 = id.to_owned();
        let msg = self.wait_for(EVENT_TIMEOUT, &format!("connect of {id}"), move |v| {
            v["id"] == id2.as_str() && (v["type"] == "connect" || v["type"] == "connect_error")
        });
        if msg["type"] == "connect" {
            Ok(msg["sid"].as_str().unwrap_or_default().to_owned())
        } else {
            Err(msg["message"].as_str().unwrap_or_default().to_owned())
        }
    }

    /// Connects and panics on refusal.
    pub fn connect_ok(&mut self, id: &str, url: &str, token: &str) -> String {
        self.connect(id, url, Some(token), json!({})).unwrap_or_else(|e| panic!("{id} could not connect: {e}"))
    }

    /// Emits `event` from `id` and returns its ack.
    pub fn emit(&mut self, id: &str, event: &str, data: Value) -> Value {
        let req = self.emit_nowait(id, event, data);
        self.ack(id, event, req)
    }

    /// Emits without waiting; [`ack`](Self::ack) collects the answer later.
    pub fn emit_nowait(&mut self, id: &str, event: &str, data: Value) -> u64 {
        self.req += 1;
        let req = self.req;
        self.send(json!({"op": "emit", "id": id, "event": event, "data": data, "req": req}));
        req
    }

    /// The ack of request `req` of client `id`.
    pub fn ack(&mut self, id: &str, event: &str, req: u64) -> Value {
        let id2 = id.to_owned();
        let ack = self.wait_for(EVENT_TIMEOUT, &format!("ack of {event} from {id}"), move |v| {
            v["id"] == id2.as_str() && v["type"] == "ack" && v["req"] == req
        });
        ack["data"].clone()
    }

    /// The next `event` received by `id` within `within`; returns its data.
    pub fn expect(&mut self, id: &str, event: &str, within: Duration) -> Value {
        let (id2, ev) = (id.to_owned(), event.to_owned());
        let msg = self.wait_for(within, &format!("{event} at {id}"), move |v| {
            v["id"] == id2.as_str() && v["type"] == "event" && v["event"] == ev.as_str()
        });
        msg["data"].clone()
    }

    /// Asserts `id` receives no `event` during `within`.
    pub fn expect_none(&mut self, id: &str, event: &str, within: Duration) {
        let (id2, ev) = (id.to_owned(), event.to_owned());
        if let Some(v) = self.try_wait_for(within, &move |v: &Value| {
            v["id"] == id2.as_str() && v["type"] == "event" && v["event"] == ev.as_str()
        }) {
            panic!("{id} unexpectedly received {event}: {v}");
        }
    }

    /// Waits until `id` is disconnected; returns the reason.
    pub fn expect_disconnect(&mut self, id: &str, within: Duration) -> String {
        let id2 = id.to_owned();
        let v = self.wait_for(within, &format!("disconnect of {id}"), move |v| {
            v["id"] == id2.as_str() && v["type"] == "disconnect"
        });
        v["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// Client-side disconnect of `id`.
    pub fn disconnect(&mut self, id: &str) {
        self.send(json!({"op": "disconnect", "id": id}));
    }

    /// Makes `id` stop reading its socket for good, once it is on WebSocket (node driver only);
    /// returns the transport it paused.
    pub fn pause(&mut self, id: &str) -> String {
        self.send(json!({"op": "pause", "id": id}));
        let id2 = id.to_owned();
        let v = self.wait_for(EVENT_TIMEOUT, &format!("pause of {id}"), move |v| {
            v["id"] == id2.as_str() && v["type"] == "paused"
        });
        v["transport"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "exit"}));
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: killpg has no memory-safety preconditions; the group is the driver's own.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
        }
        // What the test never waited for must conform too (the reader ends at the driver's exit).
        if !std::thread::panicking() {
            while let Ok(v) = self.rx.recv_timeout(Duration::from_millis(500)) {
                crate::contract::fail_on_violation(&v);
            }
        }
    }
}
