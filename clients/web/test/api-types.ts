// Why: index.d.ts is written by hand beside the JS; `npm run check` type-checks this file, which
// fails when an implementation no longer fits its declaration (a member renamed, a parameter or
// a return type changed).
import type * as api from "../src/index.js";
import * as backoff from "../src/backoff.js";
import * as calls from "../src/call-client.js";
import * as connection from "../src/connection.js";
import * as emitter from "../src/emitter.js";
import * as errors from "../src/errors.js";
import * as ice from "../src/ice-config.js";
import * as media from "../src/media.js";
import * as quality from "../src/quality.js";

export const declared: {
  Backoff: typeof api.Backoff;
  backoffDelay: typeof api.backoffDelay;
  MAX_BACKOFF_MS: typeof api.MAX_BACKOFF_MS;
  CallClient: typeof api.CallClient;
  Connection: typeof api.Connection;
  Emitter: typeof api.Emitter;
  ClientError: typeof api.ClientError;
  IceConfigCache: typeof api.IceConfigCache;
  checkMedia: typeof api.checkMedia;
  classifyMediaError: typeof api.classifyMediaError;
  MediaCheckError: typeof api.MediaCheckError;
  collectQuality: typeof api.collectQuality;
  computeQuality: typeof api.computeQuality;
} = {
  Backoff: backoff.Backoff,
  backoffDelay: backoff.backoffDelay,
  MAX_BACKOFF_MS: backoff.MAX_BACKOFF_MS,
  CallClient: calls.CallClient,
  Connection: connection.Connection,
  Emitter: emitter.Emitter,
  ClientError: errors.ClientError,
  IceConfigCache: ice.IceConfigCache,
  checkMedia: media.checkMedia,
  classifyMediaError: media.classifyMediaError,
  MediaCheckError: media.MediaCheckError,
  collectQuality: quality.collectQuality,
  computeQuality: quality.computeQuality,
};

/** The library makes calls (apps never construct them), so only their instances must fit. */
export function instances(call: calls.Call, incoming: calls.IncomingCall): [api.Call, api.IncomingCall] {
  return [call, incoming];
}
