// The call client's lifecycle against a real socket.io server (in this process): close() hangs
// up what is in progress and closes what rings, a call whose peer connection cannot be built
// releases the camera and is forgotten, a double accept answers once, and forceRelay reaches the
// next call's peer connection. The RTC environment is the library's `rtc` option: node has no
// RTCPeerConnection, so it is a constructor that records its configuration and refuses, as a
// browser does for a configuration it rejects.
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
