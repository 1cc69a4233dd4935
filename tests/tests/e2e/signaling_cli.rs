//! The `signaling` command line: `--check-config` on the shipped configs and on broken ones
//! (each error names its key), and `signaling quickstart` starting the relay and the service
//! together and printing a token and a curl line whose ICE config opens a real allocation.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::client::TurnClient;
use e2e::process::{self, Finished};
use e2e::repo_root;
use e2e::signaling::{free_port, http, signaling_binary};
use e2e::{tail, LogDir, PortBlock};

fn signaling(args: &[&str], dir: &Path) -> Finished {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    process::run("signaling-cli", &signaling_binary(), &args, dir, Duration::from_secs(20))
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    let logs = LogDir::new("sig_cli_examples");
    for example in
        ["ice-config/config.example.toml", "deploy/signaling.example.toml", "deploy/fleet/signaling.example.toml"]
    {
        let path = repo_root().join(example);
        let run = signaling(&["--check-config", "--config", path.to_str().unwrap()], logs.path());
        assert!(run.success(), "{example}: {}\n{}{}", run.describe_status(), run.stdout, run.stderr);
        assert!(run.stdout.contains("configuration OK"));
        assert!(!run.stdout.contains("change-me"), "secrets must not be printed:\n{}", run.stdout);
    }
}

#[test]
fn check_config_names_the_offending_key() {
    let logs = LogDir::new("sig_cli_errors");
    let valid = "[auth]\nsecrets = [\"s3cret\"]\n[[relays]]\nhost = \"turn.example.org\"\n[signaling]\njwt_secret = \"0123456789abcdef\"\n";
    let cases: [(&str, &str, &str); 7] = [
        ("valid", "", ""),
        ("no auth method", "", "signaling.jwt_secret"),
        ("misspelt key", "jwt_secrt = \"x\"\n", "jwt_secrt"),
        ("short secret", "jwt_secret = \"short\"\n", "signaling.jwt_secret"),
        ("bad path", "socketio_path = \"calls\"\n", "signaling.socketio_path"),
        ("webhook without secret", "webhook_url = \"http://127.0.0.1:9/h\"\n", "signaling.webhook_secret"),
        ("bad origin", "cors_origins = [\"app.example\"]\n", "signaling.cors_origins[0]"),
    ];
    for (what, extra, key) in cases {
        let text = match what {
            "no auth method" => valid.replace("jwt_secret = \"0123456789abcdef\"\n", ""),
            "short secret" => valid.replace("jwt_secret = \"0123456789abcdef\"\n", extra),
            _ => format!("{valid}{extra}"),
        };
        let path = logs.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        let run = signaling(&["--check-config", "--config", path.to_str().unwrap()], logs.path());
        if key.is_empty() {
            assert!(run.success(), "{what}: {}{}", run.stdout, run.stderr);
        } else {
            let out = format!("{}{}", run.stdout, run.stderr);
            assert!(
                run.status.and_then(|s| s.code()) == Some(1) && out.contains(key),
                "{what}: expected exit 1 naming {key}, got {}:\n{out}",
                run.describe_status()
            );
        }
    }
    // Flags are checked the same way.
    let run = signaling(
        &[
            "--check-config",
            "--static-auth-secret",
            "s",
            "--turn-url",
            "turn:h:3478",
            "--jwt-secret",
            "0123456789abcdef",
            "--ring-timeout",
            "0",
        ],
        logs.path(),
    );
    assert!(!run.success() && run.stderr.contains("call.ring_timeout_secs"), "{}", run.stderr);
    let run = signaling(&["--check-config", "--turn-url", "http://nope"], logs.path());
    assert!(!run.success() && run.stderr.contains("--turn-url"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_prints_a_working_token_and_curl_line() {
    let logs = LogDir::new("sig_cli_quickstart");
    let http_port = free_port();
    let block = PortBlock::reserve();
    let turn_port = block.listen_port();
    let args: Vec<String> =
        ["quickstart", "--http-port", &http_port.to_string(), "--turn-port", &turn_port.to_string()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    let mut child = process::spawn("quickstart", &signaling_binary(), &args, logs.path(), Duration::from_secs(60));
    let start = Instant::now();
    let mut curl = None;
    while start.elapsed() < Duration::from_secs(15) && curl.is_none() {
        if let Some(status) = child.exited() {
            panic!("quickstart exited ({status}):\n{}\n{}", child.stdout(), tail(&child.stderr(), 30));
        }
        curl = child.stdout().lines().find(|l| l.trim_start().starts_with("curl ")).map(str::to_owned);
        std::thread::sleep(Duration::from_millis(50));
    }
    let curl = curl.unwrap_or_else(|| panic!("no curl line printed:\n{}", child.stdout()));
    let token = curl.split("Bearer ").nth(1).and_then(|r| r.split('\'').next()).unwrap().to_owned();
    assert!(curl.contains(&format!("http://127.0.0.1:{http_port}/v1/ice-servers")), "{curl}");
    // Wait for the HTTP side, then fetch exactly what the curl line fetches.
    let addr = ([127, 0, 0, 1], http_port).into();
    let mut body = None;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            let r = http(addr, "GET", "/v1/ice-servers", &[("Authorization", &format!("Bearer {token}"))]);
            assert_eq!(r.status, 200, "{}", r.body);
            body = Some(r.json());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = body.expect("quickstart's HTTP port never opened");
    let turn = body["iceServers"].as_array().unwrap().iter().find(|s| s.get("username").is_some()).unwrap().clone();
    let relay_addr = ([127, 0, 0, 1], turn_port).into();
    let client =
        TurnClient::connect(relay_addr, turn["username"].as_str().unwrap(), turn["credential"].as_str().unwrap()).await;
    let alloc = client.allocate().await;
    assert!(
        alloc.is_ok(),
        "Allocate with the quickstart's ICE config failed: {:?}\n{}",
        alloc.err(),
        tail(&child.stderr(), 30)
    );
    client.close().await;
    drop(block);
}
