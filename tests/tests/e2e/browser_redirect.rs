//! A real WebRTC client follows the relay's redirect: headless Chromium (through the signaling
//! service's /diag page) gathers candidates against a relay that is past its `capacity` and names
//! a spare relay in `alternate_servers`. The full relay answers the Allocate with an
//! integrity-protected 300 Try Alternate, and Chromium's relay candidate must be on the spare
//! relay, not the full one.
//!
//! Chromium refuses redirects to loopback addresses (crbug.com/649118), so the two relays, the
//! signaling service and the browser all run in a network namespace of the test's own, with the
//! relays on two addresses of a veth interface there (10.99.0.2 and 10.99.0.3).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use e2e::browser::open_diag_page;
use e2e::clients_dir;
use e2e::netns::{self, NetNs};
use e2e::signaling::{require, SignalingBuilder};
use e2e::turn_wire::{TurnClient, Wire};
use e2e::{PortBlock, Server, ServerBuilder};
use serde_json::Value;

const FULL_IP: &str = "10.99.0.2";
const SPARE_IP: &str = "10.99.0.3";

/// A relay on `ip` (and on 127.0.0.1, where the harness checks it is up), configured by file.
fn relay(name: &str, dir: &Path, secret: &str, ip: &str, extra: &str) -> Server {
    let ports = PortBlock::reserve();
    let text = format!(
        "realm = \"e2e.test\"\n[auth]\nsecrets = [\"{secret}\"]\n[turn]\nlistening_ips = [\"127.0.0.1\", \"{ip}\"]\n\
         relay_ips = [\"{ip}\"]\nlistening_port = {}\nmin_port = {}\nmax_port = {}\nno_tcp = true\n\
         drain_timeout_secs = 0\n{extra}",
        ports.listen_port(),
        ports.relay_min(),
        ports.relay_max()
    );
    let config = e2e::peers::write_file(dir, &format!("{name}.toml"), &text);
    ServerBuilder::new(name).bare(Some(secret)).arg("--config").arg(config.display().to_string()).start_on(ports)
}

#[test]
fn chromium_follows_try_alternate_to_the_spare_relay() {
    let chromium = require("chromium", "apt-get install -y chromium");
    let node = require("node", "apt-get install -y nodejs npm");
    assert!(
        clients_dir().join("node_modules").join("playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
    );
    // A veth pair gives the namespace a real (non-loopback) interface; the far end only keeps
    // the link up.
    let group = netns::new_group();
    let ns = NetNs::create(&group, "redirect");
    let far = NetNs::create(&group, "far");
    netns::veth(&ns, "r0", &format!("{FULL_IP}/24"), &far, "f0", "10.99.0.1/24");
    ns.ip(&["addr", "add", &format!("{SPARE_IP}/24"), "dev", "r0"]);
    let dir = e2e::LogDir::new("browser_redirect-files");
    let secret = format!("redirect-{:016x}", rand::random::<u64>());

    // Everything below runs inside the namespace: sockets and the processes started from there.
    ns.run(|| {
        let spare = relay("redirect_spare", dir.path(), &secret, SPARE_IP, "");
        let spare_addr = format!("{SPARE_IP}:{}", spare.addr().port());
        let full = relay(
            "redirect_full",
            dir.path(),
            &secret,
            FULL_IP,
            &format!("capacity = 1\nalternate_servers = [\"{spare_addr}\"]\n"),
        );
        // The one allocation the full relay takes.
        let (username, password) = full.credential("holder");
        let mut holder = TurnClient::new(Wire::udp(full.addr()).unwrap(), &username, &password);
        holder.allocate(17).unwrap();

        let port = full.addr().port();
        let config =
            format!("[[relays]]\nhost = \"{FULL_IP}\"\nudp_port = {port}\ntransports = [\"udp\"]\nstun = false\n");
        let signaling = SignalingBuilder::new("redirect_signaling").turn_secret(&secret).config(&config).start();
        let (result, _logs, ctx) = open_diag_page(&signaling, "browser_redirect", &chromium, &node);
        assert_eq!(result["ok"], true, "diag page run failed: {}\n{ctx}", result["error"]);
        let rows = result["rows"].as_array().cloned().unwrap_or_default();
        let url = format!("turn:{FULL_IP}:{port}?transport=udp");
        let row =
            rows.iter().find(|r| r["server"] == url.as_str()).unwrap_or_else(|| panic!("no row for {url}\n{ctx}"));
        let addrs: Vec<&str> = row["relayAddresses"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let on = |ip: &str, lo: u16, hi: u16| {
            addrs.iter().any(|a| {
                let Some((a_ip, rest)) = a.split_once(':') else { return false };
                let p: u16 = rest.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                a_ip == ip && (lo..=hi).contains(&p)
            })
        };
        assert!(
            on(SPARE_IP, spare.ports().relay_min(), spare.ports().relay_max()),
            "no relay candidate on the spare relay {SPARE_IP}: {addrs:?}\n{ctx}\n--- full relay:\n{}",
            full.stderr_tail()
        );
        assert!(!on(FULL_IP, 1, u16::MAX), "the full relay allocated anyway: {addrs:?}");
        // The call already on the full relay is untouched.
        assert!(holder.refresh(600).unwrap().is_success());
    });
}
