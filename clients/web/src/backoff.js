// Why: reconnect delays grow exponentially so a dead server is not hammered, are jittered so a
// fleet of clients dropped at once does not come back at once, and are capped at 15 s so a user
// never waits long after the network returns (the product's plan).

/** The plan's cap on any reconnect delay. */
export const MAX_BACKOFF_MS = 15_000;

/**
 * @param {number} attempt 0-based
 * @param {import("./index.js").BackoffOptions} [options]
 * @returns {number}
 */
export function backoffDelay(attempt, options = {}) {
  const maxMs = Math.min(options.maxMs ?? MAX_BACKOFF_MS, MAX_BACKOFF_MS);
  const baseMs = Math.min(options.baseMs ?? 500, maxMs);
  const jitter = Math.min(Math.max(options.jitter ?? 0.5, 0), 1);
  const random = options.random ?? Math.random;
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  // The random part only ever shortens the delay, so the cap holds whatever it draws.
  const delay = exp * (1 - jitter * random());
  return Math.max(0, Math.min(maxMs, Math.round(delay)));
}

export class Backoff {
  /** @param {import("./index.js").BackoffOptions} [options] */
  constructor(options = {}) {
    this._options = options;
    this._attempts = 0;
  }

  get attempts() {
    return this._attempts;
  }

  next() {
    return backoffDelay(this._attempts++, this._options);
  }

  reset() {
    this._attempts = 0;
  }
}
