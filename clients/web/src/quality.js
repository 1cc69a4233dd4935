// Why: an operator testing a deployment needs to see which path a call took (relay or not, over
// UDP, TCP or TLS, through which relay) and how well it carries media; getStats() has all of it
// spread over several linked reports.

/** @typedef {import("./index.js").Quality} Quality */
/** @typedef {import("./index.js").CandidateInfo} CandidateInfo */

/**
 * @param {{getStats(): Promise<any>}} pc
 * @param {Quality | null} [previous]
 * @returns {Promise<Quality>}
 */
export async function collectQuality(pc, previous) {
  return computeQuality(await pc.getStats(), previous);
}

/**
 * @param {any} report an RTCStatsReport, a Map of stats, or an iterable of stats objects
 * @param {Quality | null} [previous]
 * @returns {Quality}
 */
export function computeQuality(report, previous) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  const all = typeof report?.values === "function" ? [...report.values()] : [...report];
  for (const s of all) byId.set(s.id, s);
  const pair = selectedPair(all, byId);
  let packetsLost = 0;
  let packetsReceived = 0;
  /** @type {number | null} */
  let sendFraction = null;
  for (const s of all) {
    if (s.type === "inbound-rtp") {
      packetsLost += Math.max(0, s.packetsLost ?? 0);
      packetsReceived += s.packetsReceived ?? 0;
    } else if (s.type === "remote-inbound-rtp" && typeof s.fractionLost === "number") {
      sendFraction = Math.max(sendFraction ?? 0, s.fractionLost);
    }
  }
  const timestamp = pair?.timestamp ?? all.reduce((t, s) => Math.max(t, s.timestamp ?? 0), 0);
  const sample = {
    timestamp,
    bytesSent: pair?.bytesSent ?? 0,
    bytesReceived: pair?.bytesReceived ?? 0,
    packetsLost,
    packetsReceived,
  };
  const prev = previous?.sample;
  const dtMs = prev ? sample.timestamp - prev.timestamp : 0;
  const rate = (/** @type {number} */ now, /** @type {number} */ before) =>
    prev && dtMs > 0 && now >= before ? Math.round(((now - before) * 8) / dtMs) : null;
  const lost = prev ? packetsLost - prev.packetsLost : packetsLost;
  const got = prev ? packetsReceived - prev.packetsReceived : packetsReceived;
  return {
    pair: pair ? { local: candidate(byId.get(pair.localCandidateId)), remote: candidate(byId.get(pair.remoteCandidateId)) } : null,
    rttMs: typeof pair?.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1000) : null,
    // bytes * 8 / ms = kbit/s
    bitrate: { sendKbps: rate(sample.bytesSent, prev?.bytesSent ?? 0), recvKbps: rate(sample.bytesReceived, prev?.bytesReceived ?? 0) },
    loss: {
      recvFraction: lost >= 0 && lost + got > 0 ? lost / (lost + got) : null,
      sendFraction,
      packetsLost,
      packetsReceived,
    },
    sample,
  };
}

/**
 * The pair the transport uses; older browsers only flag it on the pair itself.
 * @param {any[]} all
 * @param {Map<string, any>} byId
 */
function selectedPair(all, byId) {
  for (const s of all) {
    if (s.type === "transport" && s.selectedCandidatePairId && byId.has(s.selectedCandidatePairId)) {
      return byId.get(s.selectedCandidatePairId);
    }
  }
  return (
    all.find((s) => s.type === "candidate-pair" && s.selected) ??
    all.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded") ??
    null
  );
}

/**
 * @param {any} c
 * @returns {CandidateInfo}
 */
function candidate(c) {
  /** @type {CandidateInfo} */
  const info = {
    type: c?.candidateType ?? "unknown",
    protocol: c?.protocol ?? "unknown",
    address: c?.address ?? c?.ip ?? "",
    port: c?.port ?? 0,
  };
  if (c?.relayProtocol) info.relayProtocol = c.relayProtocol;
  if (c?.url) info.url = c.url;
  return info;
}
