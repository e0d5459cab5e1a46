// Background updates and revoke, on the page's side. The service worker checks in with the
// server (service_worker/sw/checkin.js): it stops using a revoked version, stages a new one, and
// posts every check-in to every page. Each open App acts on those for its bundle, by its
// `updates` policy (open({updates})):
//
//   "now"        smoke check the staged version in a fresh worker and answer with it (app.update's path)
//   "next-load"  smoke check it and make it active at the next open() of the bundle
//   "ask"        an "updateavailable" event whose detail.activate() does "now"
//   "off"        no new version is staged (the default); revoke and remote logging still apply
//
// Revoke is never optional: an App running a revoked version moves to the version the store
// moved to (a "revoked" event, as rollback() answers), or, with no other version on the device,
// refuses calls with a WaystationError named "revoked" until a good version arrives. Nor is a
// withdrawal (`waystation bundle rollback`, an automatic halt): an App running the withdrawn
// version moves back to the one the device held before (a "withdrawn" event); holding none, it
// keeps answering, since a withdrawn version is not known to be harmful, only no longer served.
//
// The page drives the checks the service worker cannot schedule itself: one when the App opens,
// one on each `online` event, and one every checkAfterSeconds the server says (900 by default;
// open({checkIntervalMs}) for tests and kiosks).

import { STORE, STORE_BROADCAST } from "./protocol.js";

export { FleetUpdates, UPDATE_POLICIES };

const UPDATE_POLICIES = Object.freeze(["now", "next-load", "ask", "off"]);
const DEFAULT_CHECK_MS = 900_000;

/**
 * @typedef {import("./waystation.js").App} App
 * @typedef {{state: "staged" | "deferred", from: string | null, to: string, reason?: string, message?: string,
 *   fetchBytes?: number, fetchedBytes?: number, totalBytes?: number, stored?: string}} UpdateOutcome
 * @typedef {{bundle: string, status: {version: string | null, revoked: string[], logging: object | null,
 *   withdrawn?: string[], checkAfterSeconds: number}, active: string | null,
 *   moved: {from: string, to: string, reason: "revoked" | "withdrawn"} | null,
 *   update: UpdateOutcome | null}} CheckIn
 */

class FleetUpdates {
  /**
   * @param {App} app
   * @param {{store: {request: (type: any, data: object) => Promise<unknown>}, bundle: string, channel: string,
   *   updates: string, checkIntervalMs?: number}} options
   */
  constructor(app, { store, bundle, channel, updates, checkIntervalMs }) {
    this.app = app;
    this.store = store;
    this.bundle = bundle;
    /** The channel check-ins follow: open()'s, then the one app.update() was last given. */
    this.channel = channel;
    this.updates = updates;
    this.intervalMs = checkIntervalMs;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    this._stopped = false;
    /** @type {Set<string>} moves ("1.0.0 -> 1.0.1") this App was told of already: "updatestaged" once each */
    this._told = new Set();
    /** @type {Set<string>} versions whose activation failed here: not tried again by this App */
    this._failed = new Set();
    /** Check-ins are acted on one at a time, in the order they came. */
    this._acting = Promise.resolve();
    this._onMessage = (/** @type {MessageEvent} */ event) => {
      if (event.data?.type === STORE_BROADCAST.checkin && event.data.bundle === bundle) {
        this._acting = this._acting.then(() => this._act(event.data)).catch(() => {});
      }
    };
    this._onOnline = () => { this.check(); };
  }

  start() {
    navigator.serviceWorker.addEventListener("message", this._onMessage);
    navigator.serviceWorker.startMessages();
    addEventListener("online", this._onOnline);
    this.check();
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    navigator.serviceWorker.removeEventListener("message", this._onMessage);
    removeEventListener("online", this._onOnline);
  }

  /**
   * Ask the service worker to check in now; resolves once this App has acted on the answer, to
   * the check-in, or null when it failed (offline: the next `online` or timer tries again).
   * @returns {Promise<CheckIn | null>}
   */
  async check() {
    clearTimeout(this._timer);
    if (this._stopped) return null;
    /** @type {CheckIn | null} */
    let checkIn = null;
    try {
      checkIn = /** @type {CheckIn} */ (await this.store.request(STORE.checkin, {
        bundle: this.bundle, channel: this.channel, updates: this.updates, saveData: pageSaveData(),
      }));
    } catch (err) {
      this._emit("checkinfailed", { error: err });
    }
    await this._acting; // the broadcast of this check-in arrived before its reply: acted on by now
    if (!this._stopped) {
      const seconds = checkIn?.status.checkAfterSeconds;
      this._timer = setTimeout(() => this.check(), this.intervalMs ?? (seconds ? seconds * 1000 : DEFAULT_CHECK_MS));
    }
    return checkIn;
  }

  /** @param {CheckIn} checkIn */
  async _act(checkIn) {
    if (this._stopped) return;
    this._emit("checkin", checkIn);
    const { status, active, update, moved } = checkIn;
    const running = this.app.version;
    const revoked = new Set(status.revoked);
    if (running && revoked.has(running)) await this._leave(running, active && !revoked.has(active) ? active : null);
    else if (running && moved?.reason === "withdrawn" && moved.from === running) await this._goBack(running, moved.to);
    // A check-in made while this App was activating that version already is old news.
    if (!update || update.to === this.app.version || this._failed.has(update.to)) return;
    // Told once per move from the running version (back to a version it left is a move again).
    const move = `${this.app.version} -> ${update.to}`;
    if (update.state === "deferred") {
      if (!this._told.has(`deferred ${move}`)) this._emit("updatedeferred", update);
      this._told.add(`deferred ${move}`);
      return;
    }
    if (this.app._revoked) {
      await this._activate(update.to, "now").catch(() => {}); // anything good beats refusing every call
      return;
    }
    if (this._told.has(move)) return;
    this._told.add(move);
    this._emit("updatestaged", { ...update, policy: this.updates });
    if (this.updates === "now" || this.updates === "next-load") {
      await this._activate(update.to, this.updates).catch(() => {});
    } else if (this.updates === "ask") {
      this._emit("updateavailable", { ...update, activate: () => this._activate(update.to, "now") });
    }
  }

  /**
   * Stop answering with a revoked version: move to `to` (the store moved already), or refuse calls.
   * @param {string} version @param {string | null} to
   */
  async _leave(version, to) {
    const name = this.bundle;
    if (to) {
      await this.app._reopen(to);
      this.app._revoked = null;
      this._emit("revoked", { version, to, message: `${name} ${version} was revoked by its publisher; ${name} ${to} answers now` });
    } else if (this.app._revoked?.version !== version) {
      const message = `${name} ${version} was revoked by its publisher and no earlier version is on this device`;
      this.app._revoked = { version, message };
      this._emit("revoked", { version, to: null, message });
    }
  }

  /**
   * Answer with `to` again: the channel withdrew `version` and the store went back (as rollback() does).
   * @param {string} version @param {string} to
   */
  async _goBack(version, to) {
    const name = this.bundle;
    await this.app._reopen(to);
    this._emit("withdrawn", { version, to, message: `${name} ${version} was withdrawn from its channel; ${name} ${to} answers now` });
  }

  /**
   * Smoke check a staged version in a fresh worker and activate it (app.update's path).
   * @param {string} version @param {"now" | "next-load"} when
   */
  async _activate(version, when) {
    try {
      const result = await this.app.update({ channel: this.channel, activate: when });
      if (when === "now") this.app._revoked = null;
      this._emit("updateactivated", { from: result.from, to: result.to, when });
      return result;
    } catch (err) {
      this._failed.add(version);
      this._emit("updatefailed", { to: version, error: err });
      throw err;
    }
  }

  /** @param {string} type @param {object} detail */
  _emit(type, detail) {
    this.app.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The page's data-saver setting, where the browser tells it; undefined lets the service worker look itself. */
function pageSaveData() {
  const saveData = /** @type {any} */ (navigator).connection?.saveData;
  return typeof saveData === "boolean" ? saveData : undefined;
}
