// Why: the server forwards SDP as the sender gave it (a string or an RTCSessionDescriptionInit,
// depending on the client platform), so both shapes are read, and one shape is written.

/**
 * An SDP as the peer sent it (a string or an RTCSessionDescriptionInit).
 * @param {unknown} sdp
 * @param {RTCSdpType} type
 * @returns {RTCSessionDescriptionInit}
 */
export function description(sdp, type) {
  if (typeof sdp === "string") return { type, sdp };
  const obj = /** @type {{type?: RTCSdpType, sdp?: string}} */ (sdp ?? {});
  return { type: obj.type ?? type, sdp: obj.sdp ?? "" };
}

/** @param {RTCSessionDescription | RTCSessionDescriptionInit | null} desc */
export function wire(desc) {
  return { type: desc?.type, sdp: desc?.sdp };
}
