//! SIGHUP re-reads the config file: a rotated REST secret takes effect at once, a live allocation
//! made with the old one keeps relaying and refreshing, a changed log level applies, and a broken
//! file is refused with the reason logged while the running configuration stays.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::peers::UdpEcho;
use e2e::turn_wire::{TurnClient, Wire};
use e2e::ServerBuilder;
use turn_server::proto::stun::Class;

fn config(secret: &str, log_level: &str) -> String {
    format!(
        "realm = \"e2e.test\"\n[auth]\nsecrets = [\"{secret}\"]\n[turn]\nallow_loopback_peers = true\n\
         log_level = \"{log_level}\"\n"
    )
}

/// One datagram over the channel to the echo peer and back.
fn relays(client: &mut TurnClient, payload: &[u8]) -> bool {
    client.send_channel_data(0x4000, payload).unwrap();
    matches!(client.recv_data(Duration::from_secs(2)), Ok(Some((_, data))) if data == payload)
}

fn probe_ok(server: &e2e::Server, secret: &str) -> bool {
    server.probe(secret, "udp").success()
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_rotates_the_secret_and_refuses_a_broken_file() {
    let dir = e2e::LogDir::new("config_reload-files");
    let path = dir.path().join("config.toml");
    write(&path, &config("first-secret", "info"));
    let server =
        ServerBuilder::new("config_reload").without_secret().arg("--config").arg(path.display().to_string()).start();
    assert!(probe_ok(&server, "first-secret"));

    // A call in progress, made with the first secret.
    let username = format!("{}:live", e2e::unix_now() + 3600);
    let password = e2e::rest_password("first-secret", &username);
    let mut live = TurnClient::new(Wire::udp(server.addr()).unwrap(), &username, &password);
    let relayed = live.allocate(17).unwrap().relayed;
    let echo = UdpEcho::start(format!("127.0.0.1:{}", server.ports().peer_port(0)).parse().unwrap());
    assert!(live.channel_bind(0x4000, echo.addr()).unwrap().is_success());
    assert!(relays(&mut live, b"before the rotation"));
    assert!(!server.stderr_tail().contains("refused Allocate"), "debug lines before debug was asked for");

    write(&path, &config("second-secret", "debug"));
    server.signal(libc::SIGHUP);
    server.wait_log("configuration reloaded", Duration::from_secs(10));
    server.check(probe_ok(&server, "second-secret"), || "the new secret does not work".into());
    server.check(!probe_ok(&server, "first-secret"), || "the old secret still allocates".into());
    // The reloaded log level shows the refusal just made at debug level.
    server.wait_log("refused Allocate", Duration::from_secs(10));
    server.check(relays(&mut live, b"after the rotation"), || "the call in progress stopped relaying".into());
    // The live allocation still refreshes with the key it was created with.
    let refreshed = live.refresh(600).unwrap();
    assert_eq!(refreshed.class, Class::Success, "the call in progress must survive the rotation (relayed {relayed})");

    write(&path, "this is = not toml [");
    server.signal(libc::SIGHUP);
    server.wait_log("invalid configuration; keeping the current one", Duration::from_secs(10));
    server.check(probe_ok(&server, "second-secret"), || "a broken file must not change what runs".into());
}
