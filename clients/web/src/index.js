// Why: the one entry point of @calls/web; the signaling binary serves these files as they are.

export { Backoff, backoffDelay, MAX_BACKOFF_MS } from "./backoff.js";
export { Call, CallClient, IncomingCall } from "./call-client.js";
export { Connection } from "./connection.js";
export { Emitter } from "./emitter.js";
export { ClientError } from "./errors.js";
export { IceConfigCache } from "./ice-config.js";
export { checkMedia, classifyMediaError, MediaCheckError } from "./media.js";
export { collectQuality, computeQuality } from "./quality.js";
