// Why: a socket.io-client Socket alone neither caps its reconnect delay at the plan's 15 s nor
// keeps requests made while offline; the Manager's own buffer replays them blindly, unbounded
// and without telling the app how many wait. Connection owns both for ANY socket (call
// signaling or the messenger's chat socket): status events, backoff, and an ordered, bounded
// outbox whose entries each resolve with the server's ack.

import { Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ClientError } from "./errors.js";
import { realTimers } from "./timers.js";

/**
 * @typedef {import("./index.js").Ack} Ack
 * @typedef {import("./index.js").ConnectionStatus} ConnectionStatus
 * @typedef {import("./index.js").RequestOptions} RequestOptions
 * @typedef {{seq: number, event: string, payload: unknown, options: RequestOptions, attempt: number,
 *   resolve: (ack: Ack) => void, reject: (err: ClientError) => void}} Item
 */

const DEFAULT_TIMEOUT_MS = 10_000;

/** @extends {Emitter<import("./index.js").ConnectionEvents>} */
export class Connection extends Emitter {
  /**
   * @param {import("socket.io-client").Socket} socket
   * @param {import("./index.js").ConnectionOptions} [options]
   */
  constructor(socket, options = {}) {
    super();
    this.socket = socket;
    this._maxQueue = options.maxQueue ?? 100;
    this._backoff = new Backoff(options.backoff);
    this._timers = options.timers ?? realTimers;
    this._beforeFlush = options.beforeFlush;
    /** @type {Item[]} */
    this._queue = [];
    /** @type {Set<Item>} */
    this._inflight = new Set();
    this._seq = 0;
    /** Set once the socket is connected and `beforeFlush` has run: requests go straight out. */
    this._ready = socket.connected;
    this._closed = false;
    this._droppedOnce = false;
    /** @type {unknown} */
    this._retryTimer = null;
    /** @type {ConnectionStatus} */
    this._status = socket.connected ? "connected" : "disconnected";
    // The Manager's reconnection would race ours and ignore the 15 s cap; ours replaces it.
    socket.io?.reconnection(false);
    this._onConnect = () => this._connected();
    /** @param {string} reason */
    this._onDisconnect = (reason) => this._disconnected(reason);
    /** @param {Error} err */
    this._onConnectError = (err) => this._connectFailed(err);
    socket.on("connect", this._onConnect);
    socket.on("disconnect", this._onDisconnect);
    socket.on("connect_error", this._onConnectError);
    const network = options.network === undefined ? defaultNetwork() : options.network;
    this._network = network;
    // A returning network is the best moment to retry: skip whatever backoff is left.
    this._onOnline = () => {
      if (!this._closed && !this.socket.connected) this.connect();
    };
    network?.addEventListener("online", this._onOnline);
  }

  /** @returns {ConnectionStatus} */
  get status() {
    return this._status;
  }

  get queued() {
    return this._queue.length;
  }

  connect() {
    if (this._closed) return;
    this._clearRetry();
    this._backoff.reset();
    if (!this.socket.connected) this.socket.connect();
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this._clearRetry();
    this._network?.removeEventListener("online", this._onOnline);
    this.socket.off("connect", this._onConnect);
    this.socket.off("disconnect", this._onDisconnect);
    this.socket.off("connect_error", this._onConnectError);
    this.socket.disconnect();
    const pending = [...this._inflight, ...this._queue];
    this._inflight.clear();
    this._queue = [];
    for (const item of pending) item.reject(new ClientError("closed", "The connection was closed by the app."));
    this._setStatus("disconnected");
    this.emit("queue", 0);
  }

  /**
   * @param {string} event
   * @param {unknown} payload
   * @param {RequestOptions & {immediate?: boolean}} [options]
   * @returns {Promise<Ack>}
   */
  request(event, payload, options = {}) {
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new ClientError("closed", "The connection was closed by the app."));
        return;
      }
      /** @type {Item} */
      const item = { seq: this._seq++, event, payload, options, attempt: 0, resolve, reject };
      if (this._ready || (options.immediate && this.socket.connected)) {
        this._send(item);
        return;
      }
      if (options.immediate || (options.whenOffline === "fail" && !this.socket.connected)) {
        reject(offlineError());
        return;
      }
      if (this._queue.length >= this._maxQueue) {
        reject(
          new ClientError(
            "queue-full",
            `Not connected, and ${this._queue.length} requests are already waiting to be sent; this one was dropped.`,
          ),
        );
        return;
      }
      this._queue.push(item);
      this.emit("queue", this._queue.length);
    });
  }

  /**
   * @param {string} tag
   * @param {string} code
   * @param {string} message
   */
  cancel(tag, code, message) {
    const gone = this._queue.filter((item) => item.options.tag === tag);
    if (gone.length === 0) return 0;
    this._queue = this._queue.filter((item) => item.options.tag !== tag);
    for (const item of gone) item.reject(new ClientError(code, message));
    this.emit("queue", this._queue.length);
    return gone.length;
  }

  /** @param {Item} item */
  _send(item) {
    const attempt = ++item.attempt;
    this._inflight.add(item);
    const timeoutMs = item.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.socket.timeout(timeoutMs).emit(item.event, item.payload, (/** @type {Error|null} */ err, /** @type {Ack} */ ack) => {
      // A drop put the item back in the queue; this is socket.io clearing the old attempt.
      if (!this._inflight.has(item) || item.attempt !== attempt) return;
      this._inflight.delete(item);
      if (err) {
        item.reject(
          new ClientError("timeout", `The server did not answer "${item.event}" within ${Math.round(timeoutMs / 1000)} s.`, {
            cause: err,
          }),
        );
      } else {
        item.resolve(ack);
      }
    });
  }

  async _connected() {
    this._clearRetry();
    this._backoff.reset();
    const again = this._droppedOnce;
    if (this._beforeFlush) {
      try {
        await this._beforeFlush();
      } catch (err) {
        this.emit("error", asClientError(err, "sync-failed", "Could not resynchronise after reconnecting."));
      }
    }
    if (!this.socket.connected || this._closed) return;
    this._ready = true;
    // "connected" once resynchronised: a request the app makes now goes straight out.
    this._setStatus("connected");
    if (again) this.emit("reconnect");
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) this._send(item);
    if (queue.length > 0) this.emit("queue", 0);
  }

  /** @param {string} reason */
  _disconnected(reason) {
    this._ready = false;
    this._droppedOnce = true;
    // Requests the server may not have seen go back to the front, in their order; the server's
    // requests are idempotent by callId, so a duplicate is harmless.
    const back = [...this._inflight].sort((a, b) => a.seq - b.seq);
    this._inflight.clear();
    if (back.length > 0) {
      this._queue = [...back, ...this._queue];
      this.emit("queue", this._queue.length);
    }
    if (this._closed || reason === "io client disconnect") {
      this._setStatus("disconnected");
      return;
    }
    this._setStatus("reconnecting");
    this._scheduleRetry();
  }

  /** @param {Error} err */
  _connectFailed(err) {
    if (this._closed) return;
    this.emit("error", new ClientError("connect-failed", connectMessage(err), { cause: err }));
    if (this._status !== "connected") this._setStatus("reconnecting");
    this._scheduleRetry();
  }

  _scheduleRetry() {
    if (this._retryTimer !== null || this._closed) return;
    const delay = this._backoff.next();
    this._retryTimer = this._timers.setTimeout(() => {
      this._retryTimer = null;
      if (!this._closed && !this.socket.connected) this.socket.connect();
    }, delay);
  }

  _clearRetry() {
    if (this._retryTimer !== null) {
      this._timers.clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  /** @param {ConnectionStatus} status */
  _setStatus(status) {
    if (this._status === status) return;
    this._status = status;
    this.emit("status", status);
  }
}

export function offlineError() {
  return new ClientError("offline", "You are offline: the call service cannot be reached right now. Try again when the connection is back.");
}

/**
 * @param {unknown} err
 * @param {string} code
 * @param {string} message
 */
export function asClientError(err, code, message) {
  return err instanceof ClientError ? err : new ClientError(code, message, { cause: err });
}

/** @param {Error & {data?: any}} err */
function connectMessage(err) {
  const detail = err?.data?.message ?? err?.message ?? "";
  if (/token|auth|unauthori[sz]ed|expired|signature/i.test(detail)) {
    return `The call service refused the sign-in (${detail}); retrying with a fresh token.`;
  }
  return `Cannot reach the call service${detail ? ` (${detail})` : ""}; retrying.`;
}

/** @returns {EventTarget | null} */
function defaultNetwork() {
  const g = /** @type {any} */ (globalThis);
  return typeof g.window === "object" && typeof g.window.addEventListener === "function" ? g.window : null;
}
