//! The `turn-server` command line as an operator meets it: `--check-config` on the shipped
//! example configs and on broken ones, the config file driving a live server, `--log-file`, and
//! the `credentials` and `quickstart` subcommands producing credentials that really work.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::client::TurnClient;
use e2e::process::{self, Finished};
use e2e::{repo_root, rest_password, server_binary, tail, turn_server_cli, unix_now, LogDir, ServerBuilder};

/// Runs `turn-server args...` to completion (bounded at 20 s).
fn check_config(config: &Path, dir: &Path) -> Finished {
    turn_server_cli(&["--check-config", "--config", config.to_str().unwrap()], dir)
}

/// The shipped examples are valid as they stand, except that the TLS certificate they name
/// exists only on a real server: `--check-config` loads it, so each example is checked as a copy
/// whose `cert`/`pkey` lines point at a throwaway self-signed pair instead.
#[test]
fn check_config_accepts_the_shipped_examples() {
    let logs = LogDir::new("check_config_examples");
    let (cert, key) = e2e::self_signed_cert(logs.path());
    for example in
        ["ice-config/config.example.toml", "deploy/turn-server.example.toml", "deploy/fleet/relay.example.toml"]
    {
        let text = std::fs::read_to_string(repo_root().join(example))
            .unwrap_or_else(|e| panic!("{example} cannot be read: {e}"));
        let copy: String = text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((k, _)) if k.trim() == "cert" => format!("cert = {:?}", cert.display().to_string()),
                Some((k, _)) if k.trim() == "pkey" => format!("pkey = {:?}", key.display().to_string()),
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = logs.path().join(example.replace('/', "_"));
        std::fs::write(&path, copy).unwrap();
        let run = check_config(&path, logs.path());
        assert!(
            run.success(),
            "turn-server --check-config --config {example}: {}, expected exit 0; output:\n{}",
            run.describe_status(),
            tail(&run.output(), 20)
        );
    }
}

/// `--check-config` must exit 1 and name one of `keys` somewhere in its output.
fn assert_rejected(run: &Finished, keys: &[&str], what: &str) {
    let out = run.output();
    assert!(
        run.status.and_then(|s| s.code()) == Some(1) && keys.iter().any(|k| out.contains(k)),
        "{what}: expected exit code 1 and an error naming one of {keys:?}, got {}; output:\n{}",
        run.describe_status(),
        tail(&out, 20)
    );
}

/// A valid config; each case below breaks one thing in it.
const VALID: &str = "realm = \"example.org\"\n[auth]\nsecrets = [\"s3cret\"]\n";

#[test]
fn check_config_names_the_offending_key() {
    let logs = LogDir::new("check_config_errors");
    let valid = logs.path().join("valid.toml");
    std::fs::write(&valid, VALID).unwrap();
    let run = check_config(&valid, logs.path());
    assert!(
        run.success(),
        "the minimal valid config {VALID:?} is refused: {}; output:\n{}",
        run.describe_status(),
        tail(&run.output(), 20)
    );
    let cases: [(&str, &str, &[&str]); 6] = [
        ("inverted port range", "[turn]\nmin_port = 60000\nmax_port = 50000\n", &["min_port", "max_port"]),
        ("misspelt key", "[turn]\nlistening_prot = 3478\n", &["listening_prot"]),
        ("bad peer range", "[turn]\ndenied_peer_ips = [\"10.0.0.300\"]\n", &["denied_peer_ips"]),
        ("wrong type", "[turn]\nuser_quota = \"many\"\n", &["user_quota"]),
        ("bad external address", "[turn]\nexternal_ips = [\"not-an-ip\"]\n", &["external_ips"]),
        // The server cannot start without them, so the check (systemd's ExecStartPre) must fail.
        (
            "missing TLS certificate",
            "[turn]\ntls_listening_ports = [5349]\ncert = \"/nonexistent/cert.pem\"\npkey = \"/nonexistent/key.pem\"\n",
            &["/nonexistent/cert.pem"],
        ),
    ];
    for (what, broken, keys) in cases {
        let toml = format!("{VALID}{broken}");
        let path = logs.path().join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&path, &toml).unwrap();
        let run = check_config(&path, logs.path());
        assert_rejected(&run, keys, &format!("config with {what} ({toml:?})"));
    }
    let run = turn_server_cli(&["--check-config", "--config", "/nonexistent/turn.toml"], logs.path());
    assert_rejected(&run, &["/nonexistent/turn.toml"], "a missing config file");
}

#[test]
fn check_config_validates_flags_too() {
    let logs = LogDir::new("check_config_flags");
    let ok = turn_server_cli(
        &[
            "--check-config",
            "--use-auth-secret",
            "--static-auth-secret",
            "s3cret",
            "-r",
            "example.org",
            "--min-port",
            "40000",
            "--max-port",
            "40100",
            "--denied-peer-ip",
            "10.0.0.0/8",
            "--allowed-peer-ip",
            "10.1.0.1-10.1.0.9",
        ],
        logs.path(),
    );
    assert!(
        ok.success(),
        "valid flags with --check-config: {}, expected exit 0; output:\n{}",
        ok.describe_status(),
        tail(&ok.output(), 20)
    );
    let secret = ["--use-auth-secret", "--static-auth-secret", "s3cret"];
    let bad = turn_server_cli(
        &[&secret[..], &["--check-config", "--min-port", "60000", "--max-port", "50000"]].concat(),
        logs.path(),
    );
    assert_rejected(&bad, &["min-port", "max-port", "min_port", "max_port"], "--min-port 60000 --max-port 50000");
    let bad =
        turn_server_cli(&[&secret[..], &["--check-config", "--denied-peer-ip", "10.0.0.300"]].concat(), logs.path());
    assert_rejected(&bad, &["10.0.0.300"], "--denied-peer-ip 10.0.0.300");
}

#[tokio::test]
async fn config_file_supplies_secret_and_policy() {
    let logs = LogDir::new("config_file");
    let secret = "secret-from-the-config-file";
    let path = logs.path().join("turn.toml");
    std::fs::write(
        &path,
        format!(
            "realm = \"file.realm\"\n[auth]\nsecrets = [\"{secret}\"]\n\
             [turn]\nuse_auth_secret = true\nallow_loopback_peers = false\n"
        ),
    )
    .unwrap();
    // Ports and addresses come from the harness's flags, the secret only from the file.
    let server = ServerBuilder::new("config_file").without_secret().arg("--config").arg(path.to_str().unwrap()).start();
    let (u, p) = e2e::rest_credential(secret, "alice", 3600);
    let c = TurnClient::connect(server.addr(), &u, &p).await;
    if let Err(e) = c.allocate().await {
        server.fail(&format!("Allocate with a credential signed by the config file's secret failed: {e}"));
    }
    c.close().await;
}

/// A second relay on a port a running one holds refuses to start, even where only UDP would
/// collide: its listeners form an SO_REUSEPORT group, which would otherwise take the second one
/// in silently and split the clients between the two.
#[test]
fn a_second_relay_on_the_same_port_refuses_to_start() {
    let first = ServerBuilder::new("same_port_first").arg("--no-tcp").start();
    let dir = LogDir::new("same_port_second");
    let port = first.addr().port().to_string();
    let second = turn_server_cli(
        &["--listening-ip", "127.0.0.1", "-p", &port, "--no-tcp", "--use-auth-secret", "--static-auth-secret", "s"],
        dir.path(),
    );
    assert!(
        !second.success() && second.output().contains(&format!("cannot listen on udp 127.0.0.1:{port}")),
        "the second relay should fail naming the port: {}",
        second.output()
    );
}

/// Logs to a pipe or file (the journal, under systemd) must not carry terminal colour codes.
#[test]
fn stderr_logs_have_no_colour_codes_when_not_a_terminal() {
    let server = ServerBuilder::new("stderr_plain").start();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("listening") {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(server.log_dir().join("server.stderr")).unwrap_or_default();
    }
    server.check(text.contains("listening") && !text.contains('\u{1b}'), || {
        format!(
            "expected plain log lines on a non-terminal stderr, with one containing \"listening\"; \
             got (escape shown as \\e):\n{}",
            tail(&text.replace('\u{1b}', "\\e"), 5)
        )
    });
}

#[test]
fn log_file_receives_the_logs() {
    let logs = LogDir::new("log_file");
    let log_file = logs.path().join("turn-server.log");
    let server = ServerBuilder::new("log_file").arg("--log-file").arg(log_file.to_str().unwrap()).start();
    // The server answered a STUN probe, so it has bound; the line may still be in a buffer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if text.contains("listening") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.fail(&format!(
        "--log-file {} has no line containing \"listening\" 5 s after the server answered; \
         file content:\n{}",
        log_file.display(),
        tail(&text, 20)
    ));
}

/// The first JSON object in `text` that has an `iceServers` array.
fn find_ice_config(text: &str) -> Option<serde_json::Value> {
    text.match_indices('{').find_map(|(i, _)| {
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) if v.get("iceServers").is_some_and(|s| s.is_array()) => Some(v),
            _ => None,
        }
    })
}

/// `(urls, username, credential)` of the first iceServers entry that has a `turn:` URL.
fn turn_entry(config: &serde_json::Value) -> Option<(Vec<String>, String, String)> {
    config["iceServers"].as_array()?.iter().find_map(|s| {
        let urls: Vec<String> = match &s["urls"] {
            serde_json::Value::String(u) => vec![u.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect(),
            _ => return None,
        };
        if !urls.iter().any(|u| u.starts_with("turn:")) {
            return None;
        }
        Some((urls, s["username"].as_str()?.to_owned(), s["credential"].as_str()?.to_owned()))
    })
}

/// The value of a `name: value` line.
fn labelled(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?;
        let value = rest.strip_prefix(':')?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Checks a REST credential printed by the subcommand: `<expiry>:<user>` with the expiry about
/// `ttl_secs` from now, and the password an HMAC of it under `secret`.
fn assert_rest_credential(username: &str, password: &str, secret: &str, user: &str, ttl: u64) {
    let (expiry, got_user) =
        username.split_once(':').unwrap_or_else(|| panic!("username {username:?} is not <expiry>:<user>"));
    let expiry: u64 = expiry.parse().expect("expiry is a unix timestamp");
    let now = unix_now();
    assert_eq!(got_user, user, "user id in the username");
    assert!((now + ttl - 5..=now + ttl + 5).contains(&expiry), "expiry {expiry} is not {ttl} s after now ({now})");
    assert_eq!(password, rest_password(secret, username), "password is not base64(HMAC-SHA1(secret, username))");
}

#[tokio::test]
async fn credentials_subcommand_prints_a_credential_the_relay_accepts() {
    let logs = LogDir::new("credentials");
    let secret = "credentials-subcommand-secret";
    let run = turn_server_cli(&["credentials", "--secret", secret, "--user", "alice", "--ttl", "1h"], logs.path());
    let described = || format!("{}; output:\n{}", run.describe_status(), tail(&run.output(), 30));
    assert!(run.success(), "turn-server credentials: {}", described());
    let (Some(username), Some(password)) = (labelled(&run.stdout, "username"), labelled(&run.stdout, "password"))
    else {
        panic!("no `username:` and `password:` lines: {}", described());
    };
    assert_rest_credential(&username, &password, secret, "alice", 3600);

    let server = ServerBuilder::new("credentials_server")
        .without_secret()
        .arg("--use-auth-secret")
        .arg("--static-auth-secret")
        .arg(secret)
        .start();
    let c = TurnClient::connect(server.addr(), &username, &password).await;
    if let Err(e) = c.allocate().await {
        server.fail(&format!("Allocate with the printed credential failed: {e}"));
    }
    c.close().await;
}

#[test]
fn credentials_subcommand_prints_ice_servers_for_the_configured_relays() {
    let logs = LogDir::new("credentials_json");
    let example = repo_root().join("deploy/turn-server.example.toml");
    let secret = "another-secret";
    let run = turn_server_cli(
        &[
            "credentials",
            "--json",
            "--config",
            example.to_str().unwrap(),
            "--secret",
            secret,
            "--user",
            "bob",
            "--ttl",
            "30m",
        ],
        logs.path(),
    );
    assert!(
        run.success(),
        "turn-server credentials --json: {}; output:\n{}",
        run.describe_status(),
        tail(&run.output(), 30)
    );
    let config = find_ice_config(&run.stdout)
        .unwrap_or_else(|| panic!("no JSON object with iceServers in stdout:\n{}", run.stdout));
    let (urls, username, password) =
        turn_entry(&config).unwrap_or_else(|| panic!("no iceServers entry with a turn: URL and credentials: {config}"));
    assert!(
        urls.iter().any(|u| u == "turn:turn.example.org:3478?transport=udp"),
        "the example config's relay is not in the turn: URLs {urls:?}"
    );
    assert_rest_credential(&username, &password, secret, "bob", 1800);
}

/// The arguments of the line that runs `tool` in quickstart's "try it" text.
fn printed_command(stdout: &str, tool: &str) -> Option<Vec<String>> {
    let line = stdout.lines().find(|l| l.trim_start().starts_with(tool))?;
    Some(line.split_whitespace().skip(1).filter(|w| *w != "&").map(str::to_owned).collect())
}

#[tokio::test]
async fn quickstart_prints_an_ice_config_and_a_try_it_line_that_work() {
    let logs = LogDir::new("quickstart");
    // Its own ports instead of the default 3478, so nothing else on the machine interferes.
    let ports = e2e::PortBlock::reserve();
    let port = ports.listen_port();
    let args: Vec<String> = [
        "quickstart".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "--min-port".to_owned(),
        ports.relay_min().to_string(),
        "--max-port".to_owned(),
        ports.relay_max().to_string(),
    ]
    .into();
    let mut child = process::spawn("quickstart", &server_binary(), &args, logs.path(), Duration::from_secs(180));
    let context = |child: &e2e::ChildGuard| {
        format!("stdout:\n{}\nstderr:\n{}", tail(&child.stdout(), 30), tail(&child.stderr(), 30))
    };
    // The text is printed before the listener starts; wait for all of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let config = loop {
        let stdout = child.stdout();
        if let (Some(c), true) = (find_ice_config(&stdout), stdout.contains("turnutils_uclient")) {
            break c;
        }
        if let Some(status) = child.exited() {
            panic!("quickstart exited ({status}) early; {}", context(&child));
        }
        assert!(
            Instant::now() < deadline,
            "quickstart printed no ICE config and turnutils_uclient line within 10 s; {}",
            context(&child)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (urls, username, password) =
        turn_entry(&config).unwrap_or_else(|| panic!("no turn: entry with credentials in {config}"));
    let want = format!("turn:127.0.0.1:{port}");
    assert!(urls.iter().any(|u| u.starts_with(&want)), "quickstart's TURN URLs {urls:?} do not point at {want}");

    // The ICE config's credential works (the webrtc-rs client waits out the listener's start
    // with its own retransmissions).
    let c = TurnClient::connect(format!("127.0.0.1:{port}").parse().unwrap(), &username, &password).await;
    let result = c.allocate().await;
    c.close().await;
    if let Err(e) = result {
        panic!("Allocate with quickstart's credential failed: {e}; {}", context(&child));
    }

    // And so do the printed coturn commands, run as printed.
    let stdout = child.stdout();
    let peer_args = printed_command(&stdout, "turnutils_peer")
        .unwrap_or_else(|| panic!("no turnutils_peer line; {}", context(&child)));
    let uclient_args = printed_command(&stdout, "turnutils_uclient")
        .unwrap_or_else(|| panic!("no turnutils_uclient line; {}", context(&child)));
    let peer_port = peer_args.iter().skip_while(|a| *a != "-p").nth(1).and_then(|p| p.parse().ok()).unwrap_or(3480);
    let _peer = e2e::start_turnutils_peer(&peer_args, ([127, 0, 0, 1], peer_port).into(), logs.path());
    let run = process::run(
        "quickstart-uclient",
        &e2e::require_tool("turnutils_uclient"),
        &uclient_args,
        logs.path(),
        Duration::from_secs(60),
    );
    let out = run.output();
    assert!(
        run.success() && out.contains("Total lost packets 0 "),
        "the printed `turnutils_uclient {}` failed: {}, expected exit 0 and \"Total lost packets 0\"; \
         output:\n{}\nquickstart {}",
        uclient_args.join(" "),
        run.describe_status(),
        tail(&out, 20),
        context(&child)
    );
    child.stop();
}
