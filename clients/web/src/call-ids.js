// Why: the caller names its call (the server dedupes retried requests by that id), and
// `crypto.randomUUID` exists only in secure contexts while an operator may open the page over
// plain HTTP on a LAN address.

/** A UUID v4 (the server takes any 1-64 of [A-Za-z0-9_-]). */
export function newCallId() {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
