//! The signaling contract (`signaling/contract/`: AsyncAPI 3.0 and JSON Schema) on the Rust side
//! of the e2e tests. The checking itself is `tests/clients/contract.js` (ajv, under node), one
//! validator for everything: it runs inside the Socket.IO driver for every payload, and here for
//! HTTP bodies. A driver's `contract_violation` line fails the test that drove it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::repo_root;
use crate::signaling::require;

/// Where clients record the contract's messages they saw (`target/e2e-logs/contract`), read by
/// `node tests/clients/contract.js coverage` after the suite (tests/run-all.sh).
pub fn log_dir() -> PathBuf {
    crate::profile_dir()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(crate::profile_dir)
        .join("e2e-logs")
        .join("contract")
}

/// Panics, with the event, the payload and the schema error, if `line` (a driver's output) reports
/// a contract violation.
pub fn fail_on_violation(line: &Value) {
    if line["type"] == "contract_violation" {
        panic!(
            "signaling contract violated (signaling/contract/): {} at client {}: {}\npayload: {}",
            line["event"], line["id"], line["error"], line["payload"]
        );
    }
}

/// Validates `payload` against the contract's message `message` (a key of
/// `components.messages` in asyncapi.json, e.g. `iceServers`) and records it as seen.
pub fn check(message: &str, payload: &Value) {
    let node = require("node", "apt-get install -y nodejs npm");
    let script = repo_root().join("tests").join("clients").join("contract.js");
    let mut child = Command::new(node)
        .arg(&script)
        .args(["check", message])
        .env("E2E_CONTRACT_LOG", log_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(payload.to_string().as_bytes()).expect("write the payload to contract.js");
    }
    let out = child.wait_with_output().expect("contract.js output");
    assert!(
        out.status.success(),
        "signaling contract violated (signaling/contract/): {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}
