// Why: the library's waits go through one injectable object so node tests drive time by hand.

/** @type {import("./index.js").Timers} */
export const realTimers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(/** @type {any} */ (h)),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (h) => globalThis.clearInterval(/** @type {any} */ (h)),
};
