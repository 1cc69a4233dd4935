// The outbox and reconnect logic against a real socket.io server (the `socket.io` package, in
// this process) and a real socket.io-client; only the Connection's own timer is hand-driven.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";

import { Server } from "socket.io";
import { io } from "socket.io-client";

import { ClientError, Connection } from "../src/index.js";
import { FakeTimers } from "./fake-timers.js";

/** A socket.io server acking every event with `{ok: true, echo}`; `hold` names events it leaves unanswered once and drops the socket for. */
async function startServer(port = 0, hold = new Set()) {
  const http = createServer();
  const srv = new Server(http);
  const seen = [];
  srv.on("connection", (s) => {
    s.onAny((event, data, ack) => {
      seen.push([event, data]);
      if (hold.delete(event)) {
        s.conn.close();
        return;
      }
      if (typeof ack === "function") ack({ ok: true, echo: data });
    });
  });
  await new Promise((resolve) => http.listen(port, "127.0.0.1", () => resolve(undefined)));
  const addr = /** @type {import("node:net").AddressInfo} */ (http.address());
  return {
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    srv,
    seen,
    /** Closes every client's transport, as a network drop would. */
    dropAll: () => {
      for (const s of srv.sockets.sockets.values()) s.conn.close();
    },
    stop: () => new Promise((resolve) => srv.close(() => resolve(undefined))),
  };
}

function client(url, options = {}) {
  const timers = new FakeTimers();
  const socket = io(url, { autoConnect: false, transports: ["websocket"], forceNew: true });
  const conn = new Connection(socket, { timers, network: null, backoff: { random: () => 0 }, ...options });
  const statuses = [];
  const counts = [];
  conn.on("status", (s) => statuses.push(s));
  conn.on("queue", (n) => counts.push(n));
  return { conn, socket, timers, statuses, counts };
}

/** @param {Connection} conn @param {string} status */
function until(conn, status) {
  if (conn.status === status) return Promise.resolve();
  return new Promise((resolve) => {
    const off = conn.on("status", (s) => {
      if (s === status) {
        off();
        resolve(undefined);
      }
    });
  });
}

test("requests made offline wait in order, bounded, and resolve with their acks after the reconnect", async (t) => {
  const server = await startServer();
  const order = [];
  const c = client(server.url, {
    maxQueue: 3,
    beforeFlush: async () => {
      order.push("beforeFlush");
      const ack = await c.conn.request("sync", { n: 0 }, { immediate: true });
      order.push(`sync ${ack.ok}`);
    },
  });
  t.after(async () => {
    c.conn.close();
    await server.stop();
  });
  c.conn.connect();
  await until(c.conn, "connected");
  assert.deepEqual(await c.conn.request("message:send", { n: 1 }), { ok: true, echo: { n: 1 } });

  server.dropAll();
  await until(c.conn, "reconnecting");
  assert.deepEqual(c.timers.pending(), [500], "first retry after the base delay");
  const results = [];
  const queued = [1, 2, 3].map((n) =>
    c.conn.request("message:send", { n: 10 + n }, { tag: n === 2 ? "call-2" : undefined }).then(
      (ack) => results.push(["ok", ack.echo.n]),
      (err) => results.push([err.code, n]),
    ),
  );
  assert.equal(c.conn.queued, 3);
  await assert.rejects(c.conn.request("message:send", { n: 14 }), (e) => e instanceof ClientError && e.code === "queue-full" && /3 requests/.test(e.message));
  await assert.rejects(c.conn.request("call:initiate", {}, { whenOffline: "fail" }), (e) => e.code === "offline" && /offline/.test(e.message));
  assert.equal(c.conn.cancel("call-2", "call-ended", "The call ended before this could be sent."), 1);
  assert.equal(c.conn.queued, 2);

  c.timers.tick(500);
  await Promise.all(queued);
  assert.deepEqual(results, [["call-ended", 2], ["ok", 11], ["ok", 13]]);
  assert.deepEqual(order, ["beforeFlush", "sync true", "beforeFlush", "sync true"], "on the first connect and the reconnect");
  const after = server.seen.map(([e, d]) => `${e}:${d.n}`);
  assert.deepEqual(after, ["sync:0", "message:send:1", "sync:0", "message:send:11", "message:send:13"], "sync first, then the outbox in order");
  assert.deepEqual(c.statuses, ["connected", "reconnecting", "connected"]);
  assert.deepEqual(c.counts, [1, 2, 3, 2, 0]);
});

test("a request the drop cut off is sent again after the reconnect", async (t) => {
  const server = await startServer(0, new Set(["call:answer"]));
  const c = client(server.url);
  t.after(async () => {
    c.conn.close();
    await server.stop();
  });
  c.conn.connect();
  await until(c.conn, "connected");
  const answered = c.conn.request("call:answer", { callId: "c1" });
  await until(c.conn, "reconnecting");
  assert.equal(c.conn.queued, 1, "back in the outbox");
  c.timers.tick(500);
  assert.deepEqual(await answered, { ok: true, echo: { callId: "c1" } });
  assert.deepEqual(server.seen.map(([e]) => e), ["call:answer", "call:answer"]);
});

test("retries back off up to 15 s while the server is down, and start over once it is back", async (t) => {
  let server = await startServer();
  const port = server.port;
  const c = client(server.url);
  const errors = [];
  c.conn.on("error", (e) => errors.push(e));
  t.after(async () => {
    c.conn.close();
    await server.stop();
  });
  c.conn.connect();
  await until(c.conn, "connected");
  await server.stop();
  await until(c.conn, "reconnecting");
  const delays = [];
  for (let i = 0; i < 7; i++) {
    const [delay] = c.timers.pending();
    delays.push(delay);
    const failed = new Promise((resolve) => c.conn.once("error", resolve));
    c.timers.tick(delay);
    await failed;
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
  assert.equal(errors[0].code, "connect-failed");
  assert.match(errors[0].message, /Cannot reach the call service/);
  assert.equal(c.conn.status, "reconnecting");

  server = await startServer(port);
  c.timers.tick(c.timers.pending()[0]);
  await until(c.conn, "connected");
  server.dropAll();
  await until(c.conn, "reconnecting");
  assert.deepEqual(c.timers.pending(), [500], "a success resets the backoff");
});

test("an online event retries at once; close rejects what waits and stops retrying", async (t) => {
  const server = await startServer();
  const network = new EventTarget();
  const c = client(server.url, { network });
  t.after(() => server.stop());
  c.conn.connect();
  await until(c.conn, "connected");
  server.dropAll();
  await until(c.conn, "reconnecting");
  network.dispatchEvent(new Event("online"));
  await until(c.conn, "connected");
  assert.deepEqual(c.timers.pending(), [], "the scheduled retry was dropped");

  server.dropAll();
  await until(c.conn, "reconnecting");
  const waiting = c.conn.request("message:send", { n: 1 });
  c.conn.close();
  await assert.rejects(waiting, (e) => e.code === "closed");
  assert.equal(c.conn.status, "disconnected");
  assert.deepEqual(c.timers.pending(), []);
  await assert.rejects(c.conn.request("x", {}), (e) => e.code === "closed");
});
