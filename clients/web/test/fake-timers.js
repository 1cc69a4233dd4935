// Why: backoff, grace and refresh logic is tested by moving a hand-driven clock, never by
// sleeping, so the tests are fast and their timing cannot flake.

export class FakeTimers {
  constructor() {
    this.now = 0;
    this._next = 1;
    /** @type {Map<number, {at: number, fn: () => void, every: number | null}>} */
    this._jobs = new Map();
    this.setTimeout = (/** @type {() => void} */ fn, /** @type {number} */ ms) => this._add(fn, ms, null);
    this.setInterval = (/** @type {() => void} */ fn, /** @type {number} */ ms) => this._add(fn, ms, ms);
    this.clearTimeout = (/** @type {unknown} */ id) => this._jobs.delete(/** @type {number} */ (id));
    this.clearInterval = this.clearTimeout;
  }

  _add(fn, ms, every) {
    const id = this._next++;
    this._jobs.set(id, { at: this.now + Math.max(0, ms), fn, every });
    return id;
  }

  /** Delays of the pending jobs, from now. */
  pending() {
    return [...this._jobs.values()].map((j) => j.at - this.now);
  }

  /** Moves the clock by `ms`, running every job that falls due, in order. */
  tick(ms) {
    const end = this.now + ms;
    for (;;) {
      let due = null;
      for (const [id, job] of this._jobs) if (job.at <= end && (!due || job.at < due[1].at)) due = [id, job];
      if (!due) break;
      const [id, job] = due;
      this.now = job.at;
      if (job.every === null) this._jobs.delete(id);
      else job.at += Math.max(1, job.every);
      job.fn();
    }
    this.now = end;
  }
}
