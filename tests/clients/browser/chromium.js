// Launches Debian's Chromium (never a browser Playwright downloads) headless with the flags every
// browser test here needs; callers add their own (fake media devices, say).
"use strict";
const { chromium } = require("playwright-core");

const BASE_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  // This machine's network is closed: background fetches would only fail, many at a time.
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Without it Chromium ignores the loopback interface when gathering: on a host with only
  // `lo` (a bare network namespace, some CI sandboxes) no candidate, not even a relay one.
  "--allow-loopback-in-peer-connection",
];

function launchChromium(executablePath, timeout, extraArgs = []) {
  return chromium.launch({ executablePath, timeout, args: [...BASE_ARGS, ...extraArgs] });
}

module.exports = { launchChromium };
