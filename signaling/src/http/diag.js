// ICE diagnostics page (served at /diag by the signaling service; see diag.rs).
// One RTCPeerConnection per STUN/TURN URL of /v1/ice-servers, gathering until complete or
// GATHER_TIMEOUT_MS, with the results in #rows: one <tr data-server="URL"> per URL carrying
// data-state ("gathering" | "complete" | "timeout" | "failed"), data-host-count,
// data-srflx-count, data-relay-count, data-relay-addresses ("ip:port/proto ..."), data-ok.
// <body data-state> is "idle", "running", "done" or "error" (the fetch failed); #status has the
// same, or "warn" when done but some URL needs attention.
"use strict";

const GATHER_TIMEOUT_MS = 10000;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function setStatus(state, text) {
  const s = document.getElementById("status");
  s.dataset.state = state;
  s.textContent = text;
  document.body.dataset.state = state;
}

function tokenFromFragment() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return "";
  return new URLSearchParams(hash).get("token") || "";
}

function kindOf(url) {
  return /^turns?:/i.test(url) ? "turn" : "stun";
}

// The explanation for a row once gathering ended.
function hint(r) {
  const codes = r.errors.map((e) => e.errorCode);
  const texts = r.errors.map((e) => `${e.errorCode} ${e.errorText || ""}`.trim());
  const seen = texts.length ? ` (icecandidateerror: ${[...new Set(texts)].join("; ")})` : "";
  if (r.kind === "turn") {
    if (r.relay > 0) return { ok: true, text: `OK: ${r.relay} relay candidate(s)${seen}` };
    if (codes.includes(401) || codes.includes(403) || codes.includes(431) || codes.includes(438))
      return { ok: false, text: `no relay candidate: credential rejected (${codes.find((c) => c >= 400 && c < 700)}); check that [auth] secrets match the relay's and clocks agree${seen}` };
    if (codes.includes(701))
      return { ok: false, text: `no relay candidate: TURN server unreachable (701): port blocked, wrong address or server down${seen}` };
    if (r.state === "timeout")
      return { ok: false, text: `no relay candidate within ${GATHER_TIMEOUT_MS / 1000} s: TURN port blocked or server not answering${seen}` };
    return { ok: false, text: `no relay candidate: credential rejected (401) or TURN port blocked${seen}` };
  }
  if (r.srflx > 0) return { ok: true, text: `OK: ${r.srflx} srflx candidate(s)${seen}` };
  if (codes.includes(701))
    return { ok: false, text: `no srflx candidate: STUN server unreachable (701)${seen}` };
  return { ok: true, text: `no srflx candidate: expected when this browser is not behind NAT (its address is already public or on the server's network)${seen}` };
}

function render(r) {
  const tr = r.tr;
  tr.dataset.state = r.state;
  tr.dataset.hostCount = String(r.host);
  tr.dataset.srflxCount = String(r.srflx);
  tr.dataset.relayCount = String(r.relay);
  tr.dataset.relayAddresses = r.relays.join(" ");
  tr.querySelector(".host").textContent = String(r.host);
  tr.querySelector(".srflx").textContent = String(r.srflx);
  tr.querySelector(".relay").textContent = String(r.relay);
  tr.querySelector(".relay-addresses").textContent = r.relays.join(", ") || "-";
  tr.querySelector(".time").textContent = r.ms === null ? "..." : `${(r.ms / 1000).toFixed(1)} s`;
  const verdict = tr.querySelector(".verdict");
  if (r.state === "gathering") {
    verdict.textContent = "gathering...";
    return;
  }
  const h = r.state === "failed" ? { ok: false, text: r.failure } : hint(r);
  tr.dataset.ok = String(h.ok);
  verdict.textContent = h.text;
}

async function gather(entry, url, tbody) {
  const tr = el("tr", { "data-server": url, "data-kind": kindOf(url) });
  tr.append(
    el("td", { class: "server" }, url),
    el("td", { class: "count host" }),
    el("td", { class: "count srflx" }),
    el("td", { class: "count relay" }),
    el("td", { class: "relay-addresses" }),
    el("td", { class: "time" }),
    el("td", { class: "verdict" })
  );
  tbody.append(tr);
  const r = { tr, kind: kindOf(url), state: "gathering", host: 0, srflx: 0, relay: 0, relays: [], errors: [], ms: null, failure: "" };
  render(r);
  const server = { urls: [url] };
  if (entry.username !== undefined) server.username = entry.username;
  if (entry.credential !== undefined) server.credential = entry.credential;
  const t0 = performance.now();
  let pc = null;
  try {
    pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: "all" });
    pc.createDataChannel("diag");
    const done = new Promise((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), GATHER_TIMEOUT_MS);
      pc.onicecandidate = (ev) => {
        if (!ev.candidate) {
          clearTimeout(timer);
          resolve("complete");
          return;
        }
        const c = ev.candidate;
        if (!c.candidate) return; // end-of-generation marker
        if (c.type === "host") r.host++;
        else if (c.type === "srflx" || c.type === "prflx") r.srflx++;
        else if (c.type === "relay") {
          r.relay++;
          r.relays.push(`${c.address}:${c.port}/${c.protocol}`);
        }
        render(r);
      };
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve("complete");
        }
      };
      pc.onicecandidateerror = (ev) => {
        r.errors.push({ errorCode: ev.errorCode, errorText: ev.errorText, url: ev.url });
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    r.state = await done;
  } catch (e) {
    r.state = "failed";
    r.failure = `failed: ${e && e.message ? e.message : e}`;
  }
  r.ms = performance.now() - t0;
  if (pc) pc.close();
  render(r);
  return r;
}

async function run(token) {
  const tbody = document.getElementById("rows");
  tbody.replaceChildren();
  document.getElementById("meta").textContent = "";
  if (!token) {
    setStatus("error", "Enter a token first.");
    return;
  }
  setStatus("running", "Fetching /v1/ice-servers ...");
  let body;
  try {
    const res = await fetch("v1/ice-servers", {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
      credentials: "omit",
    });
    body = await res.json().catch(() => ({}));
    if (!res.ok) {
      setStatus("error", `GET /v1/ice-servers: ${res.status} ${body.error || ""} ${body.message || ""}`.trim());
      return;
    }
  } catch (e) {
    setStatus("error", `GET /v1/ice-servers failed: ${e && e.message ? e.message : e}`);
    return;
  }
  const servers = Array.isArray(body.iceServers) ? body.iceServers : [];
  const user = servers.find((s) => s.username)?.username;
  document.getElementById("meta").textContent =
    `${servers.length} iceServers entr${servers.length === 1 ? "y" : "ies"}` +
    (user ? `, TURN username ${user}` : "") +
    (body.ttl ? `, credential ttl ${body.ttl} s` : "") +
    (body.expiresAt ? `, expires ${new Date(body.expiresAt).toISOString()}` : "");
  const jobs = [];
  for (const entry of servers) {
    const urls = Array.isArray(entry.urls) ? entry.urls : [entry.urls];
    for (const url of urls) jobs.push(gather(entry, url, tbody));
  }
  if (!jobs.length) {
    setStatus("error", "/v1/ice-servers returned no servers: check [[relays]].");
    return;
  }
  setStatus("running", `Gathering candidates against ${jobs.length} URL(s) ...`);
  const results = await Promise.all(jobs);
  const bad = results.filter((r) => r.tr.dataset.ok !== "true").length;
  setStatus("done", bad ? `Done: ${bad} of ${results.length} URL(s) need attention.` : `Done: all ${results.length} URL(s) OK.`);
  if (bad) document.getElementById("status").dataset.state = "warn";
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token");
  document.getElementById("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(input.value.trim());
  });
  const token = tokenFromFragment();
  if (token) {
    input.value = token;
    run(token);
  }
});
