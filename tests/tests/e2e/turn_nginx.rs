//! nginx in front of port 443 (`deploy/nginx/turn-tls-443.conf`): a real nginx with the stream
//! module, started by the test in the foreground on loopback ports with a config built from that
//! file (host name and ports replaced), routes TLS by SNI and ALPN without terminating it:
//!
//! - `openssl s_client` with SNI turn.test, or with ALPN stun.turn, gets the relay's certificate;
//!   with another SNI, or none, the web server's;
//! - aioice with SNI turn.test allocates over TLS through nginx and relays to a UDP echo peer;
//! - an HTTPS request with SNI web.test reaches the web server (`openssl s_server -www`).
//!
//! Never touches /etc/nginx: `-p <dir> -c <dir>/nginx.conf -e <dir>/error.log`, `daemon off`.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::peers::{self, UdpEcho};
use e2e::process::{self, ChildGuard};
use e2e::{require_program, tail, Server, ServerBuilder};
use serde_json::Value;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Waits up to 10 s for a TCP listener on `addr`; false if `child` exited or time ran out.
pub(crate) fn wait_listening(addr: SocketAddr, child: &mut ChildGuard) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.exited().is_some() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The deploy file with its host name and addresses replaced; every replaced piece must be there.
/// `strip` is the port of the server that takes the PROXY protocol header off for the web site.
pub(crate) fn templated_stream_conf(turn_tls: u16, web: u16, strip: u16, listen: u16) -> String {
    let path = e2e::repo_root().join("deploy/nginx/turn-tls-443.conf");
    let mut conf = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (from, to) in [
        ("turn.example.org", "turn.test".to_owned()),
        ("server 127.0.0.1:5349;", format!("server 127.0.0.1:{turn_tls};")),
        ("server 127.0.0.1:8444;", format!("server 127.0.0.1:{strip};")),
        ("listen 127.0.0.1:8444 proxy_protocol;", format!("listen 127.0.0.1:{strip} proxy_protocol;")),
        ("proxy_pass 127.0.0.1:8443;", format!("proxy_pass 127.0.0.1:{web};")),
        ("listen 443;", format!("listen 127.0.0.1:{listen};")),
        ("listen [::]:443;", String::new()),
    ] {
        assert!(conf.contains(from), "{} no longer contains `{from}`: update this test's template", path.display());
        conf = conf.replace(from, &to);
    }
    conf
}

pub(crate) struct Nginx {
    child: ChildGuard,
    dir: PathBuf,
}

impl Nginx {
    pub(crate) fn error_log(&self) -> String {
        tail(&std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default(), 30)
    }

    pub(crate) fn start(dir: &Path, stream_conf: &str, listen: SocketAddr) -> Nginx {
        let nginx = require_program("nginx", "nginx");
        assert!(
            Path::new(STREAM_MODULE).is_file(),
            "{STREAM_MODULE} not found: install Debian's libnginx-mod-stream (tests/run-all.sh does)"
        );
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        peers::write_file(&dir, "turn-tls-443.conf", stream_conf);
        let main = format!(
            "load_module {STREAM_MODULE};\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log \
             info;\nevents {{ worker_connections 64; }}\n# As in /etc/nginx/nginx.conf: at the top level, not in http {{}}.\n\
             include {d}/turn-tls-443.conf;\n",
            d = dir.display()
        );
        let conf = peers::write_file(&dir, "nginx.conf", &main);
        let args: Vec<String> = [
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf.display().to_string(),
            "-e",
            &dir.join("error.log").display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let mut check = vec!["-t".to_owned()];
        check.extend(args.iter().cloned());
        let t = process::run("nginx-t", &nginx, &check, &dir, Duration::from_secs(20));
        assert!(
            t.success(),
            "nginx -t rejects the config ({}):\n{}\n--- config:\n{stream_conf}",
            t.describe_status(),
            t.stderr
        );
        let child = process::spawn("nginx", &nginx, &args, &dir, Duration::from_secs(120));
        let mut n = Nginx { child, dir };
        assert!(
            wait_listening(listen, &mut n.child),
            "nginx did not listen on {listen} within 10 s:\n{}",
            n.error_log()
        );
        n
    }
}

/// `openssl s_client` through nginx; returns the peer certificate's subject line.
fn s_client_subject(dir: &Path, nginx: SocketAddr, extra: &[&str]) -> String {
    let openssl = require_program("openssl", "openssl");
    let mut args = vec!["s_client".to_owned(), "-connect".to_owned(), nginx.to_string()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = process::run("s_client", &openssl, &args, dir, Duration::from_secs(15));
    let subject = run.stdout.lines().find(|l| l.starts_with("subject=")).unwrap_or_default().to_owned();
    assert!(
        !subject.is_empty(),
        "s_client {extra:?} printed no certificate subject ({}):\n{}\n{}",
        run.describe_status(),
        tail(&run.stdout, 15),
        tail(&run.stderr, 10)
    );
    subject
}

pub(crate) fn fail_with(server: &Server, nginx: &Nginx, msg: &str) -> ! {
    server.fail(&format!("{msg}\n--- nginx error.log tail:\n{}", nginx.error_log()))
}

#[test]
fn nginx_routes_tls_on_one_port_to_the_relay_or_the_web_server() {
    let files = e2e::LogDir::new("nginx_443-files");
    let (relay_cert, relay_key) = peers::named_cert(files.path(), "relay", "turn.test", &["IP:127.0.0.1"]);
    let (web_cert, web_key) = peers::named_cert(files.path(), "web", "web.test", &[]);
    // The deploy file sends the PROXY protocol header; the relay reads it (loopback is trusted).
    let server =
        ServerBuilder::new("nginx_443").tls(relay_cert.clone(), relay_key).arg("--proxy-protocol").arg("tls").start();
    let web_addr = SocketAddr::new(LOCALHOST, server.ports().peer_port(2));
    let nginx_addr = SocketAddr::new(LOCALHOST, server.ports().peer_port(3));

    // The "web server": openssl's test HTTPS server with its own certificate.
    let openssl = require_program("openssl", "openssl");
    let web_args: Vec<String> = [
        "s_server",
        "-www",
        "-accept",
        &web_addr.to_string(),
        "-cert",
        &web_cert.display().to_string(),
        "-key",
        &web_key.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut web = process::spawn("web_s_server", &openssl, &web_args, server.log_dir(), Duration::from_secs(120));
    server.check(wait_listening(web_addr, &mut web), || format!("openssl s_server did not listen: {}", web.stderr()));

    let strip_port = server.ports().peer_port(4);
    let conf = templated_stream_conf(server.tls_addr().port(), web_addr.port(), strip_port, nginx_addr.port());
    let nginx = Nginx::start(server.log_dir(), &conf, nginx_addr);

    // Routing by SNI, by ALPN, and the default.
    let dir = server.log_dir();
    for (extra, want) in [
        (&["-servername", "turn.test"][..], "turn.test"),
        (&["-servername", "web.test"][..], "web.test"),
        (&["-servername", "other.test", "-alpn", "stun.turn"][..], "turn.test"),
        (&["-noservername"][..], "web.test"),
    ] {
        let subject = s_client_subject(dir, nginx_addr, extra);
        if !subject.contains(&format!("CN = {want}")) {
            fail_with(
                &server,
                &nginx,
                &format!("s_client {extra:?} through nginx got `{subject}`, expected CN = {want}"),
            );
        }
    }

    // TURN over TLS through nginx with a client that sends SNI: aioice with server_hostname.
    let (a, b) = (
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(0))),
        UdpEcho::start(SocketAddr::new(LOCALHOST, server.ports().peer_port(1))),
    );
    let python = peers::aioice_python();
    let (user, pass) = server.credential("behind-nginx");
    let args: Vec<String> = vec![
        e2e::clients_dir().join("turn_aioice.py").display().to_string(),
        "--server".into(),
        nginx_addr.to_string(),
        "--transport".into(),
        "tls".into(),
        "--server-hostname".into(),
        "turn.test".into(),
        "--cafile".into(),
        relay_cert.display().to_string(),
        "--username".into(),
        user,
        "--password".into(),
        pass,
        "--peer".into(),
        a.addr().to_string(),
        "--peer2".into(),
        b.addr().to_string(),
    ];
    let run = process::run("aioice-nginx", &python, &args, dir, Duration::from_secs(45));
    let line = run.stdout.lines().rfind(|l| l.starts_with('{')).unwrap_or_default().to_owned();
    let result: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    if !(run.success() && result["ok"] == true && result["channel_echoes"] == 20 && result["indication_echo"] == true) {
        fail_with(
            &server,
            &nginx,
            &format!(
                "aioice over TLS through nginx: {}\nresult: {line}\nstderr: {}",
                run.describe_status(),
                tail(&run.stderr, 15)
            ),
        );
    }
    let relayed: Option<SocketAddr> = result["relayed"].as_str().and_then(|s| s.parse().ok());
    server.check(relayed.is_some_and(|r| a.sources() == vec![r]), || {
        format!("peer saw {:?}, the relayed address is {relayed:?}", a.sources())
    });
    eprintln!("aioice through nginx: {line}");

    // HTTPS with another SNI reaches the web server.
    let https = "import socket, ssl, sys\n\
                 ctx = ssl.create_default_context(cafile=sys.argv[3])\n\
                 with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as raw:\n\
                 \x20   with ctx.wrap_socket(raw, server_hostname='web.test') as s:\n\
                 \x20       s.sendall(b'GET / HTTP/1.0\\r\\nHost: web.test\\r\\n\\r\\n')\n\
                 \x20       data = b''\n\
                 \x20       while True:\n\
                 \x20           chunk = s.recv(65536)\n\
                 \x20           if not chunk:\n\
                 \x20               break\n\
                 \x20           data += chunk\n\
                 print(data.decode(errors='replace'))\n";
    let args: Vec<String> = vec![
        "-c".into(),
        https.into(),
        nginx_addr.ip().to_string(),
        nginx_addr.port().to_string(),
        web_cert.display().to_string(),
    ];
    let run = process::run("https-get", &python, &args, dir, Duration::from_secs(20));
    if !(run.success() && run.stdout.starts_with("HTTP/1.0 200 ok") && run.stdout.contains("s_server")) {
        fail_with(
            &server,
            &nginx,
            &format!(
                "HTTPS GET with SNI web.test through nginx: {}\nstdout: {}\nstderr: {}",
                run.describe_status(),
                tail(&run.stdout, 10),
                tail(&run.stderr, 10)
            ),
        );
    }
}
