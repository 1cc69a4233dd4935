// Why: after a reconnect the server may have moved on without us (the peer hung up, the call
// rang out, the callee answered while our socket was down, a call rang for us meanwhile);
// `call:sync` tells what it holds, and this module brings the client's calls in line with it
// before the outbox sends anything that assumes the old state.

/**
 * @typedef {{callId: string, state: string, role: "caller"|"callee", peerId: string, chatId: string,
 *   callType: "audio"|"video", sdp?: unknown, thisDevice: boolean, reason?: string}} SyncEntry
 */

/** Terminal states in a `call:sync` answer, as the outcome (or end reason) they mean. */
/** @type {Record<string, [import("./index.js").CallOutcome | null, string]>} */
const SYNCED_END = {
  rejected: ["rejected", "rejected"],
  busy: ["busy", "busy"],
  "no-answer": ["no-answer", "no-answer"],
  cancelled: ["cancelled", "cancelled"],
  ended: [null, "ended"],
};

/** How long the first requests may wait behind a sync (the outbox waits for it). */
const SYNC_TIMEOUT_MS = 5000;

/**
 * Asks the server for the state of this client's calls and applies it.
 * @param {import("./call-client.js").CallClient} client
 */
export async function syncCalls(client) {
  const conn = client.connection;
  if (!conn) return;
  const ids = [...client.calls.keys()];
  const ack = await conn.request("call:sync", ids.length > 0 ? { callIds: ids } : {}, { immediate: true, timeoutMs: SYNC_TIMEOUT_MS });
  if (!ack?.ok || !Array.isArray(ack.calls)) return;
  const entries = /** @type {SyncEntry[]} */ (ack.calls);
  const byId = new Map(entries.map((e) => [e.callId, e]));
  for (const call of [...client.calls.values()]) {
    // Its initiate is still on its way (cut off by the drop, sent again after this sync).
    if (!call._known) continue;
    const entry = byId.get(call.id);
    if (!entry) {
      call._finish(null, "lost");
    } else if (SYNCED_END[entry.state]) {
      // The server's own reason ("hangup", "caller-cancelled", ...) is what the live event
      // would have said; the state's name only stands in for an older server.
      const [outcome, fallback] = SYNCED_END[entry.state];
      const reason = typeof entry.reason === "string" ? entry.reason : fallback;
      call._finish(outcome, reason, { reason });
    } else if (entry.state === "accepted" && call.state === "ringing" && call.role === "caller") {
      // The answer came while we were away and its SDP is gone: accept, then renegotiate.
      call._accepted();
      void call.restartIce("sync");
    }
  }
  for (const e of entries) {
    if (e.role === "callee" && e.state === "ringing" && e.sdp !== undefined) {
      client._offer({ callId: e.callId, callerId: e.peerId, chatId: e.chatId, callType: e.callType, sdp: e.sdp });
    }
  }
}
