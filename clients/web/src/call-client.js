// Why: the call flow a messenger's web app needs on top of the signaling events: media checked
// before anything rings, the ICE config fetched at call start, one outcome event per call, glare
// resolved as the server decides, `call:sync` after every reconnect, and ICE restarts when the
// network changes, so an app writes none of that itself. This module owns the socket and routes
// the server's events to the calls (call.js, incoming-call.js).

import { io as defaultIo } from "socket.io-client";

import { ackError } from "./ack-error.js";
import { Call } from "./call.js";
import { newCallId } from "./call-ids.js";
import { syncCalls } from "./call-sync.js";
import { Connection, asClientError, offlineError } from "./connection.js";
import { Emitter } from "./emitter.js";
import { IceConfigCache } from "./ice-config.js";
import { IncomingCall } from "./incoming-call.js";
import { checkMedia, stopTracks } from "./media.js";
import { wire } from "./sdp.js";
import { realTimers } from "./timers.js";

/** @extends {Emitter<import("./index.js").CallClientEvents>} */
export class CallClient extends Emitter {
  /** @param {import("./index.js").CallClientOptions} options */
  constructor(options) {
    super();
    this._opts = options;
    this._timers = options.timers ?? realTimers;
    this._ice = options.iceConfig ?? new IceConfigCache({ baseUrl: options.url, getToken: options.getToken });
    this._newId = options.newId ?? newCallId;
    this._forceRelay = Boolean(options.forceRelay);
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

  /** Whether calls use relay candidates only (`iceTransportPolicy: "relay"`). */
  get forceRelay() {
    return this._forceRelay;
  }

  /**
   * Applies to the next call placed or answered. Not to a call in progress: JSEP has a policy
   * change take effect at the next gathering (an ICE restart), but in headless Chromium through
   * our relay a restart after `setConfiguration` kept the old host pair (the answerer gathered
   * no relay candidates for the new generation), so the library does not pretend it moves.
   * @param {boolean} relay
   */
  set forceRelay(relay) {
    this._forceRelay = Boolean(relay);
  }

  /**
   * What every call needs before it rings or answers: the media (checked, so a failure starts
   * nothing) and the ICE config; the media is released when the config cannot be had.
   * @param {MediaStreamConstraints} constraints
   * @returns {Promise<{stream: MediaStream, config: import("./index.js").IceConfig}>}
   */
  async _prepare(constraints) {
    const stream = await checkMedia(constraints, this._rtc());
    try {
      return { stream, config: await this._ice.get() };
    } catch (err) {
      stopTracks(stream);
      throw err;
    }
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
      // WebSocket first: one connection less on a phone, and no upgrade in the middle of the
      // first requests; polling still when a proxy refuses WebSocket.
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
      beforeFlush: () => syncCalls(this),
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
    const { stream, config } = await this._prepare(constraints);
    const call = new Call(this, { id: this._newId(), peerId: userId, role: "caller", video });
    this._calls.set(call.id, call);
    /** @type {import("./index.js").Ack} */
    let ack;
    try {
      call._setup(config, stream);
      const pc = /** @type {RTCPeerConnection} */ (call.pc);
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

  /**
   * Signs out: calls in progress are hung up (the server is told if the socket is up), ringing
   * incoming calls close with reason "closed", and the socket closes for good.
   */
  close() {
    for (const call of [...this._calls.values()]) call._hangUp("closed");
    for (const incoming of [...this._incoming.values()]) incoming._close("closed");
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
    for (const tag of [call.id, call._restart.tag]) this._connection?.cancel(tag, "call-ended", "The call ended before this could be sent.");
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
    /** @type {import("./call.js").OutcomeDetail} */
    const detail = { reason };
    if (d.replacedBy) {
      detail.replacedBy = d.replacedBy;
      const winner = this._incoming.get(d.replacedBy);
      if (winner) detail.incoming = winner;
    }
    call._finish("cancelled", reason, detail);
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
