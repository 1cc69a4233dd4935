// Opens the signaling service's ICE diagnostics page (GET /diag, signaling/src/http/diag.html)
// in headless Chromium with `#token=...`, waits until every row finished gathering, reads the
// table from the DOM and saves a screenshot, for tests/tests/e2e/diag_page.rs. Launch flags as in
// driver.js (system Chromium via playwright-core; TMPDIR set by the test).
//
// Usage: node diag.js '<json config>'   {chromium, url, screenshot, deadlineMs}
// Prints one JSON line on stdout: {ok, browserVersion, status, bodyState, meta, rows: [{server,
// kind, state, host, srflx, relay, relayAddresses, ok, hint}], cspViolations, screenshot} or
// {ok: false, error}. Progress and the page's console go to stderr.
"use strict";
const { launchChromium } = require("./chromium");

const cfg = JSON.parse(process.argv[2]);
const started = Date.now();
let browser = null;
const result = { ok: false, cspViolations: [], console: [] };

function log(...a) {
  console.error(`[diag +${Date.now() - started}ms]`, ...a);
}

function finish(code) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

const deadline = setTimeout(async () => {
  result.error = `diag driver deadline of ${cfg.deadlineMs} ms passed`;
  if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
  finish(2);
}, cfg.deadlineMs || 45000);

async function main() {
  log(`launching ${cfg.chromium}`);
  browser = await launchChromium(cfg.chromium, 30000);
  result.browserVersion = browser.version();
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    const text = m.text();
    console.error(`[page console.${m.type()}] ${text}`);
    result.console.push(`${m.type()}: ${text}`);
    if (/Content Security Policy/i.test(text)) result.cspViolations.push(text);
  });
  page.on("pageerror", (e) => {
    console.error(`[page pageerror] ${e}`);
    result.console.push(`pageerror: ${e}`);
  });
  // Log the URL without its fragment (the token).
  log(`opening ${cfg.url.split("#")[0]}#token=<redacted>`);
  const response = await page.goto(cfg.url, { waitUntil: "load", timeout: 15000 });
  result.httpStatus = response ? response.status() : null;
  result.headers = response ? await response.allHeaders() : {};
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, {
    timeout: 30000,
    polling: 100,
  });
  const dom = await page.evaluate(() => ({
    bodyState: document.body.dataset.state,
    status: document.getElementById("status").textContent,
    meta: document.getElementById("meta").textContent,
    tokenInUrlQuery: window.location.search.includes("token"),
    rows: [...document.querySelectorAll("#rows tr[data-server]")].map((tr) => ({
      server: tr.dataset.server,
      kind: tr.dataset.kind,
      state: tr.dataset.state,
      host: Number(tr.dataset.hostCount),
      srflx: Number(tr.dataset.srflxCount),
      relay: Number(tr.dataset.relayCount),
      relayAddresses: tr.dataset.relayAddresses ? tr.dataset.relayAddresses.split(" ") : [],
      ok: tr.dataset.ok,
      hint: tr.querySelector(".verdict").textContent,
      cells: [...tr.querySelectorAll("td")].map((td) => td.textContent),
    })),
  }));
  Object.assign(result, dom);
  // Blank the token input (a password field, but still) before the picture.
  await page.evaluate(() => {
    document.getElementById("token").value = "";
  });
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  result.screenshot = cfg.screenshot;
  result.ok = true;
  log(`status: ${dom.status}`);
}

main()
  .catch((e) => {
    result.error = String(e && e.stack ? e.stack : e);
  })
  .finally(async () => {
    clearTimeout(deadline);
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
    finish(result.ok ? 0 : 1);
  });
