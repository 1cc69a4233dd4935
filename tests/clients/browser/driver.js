// Drives two headless Chromium pages (tests/clients/browser/call.html) through a call, for
// tests/tests/e2e/browser_call.rs. playwright-core from npm talks to the system's Chromium
// (/usr/bin/chromium, Debian's `chromium`); Playwright's own browsers are never downloaded.
//
// Playwright refuses `--user-data-dir` in launch() args and makes a fresh profile itself, in
// os.tmpdir(): the test sets TMPDIR to a directory of its own, so the profile is new every run
// and any Chromium process left behind can be found by that path.
//
// Usage: node driver.js '<json config>'
//   {chromium, pageUrl, signalingUrl, callerToken, calleeToken, calleeId,
//    media, hangupBy: "caller" | "callee", deadlineMs}
// Prints one JSON line on stdout: {ok: true, caller: {...}, callee: {...}} with each page's
// setup result, selected-pair stats and final state, or {ok: false, error, ...}. Progress and
// the pages' console go to stderr.
"use strict";
const { launchChromium } = require("./chromium");

const cfg = JSON.parse(process.argv[2]);
const WAIT = 30000; // any single wait in a page
const started = Date.now();
let browser = null;
const result = { ok: false };

function log(...a) {
  console.error(`[driver +${Date.now() - started}ms]`, ...a);
}

function finish(code) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

const deadline = setTimeout(async () => {
  result.error = `driver deadline of ${cfg.deadlineMs} ms passed`;
  if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 3000))]).catch(() => {});
  finish(2);
}, cfg.deadlineMs || 80000);

// Polls `cond` (a page-side expression over window.e2e) until true, or fails after `ms`.
async function until(page, name, cond, ms = WAIT) {
  try {
    await page.waitForFunction(cond, null, { timeout: ms, polling: 50 });
  } catch (e) {
    const state = await page.evaluate(() => window.e2e.state()).catch(() => null);
    throw new Error(`${name}: ${cond} not true within ${ms} ms; page state: ${JSON.stringify(state)}`);
  }
}

// Stats once the selected pair has carried bytes both ways (and audio arrived, with media).
async function flowingStats(page, name) {
  const t0 = Date.now();
  let s = null;
  while (Date.now() - t0 < WAIT) {
    s = await page.evaluate(() => window.e2e.stats());
    const audio = s.rtp.some((r) => r.type === "inbound-rtp" && r.packets > 0);
    if (s.pair && s.pair.bytesSent > 0 && s.pair.bytesReceived > 0 && (audio || !cfg.media)) return s;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${name}: no selected pair with bytes both ways within ${WAIT} ms: ${JSON.stringify(s)}`);
}

async function main() {
  log(`launching ${cfg.chromium}`);
  browser = await launchChromium(cfg.chromium, WAIT, [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
  ]);
  result.browserVersion = browser.version();
  log(`Chromium ${result.browserVersion}`);
  const pages = {};
  for (const role of ["caller", "callee"]) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("console", (m) => console.error(`[${role} console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.error(`[${role} pageerror] ${e}`));
    await page.goto(cfg.pageUrl, { timeout: WAIT });
    pages[role] = page;
  }
  const { caller, callee } = pages;
  for (const [role, token] of [["caller", cfg.callerToken], ["callee", cfg.calleeToken]]) {
    result[role] = {};
    result[role].setup = await pages[role].evaluate(
      (c) => window.e2e.setup(c),
      { signalingUrl: cfg.signalingUrl, token, role, media: !!cfg.media },
    );
    log(`${role} connected over ${result[role].setup.transport}`);
  }
  result.caller.call = await caller.evaluate((id) => window.e2e.call(id), cfg.calleeId);
  log(`call ${result.caller.call.callId} offered`);
  for (const [role, page] of Object.entries(pages)) {
    const other = role === "caller" ? "callee" : "caller";
    try {
      await until(page, role, `window.e2e.received.includes("hello from ${other}")`);
    } catch (e) {
      // The other side's view (its channel, pair, what it received) says which half broke.
      const theirs = await pages[other].evaluate(() => window.e2e.state()).catch(() => null);
      const stats = await pages[other].evaluate(() => window.e2e.stats()).catch(() => null);
      throw new Error(`${e.message}\n${other}'s page state: ${JSON.stringify(theirs)}\n${other}'s stats: ${JSON.stringify(stats)}`);
    }
    log(`${role} got the data channel message`);
  }
  // Each side gathers one relay candidate per local interface, and the controlled side may
  // switch pairs as nominations arrive: wait until both report the same pair.
  const t0 = Date.now();
  for (;;) {
    for (const [role, page] of Object.entries(pages)) {
      result[role].stats = await flowingStats(page, role);
    }
    const [a, b] = [result.caller.stats, result.callee.stats];
    if (a.local.port === b.remote.port && a.remote.port === b.local.port) break;
    if (Date.now() - t0 > 10000) {
      log("the two sides never agreed on the selected pair within 10 s");
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  log("bytes flow both ways");
  const [hanger, other] = cfg.hangupBy === "callee" ? ["callee", "caller"] : ["caller", "callee"];
  result[hanger].hangup = await pages[hanger].evaluate(() => window.e2e.hangup());
  await until(pages[other], other, "window.e2e.ended !== null && window.e2e.pc.signalingState === 'closed'");
  log(`${other} got call:end and closed`);
  for (const [role, page] of Object.entries(pages)) {
    result[role].state = await page.evaluate(() => window.e2e.state());
  }
  result.ok = true;
}

main()
  .catch((e) => {
    result.error = String(e && e.stack ? e.stack : e);
    log(result.error);
  })
  .finally(async () => {
    clearTimeout(deadline);
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
    finish(result.ok ? 0 : 1);
  });
