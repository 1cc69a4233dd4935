//! Things the stream, NAT and nginx tests run beside the relay: UDP and TCP echo peers that
//! record who talked to them, certificates with a chosen name, and the Python environment of the
//! aioice client (`tests/clients/turn_aioice.py`).
//!
//! Every thread here stops when its owner is dropped and, as a backstop, after [`PEER_MAX_LIFE`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process;

/// Upper bound on the life of an echo peer's threads.
pub const PEER_MAX_LIFE: Duration = Duration::from_secs(180);

/// A UDP echo peer: every datagram goes back to its sender unchanged.
#[derive(Debug)]
pub struct UdpEcho {
    addr: SocketAddr,
    sources: Arc<Mutex<Vec<SocketAddr>>>,
    datagrams: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Binds `addr` (port 0 for any) and starts echoing.
    pub fn start(addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("UDP echo peer cannot bind {addr}: {e}"));
        Self::from_socket(socket)
    }

    /// Echoes on an already bound socket (e.g. one made inside a network namespace).
    pub fn from_socket(socket: UdpSocket) -> Self {
        let addr = socket.local_addr().expect("local addr");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("set read timeout");
        let sources: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let datagrams = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sources, datagrams, stop) = (Arc::clone(&sources), Arc::clone(&datagrams), Arc::clone(&stop));
            std::thread::spawn(move || {
                let end = Instant::now() + PEER_MAX_LIFE;
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        datagrams.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut s) = sources.lock() {
                            if !s.contains(&from) {
                                s.push(from);
                            }
                        }
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
        };
        UdpEcho { addr, sources, datagrams, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Distinct source addresses seen so far.
    pub fn sources(&self) -> Vec<SocketAddr> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Datagrams echoed so far.
    pub fn datagrams(&self) -> u64 {
        self.datagrams.load(Ordering::Relaxed)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP echo peer: accepts connections and writes back every byte it reads.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<SocketAddr>>>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpEcho {
    pub fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("TCP echo peer cannot bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let accepted: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, bytes, stop) = (Arc::clone(&accepted), Arc::clone(&bytes), Arc::clone(&stop));
            std::thread::spawn(move || {
                let end = Instant::now() + PEER_MAX_LIFE;
                let mut workers = Vec::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    match listener.accept() {
                        Ok((stream, from)) => {
                            if let Ok(mut a) = accepted.lock() {
                                a.push(from);
                            }
                            let (bytes, stop) = (Arc::clone(&bytes), Arc::clone(&stop));
                            workers.push(std::thread::spawn(move || echo_stream(stream, &bytes, &stop, end)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        TcpEcho { addr, accepted, bytes, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Source addresses of the connections accepted so far.
    pub fn accepted(&self) -> Vec<SocketAddr> {
        self.accepted.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Bytes echoed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Waits up to `within` until `n` connections have been accepted (the accept loop polls),
    /// then returns their sources.
    pub fn wait_accepted(&self, n: usize, within: Duration) -> Vec<SocketAddr> {
        let deadline = Instant::now() + within;
        while self.accepted().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.accepted()
    }

    /// Waits up to `within` until `n` bytes have been echoed; returns the count.
    pub fn wait_bytes(&self, n: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        while self.bytes() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.bytes()
    }
}

fn echo_stream(mut stream: TcpStream, bytes: &AtomicU64, stop: &AtomicBool, end: Instant) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a self-signed P-256 certificate for `name` (CN and DNS SAN) plus `extra_sans` (e.g.
/// `"IP:127.0.0.1"`) with `openssl` into `dir/<file>.pem` and `dir/<file>.key`. Made at run
/// time: no key is ever committed.
pub fn named_cert(dir: &Path, file: &str, name: &str, extra_sans: &[&str]) -> (PathBuf, PathBuf) {
    let openssl = crate::require_program("openssl", "openssl");
    let (cert, key) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    let mut sans = vec![format!("DNS:{name}")];
    sans.extend(extra_sans.iter().map(|s| (*s).to_owned()));
    let args: Vec<String> = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        &format!("subjectAltName={}", sans.join(",")),
        // A server's certificate, not a CA (req -x509 makes CA:TRUE otherwise): rustls refuses
        // a CA certificate as the server's own (CaUsedAsEndEntity); OpenSSL takes either.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        &key.display().to_string(),
        "-out",
        &cert.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let run = process::run(&format!("openssl-{file}"), &openssl, &args, dir, Duration::from_secs(30));
    assert!(
        run.success() && cert.is_file() && key.is_file(),
        "openssl req for {name} failed ({}): {}",
        run.describe_status(),
        process::tail(&run.stderr, 10)
    );
    (cert, key)
}

/// The virtualenv `tests/run-all.sh` installs `tests/clients/requirements-turn.txt` into.
pub fn turn_venv() -> PathBuf {
    crate::repo_root().join("target").join("e2e-venv-turn")
}

/// The Python with aioice installed, or a failure saying how to install it.
pub fn aioice_python() -> PathBuf {
    let python = turn_venv().join("bin").join("python");
    let install = format!(
        "python3 -m venv {venv} && {venv}/bin/pip install -r {req} (tests/run-all.sh does this; Debian needs \
         python3-venv)",
        venv = turn_venv().display(),
        req = crate::clients_dir().join("requirements-turn.txt").display()
    );
    assert!(python.is_file(), "{} not found: install aioice with `{install}`", python.display());
    let probe = Command::new(&python).args(["-c", "import aioice"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "aioice is not importable by {}: `{install}` ({probe:?})",
        python.display()
    );
    python
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Reads from `stream` until it is closed by the other side or `within` passes. Returns how long
/// that took, `None` if it was still open at the end. Data read meanwhile is discarded.
pub fn wait_closed(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        let left = within.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_millis(200))));
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}
