//! Harness for the end-to-end tests in `tests/tests/e2e/`: it starts the built `turn-server` binary
//! as a child process on loopback and points clients nobody here wrote at it.
//!
//! - [`Server`]: one relay process on its own block of loopback ports (so tests run in
//!   parallel), ready once it answers a STUN request, killed on drop, its stderr kept in a file
//!   and shown when a test fails.
//! - [`client`]: the webrtc-rs `turn` client with packet counters.
//! - [`stun`]: an independent minimal STUN codec for probes.
//! - [`process`]: child processes under a deadline (coturn's tools, the server itself).
//!
//! The binary is found next to the test executable (`target/<profile>/turn-server`); build it
//! first with `cargo build -p turn-server`. `E2E_TURN_SERVER=/path/to/binary` runs the suite
//! against another build, and `E2E_TURN_SERVER_ARGS` appends flags to every server started
//! (e.g. `E2E_TURN_SERVER=/usr/bin/turnserver E2E_TURN_SERVER_ARGS="--no-tls --no-dtls
//! --no-cli --no-tcp --no-tcp-relay"` runs the relay tests against coturn for comparison).

pub mod browser;
pub mod callpage;
pub mod client;
pub mod contract;
pub mod fleet;
pub mod mmdb;
pub mod netns;
pub mod notify;
pub mod peers;
pub mod process;
pub mod prometheus;
pub mod signaling;
pub mod stun;
pub mod turn_wire;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub use process::{tail, ChildGuard, Finished};

/// How long a server may take to answer its first STUN request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on a server's life: a backstop if the test process dies without dropping it.
pub const SERVER_MAX_LIFE: Duration = Duration::from_secs(300);

/// The realm every test server uses unless told otherwise.
pub const REALM: &str = "e2e.test";

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `base64(HMAC-SHA1(secret, username))`, computed here independently of the server's code.
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A REST credential `(username, password)` for `user`, valid `ttl_secs` from now (negative:
/// already expired), signed with the shared `ice_config` code the signaling service uses.
pub fn rest_credential(secret: &str, user: &str, ttl_secs: i64) -> (String, String) {
    let secrets = ice_config::RestSecrets::new([secret]).expect("non-empty secret");
    let now = unix_now();
    let cred = if ttl_secs >= 0 {
        secrets.issue(Some(user), now, ttl_secs.unsigned_abs())
    } else {
        // Issued in the past so that it has already expired.
        secrets.issue(Some(user), now - 2 * ttl_secs.unsigned_abs(), ttl_secs.unsigned_abs())
    };
    // The shared code and an independent HMAC must agree, or every other check is moot.
    assert_eq!(
        cred.password,
        rest_password(secret, &cred.username),
        "ice_config::RestSecrets and an independent HMAC-SHA1 disagree on the REST password"
    );
    (cred.username, cred.password)
}

/// The directory holding the test executable's profile outputs (`target/debug`).
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash>  ->  target/debug
    let deps = exe.parent().expect("test executable has a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps).to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The `turn-server` binary to test.
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_TURN_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "E2E_TURN_SERVER={} does not exist", p.display());
        return p;
    }
    let p = profile_dir().join("turn-server");
    assert!(
        p.is_file(),
        "{} not found: run `cargo build -p turn-server` first (the e2e tests run the built binary)",
        p.display()
    );
    p
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `tests/clients/`: the pinned npm and PyPI clients and their scripts.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// `name` on PATH, or in /usr/sbin or /usr/bin (root's PATH may lack them in a sandbox).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs the built `turn-server` with `args` to completion (a subcommand or `--check-config`),
/// bounded to 30 s, its output kept in `dir`.
pub fn turn_server_cli(args: &[&str], dir: &Path) -> Finished {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    process::run("turn-server-cli", &server_binary(), &args, dir, Duration::from_secs(30))
}

/// Finds one of coturn's programs on PATH or fails the test saying how to install it.
pub fn require_tool(name: &str) -> PathBuf {
    require_program(name, "coturn")
}

/// Finds `name` on PATH or fails the test naming the Debian package to install.
pub fn require_program(name: &str, debian_package: &str) -> PathBuf {
    if let Some(found) = find_program(name) {
        return found;
    }
    panic!(
        "`{name}` is not installed: it comes with Debian's {debian_package} package. Install it \
         with `apt-get install -y {debian_package}` (tests/run-all.sh does this), then rerun."
    );
}

/// A per-test directory for captured output: `target/e2e-logs/<name>-<pid>-<n>`. Kept when the
/// test fails, removed when it passes.
#[derive(Debug)]
pub struct LogDir {
    path: PathBuf,
}

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

impl LogDir {
    pub fn new(name: &str) -> Self {
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = profile_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(profile_dir)
            .join("e2e-logs")
            .join(format!("{name}-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create e2e log directory");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A block of 100 loopback ports owned by one test: `base` is the listening port (UDP and TCP),
/// `base+1 ..= base+89` the relay range, `base+90 ..= base+97` for peers the test runs itself,
/// `base+98` for TURN over TLS.
///
/// Blocks sit below Linux's ephemeral range (32768+) so ports picked by the kernel for clients
/// never land in them. Ownership across test processes (e.g. under nextest) is a UDP socket
/// bound to 127.0.0.2:`base+99` for as long as the block lives: a second process cannot bind it,
/// and the kernel releases it even if the process dies. Servers bind 127.0.0.1, never 127.0.0.2.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    _lock: UdpSocket,
}

const BLOCK_FIRST: u16 = 20000;
const BLOCK_SIZE: u16 = 100;
const BLOCK_COUNT: u16 = 120; // 20000 ..= 31999

static BLOCK_SEQ: AtomicUsize = AtomicUsize::new(0);

impl PortBlock {
    pub fn reserve() -> Self {
        let start = usize::try_from(std::process::id()).unwrap_or(0) * 7 + BLOCK_SEQ.fetch_add(1, Ordering::Relaxed);
        for i in 0..usize::from(BLOCK_COUNT) {
            let index = u16::try_from((start + i) % usize::from(BLOCK_COUNT)).unwrap_or(0);
            let base = BLOCK_FIRST + index * BLOCK_SIZE;
            let Ok(lock) = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), base + BLOCK_SIZE - 1)) else {
                continue;
            };
            // Skip a block whose listening port something else already holds.
            if UdpSocket::bind((Ipv4Addr::LOCALHOST, base)).is_err() {
                continue;
            }
            return Self { base, _lock: lock };
        }
        panic!("no free block of 100 UDP ports in 20000-31999 on 127.0.0.1");
    }

    pub fn listen_port(&self) -> u16 {
        self.base
    }

    pub fn relay_min(&self) -> u16 {
        self.base + 1
    }

    pub fn relay_max(&self) -> u16 {
        self.base + 89
    }

    /// The TURN-over-TLS port of a server started with [`ServerBuilder::tls`].
    pub fn tls_port(&self) -> u16 {
        self.base + 98
    }

    /// A port for a peer process or socket of the test's own (`i` in 0..8).
    pub fn peer_port(&self, i: u16) -> u16 {
        assert!(i < 8, "peer_port index {i} out of 0..8");
        self.base + 90 + i
    }
}

/// A TCP port on 127.0.0.1 for a server a test runs itself (Redis, nginx, the signaling
/// service). It comes from port blocks this process holds until it exits, below the kernel's
/// ephemeral range: a port the kernel picked (bind to port 0) could be handed meanwhile to
/// another test's outgoing connection, and all tests share one process.
pub fn free_port() -> u16 {
    static POOL: std::sync::Mutex<Vec<(PortBlock, u16)>> = std::sync::Mutex::new(Vec::new());
    let mut pool = POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let next = match pool.last_mut() {
            Some((block, used)) if *used < BLOCK_SIZE - 1 => {
                *used += 1;
                block.base + *used - 1
            }
            _ => {
                pool.push((PortBlock::reserve(), 0));
                continue;
            }
        };
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, next)).is_ok() {
            return next;
        }
    }
}

/// How a [`Server`] is started.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    name: String,
    secret: Option<String>,
    allow_loopback_peers: bool,
    args: Vec<String>,
    stun_probe: bool,
    program: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    bare: bool,
    ip: IpAddr,
    prometheus: bool,
}

impl ServerBuilder {
    /// A server with REST auth (`--use-auth-secret --static-auth-secret <random>`), realm
    /// [`REALM`], loopback peers allowed. `name` names the log files.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            secret: Some(format!("e2e-secret-{:016x}", rand::random::<u64>())),
            allow_loopback_peers: true,
            args: Vec::new(),
            stun_probe: true,
            program: None,
            tls: None,
            bare: false,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            prometheus: false,
        }
    }

    /// Use this REST secret instead of a random one (for relays that must share one).
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_owned());
        self
    }

    /// Only the arguments given with [`arg`](Self::arg): no address, port, realm, secret or
    /// loopback flags, because the config file passed that way says all of it (flags would
    /// override the file and hide what it does). `secret` is the REST secret the file holds, for
    /// [`Server::credential`]. Start it with [`start_on`](Self::start_on) and the block whose
    /// listening port the file names.
    pub fn bare(mut self, secret: Option<&str>) -> Self {
        self.bare = true;
        self.secret = secret.map(str::to_owned);
        self
    }

    /// Also serve TURN over TLS with this PEM certificate chain and key, on
    /// [`Server::tls_addr`].
    pub fn tls(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.tls = Some((cert, key));
        self
    }

    /// Listen and relay on `ip` instead of 127.0.0.1: an address of the network namespace the
    /// server is started in with [`start_in`](Self::start_in).
    pub fn ip(mut self, ip: impl Into<IpAddr>) -> Self {
        self.ip = ip.into();
        self
    }

    /// Serve Prometheus metrics (`--prometheus`) on a port of a block of its own, held as long as
    /// the server lives: [`Server::metrics_port`]. Not with [`bare`](Self::bare).
    pub fn prometheus(mut self) -> Self {
        self.prometheus = true;
        self
    }

    /// Run another program with the same (coturn-compatible) flags, e.g. coturn's `turnserver`
    /// as a reference; `E2E_TURN_SERVER_ARGS` is then not applied.
    pub fn program(mut self, program: PathBuf) -> Self {
        self.program = Some(program);
        self
    }

    /// Leave out `--allow-loopback-peers` (the server's safe default).
    pub fn refuse_loopback_peers(mut self) -> Self {
        self.allow_loopback_peers = false;
        self
    }

    /// No REST secret: only the static users given with `arg`.
    pub fn without_secret(mut self) -> Self {
        self.secret = None;
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Probe readiness with an unauthenticated Allocate (answered with 401) instead of a Binding
    /// request, for servers started with `--no-stun`.
    pub fn probe_with_allocate(mut self) -> Self {
        self.stun_probe = false;
        self
    }

    /// Starts the server and waits until it answers; panics with its stderr if it does not.
    pub fn start(self) -> Server {
        self.start_on(PortBlock::reserve())
    }

    /// [`start`](Self::start) inside the network namespace `ns`, on the namespace's address given
    /// with [`ip`](Self::ip): the process, its ports and the readiness probe all live there, and
    /// the returned server is used from anywhere.
    pub fn start_in(self, ns: &netns::NetNs) -> Server {
        ns.run(move || self.start())
    }

    /// [`start`](Self::start) on a block the test reserved itself (to write a config file naming
    /// its ports first).
    pub fn start_on(self, ports: PortBlock) -> Server {
        let reference = self.program.is_some();
        let binary = self.program.clone().unwrap_or_else(server_binary);
        let logs = LogDir::new(&self.name);
        if self.bare {
            let mut args = self.args.clone();
            if let (false, Ok(extra)) = (reference, std::env::var("E2E_TURN_SERVER_ARGS")) {
                args.extend(extra.split_whitespace().map(str::to_owned));
            }
            return Server::spawn(binary, args, ports, None, logs, self);
        }
        let metrics = self.prometheus.then(PortBlock::reserve);
        let ip = self.ip.to_string();
        let mut args: Vec<String> =
            ["--listening-ip", &ip, "--relay-ip", &ip, "-r", REALM].iter().map(|s| (*s).to_owned()).collect();
        args.extend([
            "-p".to_owned(),
            ports.listen_port().to_string(),
            "--min-port".to_owned(),
            ports.relay_min().to_string(),
            "--max-port".to_owned(),
            ports.relay_max().to_string(),
        ]);
        if let Some(secret) = &self.secret {
            args.extend(["--use-auth-secret".to_owned(), "--static-auth-secret".to_owned(), secret.clone()]);
        }
        if self.allow_loopback_peers {
            args.push("--allow-loopback-peers".to_owned());
        }
        if let Some((cert, key)) = &self.tls {
            args.extend([
                "--tls-listening-port".to_owned(),
                ports.tls_port().to_string(),
                "--cert".to_owned(),
                cert.display().to_string(),
                "--pkey".to_owned(),
                key.display().to_string(),
            ]);
        }
        if let Some(block) = &metrics {
            args.extend(["--prometheus".to_owned(), "--prometheus-port".to_owned(), block.listen_port().to_string()]);
        }
        args.extend(self.args.iter().cloned());
        // A stopped test server need not drain its allocations (SIGTERM would otherwise keep it
        // up to 30 s); the drain tests set their own timeout.
        if !reference && !self.args.iter().any(|a| a == "--drain-timeout") {
            args.extend(["--drain-timeout".to_owned(), "0".to_owned()]);
        }
        if let (false, Ok(extra)) = (reference, std::env::var("E2E_TURN_SERVER_ARGS")) {
            args.extend(extra.split_whitespace().map(str::to_owned));
        }
        Server::spawn(binary, args, ports, metrics, logs, self)
    }
}

/// A running relay. Dropping it stops the process; if the test is failing at that point, the
/// server's stderr tail is printed (the test harness shows it with the failure).
#[derive(Debug)]
pub struct Server {
    child: ChildGuard,
    addr: SocketAddr,
    secret: Option<String>,
    command: String,
    ports: PortBlock,
    metrics: Option<PortBlock>,
    logs: LogDir,
    /// Set once a failure message already carried the stderr tail.
    reported: AtomicBool,
}

impl Server {
    fn spawn(
        binary: PathBuf,
        args: Vec<String>,
        ports: PortBlock,
        metrics: Option<PortBlock>,
        logs: LogDir,
        how: ServerBuilder,
    ) -> Server {
        let child = process::spawn("server", &binary, &args, logs.path(), SERVER_MAX_LIFE);
        let mut server = Server {
            child,
            addr: SocketAddr::new(how.ip, ports.listen_port()),
            secret: how.secret,
            command: format!("{} {}", binary.display(), args.join(" ")),
            ports,
            metrics,
            logs,
            reported: AtomicBool::new(false),
        };
        server.wait_ready(how.stun_probe);
        server
    }

    fn wait_ready(&mut self, stun_probe: bool) {
        let any =
            if self.addr.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        let socket = UdpSocket::bind((any, 0)).expect("bind probe socket");
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.child.exited() {
                self.fail(&format!("server exited before it was ready ({status})\ncommand: {}", self.command));
            }
            let tid = stun::transaction_id();
            let request = if stun_probe { stun::binding_request(tid) } else { stun::unauthenticated_allocate(tid) };
            if stun::transact(&socket, self.addr, &request, Duration::from_millis(100), Duration::from_millis(500))
                .is_some()
            {
                return;
            }
        }
        self.fail(&format!(
            "server did not answer a STUN request on {} within {READY_TIMEOUT:?}\ncommand: {}",
            self.addr, self.command
        ));
    }

    /// The listening address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST secret it was started with.
    pub fn secret(&self) -> &str {
        self.secret.as_deref().expect("this server was started without a REST secret")
    }

    /// A REST credential for `user` valid for an hour.
    pub fn credential(&self, user: &str) -> (String, String) {
        rest_credential(self.secret(), user, 3600)
    }

    /// Where it serves TURN over TLS, if started with [`ServerBuilder::tls`].
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), self.ports.tls_port())
    }

    /// Its ports.
    pub fn ports(&self) -> &PortBlock {
        &self.ports
    }

    /// Where it serves Prometheus metrics on 127.0.0.1, if started with
    /// [`ServerBuilder::prometheus`].
    pub fn metrics_port(&self) -> u16 {
        self.metrics.as_ref().expect("this server was started without ServerBuilder::prometheus").listen_port()
    }

    /// The body of its `/metrics`.
    pub fn scrape(&self) -> String {
        prometheus::scrape(self.metrics_port())
    }

    /// Where its captured output and the test's other files go.
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The last lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        tail(&self.child.stderr(), 40)
    }

    /// Waits up to `within` for a line containing `needle` in its stderr tail; fails the test
    /// with the tail if none comes.
    #[track_caller]
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr_tail().contains(needle) {
            self.check(Instant::now() < deadline, || format!("no log line containing {needle:?} within {within:?}"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `turn-server probe` over `transport` (`udp`, `tcp`) against this server with REST secret
    /// `secret`: Binding, Allocate, permission and a datagram relayed back.
    pub fn probe(&self, secret: &str, transport: &str) -> Finished {
        let url = format!("turn:{}?transport={transport}", self.addr);
        turn_server_cli(&["probe", "--timeout", "3s", "--secret", secret, "--url", &url], self.log_dir())
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server process.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// The server's own process id. The spawned process is coreutils `timeout`; the server is its
    /// child.
    pub fn server_pid(&self) -> Option<u32> {
        let parent = self.child.pid();
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// The server's resident memory in KiB (VmRSS), read from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid()?)).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
    }

    /// Sends `signal` to the server alone, not to its `timeout` wrapper: `timeout` answers a
    /// SIGTERM by killing the server 5 s later, which would cut a drain short.
    pub fn signal_server(&self, signal: i32) {
        let Some(pid) = self.server_pid().and_then(|p| libc::pid_t::try_from(p).ok()) else { return };
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's child, alive
        // while `timeout` (not yet reaped) waits for it.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// Panics with `msg`, the command line and the server's stderr tail.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        self.reported.store(true, Ordering::Relaxed);
        panic!(
            "{msg}\n--- server command: {}\n--- server stderr ({}), last 40 lines:\n{}\n---",
            self.command,
            self.child.stderr_path().display(),
            self.stderr_tail()
        );
    }

    /// `assert!` that shows the server's stderr on failure.
    #[track_caller]
    pub fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.fail(&msg());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.stop();
        if std::thread::panicking() && !self.reported.load(Ordering::Relaxed) {
            eprintln!(
                "--- server command: {}\n--- server stderr ({}), last 40 lines:\n{}\n---",
                self.command,
                self.child.stderr_path().display(),
                self.stderr_tail()
            );
        }
    }
}

/// Starts `turnutils_peer args...` (coturn's UDP echo peer) and waits until it echoes on
/// `addr`, bounded to 10 s.
pub fn start_turnutils_peer(args: &[String], addr: SocketAddr, dir: &Path) -> ChildGuard {
    let tool = require_tool("turnutils_peer");
    let mut peer = process::spawn("turnutils_peer", &tool, args, dir, Duration::from_secs(180));
    let probe = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).expect("bind probe socket");
    probe.set_read_timeout(Some(Duration::from_millis(100))).expect("set read timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if let Some(status) = peer.exited() {
            panic!("turnutils_peer {} exited early ({status}): {}", args.join(" "), tail(&peer.stderr(), 20));
        }
        let _ = probe.send_to(b"e2e-probe", addr);
        if let Ok((n, _)) = probe.recv_from(&mut buf) {
            if &buf[..n] == b"e2e-probe" {
                return peer;
            }
        }
    }
    panic!("turnutils_peer {} did not echo on {addr} within 10 s: {}", args.join(" "), tail(&peer.stderr(), 20));
}

/// Writes a self-signed certificate for 127.0.0.1, ::1 and localhost with `openssl` into `dir`,
/// returning `(certificate, key)`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    peers::named_cert(dir, "cert", "localhost", &["IP:127.0.0.1", "IP:::1"])
}

/// Load runs that are judged on loss (turnutils_uclient) take turns within a test binary: on two
/// cores, two of them side by side starve each other and the client stops waiting before its last
/// echoes arrive, which reads as loss the relay did not cause.
pub fn exclusive_load() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
