// The call client's lifecycle against a real socket.io server (in this process): close() hangs
// up what is in progress and closes what rings, a call whose peer connection cannot be built
// releases the camera and is forgotten, a double accept answers once, forceRelay reaches the
// next call's peer connection, ICE restarts wait for signaling, and a
// quality sample that comes back after the end is dropped. The RTC environment is the library's
// `rtc` option: node has no RTCPeerConnection, so it is either a constructor that records its
// configuration and refuses (as a browser does for a configuration it rejects), or, where a
// call must be up, the few members the library uses, recording what it is asked.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Call, CallClient, ClientError, IceConfigCache } from "../src/index.js";
import { startServer } from "./io-server.js";

const answer = (event, data) => (event === "call:sync" ? { ok: true, calls: [] } : { ok: true, callId: data?.callId, state: "ringing" });

/** A browser environment whose getUserMedia hands out tracks that count their stop(). */
function environment() {
  const env = { gets: 0, stopped: 0, policies: [] };
  const track = { kind: "audio", stop: () => env.stopped++ };
  env.rtc = {
    isSecureContext: true,
    mediaDevices: { getUserMedia: async () => (env.gets++, { getTracks: () => [track] }) },
    RTCPeerConnection: /** @type {any} */ (
      function Refusing(/** @type {RTCConfiguration} */ config) {
        env.policies.push(config.iceTransportPolicy);
        throw new DOMException("Failed to construct 'RTCPeerConnection': bad ICE server URL", "SyntaxError");
      }
    ),
  };
  return env;
}

/** The members of RTCPeerConnection the library uses for a call that is up, counting offers. */
class RecordingPeer {
  constructor() {
    this.offers = 0;
    this.signalingState = "stable";
    this.iceConnectionState = "connected";
    /** @type {RTCSessionDescriptionInit | null} */
    this.localDescription = null;
    this.remoteDescription = null;
    /** @type {Array<(report: Map<string, any>) => void>} */
    this.statsWaiting = [];
  }
  addTrack() {}
  addEventListener() {}
  async createOffer() {
    this.offers++;
    return { type: "offer", sdp: `v=0 offer ${this.offers}` };
  }
  /** @param {RTCSessionDescriptionInit} desc */
  async setLocalDescription(desc) {
    this.localDescription = desc;
    this.signalingState = desc.type === "offer" ? "have-local-offer" : "stable";
  }
  getStats() {
    return new Promise((resolve) => this.statsWaiting.push(resolve));
  }
  close() {
    this.signalingState = "closed";
  }
}

/** A caller's call the callee answered, on `client`, with a RecordingPeer. */
function upCall(client) {
  const call = new Call(client, { id: "c-live", peerId: "bob", role: "caller", video: false });
  client._calls.set(call.id, call);
  call._setup({ iceServers: [], ttl: 600, expiresAt: "", serverTime: 0 }, /** @type {any} */ ({ getTracks: () => [] }));
  call._confirmed();
  call._accepted();
  call._release();
  return { call, pc: /** @type {RecordingPeer} */ (/** @type {unknown} */ (call.pc)) };
}

async function connected(t, options = {}) {
  const server = await startServer(0, new Set(), answer);
  const env = environment();
  const ice = new IceConfigCache({
    baseUrl: server.url,
    getToken: () => "t",
    fetch: async () =>
      new Response(JSON.stringify({ iceServers: [], ttl: 600, expiresAt: new Date(Date.now() + 600_000).toISOString(), serverTime: Date.now() })),
  });
  const client = new CallClient({ url: server.url, getToken: () => "t", transports: ["websocket"], network: null, qualityIntervalMs: 0, iceConfig: ice, rtc: env.rtc, ...options });
  t.after(async () => {
    client.close();
    await server.stop();
  });
  await client.connect();
  await new Promise((resolve) => (client.status === "connected" ? resolve(undefined) : client.on("status", (s) => s === "connected" && resolve(undefined))));
  return { server, client, env };
}

/** Resolves once the server has seen `event` for `callId`, or fails after 3 s. */
function serverSees(server, event, callId) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (server.seen.some(([e, d]) => e === event && d?.callId === callId)) {
        clearInterval(poll);
        resolve(undefined);
      } else if (Date.now() - started > 3000) {
        clearInterval(poll);
        reject(new Error(`the server never saw ${event} for ${callId}: ${JSON.stringify(server.seen)}`));
      }
    }, 20);
  });
}

test("close() hangs up the call in progress (the server is told) and closes the ringing incoming call", async (t) => {
  const { server, client } = await connected(t);
  const call = new Call(client, { id: "c-up", peerId: "bob", role: "caller", video: false });
  client._calls.set(call.id, call);
  call._confirmed();
  call._accepted();
  call._release();
  client._offer({ callId: "c-ringing", callerId: "carol", sdp: "v=0" });
  const [incoming] = [...client._incoming.values()];
  const closed = [];
  incoming.on("closed", (r) => closed.push(r));
  const ended = new Promise((resolve) => call.on("ended", resolve));

  client.close();
  await serverSees(server, "call:end", "c-up");
  assert.equal(await ended, "closed");
  assert.deepEqual(closed, ["closed"]);
  assert.equal(client.calls.size, 0);
  assert.equal(client.status, "disconnected");
});

test("a call whose peer connection cannot be built stops its tracks, is forgotten and rejects in words", async (t) => {
  const { client, env } = await connected(t);
  await assert.rejects(client.call("bob"), (e) => e instanceof ClientError && e.code === "call-failed" && e.message === "The call could not be started.");
  assert.equal(env.stopped, 1, "the microphone is released");
  assert.equal(client.calls.size, 0);
});

test("accept() twice answers once: one media check, one outcome for both callers", async (t) => {
  const { client, env } = await connected(t);
  client._offer({ callId: "c-in", callerId: "carol", sdp: "v=0" });
  const [incoming] = [...client._incoming.values()];
  const first = incoming.accept();
  const second = incoming.accept();
  assert.equal(first, second);
  await assert.rejects(first, (e) => e.code === "bad-offer");
  assert.equal(env.gets, 1, "one getUserMedia, so one camera to release");
  assert.equal(env.stopped, 1);
  assert.equal(client.calls.size, 0);
});

test("forceRelay is public, starts from the option, and reaches the next call's peer connection", async (t) => {
  const { client, env } = await connected(t, { forceRelay: true });
  assert.equal(client.forceRelay, true);
  await assert.rejects(client.call("bob"));
  client.forceRelay = false;
  await assert.rejects(client.call("bob"));
  assert.deepEqual(env.policies, ["relay", "all"]);
});

test("no ICE restart offer is made while signaling is down (the reconnect restarts a call still down)", async (t) => {
  const { server, client } = await connected(t, { rtc: { RTCPeerConnection: /** @type {any} */ (RecordingPeer) } });
  const { call, pc } = upCall(client);
  server.dropAll();
  await new Promise((resolve) => client.on("status", (s) => s === "reconnecting" && resolve(undefined)));
  await call.restartIce("network");
  assert.equal(pc.offers, 0, "an offer made now would wait in the outbox and go stale");
  assert.equal(client.queued, 0);
});

test("a quality sample that comes back after the call ended is dropped", async (t) => {
  const { client } = await connected(t, { rtc: { RTCPeerConnection: /** @type {any} */ (RecordingPeer) } });
  const { call, pc } = upCall(client);
  const seen = [];
  call.on("quality", (q) => seen.push(q));
  call.on("ended", () => seen.push("ended"));
  await new Promise((resolve) => setTimeout(resolve, 5)); // the call's held events handed over
  call._sampleQuality();
  call._finish(null, "hangup");
  for (const resolve of pc.statsWaiting) resolve(new Map());
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(seen, ["ended"]);
  assert.equal(call.lastQuality, null);
});
