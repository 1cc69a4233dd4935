// The call client's bookkeeping that needs no peer connection: glare (the winner's incoming call
// held back and presented when ours loses), exactly one outcome per call, and events handed to
// the app only once it holds the Call. Server events go through the same handlers the socket
// feeds; the media and RTC paths are covered in a browser by the /call page's tests.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Call, CallClient } from "../src/index.js";
import { syncCalls } from "../src/call-sync.js";
import { FakeTimers } from "./fake-timers.js";

function setup() {
  const timers = new FakeTimers();
  const client = new CallClient({ url: "http://127.0.0.1:9", getToken: () => "t", network: null, timers });
  const incoming = [];
  client.on("incoming", (inc) => incoming.push(inc));
  /** An outgoing call to `peer` the server has acknowledged, as `call()` leaves it. */
  const outgoing = (id, peer) => {
    const call = new Call(client, { id, peerId: peer, role: "caller", video: false });
    client._calls.set(id, call);
    call._confirmed();
    const events = [];
    for (const e of ["outcome", "answered", "rejected", "busy", "no-answer", "cancelled", "answered-elsewhere", "ended"]) {
      call.on(/** @type {any} */ (e), (...args) => events.push([e, ...args]));
    }
    call._release();
    timers.tick(0);
    return { call, events };
  };
  return { client, timers, incoming, outgoing };
}

test("glare: the winner's offer is held while ours rings and presented when ours loses", () => {
  const { client, incoming, outgoing } = setup();
  const { call, events } = outgoing("ffff-mine", "bob");
  client._offer({ callId: "0000-theirs", callerId: "bob", callType: "audio", sdp: "v=0" });
  assert.equal(incoming.length, 0, "not shown while our own call to bob rings");
  client._cancelled({ callId: "ffff-mine", reason: "glare", replacedBy: "0000-theirs" });
  assert.equal(incoming.length, 1);
  assert.equal(incoming[0].id, "0000-theirs");
  assert.equal(call.state, "ended");
  const cancelled = events.find(([e]) => e === "cancelled");
  assert.equal(cancelled[1].reason, "glare");
  assert.equal(cancelled[1].replacedBy, "0000-theirs");
  assert.equal(cancelled[1].incoming, incoming[0]);
  assert.deepEqual(
    events.map(([e]) => e),
    ["cancelled", "outcome", "ended"],
  );
});

test("an offer from someone else is shown at once", () => {
  const { client, incoming, outgoing } = setup();
  outgoing("c1", "bob");
  client._offer({ callId: "c2", callerId: "carol", sdp: "v=0" });
  assert.equal(incoming.length, 1);
  client._offer({ callId: "c2", callerId: "carol", sdp: "v=0" });
  assert.equal(incoming.length, 1, "a repeated offer (late device connect, resync) is one call");
});

test("one outcome per call, then ended, whatever else the server says", () => {
  const { client, outgoing } = setup();
  const { call, events } = outgoing("c1", "bob");
  client._calls.get("c1")?._finish("busy", "busy");
  client._cancelled({ callId: "c1", reason: "glare" });
  call._finish("no-answer", "no-answer");
  assert.deepEqual(events, [["busy"], ["outcome", "busy", {}], ["ended", "busy"]]);
  assert.equal(call.outcome, "busy");
  assert.equal(client.calls.size, 0);
});

test("events raised before the app holds the call wait for the next tick", () => {
  const { client, timers } = setup();
  const call = new Call(client, { id: "c1", peerId: "bob", role: "caller", video: false });
  client._calls.set("c1", call);
  call._finish("busy", "busy");
  const seen = [];
  call.on("busy", () => seen.push("busy"));
  call.on("ended", (r) => seen.push(`ended:${r}`));
  call._release();
  assert.deepEqual(seen, []);
  timers.tick(0);
  assert.deepEqual(seen, ["busy", "ended:busy"]);
});

test("an incoming call closes once, for the first reason", () => {
  const { client, incoming } = setup();
  client._offer({ callId: "c9", callerId: "dave", sdp: "v=0" });
  const reasons = [];
  incoming[0].on("closed", (r) => reasons.push(r));
  client._cancelled({ callId: "c9", reason: "caller-cancelled" });
  client._cancelled({ callId: "c9", reason: "no-answer" });
  assert.deepEqual(reasons, ["caller-cancelled"]);
  assert.equal(incoming[0].closed, true);
});

test("a call that ended while we were away ends with the reason the sync gives", async () => {
  const { client, timers, outgoing } = setup();
  const hungUp = outgoing("c1", "bob");
  const older = outgoing("c2", "carol");
  const entry = (callId, peerId, extra) => ({ callId, state: "ended", role: "caller", peerId, chatId: "chat", callType: "audio", thisDevice: false, ...extra });
  // The peer's hang-up went out while our socket was down; only the sync can tell it.
  client._connection = /** @type {any} */ ({
    request: async () => ({ ok: true, calls: [entry("c1", "bob", { reason: "hangup" }), entry("c2", "carol", {})] }),
    cancel: () => {},
  });
  await syncCalls(client);
  timers.tick(0);
  assert.deepEqual(hungUp.events.at(-1), ["ended", "hangup"]);
  assert.deepEqual(older.events.at(-1), ["ended", "ended"], "a server that gives no reason: the state's name");
  client._connection = null;
});
