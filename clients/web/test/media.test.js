import assert from "node:assert/strict";
import { test } from "node:test";

import { checkMedia, classifyMediaError, ClientError, MediaCheckError } from "../src/index.js";

/** What browsers throw: a DOMException with a `name` (node has DOMException too). */
const dom = (name) => new DOMException("browser text", name);

test("getUserMedia errors are classified by what the person must do", () => {
  const cases = [
    [dom("NotAllowedError"), "permission-denied"],
    [dom("SecurityError"), "permission-denied"],
    [{ name: "PermissionDeniedError" }, "permission-denied"],
    [dom("NotFoundError"), "no-device"],
    [{ name: "DevicesNotFoundError" }, "no-device"],
    [dom("NotReadableError"), "device-busy"],
    [{ name: "TrackStartError" }, "device-busy"],
    [dom("AbortError"), "device-busy"],
    [Object.assign(dom("OverconstrainedError"), { constraint: "width" }), "constraints"],
    [new TypeError("At least one of audio and video must be requested"), "constraints"],
    [new Error("something else"), "unsupported"],
    [undefined, "unsupported"],
  ];
  for (const [err, kind] of cases) {
    const got = classifyMediaError(err, { audio: true });
    assert.ok(got instanceof MediaCheckError && got instanceof ClientError);
    assert.equal(got.kind, kind, String(err?.name));
    assert.equal(got.code, `media-${kind}`);
    assert.equal(got.cause, err);
    assert.ok(got.message.length > 20 && !/Error/.test(got.message), got.message);
  }
});

test("messages name the devices the call asked for", () => {
  assert.match(classifyMediaError(dom("NotFoundError"), { audio: true }).message, /^No microphone was found/);
  assert.match(classifyMediaError(dom("NotFoundError"), { audio: true, video: true }).message, /microphone and camera/);
  assert.match(classifyMediaError(dom("NotAllowedError"), { audio: true }).message, /denied.*Allow/);
});

test("checkMedia refuses an insecure page before asking for devices", async () => {
  let asked = 0;
  const mediaDevices = { getUserMedia: async () => (asked++, "stream") };
  await assert.rejects(checkMedia({ audio: true }, { isSecureContext: false, mediaDevices }), (e) => e.kind === "insecure-context" && /HTTPS/.test(e.message));
  assert.equal(asked, 0);
  await assert.rejects(checkMedia({ audio: true }, { isSecureContext: true, mediaDevices: undefined }), (e) => e.kind === "unsupported");
});

test("checkMedia returns the stream or the classified error", async () => {
  assert.equal(await checkMedia({ audio: true }, { isSecureContext: true, mediaDevices: { getUserMedia: async () => "stream" } }), "stream");
  const busy = { getUserMedia: async () => Promise.reject(dom("NotReadableError")) };
  await assert.rejects(checkMedia({ audio: true, video: true }, { isSecureContext: true, mediaDevices: busy }), (e) => e.kind === "device-busy" && /another application/.test(e.message));
});
