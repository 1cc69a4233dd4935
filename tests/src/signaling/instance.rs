//! One `signaling` process under test: how it is started (flags, config file, Redis), its
//! readiness, tokens, metrics and logs.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{hs256_token, http, signaling_binary, Response, MAX_LIFE, READY_TIMEOUT};
use crate::process::{self, ChildGuard};
use crate::{tail, unix_now, LogDir};

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
        crate::prometheus::sample_f64(&self.0, series).unwrap_or(0.0)
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
