// The device's data meets the server, in the worker: events relayed to POST /api/events/BUNDLE
// while the app enables relay and the device is online with an account, and the feature tables
// the bundle declares kept current from GET /api/features/NAME?since=VERSION.
//
//   const sync = new DataSync({ data, python: () => dataBridge, base, onStatus });
//   sync.configure(await describe());   // {bundle, version, relays, features}: after a bundle opens
//   sync.setAccount({ url, user, token }); sync.setOnline(true); sync.setRelay(true);
//   sync.kick();                        // events were added: relay them soon
//   await sync.syncFeatures();          // now, e.g. on open and when the device comes online
//
// Relay is at least once: a batch (the relayable fields of up to RELAY_BATCH events, with their
// ids) is gzip-compressed and sent, and only once the server answered 200 is the relay position
// moved on, in the same database as the events. A batch sent again after a lost answer is stored
// once: the server keys events by id. Offline, refused or failed, the position stays where it
// is, and the next attempt (back online, a reload, a retry with backoff) starts from it.

export { DataSync, RELAY_BATCH };

const RELAY_BATCH = 500;
/** Adds coalesce for this long before a relay starts: one request for a burst of adds. */
const RELAY_DELAY_MS = 200;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;
const FEATURES_EVERY_MS = 60_000;

/**
 * @typedef {{url: string, user: string, token: string}} Account
 * @typedef {{bundle: string, version: string, relays: boolean, features: string[]}} Described
 * @typedef {"off" | "idle" | "sending" | "offline" | "signed-out" | "unauthorized" | "retrying"} RelayState
 */

class DataSync {
  /**
   * @param {{data: import("./device_data.js").DeviceData, python: () => any, base: URL,
   *   onStatus?: (status: object) => void}} options `python()` is waystation.device._data_bridge
   */
  constructor({ data, python, base, onStatus = () => {} }) {
    this._data = data;
    this._python = python;
    this._base = base;
    this._onStatus = onStatus;
    /** @type {Described | null} */
    this._bundle = null;
    /** @type {Account | null} */
    this._account = null;
    this._online = typeof navigator === "undefined" ? true : navigator.onLine;
    this._relayOn = false;
    /** @type {RelayState} */
    this._state = "off";
    this._sent = 0;
    /** @type {string | null} */
    this._lastError = null;
    this._retryMs = RETRY_MIN_MS;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._relayTimer = null;
    /** @type {Promise<void> | null} */
    this._relaying = null;
    this._again = false;
    /** @type {Record<string, object>} what the last sync of each feature table did */
    this._features = {};
    /** @type {ReturnType<typeof setInterval> | null} */
    this._featureTimer = null;
  }

  /** @param {Described} described the open bundle */
  configure(described) {
    this._bundle = described;
    this._featureTimer ??= setInterval(() => this._online && this.syncFeatures().catch(() => {}), FEATURES_EVERY_MS);
    this.kick(0);
  }

  /** @param {Account | null} account */
  setAccount(account) {
    this._account = account;
    this._retryMs = RETRY_MIN_MS;
    this.kick(0);
  }

  /** @param {boolean} online */
  setOnline(online) {
    const back = online && !this._online;
    this._online = online;
    if (back) {
      this._retryMs = RETRY_MIN_MS;
      this.kick(0);
      this.syncFeatures().catch(() => {});
    } else this._setState();
  }

  /** @param {boolean} enabled */
  setRelay(enabled) {
    this._relayOn = enabled;
    this.kick(0);
  }

  /** Relay what is pending after `delayMs` (a burst of adds makes one request). */
  kick(delayMs = RELAY_DELAY_MS) {
    this._setState();
    if (!this._canRelay()) return;
    if (this._relayTimer !== null) {
      if (delayMs > 0) return;
      clearTimeout(this._relayTimer);
    }
    this._relayTimer = setTimeout(() => {
      this._relayTimer = null;
      this.relayNow().catch(() => {});
    }, delayMs);
  }

  /** Relay every pending event now; resolves when nothing is left or relay had to stop. */
  async relayNow() {
    if (this._relaying) {
      this._again = true;
      return this._relaying;
    }
    this._relaying = this._relayAll().finally(() => {
      this._relaying = null;
      if (this._again) {
        this._again = false;
        this.kick(0);
      }
    });
    return this._relaying;
  }

  status() {
    return {
      relay: { enabled: this._relayOn, state: this._state, sent: this._sent, error: this._lastError },
      features: { ...this._features },
    };
  }

  /**
   * Bring every declared feature table up to the server's version, as deltas since the copy's.
   * @returns {Promise<Record<string, object>>} per table: {version, changed, deleted, full, bytes} or {error}
   */
  async syncFeatures() {
    const names = this._bundle?.features ?? [];
    await Promise.all(names.map((name) => this._syncTable(name)));
    this._status();
    return Object.fromEntries(names.map((name) => [name, this._features[name]]));
  }

  /** @param {string} name */
  async _syncTable(name) {
    const url = new URL(`api/features/${encodeURIComponent(name)}`, this._base);
    try {
      const since = await this._data.run(() => reply(this._python().feature_version(name)));
      if (since !== null) url.searchParams.set("since", String(since));
      const response = await fetch(url, { cache: "no-store" });
      const text = await response.text();
      if (!response.ok) throw new Error(`GET ${url.pathname}: HTTP ${response.status}: ${errorText(text)}`);
      const applied = await this._data.run(async () => reply(await this._python().apply_features(text)));
      const timing = /** @type {PerformanceResourceTiming[]} */ (performance.getEntriesByName(url.href)).at(-1);
      this._features[name] = { ...applied, since, bytes: text.length, transferBytes: timing?.encodedBodySize ?? null, at: Date.now() };
    } catch (err) {
      this._features[name] = { ...this._features[name], error: /** @type {Error} */ (err).message, at: Date.now() };
    }
  }

  _canRelay() {
    return Boolean(this._relayOn && this._online && this._account && this._bundle?.relays);
  }

  async _relayAll() {
    while (this._canRelay()) {
      const batch = await this._data.run(() => reply(this._python().relay_batch(RELAY_BATCH)));
      if (batch === null) break;
      this._setState("sending");
      const sent = await this._send(batch.events);
      if (!sent) return;
      await this._data.run(async () => reply(await this._python().mark_relayed(JSON.stringify(batch.upto))));
      this._sent += batch.events.length;
      this._retryMs = RETRY_MIN_MS;
      this._lastError = null;
    }
    this._setState();
  }

  /** POST one batch; true once the server stored it. @param {object[]} events */
  async _send(events) {
    const bundle = /** @type {Described} */ (this._bundle);
    const account = /** @type {Account} */ (this._account);
    const url = new URL(`api/events/${encodeURIComponent(bundle.bundle)}`, this._base);
    let response;
    try {
      const body = await gzip(JSON.stringify({ version: bundle.version, events }));
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Content-Encoding": "gzip", Authorization: `Bearer ${account.token}` },
        body,
      });
    } catch (err) {
      return this._retry(`cannot reach the server: ${/** @type {Error} */ (err).message}`);
    }
    if (response.ok) return true;
    const told = errorText(await response.text());
    if (response.status === 401 || response.status === 403) {
      // A token the server refuses will not get better by retrying: wait for another account.
      this._lastError = `the server refused the account (HTTP ${response.status}): ${told}`;
      this._setState("unauthorized");
      return false;
    }
    const after = Number(response.headers.get("Retry-After"));
    return this._retry(`HTTP ${response.status}: ${told}`, Number.isFinite(after) && after > 0 ? after * 1000 : undefined);
  }

  /** @param {string} message @param {number} [waitMs] @returns {false} */
  _retry(message, waitMs) {
    this._lastError = message;
    this._setState("retrying");
    const wait = waitMs ?? this._retryMs;
    this._retryMs = Math.min(RETRY_MAX_MS, this._retryMs * 2);
    if (this._relayTimer !== null) clearTimeout(this._relayTimer);
    this._relayTimer = setTimeout(() => {
      this._relayTimer = null;
      this.relayNow().catch(() => {});
    }, wait);
    return false;
  }

  /** @param {RelayState} [state] */
  _setState(state) {
    const next = state ?? (!this._relayOn || !this._bundle?.relays ? "off" : !this._account ? "signed-out" : !this._online ? "offline"
      : this._state === "unauthorized" || this._state === "retrying" ? this._state : "idle");
    if (next !== this._state) {
      this._state = next;
      this._status();
    }
  }

  _status() {
    this._onStatus(this.status());
  }
}

/** A reply of waystation.device._data_bridge: its value, or a thrown error of its type. @param {string} text */
function reply(text) {
  const answer = JSON.parse(text);
  if (answer.ok) return answer.value;
  throw Object.assign(new Error(answer.error.message), { name: answer.error.type });
}

/** @param {string} text a response body, JSON {error} when the server explains */
function errorText(text) {
  try {
    return JSON.parse(text).error ?? text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

/** @param {string} text @returns {Promise<ArrayBuffer>} */
function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Response(stream).arrayBuffer();
}
