// Why: every failure the library reports must be both machine-checkable (a stable `code`) and
// something an app can show as is (a plain-language `message`).

/** An Error with a stable `code` and a message a person can read. */
export class ClientError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = "ClientError";
    /** @type {string} */
    this.code = code;
  }
}
