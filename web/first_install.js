// A first visit's install that outlives the network: when the service worker's "install" fails
// because the network went away (or the server briefly failed), the page is told so (progress
// stage "waiting-for-network", with a message to show), and the install is asked again when the
// browser says it is online and on a timer with backoff (the `online` event is not always
// told: a captive portal, a flaky link), without a reload. Each try fetches only the chunks the
// store still lacks (service_worker/sw/updater.js stores them one by one), and the progress the
// page sees goes on from the bytes stored before: it never goes backwards.

import { STORE } from "./protocol.js";

export { installBundle, OpenProgress };

/** The first wait, doubled after each try that stored nothing, up to the last. */
const RETRY_MS = { first: 1_000, max: 30_000 };

/**
 * @typedef {{request: (type: (typeof STORE)[keyof typeof STORE], data: object, onProgress?: (p: any) => void) => Promise<unknown>}} Store
 * @typedef {{stage: string, message?: string, loaded?: number, total?: number, [key: string]: unknown}} Progress
 */

/**
 * The store's "install" of `bundle`, asked again until it succeeds, for as long as its failures
 * are the network's: "network", "timeout" or a server error 5xx. Any other error rejects at once.
 * After `timeoutMs` of trying, rejects with the last error (its name kept, its message saying so).
 * @param {Store} store
 * @param {{bundle: string, channel: string}} request
 * @param {OpenProgress} progress
 * @param {{timeoutMs?: number}} [options]
 */
async function installBundle(store, request, progress, { timeoutMs = Infinity } = {}) {
  const started = Date.now();
  for (let waitMs = RETRY_MS.first; ;) {
    const storedBefore = progress.loaded;
    try {
      const installed = await store.request(STORE.install, request, (p) => progress.fromStore(p));
      progress.waiting = false;
      return installed;
    } catch (err) {
      const error = /** @type {Error & {details?: any}} */ (err);
      if (!transient(error)) throw error;
      const left = started + timeoutMs - Date.now();
      if (left <= 0) throw gaveUp(error, Date.now() - started);
      if (progress.loaded > storedBefore) waitMs = RETRY_MS.first; // it got somewhere: try again soon
      const wait = Math.min(waitMs, left);
      progress.waitingForNetwork(error, wait);
      await networkBack(wait);
      waitMs = Math.min(waitMs * 2, RETRY_MS.max);
    }
  }
}

/**
 * What open() tells its onProgress: the worker's start-up and the store's install as one story.
 * An install over several tries counts as one: the first try's bytes to fetch are the total, and
 * a later try's bytes count on from what the tries before stored. While the install waits for
 * the network, that is what is shown: the worker's start-up stages (Python boots meanwhile all
 * the same) and a retry's "available" are not told over it, until bytes arrive again.
 */
class OpenProgress {
  /** @param {string} bundle @param {(p: Progress) => void} onProgress */
  constructor(bundle, onProgress) {
    this.bundle = bundle;
    this.onProgress = onProgress;
    /** @type {string} the version being installed, once the store says which */
    this.version = "";
    /** @type {number | undefined} bytes to fetch when the first try began */
    this.total = undefined;
    /** bytes the tries before this one stored */
    this.offset = 0;
    /** bytes stored so far, over every try */
    this.loaded = 0;
    /** whether the install is waiting for the network */
    this.waiting = false;
    /** For the worker's progress events. */
    this.fromWorker = (/** @type {Progress} */ p) => {
      if (!this.waiting) this.onProgress(p);
    };
  }

  /** @param {Progress} p one progress event of the store's install */
  fromStore(p) {
    if (p.stage === "available" && typeof p.fetchBytes === "number") {
      this.total ??= p.fetchBytes;
      this.version = typeof p.to === "string" ? p.to : this.version;
      this.offset = this.total - p.fetchBytes; // what earlier tries stored is not fetched again
      this.loaded = this.offset;
      if (!this.waiting) this.onProgress(p);
    } else if (p.stage === "download" && typeof p.loaded === "number" && this.total !== undefined) {
      this.waiting = false;
      this.loaded = this.offset + p.loaded;
      const resumed = this.offset > 0 ? ` (resumed: ${kib(this.offset)} were stored before the network went away)` : "";
      this.onProgress({ ...p, loaded: this.loaded, total: this.total, message: `fetching ${this.bundle} ${this.version}: ${kib(this.loaded)} of ${kib(this.total)}${resumed}` });
    } else if (!this.waiting) {
      this.onProgress(p);
    }
  }

  /** Tell that the install waits for the network, and tries again in `retryInMs` at the latest. @param {Error} error @param {number} retryInMs */
  waitingForNetwork(error, retryInMs) {
    this.waiting = true;
    const part = this.total ? `${Math.floor((100 * this.loaded) / this.total)}% of ${this.bundle} is installed` : `${this.bundle} is not installed yet`;
    this.onProgress({
      stage: "waiting-for-network", bundle: this.bundle, loaded: this.loaded, total: this.total, retryInMs, reason: `${error.name}: ${error.message}`,
      message: `Waiting for the network: ${part}, and the rest downloads by itself when the connection is back`,
    });
  }
}

/** Whether `err` is the network's (or a server's passing fault): worth trying again. @param {any} err */
function transient(err) {
  return err?.name === "network" || err?.name === "timeout" || (err?.name === "server-error" && err.details?.status >= 500);
}

/** The last error, saying that the install gave up. @param {any} err @param {number} waitedMs */
function gaveUp(err, waitedMs) {
  const Type = /** @type {any} */ (err.constructor);
  const message = `${err.message}; gave up installing after ${Math.round(waitedMs / 1000)} s without the network (open({installTimeoutMs}))`;
  return new Type(err.name, message, undefined, { ...err.details, waitedMs });
}

/** Resolves when the browser says it is online again, or after `ms`, whichever comes first. */
function networkBack(/** @type {number} */ ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      removeEventListener("online", done);
      resolve(undefined);
    };
    const timer = setTimeout(done, ms);
    addEventListener("online", done);
  });
}

function kib(/** @type {number} */ bytes) {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
