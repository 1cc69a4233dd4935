// Why: every call needs the relay's ICE config, whose TURN credential is short-lived. Fetching it
// per call start keeps credentials fresh, reusing it until shortly before `expiresAt` spares the
// service a request per call, and judging `expiresAt` on the server's clock (`serverTime`) keeps
// a phone whose clock is minutes off from using a credential the relay already refuses.

import { ClientError } from "./errors.js";

/** @typedef {import("./index.js").IceConfig} IceConfig */

/**
 * `expiresAt` is RFC 3339 (what the service sends); unix ms is taken too.
 * @param {IceConfig} config
 * @returns {number | null}
 */
function expiryMs(config) {
  const at = /** @type {unknown} */ (config.expiresAt);
  const ms = typeof at === "number" ? at : typeof at === "string" ? Date.parse(at) : NaN;
  return Number.isFinite(ms) ? ms : null;
}

export class IceConfigCache {
  /** @param {import("./index.js").IceConfigCacheOptions} options */
  constructor(options) {
    this._baseUrl = options.baseUrl.replace(/\/+$/, "");
    this._getToken = options.getToken;
    /** @type {typeof fetch} */
    this._fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this._marginMs = options.refreshMarginMs ?? 60_000;
    this._now = options.now ?? Date.now;
    /** @type {{config: IceConfig, offset: number, retried: boolean} | null} */
    this._entry = null;
    /** @type {Promise<IceConfig> | null} */
    this._pending = null;
    this._skew = 0;
  }

  get skewMs() {
    return this._skew;
  }

  invalidate() {
    this._entry = null;
  }

  /** @returns {Promise<IceConfig>} */
  get() {
    const entry = this._entry;
    if (entry && this._fresh(entry)) return Promise.resolve(entry.config);
    return this._load(false);
  }

  /**
   * @param {{errorCode?: number}} event
   * @returns {Promise<IceConfig | null>}
   */
  async refreshAfterAuthError(event) {
    if (event?.errorCode !== 401) return null;
    // The browser reports the 401 once per TURN URL: they share the refetch under way.
    if (this._pending) return this._pending;
    const entry = this._entry;
    // One refetch per config: with a secret mismatch the fresh one fails too, and would loop.
    if (entry?.retried) return null;
    if (entry) entry.retried = true;
    return this._load(true);
  }

  /** @param {{config: IceConfig, offset: number}} entry */
  _fresh(entry) {
    const expiresAt = expiryMs(entry.config);
    if (expiresAt === null) return false;
    const lifetime = expiresAt - entry.config.serverTime;
    const margin = Math.min(this._marginMs, Math.max(0, lifetime / 2));
    return this._now() + entry.offset < expiresAt - margin;
  }

  /** @param {boolean} afterAuthError */
  _load(afterAuthError) {
    if (this._pending) return this._pending;
    const pending = this._fetchConfig().then(
      ({ config, offset }) => {
        this._entry = { config, offset, retried: afterAuthError };
        this._skew = offset;
        this._pending = null;
        return config;
      },
      (err) => {
        this._pending = null;
        throw err;
      },
    );
    this._pending = pending;
    return pending;
  }

  async _fetchConfig() {
    /** @type {string} */
    let token;
    try {
      token = await this._getToken();
    } catch (err) {
      throw new ClientError("token-failed", "Could not get a sign-in token for the call service; sign in again.", { cause: err });
    }
    const sentAt = this._now();
    /** @type {Response} */
    let res;
    try {
      res = await this._fetch(`${this._baseUrl}/v1/ice-servers`, {
        headers: { Authorization: `Bearer ${token}` },
        cache: "no-store",
      });
    } catch (err) {
      throw new ClientError("ice-config-unreachable", "Cannot reach the call service to get the relay settings; check the network.", {
        cause: err,
      });
    }
    const receivedAt = this._now();
    /** @type {any} */
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (res.status === 401) {
      throw new ClientError("unauthorized", `The call service refused the sign-in: ${body?.message ?? "token missing or expired"}.`);
    }
    if (!res.ok || !body || !Array.isArray(body.iceServers)) {
      throw new ClientError(
        "ice-config-failed",
        `The call service could not give the relay settings (HTTP ${res.status}${body?.message ? `: ${body.message}` : ""}).`,
      );
    }
    // The server stamped serverTime somewhere between our send and our receipt: take the middle.
    const offset = typeof body.serverTime === "number" ? body.serverTime - (sentAt + receivedAt) / 2 : 0;
    return { config: /** @type {IceConfig} */ (body), offset };
  }
}
