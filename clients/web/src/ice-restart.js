// Why: when the network changes (Wi-Fi to 4G) the call's ICE path dies and only a new gathering
// finds another, so the caller sends a restart offer over `call:renegotiate`. The restarts must
// not pile up: one at a time, a short grace for an ICE `disconnected` blip, none while signaling
// is down (the reconnect restarts a call whose ICE is still down), and at most one restart offer
// waiting in the outbox, since an answer to an older offer would be applied to the newer one.

import { asClientError } from "./connection.js";
import { wire } from "./sdp.js";

/** How long an offer may wait for its answer before the restart is tried again (peer gone). */
const ANSWER_WAIT_MS = 15_000;

export class IceRestart {
  /** @param {import("./call.js").Call} call */
  constructor(call) {
    this._call = call;
    this._running = false;
    this._again = false;
    /** Bumped per restart, so a superseded one's late failure does not end the current one. */
    this._generation = 0;
    /** @type {unknown} */
    this._answerTimer = null;
    /** @type {unknown} */
    this._graceTimer = null;
  }

  get _client() {
    return this._call._client;
  }

  /** The outbox tag of this call's restart offers. */
  get tag() {
    return `${this._call.id}#restart`;
  }

  /** @param {string} why */
  async start(why) {
    const call = this._call;
    const client = this._client;
    const pc = call.pc;
    // One side offers, so both never offer at once; the callee's ICE fails too when either
    // network changes, so the caller always notices.
    if (call.state !== "accepted" || !pc || call.role !== "caller") return;
    // Signaling down: the offer could not go out, and would go stale in the outbox.
    if (!client.connection?.socket.connected) return;
    if (this._running) {
      this._again = true;
      return;
    }
    this._running = true;
    this._again = false;
    const generation = ++this._generation;
    // Before any await: a reconnect flushes the outbox right after asking for this restart.
    client.connection?.cancel(this.tag, "superseded", "A newer ICE restart replaced this one.");
    call.emit("restart", why);
    const timers = client._timers;
    timers.clearTimeout(this._answerTimer);
    this._answerTimer = timers.setTimeout(() => this.done(true, generation), ANSWER_WAIT_MS);
    try {
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      if (call._over() || generation !== this._generation) return;
      const ack = await client._request(
        "call:renegotiate",
        { callId: call.id, type: "offer", sdp: wire(pc.localDescription) },
        { whenOffline: "queue", tag: this.tag },
      );
      if (!ack?.ok) this.done(false, generation);
    } catch (err) {
      if (generation !== this._generation || call._over()) return;
      this.done(false, generation);
      client.emit("error", asClientError(err, "ice-restart-failed", "Could not restart the connection."));
    }
  }

  /**
   * The restart is over (answered, refused, or timed out: `retry`).
   * @param {boolean} retry
   * @param {number} [generation] the restart it is about (default: the current one)
   */
  done(retry, generation = this._generation) {
    if (generation !== this._generation) return;
    this._client._timers.clearTimeout(this._answerTimer);
    this._answerTimer = null;
    this._running = false;
    if (retry || this._again) void this.start("again");
  }

  /** @param {string} state the peer connection's `iceConnectionState` */
  iceState(state) {
    const timers = this._client._timers;
    timers.clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (state === "failed") {
      void this.start("failed");
    } else if (state === "disconnected") {
      // Often a blip that ICE recovers from alone; restart only if it lasts.
      this._graceTimer = timers.setTimeout(() => {
        this._graceTimer = null;
        if (this._call.pc?.iceConnectionState === "disconnected") void this.start("disconnected");
      }, this._client._opts.disconnectGraceMs ?? 2000);
    }
  }

  /** The call ended: no timer may fire for it any more. */
  stop() {
    const timers = this._client._timers;
    timers.clearTimeout(this._answerTimer);
    timers.clearTimeout(this._graceTimer);
    this._answerTimer = null;
    this._graceTimer = null;
    this._generation++;
  }
}
