//! Moving off coturn: a typical `turnserver.conf` runs the relay as it stands
//! (`--coturn-config`), naming what it ignores, and `turn-server migrate` turns it into TOML that
//! passes `--check-config` and runs a relay with the same effective settings.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::process::Finished;
use e2e::{tail, turn_server_cli, LogDir, PortBlock, Server, ServerBuilder};

/// A coturn config as found on servers, in coturn's own line forms (`name=value`, `name value`,
/// bare flags, quotes, comments, CRLF), for the ports of `ports`. `log` is its log-file.
/// Returns the text and the line of its one unsupported option (`userdb`).
fn coturn_conf(ports: &PortBlock, secret: &str, log: &Path) -> (String, usize) {
    let lines = [
        "# /etc/turnserver.conf of a coturn 4.6 deployment".to_owned(),
        format!("listening-port={}", ports.listen_port()),
        "listening-ip=127.0.0.1".to_owned(),
        "relay-ip=127.0.0.1".to_owned(),
        format!("min-port={}", ports.relay_min()),
        format!("max-port {}", ports.relay_max()),
        String::new(),
        "realm=\"e2e.test\"".to_owned(),
        "fingerprint".to_owned(),
        "lt-cred-mech".to_owned(),
        "use-auth-secret".to_owned(),
        format!("static-auth-secret={secret}"),
        "user-quota=10".to_owned(),
        "total-quota=100".to_owned(),
        "denied-peer-ip=10.0.0.0/8".to_owned(),
        "allowed-peer-ip=192.168.7.0/24".to_owned(),
        // The probe relays to itself on 127.0.0.1.
        "allow-loopback-peers".to_owned(),
        "no-tls".to_owned(),
        "no-dtls".to_owned(),
        "no-cli".to_owned(),
        format!("log-file={}", log.display()),
        "simple-log".to_owned(),
        "prometheus".to_owned(),
        format!("prometheus-port={}", ports.peer_port(0)),
        "userdb=/var/lib/turn/turndb".to_owned(),
    ];
    let userdb = lines.iter().position(|l| l.starts_with("userdb")).unwrap() + 1;
    (lines.join("\r\n") + "\r\n", userdb)
}

/// Runs `turn-server args...` to completion (bounded at 20 s).
#[track_caller]
fn assert_ok(run: &Finished, what: &str) {
    assert!(run.success(), "{what}: {}, expected exit 0; output:\n{}", run.describe_status(), tail(&run.output(), 30));
}

#[track_caller]
fn assert_relays(server: &Server) {
    for transport in ["udp", "tcp"] {
        let run = server.probe(server.secret(), transport);
        server.check(run.success(), || format!("probe over {transport} failed:\n{}", tail(&run.output(), 20)));
    }
}

/// Waits (up to 10 s) until `path` holds `needle`.
fn wait_file_contains(server: &Server, path: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        server.check(Instant::now() < deadline, || {
            format!("{} never contained {needle:?}; it holds:\n{}", path.display(), tail(&text, 20))
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn secret() -> String {
    format!("e2e-coturn-{:016x}", rand::random::<u64>())
}

#[test]
fn a_coturn_config_runs_the_relay() {
    let ports = PortBlock::reserve();
    let files = LogDir::new("coturn_config-files");
    let secret = secret();
    let log = files.path().join("turn.log");
    let (conf, userdb_line) = coturn_conf(&ports, &secret, &log);
    let path = files.path().join("turnserver.conf");
    std::fs::write(&path, conf).unwrap();
    let metrics_port = ports.peer_port(0);

    let server = ServerBuilder::new("coturn_config")
        .bare(Some(&secret))
        .arg("--coturn-config")
        .arg(path.display().to_string())
        .start_on(ports);
    assert_relays(&server);

    // The options it cannot honour are named with their line; the no-ops are not warnings.
    let stderr = server.stderr_tail();
    let expected = format!("turnserver.conf:{userdb_line}: userdb is not supported by turn-server; ignored");
    server.check(stderr.contains(&expected), || format!("stderr does not say {expected:?}"));
    for always_on in ["fingerprint", "lt-cred-mech", "no-dtls", "no-cli", "simple-log"] {
        server.check(!stderr.lines().any(|l| l.contains("warning") && l.contains(always_on)), || {
            format!("{always_on} is accepted as always on here, not warned about")
        });
    }
    // log-file and prometheus from the file took effect too.
    wait_file_contains(&server, &log, "realm: e2e.test");
    let metrics = e2e::prometheus::scrape(metrics_port);
    server.check(metrics.contains("turn_allocations_created_total"), || {
        format!("no allocation counter on the coturn file's prometheus-port:\n{}", tail(&metrics, 20))
    });
}

#[test]
fn migrate_prints_toml_that_checks_and_runs_the_same() {
    let ports = PortBlock::reserve();
    let files = LogDir::new("coturn_migrate-files");
    let secret = secret();
    let log = files.path().join("turn.log");
    let (conf, userdb_line) = coturn_conf(&ports, &secret, &log);
    let coturn: PathBuf = files.path().join("turnserver.conf");
    std::fs::write(&coturn, conf).unwrap();
    let coturn_arg = coturn.to_str().unwrap();

    let migrated = turn_server_cli(&["migrate", coturn_arg], files.path());
    assert_ok(&migrated, "turn-server migrate turnserver.conf");
    let expected = format!("turnserver.conf:{userdb_line}: userdb is not supported by turn-server; ignored");
    assert!(migrated.stderr.contains(&expected), "migrate's stderr does not say {expected:?}:\n{}", migrated.stderr);
    assert!(!migrated.stdout.contains("userdb ="), "warnings belong on stderr, the TOML on stdout");
    let as_flag = turn_server_cli(&["migrate", "--coturn-config", coturn_arg], files.path());
    assert_ok(&as_flag, "turn-server migrate --coturn-config turnserver.conf");
    assert_eq!(as_flag.stdout, migrated.stdout, "both ways of naming the file give the same TOML");

    let toml = files.path().join("out.toml");
    std::fs::write(&toml, &migrated.stdout).unwrap();
    let from_toml = turn_server_cli(&["--check-config", "--config", toml.to_str().unwrap()], files.path());
    assert_ok(&from_toml, &format!("--check-config on migrate's output:\n{}", migrated.stdout));
    let from_coturn = turn_server_cli(&["--check-config", "--coturn-config", coturn_arg], files.path());
    assert_ok(&from_coturn, "--check-config --coturn-config");
    assert_eq!(
        from_toml.stdout, from_coturn.stdout,
        "the migrated TOML and the coturn file must give the same effective settings"
    );
    assert!(from_toml.stdout.contains("quotas: per user 10, total 100"), "{}", from_toml.stdout);

    // log-file is a flag here; migrate's output says so, and the relay runs with it.
    assert!(migrated.stdout.contains(&format!("--log-file {}", log.display())), "{}", migrated.stdout);
    let server = ServerBuilder::new("coturn_migrate")
        .bare(Some(&secret))
        .arg("--config")
        .arg(toml.display().to_string())
        .arg("--log-file")
        .arg(log.display().to_string())
        .start_on(ports);
    assert_relays(&server);
    wait_file_contains(&server, &log, "realm: e2e.test");
}

#[test]
fn coturn_config_mistakes_are_errors() {
    let files = LogDir::new("coturn_config-errors");
    let bad = files.path().join("bad.conf");
    std::fs::write(&bad, "realm=e2e.test\nstatic-auth-secret=s\nlistening-port=3478x\n").unwrap();
    let bad_arg = bad.to_str().unwrap();
    for args in [&["--check-config", "--coturn-config", bad_arg][..], &["migrate", bad_arg][..]] {
        let run = turn_server_cli(args, files.path());
        let out = run.output();
        assert!(
            run.status.and_then(|s| s.code()) == Some(1) && out.contains("bad.conf:3: listening-port"),
            "turn-server {args:?}: expected exit 1 naming bad.conf:3 and listening-port, got {}:\n{}",
            run.describe_status(),
            tail(&out, 20)
        );
    }
    let good = files.path().join("good.conf");
    std::fs::write(&good, "static-auth-secret=s\n").unwrap();
    let toml = files.path().join("c.toml");
    std::fs::write(&toml, "[auth]\nsecrets = [\"s\"]\n").unwrap();
    let both = turn_server_cli(
        &["--check-config", "--coturn-config", good.to_str().unwrap(), "--config", toml.to_str().unwrap()],
        files.path(),
    );
    assert!(
        both.status.and_then(|s| s.code()) == Some(1) && both.output().contains("--coturn-config"),
        "--coturn-config with --config must be refused: {}:\n{}",
        both.describe_status(),
        tail(&both.output(), 20)
    );
    let missing = turn_server_cli(&["--check-config", "--coturn-config", "/nonexistent/turnserver.conf"], files.path());
    assert!(
        !missing.success() && missing.output().contains("/nonexistent/turnserver.conf"),
        "a missing coturn file must be named: {}",
        tail(&missing.output(), 20)
    );
}
