// Why: a ringing call offered to this user, until the person answers or declines it on this
// device or it stops ringing by itself (rang out, the caller gave up, answered on another
// device), which the app's incoming-call screen must follow.

import { Call } from "./call.js";
import { asClientError } from "./connection.js";
import { Emitter } from "./emitter.js";
import { ClientError } from "./errors.js";
import { stopTracks } from "./media.js";
import { description, wire } from "./sdp.js";

/** @extends {Emitter<import("./index.js").IncomingCallEvents>} */
export class IncomingCall extends Emitter {
  /**
   * @param {import("./call-client.js").CallClient} client
   * @param {{callId: string, callerId: string, chatId?: string, callType?: "audio"|"video", sdp: unknown}} offer
   */
  constructor(client, offer) {
    super();
    this._client = client;
    this.id = offer.callId;
    this.from = offer.callerId;
    this.chatId = offer.chatId ?? "";
    /** @type {"audio"|"video"} */
    this.callType = offer.callType === "video" ? "video" : "audio";
    this._offer = offer.sdp;
    this.closed = false;
    /** @type {RTCIceCandidateInit[]} */
    this._candidates = [];
    /** The answer under way: a second `accept()` (a double click) waits for the same call. */
    /** @type {Promise<Call> | null} */
    this._accepting = null;
  }

  /**
   * @param {{constraints?: MediaStreamConstraints}} [options]
   * @returns {Promise<Call>}
   */
  accept(options = {}) {
    if (!this._accepting) {
      this._accepting = this._accept(options);
      // A failed media check leaves the call ringing: the person may fix it and accept again.
      this._accepting.catch(() => {
        this._accepting = null;
      });
    }
    return this._accepting;
  }

  /** @param {{constraints?: MediaStreamConstraints}} options */
  async _accept(options) {
    const client = this._client;
    const closedError = () => new ClientError("call-closed", "This call is no longer ringing.");
    if (this.closed) throw closedError();
    const constraints = options.constraints ?? { audio: true, video: this.callType === "video" };
    const { stream, config } = await client._prepare(constraints);
    if (this.closed) {
      stopTracks(stream);
      throw closedError();
    }
    const call = new Call(client, { id: this.id, peerId: this.from, role: "callee", video: Boolean(constraints.video) });
    client._calls.set(call.id, call);
    call._remoteCandidates = this._candidates;
    try {
      call._setup(config, stream);
      const pc = /** @type {RTCPeerConnection} */ (call.pc);
      await call._setRemote(description(this._offer, "offer"));
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (err) {
      call._finish(null, "failed");
      throw asClientError(err, "bad-offer", "The caller's offer could not be used.");
    }
    this._close("accepted");
    // Not awaited: while offline the answer waits in the outbox and the call is still the app's.
    client._request("call:answer", { callId: this.id, sdp: wire(call.pc?.localDescription ?? null) }, { whenOffline: "queue", tag: this.id }).then(
      (ack) => {
        if (ack.ok) call._accepted();
        else if (ack.error === "answered_elsewhere") call._finish("answered-elsewhere", "answered-elsewhere");
        else call._finish(null, ack.error ?? "failed");
      },
      (err) => call._finish(null, err?.code ?? "failed"),
    );
    call._release();
    return call;
  }

  async reject() {
    if (this.closed) return;
    this._close("rejected");
    await this._client._request("call:reject", { callId: this.id }, { whenOffline: "queue" }).catch(() => {});
  }

  /** @param {string} reason */
  _close(reason) {
    if (this.closed) return;
    this.closed = true;
    this._client._incoming.delete(this.id);
    this.emit("closed", reason);
  }
}
