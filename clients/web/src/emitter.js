// Why: the library runs in browsers and in node tests alike, so it carries a tiny emitter of its
// own instead of depending on EventTarget details or a package.

/**
 * @template {Record<string, unknown[]>} Events
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(...args: any[]) => void>>} */
    this._listeners = new Map();
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {(...args: Events[K]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {(...args: Events[K]) => void} listener
   */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {(...args: Events[K]) => void} listener
   * @returns {() => void}
   */
  once(event, listener) {
    /** @param {Events[K]} args */
    const wrapped = (...args) => {
      this.off(event, wrapped);
      listener(...args);
    };
    return this.on(event, wrapped);
  }

  /**
   * @template {keyof Events & string} K
   * @param {K} event
   * @param {Events[K]} args
   */
  emit(event, ...args) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        listener(...args);
      } catch (err) {
        // One app handler throwing must not stop the library's own bookkeeping.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
