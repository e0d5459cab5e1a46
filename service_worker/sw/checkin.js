// Background check-ins: ask the server's check-in (GET api/bundles/NAME/channels/CHANNEL/status)
// what this device should run, stop using revoked versions, go back from withdrawn ones, and stage a new version through the
// Updater (delta, verified) when the page that opened the bundle asked for updates. Activating a
// staged version is the page's: it runs the smoke check in a fresh worker (web/fleet_updates.js).
//
// A service worker has no `online` event and no timer that outlives it, so check-ins are driven
// from where they can be: this worker's start (its activation, and the first request it answers
// after a start) checks in every bundle a page opened here; an open page asks on its own start,
// on its `online` event and every checkAfterSeconds. Every check-in is posted to every page as
// {type: "waystation-checkin", bundle, status, active, moved, update}.

import { UpdateError } from "./errors.js";
import { fetchText } from "./updater.js";
import { STORE_BROADCAST } from "../protocol.js";

export { CheckIns, SAVE_DATA_LIMIT };

/**
 * @typedef {import("./bundle-store.js").BundleStore} BundleStore
 * @typedef {import("./updater.js").Updater} Updater
 * @typedef {{channel: string, version: string | null, sha256: string | null, revoked: string[], withdrawn?: string[],
 *   logging: {level: string} | null, checkAfterSeconds: number}} Status
 * @typedef {{state: "staged" | "deferred", from: string | null, to: string, reason?: string, message?: string,
 *   fetchBytes?: number, fetchedBytes?: number, totalBytes?: number, stored?: string}} UpdateOutcome
 * @typedef {{bundle: string, status: Status, active: string | null, moved: {from: string, to: string, reason: "revoked" | "withdrawn"} | null,
 *   update: UpdateOutcome | null}} CheckIn
 */

// Past this many bytes to fetch, an update waits while the user asked the browser to save data.
const SAVE_DATA_LIMIT = 1024 * 1024;
const TIMEOUT_MS = 15_000;
const UPDATES = ["now", "next-load", "ask", "off"];

class CheckIns {
  /**
   * @param {{services: () => Promise<{store: BundleStore, updater: Updater}>, scope: URL,
   *   broadcast: (message: object) => Promise<void>}} options
   */
  constructor({ services, scope, broadcast }) {
    this.services = services;
    this.scope = scope;
    this.broadcast = broadcast;
    /** @type {Map<string, Promise<unknown>>} one check-in at a time per bundle: the next waits for it */
    this._running = new Map();
  }

  /** Check in every bundle a page opened here (this service worker's start); failures are only skipped. */
  async all() {
    const { store } = await this.services();
    await Promise.all((await store.followed()).map((name) => this.one(name).catch(() => null)));
  }

  /**
   * Check in one bundle. `channel` and `updates`, from the page that opened it, are remembered for
   * the checks this worker makes on its own; `saveData` is the page's view of the data-saver setting.
   * @param {string} name @param {{channel?: string, updates?: string, saveData?: boolean}} [options]
   * @returns {Promise<CheckIn>}
   */
  one(name, options = {}) {
    const run = (this._running.get(name) ?? Promise.resolve()).catch(() => {}).then(() => this._check(name, options));
    this._running.set(name, run);
    return run;
  }

  /** @param {string} name @param {{channel?: string, updates?: string, saveData?: boolean}} options @returns {Promise<CheckIn>} */
  async _check(name, { channel, updates, saveData }) {
    const { store, updater } = await this.services();
    if (updates !== undefined && !UPDATES.includes(updates)) {
      throw new UpdateError("unsupported", { reason: `updates ${JSON.stringify(updates)} is not one of ${UPDATES.join(", ")}` });
    }
    const before = await store.following(name);
    const follow = { channel: channel ?? before?.channel ?? "stable", updates: /** @type {any} */ (updates ?? before?.updates ?? "off") };
    if (follow.channel !== before?.channel || follow.updates !== before?.updates) await store.follow(name, follow);
    const status = await this._status(name, follow.channel, await store.deviceId());
    await store.setRevoked(name, status.revoked);
    // A release the channel withdrew (`waystation bundle rollback`, an automatic halt) is left too when the
    // device holds the version the channel went back to: going back fetches nothing, and the publisher
    // withdrew it, so it is not the page's update policy to keep running it. Unlike a revoked version it
    // stays usable: a device holding nothing older keeps answering with it.
    const pointers = await store.pointers(name);
    const leave = new Set(status.revoked);
    const withdrawn = pointers.active && (status.withdrawn ?? []).includes(pointers.active) && pointers.previous &&
      (status.version === pointers.previous || status.version === null);
    if (withdrawn) leave.add(/** @type {string} */ (pointers.active));
    // The store's own moves go through the Updater's lock, so they never interleave with an install or update.
    const { from, to } = await updater._locked(name, () => store.leaveRevoked(name, leave));
    if (from !== to) await store.collectGarbage();
    const moved = from && to && from !== to ? { from, to, reason: /** @type {"revoked" | "withdrawn"} */ (status.revoked.includes(from) ? "revoked" : "withdrawn") } : null;
    const stuck = to !== null && status.revoked.includes(to); // only a revoked version held: any good one will do
    let update = null;
    if (to && status.version && status.version !== to && (follow.updates !== "off" || stuck)) {
      update = await this._stage(name, follow.channel, saveData ?? navigatorSaveData());
    }
    const checkIn = { bundle: name, status, active: to, moved, update };
    await this.broadcast({ type: STORE_BROADCAST.checkin, ...checkIn });
    return checkIn;
  }

  /** @param {string} name @param {string} channel @param {string} device @returns {Promise<Status>} */
  async _status(name, channel, device) {
    const url = new URL(`api/bundles/${encodeURIComponent(name)}/channels/${encodeURIComponent(channel)}/status?device=${encodeURIComponent(device)}`, this.scope);
    const text = await fetchText(url, TIMEOUT_MS);
    try {
      const status = JSON.parse(text);
      if (!Array.isArray(status.revoked) || typeof status.checkAfterSeconds !== "number") throw new Error("revoked or checkAfterSeconds is missing");
      return { ...status, channel };
    } catch (err) {
      throw new UpdateError("manifest-invalid", { bundle: name, url: url.pathname, reason: `the check-in is not what the server sends: ${/** @type {Error} */ (err).message}` });
    }
  }

  /**
   * Fetch and verify the channel's version beside the active one, unless the user saves data and it is large.
   * @param {string} name @param {string} channel @param {boolean} saveData
   * @returns {Promise<UpdateOutcome | null>} null when the channel serves the active version after all
   */
  async _stage(name, channel, saveData) {
    const { updater } = await this.services();
    if (saveData) {
      const plan = /** @type {any} */ (await updater.check(name, { channel }));
      if (plan.fetchBytes > SAVE_DATA_LIMIT) {
        return {
          state: "deferred", reason: "data-saver", from: plan.from, to: plan.to, fetchBytes: plan.fetchBytes,
          message: `${name} ${plan.to} waits: it needs ${(plan.fetchBytes / 1048576).toFixed(1)} MiB and the browser is saving data`,
        };
      }
    }
    // The manifest comes from the channel again: if it moved since the check-in, what it serves now is staged.
    const staged = await updater.update(name, { channel });
    if (staged.upToDate) return null;
    return { state: "staged", from: staged.from, to: staged.to, fetchedBytes: staged.fetchedBytes, totalBytes: staged.totalBytes, stored: staged.state };
  }
}

/** The data-saver setting as this worker sees it (Chromium has navigator.connection in workers). */
function navigatorSaveData() {
  return Boolean(/** @type {any} */ (navigator).connection?.saveData);
}
