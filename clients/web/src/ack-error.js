// Why: the server refuses a request with a terse code (`signaling/README.md`); an app shows the
// error's message as is, so each code gets words a person understands.

import { ClientError } from "./errors.js";

/** @type {Record<string, string>} */
const WORDS = {
  already_in_call: "You are already in a call.",
  self_call: "You cannot call yourself.",
  bad_request: "The call service did not understand the request (a bug in this app).",
  forbidden: "This call belongs to someone else.",
  not_found: "This call no longer exists.",
  invalid_state: "The call has already moved on (answered, ended or cancelled).",
  unavailable: "The call service is busy right now; try again in a moment.",
  answered_elsewhere: "The call was answered on another device.",
  payload_too_large: "The request was too large for the call service.",
};

/** @param {import("./index.js").Ack} ack */
export function ackError(ack) {
  const code = ack?.error ?? "failed";
  return new ClientError(code, WORDS[code] ?? `The call service refused the request (${code}).`);
}
