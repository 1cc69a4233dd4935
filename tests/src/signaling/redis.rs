//! A real `redis-server` (and its replicas and Sentinels) on loopback, for the tests of several
//! signaling instances and relays sharing state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{free_port, require, MAX_LIFE};
use crate::process::{self, ChildGuard};
use crate::tail;

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
