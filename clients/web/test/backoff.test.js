import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, backoffDelay, MAX_BACKOFF_MS } from "../src/index.js";

test("delays double from the base and stop at 15 s", () => {
  const none = { random: () => 0 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, none)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000],
  );
  assert.equal(backoffDelay(1000, none), 15000);
  assert.equal(MAX_BACKOFF_MS, 15000);
});

test("no option lifts the cap above 15 s", () => {
  assert.equal(backoffDelay(20, { maxMs: 60_000, random: () => 0 }), 15000);
  assert.equal(backoffDelay(0, { baseMs: 40_000, random: () => 0 }), 15000);
});

test("jitter only shortens, by at most its share", () => {
  for (const r of [0, 0.25, 0.5, 0.999]) {
    for (let n = 0; n < 10; n++) {
      const exp = Math.min(15000, 500 * 2 ** n);
      const d = backoffDelay(n, { random: () => r });
      assert.ok(d <= exp && d >= exp * 0.5 - 1, `attempt ${n} random ${r}: ${d}`);
      assert.ok(d <= MAX_BACKOFF_MS);
    }
  }
  assert.equal(backoffDelay(3, { jitter: 0, random: () => 0.9 }), 4000);
  assert.equal(backoffDelay(3, { jitter: 1, random: () => 0.5 }), 2000);
});

test("Backoff counts attempts and starts over on reset", () => {
  const b = new Backoff({ random: () => 0 });
  assert.deepEqual([b.next(), b.next(), b.next()], [500, 1000, 2000]);
  assert.equal(b.attempts, 3);
  b.reset();
  assert.equal(b.next(), 500);
});
