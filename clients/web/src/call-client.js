// Why: the call flow a messenger's web app needs on top of the signaling events: media checked
// before anything rings, the ICE config fetched at call start, one outcome event per call, glare
// resolved as the server decides, `call:sync` after every reconnect, and ICE restarts over
// `call:renegotiate` when the network changes, so an app writes none of that itself.

import { io as defaultIo } from "socket.io-client";

import { Connection, asClientError, offlineError } from "./connection.js";
import { Emitter } from "./emitter.js";
import { ClientError } from "./errors.js";
import { IceConfigCache } from "./ice-config.js";
import { checkMedia } from "./media.js";
import { collectQuality } from "./quality.js";
import { realTimers } from "./timers.js";

/**
 * @typedef {import("./index.js").CallOutcome} CallOutcome
 * @typedef {import("./index.js").Ack} Ack
 * @typedef {{reason?: string, replacedBy?: string, incoming?: IncomingCall}} OutcomeDetail
 * @typedef {{callId: string, state: string, role: "caller"|"callee", peerId: string, chatId: string,
 *   callType: "audio"|"video", sdp?: unknown, thisDevice: boolean}} SyncEntry
 */

/** Terminal states in a `call:sync` answer, as the outcome (or end reason) they mean. */
/** @type {Record<string, [CallOutcome | null, string]>} */
const SYNCED_END = {
  rejected: ["rejected", "rejected"],
  busy: ["busy", "busy"],
  "no-answer": ["no-answer", "no-answer"],
  cancelled: ["cancelled", "cancelled"],
  ended: [null, "ended"],
};

/**
 * An SDP as the peer sent it (a string or an RTCSessionDescriptionInit).
 * @param {unknown} sdp
 * @param {RTCSdpType} type
 * @returns {RTCSessionDescriptionInit}
 */
function description(sdp, type) {
  if (typeof sdp === "string") return { type, sdp };
  const obj = /** @type {{type?: RTCSdpType, sdp?: string}} */ (sdp ?? {});
  return { type: obj.type ?? type, sdp: obj.sdp ?? "" };
}

/** @param {RTCSessionDescription | RTCSessionDescriptionInit | null} desc */
function wire(desc) {
  return { type: desc?.type, sdp: desc?.sdp };
}

/**
 * A UUID v4 (the server takes any 1-64 of [A-Za-z0-9_-]); randomUUID exists only in secure
 * contexts, getRandomValues everywhere.
 */
function newCallId() {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** @param {MediaStream | null} stream */
function stopTracks(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/** @param {Ack} ack */
function ackError(ack) {
  const code = ack?.error ?? "failed";
  /** @type {Record<string, string>} */
  const words = {
    already_in_call: "You are already in a call.",
    self_call: "You cannot call yourself.",
    bad_request: "The call service did not understand the request (a bug in this app).",
    forbidden: "This call belongs to someone else.",
    not_found: "This call no longer exists.",
    invalid_state: "The call has already moved on (answered, ended or cancelled).",
    unavailable: "The call service is busy right now; try again in a moment.",
    answered_elsewhere: "The call was answered on another device.",
    payload_too_large: "The request was too large for the call service.",
  };
  return new ClientError(code, words[code] ?? `The call service refused the request (${code}).`);
}

/** @extends {Emitter<import("./index.js").CallEvents>} */
export class Call extends Emitter {
  /**
   * @param {CallClient} client
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
    this._restarting = false;
    this._restartAgain = false;
    /** @type {unknown} */
    this._graceTimer = null;
    /** @type {unknown} */
    this._restartTimer = null;
    /** @type {unknown} */
    this._qualityTimer = null;
    /** An incoming call from our callee held back while the server settles glare. */
    /** @type {IncomingCall | null} */
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
    if (this.state === "ended") return;
    const client = this._client;
    client._request("call:end", { callId: this.id }, { whenOffline: "queue" }).catch(() => {});
    if (this.state === "ringing" && this.role === "caller") {
      this._finish("cancelled", "caller-cancelled", { reason: "caller-cancelled" });
    } else {
      this._finish(null, "hangup");
    }
  }

  /** @param {string} [why] */
  async restartIce(why = "manual") {
    const pc = this.pc;
    // One side offers, so both never offer at once; the callee's ICE fails too when either
    // network changes, so the caller always notices.
    if (this.state !== "accepted" || !pc || this.role !== "caller") return;
    if (this._restarting) {
      this._restartAgain = true;
      return;
    }
    this._restarting = true;
    this._restartAgain = false;
    this.emit("restart", why);
    const timers = this._client._timers;
    timers.clearTimeout(this._restartTimer);
    // An answer that never comes (peer gone) must not block the next restart.
    this._restartTimer = timers.setTimeout(() => this._restartDone(true), 15_000);
    try {
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      const ack = await this._client._request(
        "call:renegotiate",
        { callId: this.id, type: "offer", sdp: wire(pc.localDescription) },
        { whenOffline: "queue", tag: this.id },
      );
      if (!ack?.ok) this._restartDone(false);
    } catch (err) {
      this._restartDone(false);
      if (!this._over()) this._client.emit("error", asClientError(err, "ice-restart-failed", "Could not restart the connection."));
    }
  }

  /** Re-read after an await, where the state may have moved on meanwhile. */
  _over() {
    return this.state === "ended";
  }

  /** @param {boolean} retry */
  _restartDone(retry) {
    this._client._timers.clearTimeout(this._restartTimer);
    this._restartTimer = null;
    this._restarting = false;
    if (retry || this._restartAgain) void this.restartIce("again");
  }

  /**
   * @param {import("./index.js").IceConfig} config
   * @param {MediaStream} stream
   */
  _setup(config, stream) {
    const client = this._client;
    const Peer = client._rtc().RTCPeerConnection;
    const pc = new Peer({ iceServers: config.iceServers, iceTransportPolicy: client._opts.forceRelay ? "relay" : "all" });
    this.pc = pc;
    this.localStream = stream;
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
    pc.addEventListener("iceconnectionstatechange", () => this._iceState(pc.iceConnectionState));
    pc.addEventListener("icecandidateerror", (e) => {
      const ev = /** @type {RTCPeerConnectionIceErrorEvent} */ (e);
      client._ice.refreshAfterAuthError(ev).then(
        (fresh) => {
          if (!fresh || this.state === "ended") return;
          pc.setConfiguration({ ...pc.getConfiguration(), iceServers: fresh.iceServers });
          void this.restartIce("credentials");
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

  /** @param {string} state */
  _iceState(state) {
    this.emit("iceState", state);
    const timers = this._client._timers;
    timers.clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (state === "failed") {
      void this.restartIce("failed");
    } else if (state === "disconnected") {
      // Often a blip that ICE recovers from alone; restart only if it lasts.
      this._graceTimer = timers.setTimeout(() => {
        this._graceTimer = null;
        if (this.pc?.iceConnectionState === "disconnected") void this.restartIce("disconnected");
      }, this._client._opts.disconnectGraceMs ?? 2000);
    }
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
    if (every > 0) {
      this._qualityTimer = this._client._timers.setInterval(() => {
        if (!this.pc) return;
        collectQuality(this.pc, this.lastQuality).then(
          (q) => {
            this.lastQuality = q;
            this.emit("quality", q);
          },
          () => {},
        );
      }, every);
    }
  }

  /** @param {{type?: string, sdp?: unknown}} data */
  async _renegotiate(data) {
    const pc = this.pc;
    if (!pc || this.state !== "accepted") return;
    try {
      if (data.type === "answer") {
        if (pc.signalingState !== "have-local-offer") return;
        await this._setRemote(description(data.sdp, "answer"));
        this._restartDone(false);
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
    const timers = this._client._timers;
    timers.clearTimeout(this._graceTimer);
    timers.clearTimeout(this._restartTimer);
    timers.clearInterval(this._qualityTimer);
    this.pc?.close();
    stopTracks(this.localStream);
    this._client._forget(this);
    this.emit("ended", reason);
  }
}

/** @extends {Emitter<import("./index.js").IncomingCallEvents>} */
export class IncomingCall extends Emitter {
  /**
   * @param {CallClient} client
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
  }

  /**
   * @param {{constraints?: MediaStreamConstraints}} [options]
   * @returns {Promise<Call>}
   */
  async accept(options = {}) {
    const client = this._client;
    const closedError = () => new ClientError("call-closed", "This call is no longer ringing.");
    if (this.closed) throw closedError();
    const constraints = options.constraints ?? { audio: true, video: this.callType === "video" };
    const stream = await checkMedia(constraints, client._rtc());
    /** @type {import("./index.js").IceConfig} */
    let config;
    try {
      config = await client._ice.get();
    } catch (err) {
      stopTracks(stream);
      throw err;
    }
    if (this.closed) {
      stopTracks(stream);
      throw closedError();
    }
    const call = new Call(client, { id: this.id, peerId: this.from, role: "callee", video: Boolean(constraints.video) });
    client._calls.set(call.id, call);
    call._remoteCandidates = this._candidates;
    call._setup(config, stream);
    const pc = /** @type {RTCPeerConnection} */ (call.pc);
    try {
      await call._setRemote(description(this._offer, "offer"));
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (err) {
      call._finish(null, "failed");
      throw asClientError(err, "bad-offer", "The caller's offer could not be used.");
    }
    this._close("accepted");
    // Not awaited: while offline the answer waits in the outbox and the call is still the app's.
    client._request("call:answer", { callId: this.id, sdp: wire(pc.localDescription) }, { whenOffline: "queue", tag: this.id }).then(
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

/** @extends {Emitter<import("./index.js").CallClientEvents>} */
export class CallClient extends Emitter {
  /** @param {import("./index.js").CallClientOptions} options */
  constructor(options) {
    super();
    this._opts = options;
    this._timers = options.timers ?? realTimers;
    this._ice = options.iceConfig ?? new IceConfigCache({ baseUrl: options.url, getToken: options.getToken });
    this._newId = options.newId ?? newCallId;
    /** @type {Map<string, Call>} */
    this._calls = new Map();
    /** @type {Map<string, IncomingCall>} */
    this._incoming = new Map();
    /** @type {Connection | null} */
    this._connection = null;
    /** @type {Array<() => void>} */
    this._unlisten = [];
  }

  get connection() {
    return this._connection;
  }

  get status() {
    return this._connection?.status ?? "disconnected";
  }

  get queued() {
    return this._connection?.queued ?? 0;
  }

  get calls() {
    return /** @type {ReadonlyMap<string, Call>} */ (this._calls);
  }

  /** @returns {import("./index.js").RtcEnvironment} */
  _rtc() {
    const g = /** @type {any} */ (globalThis);
    return this._opts.rtc ?? { RTCPeerConnection: g.RTCPeerConnection, mediaDevices: g.navigator?.mediaDevices, isSecureContext: g.isSecureContext };
  }

  async connect() {
    if (this._connection) return;
    const opts = this._opts;
    const io = opts.io ?? /** @type {any} */ (defaultIo);
    const socket = io(opts.url, {
      path: opts.path ?? "/socket.io",
      // WebSocket first: no polling-to-WebSocket upgrade in the middle of the first requests,
      // one connection less on a phone; polling still when a proxy refuses WebSocket.
      transports: opts.transports ?? ["websocket", "polling"],
      tryAllTransports: true,
      autoConnect: false,
      reconnection: false,
      // Asked on every (re)connect, so an expired token is replaced by the app's fresh one.
      auth: (/** @type {(data: object) => void} */ cb) => {
        Promise.resolve()
          .then(() => opts.getToken())
          .then(
            (token) => cb({ token }),
            () => cb({}),
          );
      },
    });
    const conn = new Connection(socket, {
      maxQueue: opts.maxQueue,
      backoff: opts.backoff,
      timers: this._timers,
      network: opts.network,
      beforeFlush: () => this._sync(),
    });
    this._connection = conn;
    conn.on("status", (s) => this.emit("status", s));
    conn.on("queue", (n) => this.emit("queue", n));
    conn.on("error", (e) => this.emit("error", e));
    conn.on("reconnect", () => {
      for (const call of this._calls.values()) {
        const ice = call.pc?.iceConnectionState;
        if (call.state === "accepted" && ice !== "connected" && ice !== "completed") void call.restartIce("reconnect");
      }
    });
    /** @type {Record<string, (data: any) => void>} */
    const handlers = {
      "call:offer": (d) => this._offer(d),
      "call:answer": (d) => void this._calls.get(d?.callId)?._answered(d.sdp),
      "call:reject": (d) => this._calls.get(d?.callId)?._finish("rejected", "rejected"),
      "call:busy": (d) => this._calls.get(d?.callId)?._finish("busy", "busy"),
      "call:no-answer": (d) => this._calls.get(d?.callId)?._finish("no-answer", "no-answer"),
      "call:end": (d) => this._calls.get(d?.callId)?._finish(null, d.reason ?? "hangup"),
      "call:cancelled": (d) => this._cancelled(d),
      "call:answered-elsewhere": (d) => {
        this._incoming.get(d?.callId)?._close("answered-elsewhere");
        this._calls.get(d?.callId)?._finish("answered-elsewhere", "answered-elsewhere");
      },
      "call:ice-candidate": (d) => {
        const call = this._calls.get(d?.callId);
        if (call) call._addCandidate(d.candidate);
        else this._incoming.get(d?.callId)?._candidates.push(d.candidate);
      },
      "call:renegotiate": (d) => void this._calls.get(d?.callId)?._renegotiate(d),
    };
    for (const [event, handler] of Object.entries(handlers)) socket.on(event, handler);
    this._watchNetwork();
    conn.connect();
  }

  /**
   * @param {string} userId
   * @param {{video?: boolean, chatId?: string, constraints?: MediaStreamConstraints}} [options]
   * @returns {Promise<Call>}
   */
  async call(userId, options = {}) {
    if (this._connection?.status !== "connected") throw offlineError();
    const video = Boolean(options.video);
    const constraints = options.constraints ?? { audio: true, video };
    const stream = await checkMedia(constraints, this._rtc());
    /** @type {import("./index.js").IceConfig} */
    let config;
    try {
      config = await this._ice.get();
    } catch (err) {
      stopTracks(stream);
      throw err;
    }
    const call = new Call(this, { id: this._newId(), peerId: userId, role: "caller", video });
    this._calls.set(call.id, call);
    call._setup(config, stream);
    const pc = /** @type {RTCPeerConnection} */ (call.pc);
    /** @type {Ack} */
    let ack;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      ack = await this._request(
        "call:initiate",
        { callId: call.id, calleeId: userId, chatId: options.chatId ?? "", callType: video ? "video" : "audio", sdp: wire(pc.localDescription) },
        { whenOffline: "fail" },
      );
    } catch (err) {
      call._finish(null, "failed");
      throw asClientError(err, "call-failed", "The call could not be started.");
    }
    if (ack.ok) call._confirmed();
    else {
      if (ack.error === "busy") call._finish("busy", "busy");
      else if (ack.error === "glare") this._cancelled({ callId: call.id, reason: "glare", replacedBy: /** @type {string} */ (ack.winner) });
      else {
        call._finish(null, ack.error ?? "failed");
        throw ackError(ack);
      }
    }
    call._release();
    return call;
  }

  close() {
    for (const call of [...this._calls.values()]) call._finish(null, "closed");
    for (const off of this._unlisten) off();
    this._unlisten = [];
    this._connection?.close();
  }

  /**
   * @param {string} event
   * @param {unknown} payload
   * @param {import("./index.js").RequestOptions} options
   */
  _request(event, payload, options) {
    if (!this._connection) return Promise.reject(offlineError());
    return this._connection.request(event, payload, options);
  }

  /** @param {Call} call */
  _forget(call) {
    this._calls.delete(call.id);
    this._connection?.cancel(call.id, "call-ended", "The call ended before this could be sent.");
    const held = call._heldIncoming;
    call._heldIncoming = null;
    if (held && !held.closed) this.emit("incoming", held);
  }

  /** @param {any} d */
  _offer(d) {
    if (typeof d?.callId !== "string" || this._incoming.has(d.callId) || this._calls.has(d.callId)) return;
    const incoming = new IncomingCall(this, d);
    this._incoming.set(incoming.id, incoming);
    // Our own call to this caller is ringing: the server is about to cancel one of the two
    // (glare). Show this one only if ours loses, so the person never sees both.
    for (const call of this._calls.values()) {
      if (call.role === "caller" && call.state === "ringing" && call.peerId === incoming.from) {
        call._heldIncoming = incoming;
        return;
      }
    }
    this.emit("incoming", incoming);
  }

  /** @param {{callId: string, reason?: string, replacedBy?: string}} d */
  _cancelled(d) {
    const reason = d?.reason ?? "cancelled";
    this._incoming.get(d?.callId)?._close(reason);
    const call = this._calls.get(d?.callId);
    if (!call) return;
    /** @type {OutcomeDetail} */
    const detail = { reason };
    if (d.replacedBy) {
      detail.replacedBy = d.replacedBy;
      const winner = this._incoming.get(d.replacedBy);
      if (winner) detail.incoming = winner;
    }
    call._finish("cancelled", reason, detail);
  }

  async _sync() {
    const conn = this._connection;
    if (!conn) return;
    const ids = [...this._calls.keys()];
    // Short: the outbox waits for this, and a lost sync must not hold it for long.
    const ack = await conn.request("call:sync", ids.length > 0 ? { callIds: ids } : {}, { immediate: true, timeoutMs: 5000 });
    if (!ack?.ok || !Array.isArray(ack.calls)) return;
    const entries = /** @type {SyncEntry[]} */ (ack.calls);
    const byId = new Map(entries.map((e) => [e.callId, e]));
    for (const call of [...this._calls.values()]) {
      // Its initiate is still on its way (cut off by the drop, sent again after this sync).
      if (!call._known) continue;
      const entry = byId.get(call.id);
      if (!entry) {
        call._finish(null, "lost");
      } else if (SYNCED_END[entry.state]) {
        const [outcome, reason] = SYNCED_END[entry.state];
        call._finish(outcome, reason, { reason });
      } else if (entry.state === "accepted" && call.state === "ringing" && call.role === "caller") {
        // The answer came while we were away and its SDP is gone: accept, then renegotiate.
        call._accepted();
        void call.restartIce("sync");
      }
    }
    for (const e of entries) {
      if (e.role === "callee" && e.state === "ringing" && e.sdp !== undefined) {
        this._offer({ callId: e.callId, callerId: e.peerId, chatId: e.chatId, callType: e.callType, sdp: e.sdp });
      }
    }
  }

  _watchNetwork() {
    const g = /** @type {any} */ (globalThis);
    const network = this._opts.network === undefined ? (typeof g.window === "object" ? g.window : null) : this._opts.network;
    const restartAll = () => {
      for (const call of this._calls.values()) void call.restartIce("network");
    };
    /** @type {Array<[EventTarget | undefined | null, string]>} */
    const sources = [
      [network, "online"],
      [network, "offline"],
      [g.navigator?.connection, "change"],
    ];
    for (const [target, event] of sources) {
      if (!target?.addEventListener) continue;
      target.addEventListener(event, restartAll);
      this._unlisten.push(() => target.removeEventListener(event, restartAll));
    }
  }
}
