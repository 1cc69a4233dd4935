// Why: one call as the app sees it: its peer connection and media, exactly one outcome event
// (answered, rejected, busy, no answer, cancelled, answered elsewhere) then `ended`, quality
// samples while it runs, and everything released (timers, tracks, the peer connection, its
// queued requests) the moment it ends, whichever way.

import { asClientError } from "./connection.js";
import { Emitter } from "./emitter.js";
import { IceRestart } from "./ice-restart.js";
import { stopTracks } from "./media.js";
import { collectQuality } from "./quality.js";
import { description, wire } from "./sdp.js";

/**
 * @typedef {import("./index.js").CallOutcome} CallOutcome
 * @typedef {{reason?: string, replacedBy?: string, incoming?: import("./incoming-call.js").IncomingCall}} OutcomeDetail
 */

/** @extends {Emitter<import("./index.js").CallEvents>} */
export class Call extends Emitter {
  /**
   * @param {import("./call-client.js").CallClient} client
   * @param {{id: string, peerId: string, role: "caller"|"callee", video: boolean}} init
   */
  constructor(client, init) {
    super();
    this._client = client;
    this.id = init.id;
    this.peerId = init.peerId;
    this.role = init.role;
    this.video = init.video;
    /** @type {"ringing" | "accepted" | "ended"} */
    this.state = "ringing";
    /** @type {CallOutcome | null} */
    this.outcome = null;
    /** @type {string | null} */
    this.endReason = null;
    /** @type {MediaStream | null} */
    this.localStream = null;
    /** @type {MediaStream | null} */
    this.remoteStream = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {import("./index.js").Quality | null} */
    this.lastQuality = null;
    /** @type {RTCIceCandidateInit[]} */
    this._remoteCandidates = [];
    /**
     * Whether the server has the call: a caller's candidates wait for the initiate's ack (sent
     * before it they would meet `not_found`), and a resync does not end a call it never had.
     */
    this._known = init.role === "callee";
    /** @type {RTCIceCandidateInit[]} */
    this._localCandidates = [];
    /** Events wait here until the app holds the object (see `_release`). */
    /** @type {Array<[string, unknown[]]> | null} */
    this._held = [];
    this._restart = new IceRestart(this);
    /** @type {unknown} */
    this._qualityTimer = null;
    /** An incoming call from our callee held back while the server settles glare. */
    /** @type {import("./incoming-call.js").IncomingCall | null} */
    this._heldIncoming = null;
  }

  /**
   * @template {keyof import("./index.js").CallEvents & string} K
   * @param {K} event
   * @param {import("./index.js").CallEvents[K]} args
   */
  emit(event, ...args) {
    if (this._held) this._held.push([event, args]);
    else super.emit(event, ...args);
  }

  /** Hands over events raised before `call()`/`accept()` returned, on the next tick. */
  _release() {
    this._client._timers.setTimeout(() => {
      const held = this._held ?? [];
      this._held = null;
      for (const [event, args] of held) super.emit(/** @type {any} */ (event), .../** @type {any[]} */ (args));
    }, 0);
  }

  async hangUp() {
    this._hangUp("hangup");
  }

  /**
   * Tells the server (now, or from the outbox after a reconnect) and ends the call here.
   * @param {string} reason the end reason when the call was up
   */
  _hangUp(reason) {
    if (this.state === "ended") return;
    this._client._request("call:end", { callId: this.id }, { whenOffline: "queue" }).catch(() => {});
    if (this.state === "ringing" && this.role === "caller") {
      this._finish("cancelled", "caller-cancelled", { reason: "caller-cancelled" });
    } else {
      this._finish(null, reason);
    }
  }

  /** Re-read after an await, where the state may have moved on meanwhile. */
  _over() {
    return this.state === "ended";
  }

  /** @param {string} [why] */
  async restartIce(why = "manual") {
    await this._restart.start(why);
  }

  /**
   * @param {import("./index.js").IceConfig} config
   * @param {MediaStream} stream
   */
  _setup(config, stream) {
    const client = this._client;
    // Set first, so a peer connection that cannot be built still has its tracks stopped.
    this.localStream = stream;
    const Peer = client._rtc().RTCPeerConnection;
    const pc = new Peer({ iceServers: config.iceServers, iceTransportPolicy: client.forceRelay ? "relay" : "all" });
    this.pc = pc;
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.addEventListener("icecandidate", (e) => {
      if (!e.candidate || this.state === "ended") return;
      const candidate = typeof e.candidate.toJSON === "function" ? e.candidate.toJSON() : e.candidate;
      if (this._known) this._sendCandidate(candidate);
      else this._localCandidates.push(candidate);
    });
    pc.addEventListener("track", (e) => {
      const stream = e.streams[0] ?? this.remoteStream ?? new MediaStream();
      if (!e.streams[0]) stream.addTrack(e.track);
      if (this.remoteStream !== stream) {
        this.remoteStream = stream;
        this.emit("remoteStream", stream);
      }
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      this.emit("iceState", pc.iceConnectionState);
      this._restart.iceState(pc.iceConnectionState);
    });
    pc.addEventListener("icecandidateerror", (e) => {
      const ev = /** @type {RTCPeerConnectionIceErrorEvent} */ (e);
      client._ice.refreshAfterAuthError(ev).then(
        (fresh) => {
          if (!fresh || this.state === "ended") return;
          pc.setConfiguration({ ...pc.getConfiguration(), iceServers: fresh.iceServers });
          void this._restart.start("credentials");
        },
        () => {},
      );
    });
  }

  /** @param {RTCIceCandidateInit} candidate */
  _sendCandidate(candidate) {
    this._client._request("call:ice-candidate", { callId: this.id, candidate }, { whenOffline: "queue", tag: this.id }).catch(() => {});
  }

  /** The server acknowledged the call: candidates held until now go out. */
  _confirmed() {
    this._known = true;
    const held = this._localCandidates;
    this._localCandidates = [];
    for (const c of held) this._sendCandidate(c);
  }

  /** @param {RTCSessionDescriptionInit} desc */
  async _setRemote(desc) {
    const pc = this.pc;
    if (!pc) return;
    await pc.setRemoteDescription(desc);
    const pending = this._remoteCandidates;
    this._remoteCandidates = [];
    for (const c of pending) await pc.addIceCandidate(c).catch(() => {});
  }

  /** @param {RTCIceCandidateInit} candidate */
  _addCandidate(candidate) {
    if (this.pc?.remoteDescription) this.pc.addIceCandidate(candidate).catch(() => {});
    else this._remoteCandidates.push(candidate);
  }

  /** @param {unknown} sdp */
  async _answered(sdp) {
    if (this.state !== "ringing" || this.role !== "caller") return;
    try {
      await this._setRemote(description(sdp, "answer"));
    } catch (err) {
      this._client.emit("error", asClientError(err, "bad-answer", "The other side's answer could not be used."));
    }
    this._accepted();
  }

  _accepted() {
    if (this.state !== "ringing") return;
    this.state = "accepted";
    this._outcome("answered", {});
    const every = this._client._opts.qualityIntervalMs ?? 1000;
    if (every > 0) this._qualityTimer = this._client._timers.setInterval(() => this._sampleQuality(), every);
  }

  _sampleQuality() {
    if (!this.pc) return;
    collectQuality(this.pc, this.lastQuality).then(
      (q) => {
        // A sample read while the call ended arrives after `ended`: dropped.
        if (this.state === "ended") return;
        this.lastQuality = q;
        this.emit("quality", q);
      },
      () => {},
    );
  }

  /** @param {{type?: string, sdp?: unknown}} data */
  async _renegotiate(data) {
    const pc = this.pc;
    if (!pc || this.state !== "accepted") return;
    try {
      if (data.type === "answer") {
        if (pc.signalingState !== "have-local-offer") return;
        await this._setRemote(description(data.sdp, "answer"));
        this._restart.done(false);
        return;
      }
      if (pc.signalingState === "have-local-offer") {
        // Both offered: the caller's offer stands, the callee drops its own.
        if (this.role === "caller") return;
        await pc.setLocalDescription({ type: "rollback" });
      }
      await this._setRemote(description(data.sdp, "offer"));
      await pc.setLocalDescription(await pc.createAnswer());
      await this._client._request(
        "call:renegotiate",
        { callId: this.id, type: "answer", sdp: wire(pc.localDescription) },
        { whenOffline: "queue", tag: this.id },
      );
    } catch (err) {
      if (!this._over()) this._client.emit("error", asClientError(err, "renegotiation-failed", "Could not renegotiate the call."));
    }
  }

  /**
   * @param {CallOutcome} kind
   * @param {OutcomeDetail} detail
   */
  _outcome(kind, detail) {
    if (this.outcome) return;
    this.outcome = kind;
    if (kind === "cancelled") this.emit("cancelled", { reason: detail.reason ?? "cancelled", ...detail });
    else this.emit(kind);
    this.emit("outcome", kind, detail);
  }

  /**
   * @param {CallOutcome | null} outcome
   * @param {string} reason
   * @param {OutcomeDetail} [detail]
   */
  _finish(outcome, reason, detail = {}) {
    if (this.state === "ended") return;
    if (outcome) this._outcome(outcome, detail);
    this.state = "ended";
    this.endReason = reason;
    this._restart.stop();
    this._client._timers.clearInterval(this._qualityTimer);
    this._qualityTimer = null;
    this.pc?.close();
    stopTracks(this.localStream);
    this._client._forget(this);
    this.emit("ended", reason);
  }
}
