//! The `/call` page in headless Chromium, step by step from a test: a running
//! `tests/clients/browser/callpage.js` (JSON lines over the same pipes as the Socket.IO
//! [`Driver`]) holding named browsers and pages. Between two steps the test may stop a signaling
//! instance or a relay, which a one-shot driver script could not wait for.
//!
//! Screenshots are checked to be PNGs taken while the expected words were on the page, and kept
//! as `target/e2e-logs/call_page/<file>` (the run's own log directory goes when the test passes).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::{is_png, ChromiumRun};
use crate::clients_dir;
use crate::signaling::{require, Driver};
use crate::LogDir;

/// Chromium's own start and a page load are slow on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(30);

/// The driver process and its browsers; dropping it closes them (and the reaper kills leftovers).
pub struct CallPages {
    driver: Driver,
    req: u64,
    chromium: PathBuf,
    logs: LogDir,
    _reaper: ChromiumRun,
}

/// `/call#token=...` on `base` (`http://host:port`).
pub fn call_url(base: &str, token: &str) -> String {
    format!("{base}/call#token={token}")
}

impl CallPages {
    /// Starts the driver, or fails saying what to install.
    pub fn start(name: &str) -> Self {
        let chromium = require("chromium", "apt-get install -y chromium");
        let node = require("node", "apt-get install -y nodejs npm");
        for package in ["playwright-core", "socket.io-client"] {
            assert!(
                clients_dir().join("node_modules").join(package).is_dir(),
                "{package} is not installed: run `npm ci --prefix tests/clients` (tests/run-all.sh does this)"
            );
        }
        let logs = LogDir::new(name);
        let reaper = ChromiumRun::new();
        let script = clients_dir().join("browser").join("callpage.js");
        let driver = Driver::spawn("browser", &node, &[script, reaper.tmpdir().to_path_buf()], logs.path());
        Self { driver, req: 0, chromium, logs, _reaper: reaper }
    }

    /// Where screenshots and the driver's stderr go.
    pub fn log_dir(&self) -> &std::path::Path {
        self.logs.path()
    }

    fn op(&mut self, mut cmd: Value, within: Duration) -> Value {
        self.req += 1;
        let req = self.req;
        cmd["req"] = json!(req);
        let what = format!("reply to {cmd}");
        self.driver.send(cmd);
        let r = self
            .driver
            .wait_for(within + Duration::from_secs(5), &what, move |v| v["type"] == "reply" && v["req"] == req);
        let stderr = std::fs::read_to_string(self.logs.path().join("browser-driver.stderr")).unwrap_or_default();
        assert_eq!(r["ok"], true, "{what}: {}\n--- driver stderr:\n{}", r["error"], crate::tail(&stderr, 60));
        r["data"].clone()
    }

    /// A browser with fake camera and microphone (`fake_devices`), or with none at all.
    pub fn launch(&mut self, browser: &str, fake_devices: bool) -> Value {
        let chromium = self.chromium.clone();
        self.op(json!({"op": "launch", "browser": browser, "chromium": chromium, "fakeDevices": fake_devices}), STEP)
    }

    /// A page in a context of its own; `grant`: camera and microphone allowed (else denied).
    pub fn open(&mut self, page: &str, browser: &str, url: &str, grant: bool) -> Value {
        self.op(json!({"op": "open", "page": page, "browser": browser, "url": url, "grant": grant}), STEP)
    }

    pub fn fill(&mut self, page: &str, selector: &str, value: &str) {
        self.op(json!({"op": "fill", "page": page, "selector": selector, "value": value}), STEP);
    }

    pub fn click(&mut self, page: &str, selector: &str) {
        self.op(json!({"op": "click", "page": page, "selector": selector}), STEP);
    }

    pub fn check(&mut self, page: &str, selector: &str, checked: bool) {
        self.op(json!({"op": "check", "page": page, "selector": selector, "checked": checked}), STEP);
    }

    /// Waits until every `{selector: {dataKey: value or [values]}}` holds; the page's state then.
    pub fn wait(&mut self, page: &str, want: Value, within: Duration) -> Value {
        let ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        self.op(json!({"op": "wait", "page": page, "want": want, "timeoutMs": ms}), within)
    }

    pub fn state(&mut self, page: &str) -> Value {
        self.op(json!({"op": "state", "page": page}), STEP)
    }

    /// Takes the page's network away (or gives it back).
    pub fn offline(&mut self, page: &str, offline: bool) {
        self.op(json!({"op": "offline", "page": page, "offline": offline}), STEP);
    }

    /// `<log dir>/<file>` of the page, taken only while `text` is visible on it; checked to be a
    /// non-empty PNG. The page's state at that moment.
    pub fn screenshot(&mut self, page: &str, file: &str, text: &str) -> Value {
        let path = self.logs.path().join(file);
        let state = self.op(json!({"op": "screenshot", "page": page, "path": path, "text": text}), STEP);
        let (w, h, size) = is_png(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(w > 0 && h > 0 && size > 1000, "{file}: {w}x{h}, {size} bytes");
        if let Some(all_logs) = self.logs.path().parent() {
            let kept = all_logs.join("call_page");
            std::fs::create_dir_all(&kept).expect("target/e2e-logs/call_page");
            std::fs::copy(&path, kept.join(file)).expect("keep the screenshot");
        }
        state
    }
}
