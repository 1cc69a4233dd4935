// Public types of @calls/web: the web client library for the call signaling service
// (signaling/README.md) and the relay's ICE config. The JS beside this file is the
// implementation; `npm run check` type-checks it against these declarations.

import type { Socket } from "socket.io-client";

/** Every Error the library throws or rejects with: a stable `code` and a readable `message`. */
export class ClientError extends Error {
  constructor(code: string, message: string, options?: { cause?: unknown });
  readonly code: string;
}

/** Minimal event emitter the library's objects share (`on` returns an unsubscribe function). */
export class Emitter<Events extends Record<string, unknown[]>> {
  on<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): () => void;
  off<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): void;
  once<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): () => void;
  emit<K extends keyof Events & string>(event: K, ...args: Events[K]): void;
}

/** Injected time sources, so tests run without real sleeps. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

// --- backoff ---

export interface BackoffOptions {
  /** First delay, ms (default 500). */
  baseMs?: number;
  /** Cap, ms (default and at most 15000). */
  maxMs?: number;
  /** Spread of the random part, 0..1 of the delay (default 0.5). */
  jitter?: number;
  /** Random source in [0, 1) (default Math.random). */
  random?: () => number;
}

/** Exponential backoff with bounded jitter, capped at 15 s. */
export class Backoff {
  constructor(options?: BackoffOptions);
  /** The delay before the next attempt; each call counts one attempt. */
  next(): number;
  /** Attempts made since the last reset. */
  readonly attempts: number;
  reset(): void;
}

/** The cap on every delay, 15000 ms. */
export const MAX_BACKOFF_MS: number;

/** Delay for attempt `attempt` (0-based): min(maxMs, baseMs * 2^attempt) with jitter, never above maxMs. */
export function backoffDelay(attempt: number, options?: BackoffOptions): number;

// --- connection and outbox ---

export type ConnectionStatus = "connected" | "disconnected" | "reconnecting";

export interface RequestOptions {
  /** "queue": keep it in the outbox until connected; "fail": reject at once with code "offline". */
  whenOffline?: "queue" | "fail";
  /** Reject with code "timeout" when the ack takes longer (default 10000 ms). */
  timeoutMs?: number;
  /** A tag used by `cancel()` (the call library tags requests with their callId). */
  tag?: string;
  /** Sent ahead of the outbox as soon as the socket is connected (`call:sync` in `beforeFlush`); else rejects "offline". */
  immediate?: boolean;
}

/** The server's acknowledgement, as sent (`{ok: true, ...}` or `{ok: false, error, ...}`). */
export type Ack = { ok: boolean; error?: string; callId?: string; state?: string; [key: string]: unknown };

export interface ConnectionOptions {
  /** Outbox capacity (default 100); a request beyond it rejects with code "queue-full". */
  maxQueue?: number;
  backoff?: BackoffOptions;
  timers?: Timers;
  /** Where `online`/`offline` events come from (default `globalThis` when it has addEventListener). */
  network?: EventTarget | null;
  /** Runs after every (re)connect, before the outbox is flushed (the call client sends `call:sync` here). */
  beforeFlush?: () => Promise<void> | void;
}

export type ConnectionEvents = {
  status: [ConnectionStatus];
  queue: [number];
  /** A connect attempt failed (auth refused, server unreachable); reconnecting goes on. */
  error: [ClientError];
  /** Connected again after a drop (after `beforeFlush`, before the queue is flushed). */
  reconnect: [];
};

/**
 * Wraps any socket.io-client Socket (the messenger's chat socket too): status events, its own
 * reconnect with backoff capped at 15 s (the Manager's is turned off), and an ordered, bounded
 * outbox of requests made while disconnected.
 */
export class Connection extends Emitter<ConnectionEvents> {
  constructor(socket: Socket, options?: ConnectionOptions);
  readonly socket: Socket;
  readonly status: ConnectionStatus;
  /** Requests waiting in the outbox. */
  readonly queued: number;
  /** Sends `event` with `payload`; resolves with the server's ack (also an `{ok: false}` one). */
  request(event: string, payload: unknown, options?: RequestOptions): Promise<Ack>;
  /** Rejects and drops queued requests with this tag (code `code`, e.g. "call-ended"). */
  cancel(tag: string, code: string, message: string): number;
  /** Connects (or reconnects now, resetting the backoff). */
  connect(): void;
  /** Disconnects for good: no reconnect; queued requests reject with code "closed". */
  close(): void;
}

// --- ICE config ---

export interface IceConfig {
  iceServers: RTCIceServer[];
  ttl: number;
  /** When the TURN credential expires, RFC 3339 (e.g. "2026-12-05T07:00:00Z"), server clock. */
  expiresAt: string;
  /** Unix ms, server clock when the answer was made. */
  serverTime: number;
  call?: { ringTimeoutSecs?: number; heartbeatSecs?: number; reconnectGraceSecs?: number; [key: string]: unknown };
  [key: string]: unknown;
}

export interface IceConfigCacheOptions {
  /** Origin (and path prefix) of the signaling service, e.g. "https://calls.example.org". */
  baseUrl: string;
  getToken: () => string | Promise<string>;
  fetch?: typeof fetch;
  /** Refetch this long before `expiresAt` (default 60000, at most half the lifetime). */
  refreshMarginMs?: number;
  /** Local clock, unix ms (default Date.now). */
  now?: () => number;
}

/** `/v1/ice-servers`, fetched at call start and reused until shortly before it expires. */
export class IceConfigCache {
  constructor(options: IceConfigCacheOptions);
  get(): Promise<IceConfig>;
  invalidate(): void;
  /** Server clock minus local clock, ms, from the last answer (0 before any). */
  readonly skewMs: number;
  /**
   * For an `icecandidateerror` event: when the relay answered 401 and this config has not been
   * refetched for that yet, fetches once more and resolves with the fresh config; else null.
   */
  refreshAfterAuthError(event: { errorCode?: number }): Promise<IceConfig | null>;
}

// --- media ---

export type MediaCheckKind =
  | "permission-denied"
  | "no-device"
  | "device-busy"
  | "constraints"
  | "insecure-context"
  | "unsupported";

export class MediaCheckError extends ClientError {
  readonly kind: MediaCheckKind;
}

export interface MediaEnvironment {
  mediaDevices?: { getUserMedia(c: MediaStreamConstraints): Promise<MediaStream> } | undefined;
  isSecureContext?: boolean;
}

/** Opens the microphone (and camera); throws a MediaCheckError a person can read. */
export function checkMedia(constraints: MediaStreamConstraints, env?: MediaEnvironment): Promise<MediaStream>;

/** The MediaCheckError for a getUserMedia failure (a DOMException or anything with a `name`). */
export function classifyMediaError(error: unknown, constraints?: MediaStreamConstraints): MediaCheckError;

// --- quality ---

export interface CandidateInfo {
  /** "host" | "srflx" | "prflx" | "relay" */
  type: string;
  /** "udp" | "tcp" */
  protocol: string;
  /** For a local relay candidate: how we reach the relay, "udp" | "tcp" | "tls". */
  relayProtocol?: string;
  address: string;
  port: number;
  /** For a relay candidate: the TURN URL it came from, when the browser says. */
  url?: string;
}

export interface Quality {
  pair: { local: CandidateInfo; remote: CandidateInfo } | null;
  rttMs: number | null;
  bitrate: { sendKbps: number | null; recvKbps: number | null };
  loss: {
    /** Inbound packets lost / expected since the previous sample (0..1), or over the call without one. */
    recvFraction: number | null;
    /** What the peer reports about our outbound stream (remote-inbound-rtp fractionLost). */
    sendFraction: number | null;
    packetsLost: number;
    packetsReceived: number;
  };
  /** Cumulative counters this sample was made from; pass the Quality back as `previous`. */
  sample: { timestamp: number; bytesSent: number; bytesReceived: number; packetsLost: number; packetsReceived: number };
}

export function collectQuality(pc: { getStats(): Promise<RTCStatsReport | Map<string, any>> }, previous?: Quality | null): Promise<Quality>;

/** The pure half of collectQuality, over a report already read. */
export function computeQuality(report: RTCStatsReport | Map<string, any> | Iterable<any>, previous?: Quality | null): Quality;

// --- calls ---

export type CallOutcome = "answered" | "rejected" | "busy" | "no-answer" | "cancelled" | "answered-elsewhere";

export interface RtcEnvironment {
  RTCPeerConnection: typeof RTCPeerConnection;
  mediaDevices?: MediaEnvironment["mediaDevices"];
  isSecureContext?: boolean;
}

export interface CallClientOptions {
  /** Signaling origin, e.g. "https://calls.example.org" (also the `/v1/ice-servers` base). */
  url: string;
  /** Socket.IO path (default "/socket.io"). */
  path?: string;
  /** Engine.IO transports (default ["websocket", "polling"], each tried in turn). */
  transports?: ("websocket" | "polling" | "webtransport")[];
  /** Called for every (re)connect and ICE config fetch, so a refreshed token is used. */
  getToken: () => string | Promise<string>;
  /** Shared cache (default: one made for `url`). */
  iceConfig?: IceConfigCache;
  /** `iceTransportPolicy: "relay"`: every path goes through the relay. */
  forceRelay?: boolean;
  maxQueue?: number;
  backoff?: BackoffOptions;
  timers?: Timers;
  network?: EventTarget | null;
  /** socket.io-client's `io` (default the imported one). */
  io?: (url: string, options: object) => Socket;
  rtc?: RtcEnvironment;
  /** How often `quality` is emitted during a call, ms (default 1000; 0 turns it off). */
  qualityIntervalMs?: number;
  /** How long ICE may stay `disconnected` before a restart, ms (default 2000). */
  disconnectGraceMs?: number;
  /** Makes call ids (default crypto.randomUUID). */
  newId?: () => string;
}

export type CallClientEvents = {
  status: [ConnectionStatus];
  queue: [number];
  incoming: [IncomingCall];
  error: [ClientError];
};

export class CallClient extends Emitter<CallClientEvents> {
  constructor(options: CallClientOptions);
  readonly status: ConnectionStatus;
  readonly queued: number;
  readonly connection: Connection | null;
  /** Opens the signaling socket (resolves once the first connect is attempted). */
  connect(): Promise<void>;
  /**
   * Checks media, fetches the ICE config and rings `userId`. Rejects with code "offline" when not
   * connected, a MediaCheckError when media fails (no call is started then).
   */
  call(userId: string, options?: { video?: boolean; chatId?: string; constraints?: MediaStreamConstraints }): Promise<Call>;
  /** Calls this client has (ringing or in progress). */
  readonly calls: ReadonlyMap<string, Call>;
  close(): void;
}

export type IncomingCallEvents = {
  /** It stopped ringing: "no-answer" | "caller-cancelled" | "caller-disconnected" | "rejected-elsewhere" | "glare" | "answered-elsewhere" | "accepted" | "rejected". */
  closed: [string];
};

/** Made by the CallClient for each `call:offer` (emitted as `incoming`). */
export class IncomingCall extends Emitter<IncomingCallEvents> {
  private constructor();
  readonly id: string;
  readonly from: string;
  readonly callType: "audio" | "video";
  readonly chatId: string;
  readonly closed: boolean;
  accept(options?: { constraints?: MediaStreamConstraints }): Promise<Call>;
  reject(): Promise<void>;
}

export type CallEvents = {
  /** Exactly one per call, before `ended`; `detail` carries `reason` (cancelled) and `replacedBy`/`incoming` (glare). */
  outcome: [CallOutcome, { reason?: string; replacedBy?: string; incoming?: IncomingCall }];
  answered: [];
  rejected: [];
  busy: [];
  "no-answer": [];
  cancelled: [{ reason: string; replacedBy?: string; incoming?: IncomingCall }];
  "answered-elsewhere": [];
  ended: [string];
  quality: [Quality];
  remoteStream: [MediaStream];
  /** ICE restart begun ("network", "disconnected", "failed", "reconnect") and ICE state changes. */
  restart: [string];
  iceState: [string];
};

/** Made by `CallClient.call()` and `IncomingCall.accept()`. */
export class Call extends Emitter<CallEvents> {
  private constructor();
  readonly id: string;
  readonly peerId: string;
  readonly role: "caller" | "callee";
  readonly video: boolean;
  /** "ringing" | "accepted" | "ended" */
  readonly state: "ringing" | "accepted" | "ended";
  readonly outcome: CallOutcome | null;
  readonly endReason: string | null;
  readonly localStream: MediaStream | null;
  readonly remoteStream: MediaStream | null;
  readonly pc: RTCPeerConnection | null;
  readonly lastQuality: Quality | null;
  hangUp(): Promise<void>;
  /** Starts an ICE restart now (only the caller sends the offer; the callee asks nothing). */
  restartIce(why?: string): Promise<void>;
}
