// The library against the real signaling binary (target/debug/signaling, or $SIGNALING_BIN)
// with the real socket.io-client: incoming calls and their closing, call:sync and the outbox
// across a dropped transport, the ICE config over HTTP, and a failed media check starting no
// call. Skipped, saying so, when the binary has not been built.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { io } from "socket.io-client";

import { CallClient, Connection, IceConfigCache } from "../src/index.js";
import { FakeTimers } from "./fake-timers.js";

const BIN = process.env.SIGNALING_BIN ?? fileURLToPath(new URL("../../../target/debug/signaling", import.meta.url));
const SECRET = `web-test-${process.pid}-${Date.now()}`;

async function startSignaling() {
  const child = spawn(
    BIN,
    ["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--static-auth-secret", "turn-secret", "--realm", "test.local",
      "--turn-url", "turn:127.0.0.1:3478?transport=udp", "--ring-timeout", "1", "-v"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signaling did not start:\n${stderr}`)), 20_000);
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /signaling listening addr=(\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    });
    child.on("exit", (code) => reject(new Error(`signaling exited (${code}):\n${stderr}`)));
  });
  return { url, stop: () => child.kill("SIGKILL") };
}

const token = (user) => execFileSync(BIN, ["token", "--jwt-secret", SECRET, "--user", user, "--ttl", "600"]).toString().trim();

/** The next `event` on `emitter` (a library Emitter or a socket). */
const next = (emitter, event) => new Promise((resolve) => emitter.once(event, resolve));

/** @param {{status: string, on: Function}} x */
const connected = (x) =>
  x.status === "connected"
    ? Promise.resolve()
    : new Promise((resolve) => {
        const off = x.on("status", (s) => s === "connected" && (off(), resolve(undefined)));
      });

test("the library against the real signaling service", { skip: existsSync(BIN) ? false : `no ${BIN}: cargo build -p signaling first` }, async (t) => {
  const sig = await startSignaling();
  const bob = new CallClient({ url: sig.url, getToken: () => token("bob"), network: null, qualityIntervalMs: 0 });
  // alice drives the raw events through a Connection, resyncing like the call client does.
  const timers = new FakeTimers();
  const aliceSocket = io(sig.url, { autoConnect: false, transports: ["websocket"], forceNew: true, auth: { token: token("alice") } });
  const live = new Set();
  const syncs = [];
  const alice = new Connection(aliceSocket, {
    timers,
    network: null,
    backoff: { random: () => 0 },
    beforeFlush: async () => {
      const ack = await alice.request("call:sync", { callIds: [...live] }, { immediate: true });
      syncs.push(ack);
    },
  });
  t.after(() => {
    alice.close();
    bob.close();
    sig.stop();
  });
  await bob.connect();
  alice.connect();
  await Promise.all([connected(bob), connected(alice)]);

  await t.test("an incoming call closes when the caller hangs up during a reconnect", async () => {
    const incoming = next(bob, "incoming");
    const id = "00000000-0000-4000-8000-0000000000a1";
    live.add(id);
    const ack = await alice.request("call:initiate", { callId: id, calleeId: "bob", callType: "video", sdp: { type: "offer", sdp: "v=0" } });
    assert.equal(ack.state, "ringing");
    const call = await incoming;
    assert.equal(call.id, id);
    assert.equal(call.from, "alice");
    assert.equal(call.callType, "video");
    const closed = next(call, "closed");

    const dropped = next(alice, "status");
    aliceSocket.io.engine.close();
    await dropped;
    assert.equal(alice.status, "reconnecting");
    const hangUp = alice.request("call:end", { callId: id });
    assert.equal(alice.queued, 1);
    timers.tick(timers.pending()[0]);
    assert.deepEqual(await hangUp, { ok: true, callId: id, state: "cancelled" }, "delivered after the reconnect");
    const sync = syncs.at(-1);
    assert.equal(sync.ok, true);
    assert.deepEqual(
      sync.calls.map((c) => [c.callId, c.state, c.role, c.thisDevice]),
      [[id, "ringing", "caller", true]],
      "the sync ran before the queued hang-up and moved the call to the new socket",
    );
    assert.equal(await closed, "caller-cancelled");
    assert.equal(call.closed, true);
    live.delete(id);
  });

  await t.test("no answer: the callee's incoming call closes by itself", async () => {
    const incoming = next(bob, "incoming");
    const id = "00000000-0000-4000-8000-0000000000a2";
    const noAnswer = next(aliceSocket, "call:no-answer");
    await alice.request("call:initiate", { callId: id, calleeId: "bob", sdp: "v=0" });
    const call = await incoming;
    assert.equal(await next(call, "closed"), "no-answer");
    assert.equal((await noAnswer).callId, id);
    await assert.rejects(call.accept(), (e) => e.code === "call-closed");
  });

  await t.test("a failed media check starts no call", async () => {
    const denied = new CallClient({
      url: sig.url,
      getToken: () => token("carol"),
      network: null,
      rtc: {
        RTCPeerConnection: /** @type {any} */ (undefined),
        isSecureContext: true,
        mediaDevices: { getUserMedia: async () => Promise.reject(new DOMException("denied", "NotAllowedError")) },
      },
    });
    t.after(() => denied.close());
    await denied.connect();
    await connected(denied);
    let rang = false;
    const offAny = () => (rang = true);
    aliceSocket.on("call:offer", offAny);
    await assert.rejects(denied.call("alice", { video: true }), (e) => e.kind === "permission-denied" && /Allow it/.test(e.message));
    assert.equal(denied.calls.size, 0);
    // The service answers in order per socket: a sync now would see any call made before it.
    const ack = await denied.connection?.request("call:sync", {});
    assert.deepEqual(ack?.calls, []);
    aliceSocket.off("call:offer", offAny);
    assert.equal(rang, false);
  });

  await t.test("the ICE config comes from /v1/ice-servers with the server's clock", async () => {
    const cache = new IceConfigCache({ baseUrl: sig.url, getToken: () => token("bob") });
    const cfg = await cache.get();
    assert.ok(cfg.iceServers.some((s) => [s.urls].flat().includes("turn:127.0.0.1:3478?transport=udp")), JSON.stringify(cfg));
    assert.ok(Math.abs(cache.skewMs) < 5_000, `skew ${cache.skewMs}`);
    assert.equal(await cache.get(), cfg);
  });
});

test("a refused token is reported in words and retried", { skip: existsSync(BIN) ? false : `no ${BIN}` }, async (t) => {
  const sig = await startSignaling();
  let asked = 0;
  const client = new CallClient({ url: sig.url, getToken: () => (asked++, "not-a-jwt"), network: null, backoff: { baseMs: 50 } });
  t.after(() => {
    client.close();
    sig.stop();
  });
  const errors = [];
  const twice = new Promise((resolve) => client.on("error", (e) => errors.push(e) === 2 && resolve(undefined)));
  await client.connect();
  await twice;
  assert.equal(errors[0].code, "connect-failed");
  assert.match(errors[0].message, /refused the sign-in/);
  assert.equal(client.status, "reconnecting");
  assert.ok(asked >= 2, "the token is asked for again on every attempt");
  const cache = new IceConfigCache({ baseUrl: sig.url, getToken: () => "not-a-jwt" });
  await assert.rejects(cache.get(), (e) => e.code === "unauthorized" && /refused the sign-in/.test(e.message));
  const broken = new IceConfigCache({ baseUrl: sig.url, getToken: () => Promise.reject(new Error("logged out")) });
  await assert.rejects(broken.get(), (e) => e.code === "token-failed");
});

test("starting a call while offline fails at once with an offline error", async () => {
  const client = new CallClient({ url: "http://127.0.0.1:9", getToken: () => "t", network: null });
  await assert.rejects(client.call("bob"), (e) => e.code === "offline" && /offline/i.test(e.message));
  assert.equal(client.status, "disconnected");
  assert.equal(client.calls.size, 0);
});
