//! Harness for the signaling tests (`tests/tests/signaling_*.rs`): the built `signaling` binary
//! on a free loopback port, a minimal HTTP/1.1 client, HS256 tokens made here independently of
//! the service's JWT library, Socket.IO clients nobody here wrote (socket.io-client from npm,
//! python-socketio from PyPI) driven over JSON lines, and real `redis-server` and `nginx`.
//!
//! Every child is killed on drop and bounded in life; every wait is bounded in time. A missing
//! tool fails the test with the command that installs it (tests/run-all.sh runs those).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::process::{self, ChildGuard};
use crate::{tail, unix_now, LogDir};

/// How long a signaling instance may take to answer `/healthz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default wait for an expected Socket.IO event or ack.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on any child's life.
const MAX_LIFE: Duration = Duration::from_secs(240);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository root").to_path_buf()
}

/// The built `signaling` binary (`E2E_SIGNALING` overrides).
pub fn signaling_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_SIGNALING") {
        return PathBuf::from(p);
    }
    let p = crate::profile_dir().join("signaling");
    assert!(p.is_file(), "{} not found: run `cargo build -p signaling` first", p.display());
    p
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A program the test needs, or a failure saying how to install it.
pub fn require(name: &str, install: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed. Install it with `{install}` (tests/run-all.sh does this), then rerun.")
    })
}

/// `base64url(HMAC-SHA256)` JWT with `claims`, written here without any JWT library.
pub fn hs256_token(secret: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// `sha256=<hex>` as the webhook signature header carries it, computed independently.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request with `Connection: close`, bounded to 10 s.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: reading response: {e}"));
    parse_response(&raw)
}

/// One HTTPS GET of `url` from the local address `from` (e.g. 127.0.0.2, so a proxy sees that
/// source), trusting only the PEM certificate `ca`, bounded to 10 s. The client is reqwest (on
/// rustls), not code of this repository.
pub fn https_get(from: IpAddr, url: &str, ca: &Path, headers: &[(&str, &str)]) -> Response {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
    let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .local_address(from)
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTPS client");
        let mut request = client.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let resp = request.send().await.unwrap_or_else(|e| panic!("GET {url} from {from}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.text().await.unwrap_or_else(|e| panic!("GET {url} from {from}: reading the body: {e}"));
        Response { status, headers, body }
    })
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    for _ in 0..10_000 {
        let Some((size, rest)) = body.split_once("\r\n") else { break };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// How a [`Signaling`] instance is started.
#[derive(Debug, Clone)]
pub struct SignalingBuilder {
    name: String,
    args: Vec<String>,
    config: Option<String>,
    pub jwt_secret: String,
    pub turn_secret: String,
    port: Option<u16>,
}

impl SignalingBuilder {
    /// Loopback, a random HS256 secret, a random REST secret, relay `127.0.0.1:3478` unless
    /// [`relay`](Self::relay) says otherwise, ring timeout 45 s.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            args: Vec::new(),
            config: None,
            jwt_secret: format!("jwt-secret-{:016x}", rand::random::<u64>()),
            turn_secret: format!("turn-secret-{:016x}", rand::random::<u64>()),
            port: None,
        }
    }

    /// Extra flags.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A config file (TOML text), passed with `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Use this REST secret (e.g. the relay's).
    pub fn turn_secret(mut self, secret: &str) -> Self {
        self.turn_secret = secret.to_owned();
        self
    }

    /// Use this JWT secret (several instances must share it).
    pub fn jwt_secret(mut self, secret: &str) -> Self {
        self.jwt_secret = secret.to_owned();
        self
    }

    /// Listen on this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn start(self) -> Signaling {
        let logs = LogDir::new(&self.name);
        // Port 0 unless told: the service picks a free port and logs it, so parallel tests never
        // race for one.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port.unwrap_or(0)));
        let mut args: Vec<String> = vec![
            "--listen".into(),
            addr.to_string(),
            "--jwt-secret".into(),
            self.jwt_secret.clone(),
            "--static-auth-secret".into(),
            self.turn_secret.clone(),
            "--realm".into(),
            crate::REALM.into(),
            "--jwt-leeway".into(),
            "0".into(),
            "-v".into(),
        ];
        if !self.args.iter().any(|a| a == "--turn-url") && self.config.is_none() {
            args.extend(["--turn-url".into(), "turn:127.0.0.1:3478?transport=udp".into()]);
        }
        if let Some(toml) = &self.config {
            let path = logs.path().join("config.toml");
            std::fs::write(&path, toml).expect("write config");
            args.extend(["--config".into(), path.display().to_string()]);
        }
        args.extend(self.args.iter().cloned());
        let binary = signaling_binary();
        let child = process::spawn("signaling", &binary, &args, logs.path(), MAX_LIFE);
        let mut s = Signaling {
            child,
            addr,
            jwt_secret: self.jwt_secret,
            turn_secret: self.turn_secret,
            command: format!("{} {}", binary.display(), args.join(" ")),
            logs,
        };
        s.wait_ready();
        s
    }
}

/// A scraped Prometheus/OpenMetrics text.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample written exactly `series` (`name` or `name{a="b"}`); 0 when absent,
    /// as Prometheus treats a labelled counter that never moved.
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A running signaling instance, killed on drop (stderr shown if the test is failing).
#[derive(Debug)]
pub struct Signaling {
    child: ChildGuard,
    pub addr: SocketAddr,
    pub jwt_secret: String,
    pub turn_secret: String,
    command: String,
    logs: LogDir,
}

impl Signaling {
    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.child.exited() {
                panic!(
                    "signaling exited before it was ready ({status})\ncommand: {}\nstderr:\n{}",
                    self.command,
                    self.stderr_tail()
                );
            }
            if self.addr.port() == 0 {
                // "signaling listening addr=127.0.0.1:PORT"
                if let Some(addr) = self.child.stderr().lines().find_map(|l| {
                    l.split_once("signaling listening addr=")
                        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
                }) {
                    self.addr = addr;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && http(self.addr, "GET", "/healthz", &[]).status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("signaling not ready on {} within {READY_TIMEOUT:?}\nstderr:\n{}", self.addr, self.stderr_tail());
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token for `user` valid `ttl` seconds (negative: already expired).
    pub fn token(&self, user: &str, ttl: i64) -> String {
        let now = unix_now() as i64;
        hs256_token(&self.jwt_secret, &json!({"sub": user, "iat": now, "exp": now + ttl}))
    }

    /// GET `path` with optional bearer token and extra headers.
    pub fn get(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        http(self.addr, "GET", path, &headers)
    }

    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.child.stderr(), 60)
    }

    /// The metrics listener's address, from the log line of an instance started with
    /// `--metrics-listen 127.0.0.1:0` (waits for it, bounded).
    pub fn metrics_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // "metrics at /metrics addr=127.0.0.1:PORT"
            if let Some(addr) = self.child.stderr().lines().find_map(|l| {
                l.split_once("metrics at /metrics addr=")
                    .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            }) {
                return addr;
            }
            assert!(Instant::now() < deadline, "no metrics listener logged\nstderr:\n{}", self.stderr_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One scrape of `/metrics` (status 200 required).
    pub fn scrape(&self) -> Metrics {
        let resp = http(self.metrics_addr(), "GET", "/metrics", &[]);
        assert_eq!(resp.status, 200, "scrape failed: {}", resp.body);
        Metrics(resp.body)
    }

    /// SIGTERM: the instance drains and exits by itself.
    pub fn terminate(&self) {
        self.child.signal(libc::SIGTERM);
    }

    /// Waits until the process exits (bounded); its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.child.wait_until(Instant::now() + within)
    }

    /// Resident memory of the service process in KiB, from /proc (the child is coreutils
    /// `timeout`; the service is its only child).
    pub fn rss_kib(&self) -> u64 {
        let wrapper = self.child.pid();
        let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).unwrap_or_default();
        let pid = children.split_whitespace().next().unwrap_or_else(|| panic!("no child under timeout pid {wrapper}"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// SIGKILL: the instance dies without any cleanup, as in a crash.
    pub fn kill(&mut self) {
        self.child.signal(libc::SIGKILL);
        let _ = self.child.wait_until(Instant::now() + Duration::from_secs(5));
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        self.child.stop();
        if std::thread::panicking() {
            eprintln!("--- signaling {} stderr (last 60 lines):\n{}\n---", self.addr, self.stderr_tail());
        }
    }
}

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

fn clients_dir() -> PathBuf {
    repo_root().join("tests").join("clients")
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

    fn spawn(kind: &'static str, program: &Path, args: &[PathBuf], logs: &Path) -> Self {
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

    fn send(&mut self, cmd: Value) {
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

/// A real `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    child: ChildGuard,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// On `port` (e.g. the port of one that was stopped, to bring it back).
    pub fn start_on(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, &[])
    }

    /// On `port` with more `redis-server` arguments (`--replicaof`, `--cluster-enabled`, ...).
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Self {
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::spawn(dir, port, &args)
    }

    /// A Sentinel on a free port watching the primary on `primary_port` as `service`, quorum 1,
    /// quick to declare it down (1 s). Sentinel rewrites its config file: it lives in `dir`.
    pub fn sentinel(dir: &Path, service: &str, primary_port: u16) -> Self {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {service} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {service} 1000\nsentinel failover-timeout {service} 5000\n",
            dir.display()
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        Self::spawn(dir, port, &[conf.display().to_string(), "--sentinel".into()])
    }

    /// `redis-cli -p PORT --raw ARGS...` (bounded); its trimmed output. Panics if it fails.
    pub fn cli(&self, dir: &Path, args: &[&str]) -> String {
        let mut all: Vec<String> = vec!["-p".into(), self.port.to_string(), "--raw".into()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let cli = require("redis-cli", "apt-get install -y redis-tools");
        let out = process::run("redis-cli", &cli, &all, dir, Duration::from_secs(10));
        assert!(out.success(), "redis-cli {args:?}: {}", out.stderr);
        out.stdout.trim().to_owned()
    }

    fn spawn(dir: &Path, port: u16, args: &[String]) -> Self {
        let bin = require("redis-server", "apt-get install -y redis-server");
        let mut child = process::spawn("redis", &bin, args, dir, MAX_LIFE);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.exited() {
                panic!("redis-server exited ({status}): {}", tail(&child.stdout(), 20));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG")) {
                    return Self { child, port };
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer PING on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// A real nginx in the foreground with a generated config in `dir` (never /etc/nginx).
pub struct Nginx {
    child: ChildGuard,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `site` (a server block and what it needs at http level) included.
    pub fn start(dir: &Path, site: &str, port: u16) -> Self {
        Self::start_with(dir, "", site, port)
    }

    /// As [`start`](Self::start), with `main` (e.g. `load_module ...;`) at the top of the main
    /// config, where nginx requires `load_module`.
    pub fn start_with(dir: &Path, main: &str, site: &str, port: u16) -> Self {
        let bin = require("nginx", "apt-get install -y nginx");
        let root = dir.join("nginx");
        for sub in ["logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"] {
            std::fs::create_dir_all(root.join(sub)).expect("nginx dirs");
        }
        let r = root.display();
        let conf = format!(
            "{main}\ndaemon off;\nmaster_process off;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/logs/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {r}/logs/access.log;\n  client_body_temp_path {r}/tmp/body;\n  proxy_temp_path {r}/tmp/proxy;\n  \
             fastcgi_temp_path {r}/tmp/fastcgi;\n  uwsgi_temp_path {r}/tmp/uwsgi;\n  scgi_temp_path {r}/tmp/scgi;\n\n{site}\n}}\n"
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        // -e: the startup error log too goes to the temp dir, not nginx's compiled-in path.
        let args: Vec<String> = vec![
            "-p".into(),
            root.display().to_string(),
            "-c".into(),
            conf_path.display().to_string(),
            "-e".into(),
            root.join("logs").join("startup-error.log").display().to_string(),
        ];
        // nginx -t first: a config error is reported as such, not as "did not start".
        let check =
            process::run("nginx-t", &bin, &[args.clone(), vec!["-t".into()]].concat(), dir, Duration::from_secs(10));
        assert!(check.success(), "nginx -t refused the generated config:\n{}{}", check.stdout, check.stderr);
        let mut child = process::spawn("nginx", &bin, &args, dir, MAX_LIFE);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.exited() {
                panic!("nginx exited ({status}): {}", tail(&child.stderr(), 20));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port, dir: root };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not listen on {port}");
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs").join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.stop();
        if std::thread::panicking() {
            eprintln!("--- nginx error.log:\n{}\n---", tail(&self.error_log(), 40));
        }
    }
}

/// A loopback HTTP server that records webhook POSTs (headers and body) and answers with the
/// statuses given, then 200.
pub struct HookSink {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<(BTreeMap<String, String>, Vec<u8>)>,
}

impl HookSink {
    pub fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind webhook sink");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut served = 0usize;
            for stream in listener.incoming().take(1000) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_request(&mut stream) else { continue };
                served += 1;
                let status = if served <= fail_first { "503 Service Unavailable" } else { "200 OK" };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                );
                if served > fail_first && tx.send((headers, body)).is_err() {
                    break;
                }
            }
        });
        Self { addr, rx }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/calls", self.addr)
    }

    /// The next successfully delivered hook within `within`.
    pub fn next(&self, within: Duration) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
        self.rx.recv_timeout(within).ok()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

/// A fresh call id (UUID v4 text), as clients make them.
pub fn call_id() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}
