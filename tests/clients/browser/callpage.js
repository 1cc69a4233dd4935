// Drives the signaling service's /call page (signaling/src/http/call_page/) in headless Chromium
// for tests/tests/browser_client.rs: one JSON command per stdin line, one JSON reply per stdout
// line, so the Rust test can stop a signaling instance or a relay between two steps. Pages are
// named; several pages share one browser (a context each, so each has its own permissions and
// offline switch). Browsers are Debian's Chromium via playwright-core (chromium.js), with fake
// media devices unless told otherwise. The test sets TMPDIR (see tests/src/browser.rs).
//
// Commands ({op, req, ...}; every reply is {type: "reply", req, ok, data} or {..., ok: false, error}):
//   launch  {browser, chromium, fakeDevices}    a browser; fakeDevices false: no camera/microphone
//   open    {page, browser, url, grant}         a context and page; grant: camera+microphone allowed
//   fill    {page, selector, value} / click {page, selector} / check {page, selector, checked}
//   wait    {page, want: {selector: {dataKey: value|[values]}}, timeoutMs}   then the page's state
//   state   {page}                              the DOM state (see snapshot())
//   offline {page, offline}                     the page's network off/on (context.setOffline)
//   screenshot {page, path, text}               checks `text` is visible, then saves a PNG
//   exit
"use strict";
// The test's private TMPDIR (Playwright puts the browser profile there), before anything reads it.
if (process.argv[2]) process.env.TMPDIR = process.argv[2];
const readline = require("readline");
const { launchChromium } = require("./chromium");

const browsers = new Map();
const pages = new Map();
const started = Date.now();

function log(...a) {
  console.error(`[callpage +${Date.now() - started}ms]`, ...a);
}

function reply(obj) {
  process.stdout.write(`${JSON.stringify({ type: "reply", ...obj })}\n`);
}

// Everything the tests read: the body's and the quality section's data-*, the visible texts,
// and whether media arrived in the remote <video>.
function snapshot() {
  const $ = (id) => document.getElementById(id);
  const remote = $("remote-video").srcObject;
  const local = $("local-video").srcObject;
  const tracks = (s) => (s ? s.getTracks().map((t) => ({ kind: t.kind, state: t.readyState, muted: t.muted })) : []);
  return {
    body: { ...document.body.dataset },
    quality: { ...$("quality").dataset },
    status: $("status").textContent,
    queue: $("queue").textContent,
    message: $("message").textContent,
    messageKind: $("message").dataset.kind,
    incomingHidden: $("incoming").hidden,
    incomingFrom: $("incoming-from").textContent,
    pair: $("pair").textContent,
    rtt: $("rtt").textContent,
    bitrate: $("bitrate").textContent,
    rttChartSamples: Number($("rtt-chart").dataset.samples || 0),
    bitrateChartSamples: Number($("bitrate-chart").dataset.samples || 0),
    remoteTracks: tracks(remote),
    localTracks: tracks(local),
    remoteVideoSize: [$("remote-video").videoWidth, $("remote-video").videoHeight],
    log: [...$("log").children].slice(0, 40).map((li) => li.textContent),
    tokenInUrl: window.location.href.includes("token"),
  };
}

function matches(want) {
  for (const [selector, attrs] of Object.entries(want)) {
    const el = document.querySelector(selector);
    if (!el) return false;
    for (const [key, value] of Object.entries(attrs)) {
      const have = el.dataset[key];
      if (Array.isArray(value) ? !value.includes(have) : have !== value) return false;
    }
  }
  return true;
}

function pageOf(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

const ops = {
  async launch(cmd) {
    const args = ["--use-fake-device-for-media-stream", "--deny-permission-prompts"];
    // Without fake devices Chromium asks the system, which on a test host has none: the
    // prompt is auto-accepted so what the page sees is "no device", not "denied".
    const b = await launchChromium(cmd.chromium, 30000, cmd.fakeDevices === false ? ["--use-fake-ui-for-media-stream"] : args);
    browsers.set(cmd.browser, b);
    return { version: b.version() };
  },
  async open(cmd) {
    const b = browsers.get(cmd.browser);
    if (!b) throw new Error(`no browser ${cmd.browser}`);
    const context = await b.newContext({ viewport: { width: 1100, height: 900 } });
    const origin = new URL(cmd.url).origin;
    if (cmd.grant) await context.grantPermissions(["camera", "microphone"], { origin });
    const page = await context.newPage();
    const entry = { context, page, console: [], cspViolations: [], errors: [] };
    page.on("console", (m) => {
      const text = m.text();
      console.error(`[${cmd.page} console.${m.type()}] ${text}`);
      entry.console.push(`${m.type()}: ${text}`);
      if (/Content Security Policy/i.test(text)) entry.cspViolations.push(text);
    });
    page.on("pageerror", (e) => {
      console.error(`[${cmd.page} pageerror] ${e}`);
      entry.errors.push(String(e));
    });
    pages.set(cmd.page, entry);
    log(`${cmd.page}: opening ${cmd.url.split("#")[0]}#<redacted>`);
    const response = await page.goto(cmd.url, { waitUntil: "load", timeout: 15000 });
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 10000, polling: 100 });
    return { status: response ? response.status() : null, headers: response ? await response.allHeaders() : {} };
  },
  async fill(cmd) {
    await pageOf(cmd.page).page.fill(cmd.selector, cmd.value, { timeout: 5000 });
  },
  async click(cmd) {
    await pageOf(cmd.page).page.click(cmd.selector, { timeout: 5000 });
  },
  async check(cmd) {
    await pageOf(cmd.page).page.setChecked(cmd.selector, cmd.checked, { timeout: 5000 });
  },
  async wait(cmd) {
    const { page } = pageOf(cmd.page);
    try {
      await page.waitForFunction(matches, cmd.want, { timeout: cmd.timeoutMs || 20000, polling: 100 });
    } catch (e) {
      const state = await page.evaluate(snapshot).catch(() => null);
      throw new Error(`${cmd.page}: ${JSON.stringify(cmd.want)} not reached: ${e.message}\nstate: ${JSON.stringify(state)}`);
    }
    return ops.state(cmd);
  },
  async state(cmd) {
    const entry = pageOf(cmd.page);
    const dom = await entry.page.evaluate(snapshot);
    return { ...dom, cspViolations: entry.cspViolations, errors: entry.errors };
  },
  async offline(cmd) {
    await pageOf(cmd.page).context.setOffline(Boolean(cmd.offline));
  },
  async screenshot(cmd) {
    const { page } = pageOf(cmd.page);
    const visible = await page.evaluate((t) => document.body.innerText.includes(t), cmd.text);
    if (!visible) throw new Error(`${cmd.page}: "${cmd.text}" is not on the page for ${cmd.path}`);
    await page.screenshot({ path: cmd.path, fullPage: true });
    return ops.state(cmd);
  },
  async exit() {
    await shutdown(0);
  },
};

async function shutdown(code) {
  for (const b of browsers.values()) {
    await Promise.race([b.close(), new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
  }
  process.exit(code);
}

const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const cmd = queue.shift();
    const op = ops[cmd.op];
    try {
      if (!op) throw new Error(`unknown op ${cmd.op}`);
      const data = await op(cmd);
      reply({ req: cmd.req, ok: true, data: data ?? null });
    } catch (e) {
      log(`${cmd.op} failed: ${e && e.stack ? e.stack : e}`);
      reply({ req: cmd.req, ok: false, error: String(e && e.message ? e.message : e) });
    }
  }
  busy = false;
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  queue.push(JSON.parse(line));
  pump();
});
process.stdin.on("end", () => shutdown(0));
