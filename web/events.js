// The page's side of the device's events and feature tables: `app.events` and `app.features`.
//
//   const app = await open({ bundle: "picks", relay: true });     // or later: app.events.relay(true)
//   await app.events.add("clicks", { item_id: "r12" });           // one event, or an array of them
//   app.addEventListener("data", (e) => console.log(e.detail.relay.state, e.detail.features));
//
// Adds made in one burst (the same task and its microtasks) reach the worker as one message and
// are stored together; each add's promise resolves with its events' ids once they are durable (a
// tab killed after that loses none of them), or rejects with a WaystationError (name "data-error")
// that names the table and the field, with none of that add's events stored.

import { WORKER } from "./protocol.js";

export { DataClient };

/**
 * @typedef {{request: (message: object) => Promise<any>}} Port
 * @typedef {{resolve: (ids: (string | null)[]) => void, reject: (e: Error) => void}} Waiter
 * @typedef {{enabled: boolean, state: string, sent: number, error: string | null}} RelayStatus
 */

class DataClient {
  /**
   * @param {() => Port} port the app's current worker (it changes when an update is adopted)
   * @param {(type: string, message: string) => Error} makeError builds a WaystationError
   */
  constructor(port, makeError) {
    this._port = port;
    this._makeError = makeError;
    /** @type {{name: string, events: object[]}[]} */
    this._adds = [];
    /** @type {Waiter[]} */
    this._waiters = [];
    /** Whether the app relays events: a worker adopted after an update is told too. */
    this.relayEnabled = false;
  }

  /**
   * Add one event (an object of fields) or an array of them to event table `name`.
   * @param {string} name
   * @param {object | object[]} events
   * @returns {Promise<(string | null)[]>} their ids, null for an event a hook dropped
   */
  add(name, events) {
    if (typeof name !== "string" || !name) return Promise.reject(new TypeError("events.add(): `name` must be an event table's name"));
    const batch = Array.isArray(events) ? events : [events];
    return new Promise((resolve, reject) => {
      if (this._adds.length === 0) queueMicrotask(() => this._send());
      this._adds.push({ name, events: batch });
      this._waiters.push({ resolve, reject });
    });
  }

  /**
   * Relay events to the server (when online with an account), or stop; `flush` waits until
   * everything pending has been sent (or relay had to stop).
   * @param {boolean} enabled
   * @param {{flush?: boolean}} [options]
   * @returns {Promise<{relay: RelayStatus, features: Record<string, object>}>}
   */
  relay(enabled, { flush = false } = {}) {
    this.relayEnabled = enabled;
    return this._port().request({ type: WORKER.relay, enabled, flush });
  }

  /** Send what is pending now and wait for it. */
  flush() {
    return this._port().request({ type: WORKER.relay, flush: true });
  }

  /** Relay state and the last feature sync of each table. */
  status() {
    return this._port().request({ type: WORKER.dataStatus });
  }

  /** Bring the bundle's feature tables up to date now (as deltas); resolves with the status. */
  syncFeatures() {
    return this._port().request({ type: WORKER.features });
  }

  async _send() {
    const adds = this._adds;
    const waiters = this._waiters;
    this._adds = [];
    this._waiters = [];
    let results;
    try {
      results = await this._port().request({ type: WORKER.events, adds });
    } catch (err) {
      for (const waiter of waiters) waiter.reject(/** @type {Error} */ (err));
      return;
    }
    results.forEach((/** @type {any} */ result, /** @type {number} */ i) => {
      if (result.ok) waiters[i].resolve(result.ids);
      else waiters[i].reject(this._makeError(result.error.type, result.error.message));
    });
  }
}
