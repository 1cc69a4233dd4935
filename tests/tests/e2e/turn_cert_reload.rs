//! Certificates change under a running relay: a renewed certificate (files replaced, as certbot
//! does) is served to new TLS clients without a restart, SIGHUP reloads at once, and a broken new
//! certificate is refused with a logged reason while the last good one stays in service.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::peers;
use e2e::{process, ServerBuilder};

/// The subject CN the relay presents to a new TLS client, via `openssl s_client`.
fn served_cn(addr: std::net::SocketAddr, dir: &Path) -> String {
    let openssl = e2e::require_program("openssl", "openssl");
    let args: Vec<String> = ["s_client", "-connect", &addr.to_string(), "-servername", "turn.test"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let run = process::run("s_client", &openssl, &args, dir, Duration::from_secs(15));
    let out = format!("{}\n{}", run.stdout, run.stderr);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("subject=").map(|s| s.replace(' ', "")))
        .unwrap_or_else(|| format!("<no certificate: {}>", process::tail(&out, 5)))
}

fn install(from: &(std::path::PathBuf, std::path::PathBuf), to: &(std::path::PathBuf, std::path::PathBuf)) {
    // Write to a temporary name and rename, as certificate tools do, so the relay never reads half a file.
    for (src, dst) in [(&from.0, &to.0), (&from.1, &to.1)] {
        let tmp = dst.with_extension("tmp");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

fn wait_for_cn(server: &e2e::Server, dir: &Path, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = served_cn(server.tls_addr(), dir);
        if got == want {
            return start.elapsed();
        }
        if start.elapsed() > within {
            server.fail(&format!("relay still serves {got:?}, expected {want:?} within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn renewed_certificates_are_served_without_restart_and_bad_ones_are_refused() {
    let dir = e2e::LogDir::new("cert_reload-files");
    let first = peers::named_cert(dir.path(), "first", "first.test", &["IP:127.0.0.1"]);
    let second = peers::named_cert(dir.path(), "second", "second.test", &["IP:127.0.0.1"]);
    let live = (dir.path().join("live.pem"), dir.path().join("live.key"));
    install(&first, &live);
    let server = ServerBuilder::new("cert_reload").tls(live.0.clone(), live.1.clone()).start();
    assert_eq!(served_cn(server.tls_addr(), dir.path()), "CN=first.test");

    // Renewal: the files change; the relay notices within its 5 s poll.
    install(&second, &live);
    let took = wait_for_cn(&server, dir.path(), "CN=second.test", Duration::from_secs(12));
    eprintln!("renewed certificate served after {took:?}");

    // A broken certificate is refused; the good one stays.
    std::fs::write(&live.0, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    while !server.stderr_tail().contains("keeping the current one") {
        server.check(Instant::now() < deadline, || "the broken certificate was not reported".into());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(served_cn(server.tls_addr(), dir.path()), "CN=second.test");

    // SIGHUP reloads at once, without waiting for the poll.
    install(&first, &live);
    server.signal(libc::SIGHUP);
    let took = wait_for_cn(&server, dir.path(), "CN=first.test", Duration::from_secs(12));
    eprintln!("SIGHUP reload served after {took:?}");
    let logged = server.stderr_tail().contains("configuration reloaded origin=\"SIGHUP\"");
    server.check(logged, || "no SIGHUP reload logged".into());
}
