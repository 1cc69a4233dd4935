// Why: getUserMedia fails in a handful of ways that each need a different thing from the person
// (allow access, plug in a device, close another app, use HTTPS), and browsers name them
// differently; the call must not start when media is not there.

import { ClientError } from "./errors.js";

/** @typedef {import("./index.js").MediaCheckKind} MediaCheckKind */

export class MediaCheckError extends ClientError {
  /**
   * @param {MediaCheckKind} kind
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(kind, message, options) {
    super(`media-${kind}`, message, options);
    this.name = "MediaCheckError";
    /** @type {MediaCheckKind} */
    this.kind = kind;
  }
}

/** Browser error names, old and new, by what they mean for the person. */
/** @type {Record<string, MediaCheckKind>} */
const KINDS = {
  NotAllowedError: "permission-denied",
  PermissionDeniedError: "permission-denied",
  SecurityError: "permission-denied",
  NotFoundError: "no-device",
  DevicesNotFoundError: "no-device",
  NotReadableError: "device-busy",
  TrackStartError: "device-busy",
  AbortError: "device-busy",
  OverconstrainedError: "constraints",
  ConstraintNotSatisfiedError: "constraints",
  TypeError: "constraints",
};

/** @param {MediaStreamConstraints | undefined} constraints */
function devices(constraints) {
  return constraints?.video ? "microphone and camera" : "microphone";
}

/**
 * @param {MediaCheckKind} kind
 * @param {MediaStreamConstraints | undefined} constraints
 */
function messageFor(kind, constraints) {
  const what = devices(constraints);
  switch (kind) {
    case "permission-denied":
      return `Access to the ${what} was denied. Allow it in the browser's site settings (the icon next to the address) and try again.`;
    case "no-device":
      return `No ${what} was found. Connect one, or check that it is enabled in the system settings.`;
    case "device-busy":
      return `The ${what} could not be started; another application may be using it. Close it and try again.`;
    case "constraints":
      return `The ${what} cannot provide what the call asked for (resolution or device choice). Pick another device or lower the quality.`;
    case "insecure-context":
      return "Calls need a secure page: open this page over HTTPS (or on localhost).";
    case "unsupported":
      return "This browser cannot use a microphone or camera here. Use a current browser.";
  }
}

/**
 * @param {unknown} error
 * @param {MediaStreamConstraints} [constraints]
 * @returns {MediaCheckError}
 */
export function classifyMediaError(error, constraints) {
  if (error instanceof MediaCheckError) return error;
  const name = /** @type {any} */ (error)?.name;
  const kind = (typeof name === "string" && Object.hasOwn(KINDS, name) ? KINDS[name] : undefined) ?? "unsupported";
  return new MediaCheckError(kind, messageFor(kind, constraints), { cause: error });
}

/**
 * @param {MediaStreamConstraints} constraints
 * @param {import("./index.js").MediaEnvironment} [env]
 * @returns {Promise<MediaStream>}
 */
export async function checkMedia(constraints, env) {
  const g = /** @type {any} */ (globalThis);
  const isSecure = env?.isSecureContext ?? g.isSecureContext ?? true;
  const mediaDevices = env && "mediaDevices" in env ? env.mediaDevices : g.navigator?.mediaDevices;
  if (!isSecure) throw new MediaCheckError("insecure-context", messageFor("insecure-context", constraints));
  if (!mediaDevices?.getUserMedia) throw new MediaCheckError("unsupported", messageFor("unsupported", constraints));
  try {
    return await mediaDevices.getUserMedia(constraints);
  } catch (err) {
    throw classifyMediaError(err, constraints);
  }
}
