import assert from "node:assert/strict";
import { test } from "node:test";

import { ClientError, IceConfigCache } from "../src/index.js";

/**
 * A /v1/ice-servers that answers like the signaling service, on a server clock `skewMs` ahead of
 * the test's local clock, with a credential valid for `ttlMs` (`expiresAt` in RFC 3339, as the service sends it).
 */
function service(clock, { skewMs = 0, ttlMs = 3_600_000, status = 200 } = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, auth: init.headers.Authorization });
    const serverTime = clock.now + skewMs;
    const body =
      status === 200
        ? { iceServers: [{ urls: ["turn:127.0.0.1:3478"], username: `u${calls.length}`, credential: "c" }], ttl: ttlMs / 1000, expiresAt: new Date(serverTime + ttlMs).toISOString(), serverTime }
        : { error: "unauthorized", message: "token expired" };
    return { ok: status === 200, status, json: async () => body };
  };
  return { fetch, calls };
}

function cache(clock, svc, extra = {}) {
  return new IceConfigCache({ baseUrl: "https://calls.example.org/", getToken: () => "tok", fetch: svc.fetch, now: () => clock.now, ...extra });
}

test("reuses the config until shortly before expiresAt", async () => {
  const clock = { now: 1_000_000 };
  const svc = service(clock);
  const c = cache(clock, svc);
  const first = await c.get();
  assert.equal(svc.calls[0].url, "https://calls.example.org/v1/ice-servers");
  assert.equal(svc.calls[0].auth, "Bearer tok");
  clock.now += 3_600_000 - 60_001;
  assert.equal(await c.get(), first, "still a minute and more to go");
  clock.now += 2;
  const second = await c.get();
  assert.notEqual(second, first);
  assert.equal(svc.calls.length, 2);
});

test("expiry is judged on the server's clock", async () => {
  // The phone's clock is 50 minutes behind: by its own clock the credential looks good for
  // 1h50, but the relay (on server time) refuses it after 1h.
  const clock = { now: 5_000_000 };
  const svc = service(clock, { skewMs: 50 * 60_000 });
  const c = cache(clock, svc);
  const first = await c.get();
  assert.ok(Math.abs(c.skewMs - 50 * 60_000) < 1);
  clock.now += 3_600_000 - 60_000;
  const second = await c.get();
  assert.notEqual(second, first, "refetched by server time, not the local clock");
  // A clock ahead of the server's does not make a fresh config look expired.
  const ahead = { now: 9_000_000 };
  const svc2 = service(ahead, { skewMs: -2 * 3_600_000 });
  const c2 = cache(ahead, svc2);
  const cfg = await c2.get();
  ahead.now += 30 * 60_000;
  assert.equal(await c2.get(), cfg);
  assert.equal(svc2.calls.length, 1);
});

test("a short-lived credential is not refetched on every call", async () => {
  const clock = { now: 0 };
  const svc = service(clock, { ttlMs: 60_000 });
  const c = cache(clock, svc);
  const cfg = await c.get();
  clock.now += 29_000;
  assert.equal(await c.get(), cfg, "margin is at most half the lifetime");
  clock.now += 2_000;
  assert.notEqual(await c.get(), cfg);
});

test("concurrent gets share one request; invalidate forces the next", async () => {
  const clock = { now: 0 };
  const svc = service(clock);
  const c = cache(clock, svc);
  const [a, b] = await Promise.all([c.get(), c.get()]);
  assert.equal(a, b);
  assert.equal(svc.calls.length, 1);
  c.invalidate();
  await c.get();
  assert.equal(svc.calls.length, 2);
});

test("one refetch after the relay answers 401, not a loop", async () => {
  const clock = { now: 0 };
  const svc = service(clock);
  const c = cache(clock, svc);
  await c.get();
  assert.equal(await c.refreshAfterAuthError({ errorCode: 701 }), null, "not an auth error");
  // The browser reports the 401 once per TURN URL; they all lead to one refetch.
  const [fresh, again] = await Promise.all([c.refreshAfterAuthError({ errorCode: 401 }), c.refreshAfterAuthError({ errorCode: 401 })]);
  assert.ok(fresh);
  assert.equal(again, fresh);
  assert.equal(svc.calls.length, 2);
  assert.equal(await c.get(), fresh);
  assert.equal(await c.refreshAfterAuthError({ errorCode: 401 }), null, "the fresh one failing too is not refetched again");
  assert.equal(svc.calls.length, 2);
  // Once it expires and is fetched normally, a 401 may trigger one refetch again.
  clock.now += 3_600_000;
  await c.get();
  assert.ok(await c.refreshAfterAuthError({ errorCode: 401 }));
  assert.equal(svc.calls.length, 4);
});

test("errors say what went wrong", async () => {
  const clock = { now: 0 };
  const refused = cache(clock, service(clock, { status: 401 }));
  await assert.rejects(refused.get(), (err) => err instanceof ClientError && err.code === "unauthorized" && /token expired/.test(err.message));
  const down = new IceConfigCache({ baseUrl: "http://x", getToken: () => "t", fetch: async () => Promise.reject(new TypeError("fetch failed")) });
  await assert.rejects(down.get(), (err) => err.code === "ice-config-unreachable" && /network/.test(err.message));
});
