// The /call page's script: a thin UI over the web client library (clients/web, served under
// /call/lib/). It signs in with the token from the URL fragment (never the query string, so it
// reaches no server log), shows the connection status and queue, places and answers calls, says
// in plain words why a call did not happen, and charts the live call quality. Every state is
// mirrored into data-* attributes (see call.html) for the e2e tests.

import { CallClient, IceConfigCache, MediaCheckError } from "/call/lib/index.js";
import { Sparkline } from "/call/charts.js";

const $ = (id) => document.getElementById(id);
const body = document.body;

/** What the user reads for each way a call can end before or without being answered. */
const OUTCOME_TEXT = {
  answered: "Answered.",
  rejected: "The other person declined the call.",
  busy: "The other person is busy in another call.",
  "no-answer": "No answer.",
  cancelled: "The call was cancelled.",
  "answered-elsewhere": "You answered this call on another device.",
  offline: "You are offline: the call was not started. Try again once connected.",
};

const ENDED_TEXT = {
  hangup: "Call ended.",
  "peer-disconnected": "The other person's connection was lost: call ended.",
};

const STATUS_TEXT = {
  connected: "Connected",
  disconnected: "Disconnected",
  reconnecting: "Reconnecting…",
  "signed-out": "Not signed in",
};

const state = { client: null, call: null, incoming: null, token: "", qualityTimer: null };
const rttChart = new Sparkline($("rtt-chart"), ["a"]);
const rateChart = new Sparkline($("bitrate-chart"), ["a", "b"]);

/** The library's emitters: `on(event, listener)`. */
function on(target, event, fn) {
  target.on(event, fn);
}

function log(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("log").prepend(li);
  while ($("log").children.length > 200) $("log").lastChild.remove();
}

/** The plain-words line under the controls; `kind` is "error" or "info", `code` for the tests. */
function say(text, kind = "info", code = "") {
  $("message").textContent = text;
  $("message").dataset.kind = kind;
  $("message").dataset.code = code;
}

function setCallState(s) {
  body.dataset.call = s;
  const inCall = !["idle", "ended"].includes(s);
  $("call-btn").disabled = inCall || !state.client;
  $("hangup-btn").disabled = !inCall || s === "incoming";
}

function setOutcome(outcome, text, kind) {
  body.dataset.outcome = outcome;
  say(text, kind, outcome);
  log(`outcome: ${outcome}`);
}

function showStatus(status) {
  body.dataset.status = status;
  $("status").dataset.status = status;
  $("status").textContent = STATUS_TEXT[status] || status;
}

function showQueue(count) {
  const n = Number(count) || 0;
  body.dataset.queue = String(n);
  $("queue").dataset.count = String(n);
  $("queue").textContent = n > 0 ? `${n} queued` : "";
}

/** The user id the token names, for the header only (the server verifies the token). */
function userOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    return String(claims.sub ?? claims.user_id ?? claims.uid ?? "?");
  } catch {
    return "?";
  }
}

function tokenFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return params.get("token") || "";
}

function signIn(token) {
  if (!token || state.client) return;
  state.token = token;
  $("me").textContent = userOf(token);
  $("token").value = "";
  // The token stays in this page's memory; take it out of the address bar and history.
  history.replaceState(null, "", window.location.pathname);
  const path = document.querySelector('meta[name="socketio-path"]').content || "/socket.io";
  const getToken = async () => state.token;
  const iceConfig = new IceConfigCache({ baseUrl: window.location.origin, getToken });
  const client = new CallClient({
    url: window.location.origin,
    path,
    getToken,
    iceConfig,
    forceRelay: $("force-relay").checked,
  });
  state.client = client;
  on(client, "status", showStatus);
  on(client, "queue", showQueue);
  on(client, "incoming", onIncoming);
  // Failures that belong to no request the page made (a restart or renegotiation that failed,
  // a refused sign-in): the operator reads them in the log.
  on(client, "error", (e) => log(`error ${e.code}: ${e.message}`));
  showStatus("reconnecting");
  client.connect();
  $("signin").hidden = true;
  setCallState("idle");
  log("signing in");
}

/** The switch applies to the next call placed or answered (the library's `forceRelay`). */
function applyForceRelay() {
  const relay = $("force-relay").checked;
  body.dataset.forceRelay = String(relay);
  if (state.client) state.client.forceRelay = relay;
  if (state.call) log(`force relay ${relay ? "on" : "off"}: from the next call`);
}

/** A failed media check (the library checks before it rings anyone): its message, no call. */
function showMediaError(e) {
  body.dataset.mediaError = e.kind;
  setOutcome("media-error", e.message, "error");
}

async function placeCall(calleeId, video) {
  delete body.dataset.mediaError;
  body.dataset.outcome = "";
  say("");
  if (!calleeId) return say("Type the user id to call.", "error", "no-callee");
  applyForceRelay();
  setCallState("calling");
  say(`Calling ${calleeId}…`);
  try {
    const call = await state.client.call(calleeId, { video });
    watchCall(call, "caller");
  } catch (e) {
    setCallState("idle");
    if (e instanceof MediaCheckError) showMediaError(e);
    else if (e?.code === "offline") setOutcome("offline", OUTCOME_TEXT.offline, "error");
    else setOutcome("error", `Could not call: ${e?.message || e}`, "error");
  }
}

function onIncoming(incoming) {
  if (state.incoming || state.call) return;
  state.incoming = incoming;
  body.dataset.outcome = "";
  delete body.dataset.mediaError;
  const from = incoming.from;
  const type = incoming.callType;
  $("incoming-from").textContent = from;
  $("incoming-type").textContent = type;
  $("incoming").hidden = false;
  body.dataset.incoming = "open";
  body.dataset.incomingType = type;
  setCallState("incoming");
  say(`${from} is calling.`);
  log(`incoming ${type} call from ${from}`);
  on(incoming, "closed", (why) => {
    // "accepted" and "rejected" are this page's own doing, already shown.
    if (state.incoming !== incoming || why === "accepted" || why === "rejected") return;
    closeIncoming("closed");
    const text =
      why === "answered-elsewhere"
        ? OUTCOME_TEXT["answered-elsewhere"]
        : why === "no-answer"
          ? "Missed call: it rang out."
          : "The caller hung up.";
    body.dataset.incomingClosed = why || "closed";
    setOutcome(why === "no-answer" ? "missed" : why || "cancelled", text, "info");
    setCallState("idle");
  });
}

function closeIncoming(how) {
  state.incoming = null;
  $("incoming").hidden = true;
  body.dataset.incoming = how;
}

async function accept() {
  const incoming = state.incoming;
  if (!incoming) return;
  applyForceRelay();
  $("accept-btn").disabled = true;
  try {
    const call = await incoming.accept();
    closeIncoming("accepted");
    setCallState("connecting");
    watchCall(call, "callee");
  } catch (e) {
    // Still ringing: the person may fix the device and accept again, or reject.
    if (e instanceof MediaCheckError) showMediaError(e);
    else setOutcome("error", `Could not answer: ${e?.message || e}`, "error");
    if (incoming.closed) {
      closeIncoming("closed");
      setCallState("idle");
    }
  } finally {
    $("accept-btn").disabled = false;
  }
}

async function reject() {
  const incoming = state.incoming;
  if (!incoming) return;
  closeIncoming("rejected");
  setCallState("idle");
  setOutcome("declined", "You declined the call.", "info");
  await Promise.resolve(incoming.reject()).catch((e) => log(`reject: ${e.message || e}`));
}

function attachStreams(call) {
  for (const [id, stream] of [
    ["local-video", call.localStream],
    ["remote-video", call.remoteStream],
  ]) {
    const el = $(id);
    if (stream && el.srcObject !== stream) {
      el.srcObject = stream;
      el.play?.().catch(() => {});
    }
  }
}

function watchCall(call, role) {
  state.call = call;
  body.dataset.role = role;
  body.dataset.callId = call.id;
  rttChart.clear();
  rateChart.clear();
  attachStreams(call);
  if (role === "caller") setCallState("ringing");
  on(call, "outcome", (outcome, detail) => {
    const base = OUTCOME_TEXT[outcome] || outcome;
    const reason = detail?.reason;
    setOutcome(outcome, outcome === "cancelled" && reason ? `${base} (${reason})` : base, outcome === "answered" ? "info" : "error");
    if (outcome === "answered") setCallState("connecting");
  });
  on(call, "iceState", (ice) => {
    body.dataset.ice = ice;
    if (ice === "connected" || ice === "completed") setCallState("in-call");
    else if (body.dataset.call === "in-call" && (ice === "disconnected" || ice === "failed")) setCallState("connecting");
  });
  on(call, "remoteStream", () => attachStreams(call));
  on(call, "restart", (why) => {
    body.dataset.iceRestarts = String(Number(body.dataset.iceRestarts || 0) + 1);
    log(`ICE restart (${why})`);
  });
  on(call, "quality", (q) => {
    attachStreams(call);
    showQuality(q);
  });
  on(call, "ended", (reason) => {
    body.dataset.endedReason = reason;
    if (state.call === call) state.call = null;
    // An outcome that already says why (busy, no answer, ...) stays; an answered call says how it ended.
    if (["", "answered"].includes(body.dataset.outcome || "")) {
      const pending = body.dataset.status !== "connected" ? " The other side is told once this page reconnects." : "";
      setOutcome("ended", (ENDED_TEXT[reason] || `Call ended (${reason}).`) + pending, "info");
    }
    setCallState("ended");
    $("pair").textContent = `Last pair: ${$("pair").textContent}`;
    for (const id of ["local-video", "remote-video"]) $(id).srcObject = null;
  });
}

function describe(c) {
  if (!c) return "?";
  const server = c.url ? ` ${c.url}` : "";
  const relay = c.type === "relay" && c.relayProtocol ? ` via TURN/${c.relayProtocol}${server}` : "";
  return `${c.type} ${c.protocol}${relay} ${c.address}:${c.port}`;
}

function showQuality(q) {
  if (!q) return;
  const sec = $("quality");
  if (state.call && body.dataset.call !== "ended") body.dataset.connection = state.call.pc?.connectionState ?? "";
  sec.dataset.samples = String(Number(sec.dataset.samples || 0) + 1);
  const pair = q.pair || {};
  const local = pair.local || null;
  const remote = pair.remote || null;
  if (local) {
    sec.dataset.localType = local.type || "";
    sec.dataset.localProtocol = local.protocol || "";
    sec.dataset.relayProtocol = local.relayProtocol || "";
    sec.dataset.localAddress = `${local.address}:${local.port}`;
    sec.dataset.relay = local.type === "relay" ? `${local.address}:${local.port}` : "";
  }
  if (remote) {
    sec.dataset.remoteType = remote.type || "";
    sec.dataset.remoteAddress = `${remote.address}:${remote.port}`;
  }
  $("pair").textContent = local ? `local ${describe(local)} ⇄ remote ${describe(remote)}` : "No pair selected yet.";
  const rtt = typeof q.rttMs === "number" ? q.rttMs : null;
  $("rtt").textContent = rtt === null ? "-" : `${Math.round(rtt)} ms`;
  sec.dataset.rttMs = rtt === null ? "" : String(rtt);
  const b = q.bitrate || {};
  $("bitrate").textContent = `↑ ${Math.round(b.sendKbps || 0)} kbit/s ↓ ${Math.round(b.recvKbps || 0)} kbit/s`;
  sec.dataset.sendKbps = String(b.sendKbps ?? "");
  sec.dataset.recvKbps = String(b.recvKbps ?? "");
  rttChart.push(rtt);
  rateChart.push(b.sendKbps, b.recvKbps);
  const loss = q.loss || {};
  const pct = (f) => (typeof f === "number" ? `${(f * 100).toFixed(1)} %` : "-");
  $("loss").textContent = `packet loss ↓ ${pct(loss.recvFraction)} ↑ ${pct(loss.sendFraction)} (${loss.packetsLost ?? 0} lost of ${
    (loss.packetsLost ?? 0) + (loss.packetsReceived ?? 0)
  })`;
}

async function hangUp() {
  const call = state.call;
  if (!call) return;
  say("Hanging up…");
  try {
    await call.hangUp();
  } catch (e) {
    log(`hang-up: ${e.message || e}`);
  }
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("token").value.trim());
});
$("dial").addEventListener("submit", (e) => {
  e.preventDefault();
  placeCall($("callee").value.trim(), $("video").checked);
});
$("hangup-btn").addEventListener("click", hangUp);
$("accept-btn").addEventListener("click", accept);
$("reject-btn").addEventListener("click", reject);
$("force-relay").addEventListener("change", applyForceRelay);
window.addEventListener("hashchange", () => signIn(tokenFromFragment()));

setCallState("idle");
body.dataset.forceRelay = String($("force-relay").checked);
signIn(tokenFromFragment());
body.dataset.ready = "true";
