import assert from "node:assert/strict";
import { test } from "node:test";

import { collectQuality, computeQuality } from "../src/index.js";

/** A Chromium-shaped getStats() report for a relayed call, at `t` ms with the given counters. */
function report(t, { sent, received, lost, got, rtt = 0.042, fractionLost = 0.01 }) {
  const stats = [
    { id: "T01", type: "transport", timestamp: t, selectedCandidatePairId: "CP1" },
    { id: "CP0", type: "candidate-pair", timestamp: t, localCandidateId: "L2", remoteCandidateId: "R1", state: "failed", nominated: false, bytesSent: 0, bytesReceived: 0 },
    { id: "CP1", type: "candidate-pair", timestamp: t, localCandidateId: "L1", remoteCandidateId: "R1", state: "succeeded", nominated: true, currentRoundTripTime: rtt, bytesSent: sent, bytesReceived: received },
    { id: "L1", type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tls", address: "203.0.113.7", port: 50123, url: "turns:turn.example.org:443?transport=tcp" },
    { id: "L2", type: "local-candidate", candidateType: "host", protocol: "udp", address: "192.168.1.2", port: 5000 },
    { id: "R1", type: "remote-candidate", candidateType: "srflx", protocol: "udp", ip: "198.51.100.9", port: 6000 },
    { id: "IA", type: "inbound-rtp", kind: "audio", timestamp: t, packetsLost: lost, packetsReceived: got },
    { id: "IV", type: "inbound-rtp", kind: "video", timestamp: t, packetsLost: 0, packetsReceived: got },
    { id: "RIA", type: "remote-inbound-rtp", kind: "audio", timestamp: t, fractionLost },
  ];
  return new Map(stats.map((s) => [s.id, s]));
}

test("the selected pair: relay over TLS, which relay, the remote side", () => {
  const q = computeQuality(report(1000, { sent: 1000, received: 2000, lost: 0, got: 10 }));
  assert.deepEqual(q.pair, {
    local: { type: "relay", protocol: "udp", relayProtocol: "tls", address: "203.0.113.7", port: 50123, url: "turns:turn.example.org:443?transport=tcp" },
    remote: { type: "srflx", protocol: "udp", address: "198.51.100.9", port: 6000 },
  });
  assert.equal(q.rttMs, 42);
  assert.deepEqual(q.bitrate, { sendKbps: null, recvKbps: null }, "no rate from one sample");
  assert.equal(q.loss.sendFraction, 0.01);
});

test("bitrate and loss come from the difference with the previous sample", () => {
  const first = computeQuality(report(10_000, { sent: 100_000, received: 50_000, lost: 5, got: 95 }));
  // 5 lost of 5 + 95 (audio) + 95 (video) expected, over the call so far without a previous sample.
  assert.equal(first.loss.recvFraction, 5 / 195);
  // One second later: 125 kB sent (1000 kbit/s), 62.5 kB received (500 kbit/s), 10 lost of 10 + 190.
  const second = computeQuality(report(11_000, { sent: 225_000, received: 112_500, lost: 15, got: 190 }), first);
  assert.deepEqual(second.bitrate, { sendKbps: 1000, recvKbps: 500 });
  assert.equal(second.loss.recvFraction, 10 / (10 + 190));
  assert.equal(second.loss.packetsLost, 15);
  assert.equal(second.loss.packetsReceived, 380, "audio and video streams summed");
});

test("without a transport report the nominated succeeded pair is used; no pair at all is null", async () => {
  const r = report(1000, { sent: 1, received: 1, lost: 0, got: 0 });
  r.delete("T01");
  const q = await collectQuality({ getStats: async () => r });
  assert.equal(q.pair?.local.type, "relay");
  assert.equal(q.loss.recvFraction, null, "nothing received yet");
  const empty = computeQuality([]);
  assert.equal(empty.pair, null);
  assert.equal(empty.rttMs, null);
});
