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
// once: the server keys events by id. What the server answers decides what happens next:
//   401, 403        the account is refused: relay stops until another account is set;
//   408, 429, 5xx,  a network error or any other answer: the position stays and the batch is sent
//                   again after a backoff (1 s doubling to 60 s, or the server's Retry-After);
//   400, 413        refused for good (an event the server will not take, a body too large): the
//                   batch is split in halves, each sent on its own, down to single events; a single
//                   event refused for good is skipped (the position moves past it), counted in
//                   status().relay.skipped with the server's reason in lastRefusal, and the page
//                   is told (a "data" event). Skipped events stay on the device: only the position moves.
//   404             this bundle version is not published on the server: relay pauses ("unpublished")
//                   and asks again every 60 s, since it may be published later.

export { DataSync, RELAY_BATCH };

const RELAY_BATCH = 500;
/** Adds coalesce for this long before a relay starts: one request for a burst of adds. */
const RELAY_DELAY_MS = 200;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** Statuses that refuse a batch for good: split it, and skip an event refused on its own. */
const REFUSED_FOR_GOOD = new Set([400, 413]);
const FEATURES_EVERY_MS = 60_000;

/**
 * @typedef {{url: string, user: string, token: string}} Account
 * @typedef {{bundle: string, version: string, relays: boolean, features: string[]}} Described
 * @typedef {"off" | "idle" | "sending" | "offline" | "signed-out" | "unauthorized" | "retrying" | "unpublished"} RelayState
 * @typedef {{events: object[], seqs: number[], upto: Record<string, number>}} Batch what relay_batch gives
 * @typedef {{status: number, error: string, table: string, id: string, at: number}} Refusal an event skipped
 * @typedef {{ok: boolean, refused?: number, error?: string}} Sent refused: a 400/413 (else relay stopped or will retry)
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
    /** Events the server refused for good, skipped since this worker started. */
    this._skipped = 0;
    /** @type {Refusal | null} */
    this._lastRefusal = null;
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
      relay: {
        enabled: this._relayOn, state: this._state, sent: this._sent, error: this._lastError,
        skipped: this._skipped, lastRefusal: this._lastRefusal,
      },
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
      /** @type {Batch | null} */
      const batch = await this._data.run(() => reply(this._python().relay_batch(RELAY_BATCH)));
      if (batch === null) break;
      this._setState("sending");
      if (!(await this._deliver(batch))) return;
      this._retryMs = RETRY_MIN_MS;
      this._lastError = null;
    }
    this._setState();
  }

  /**
   * Send a batch, splitting it in halves while the server refuses it for good (400, 413), and
   * skipping an event it refuses on its own. Parts go in order and the position moves after each
   * part the server took or skipped, so a retry later starts after the last one.
   * @param {Batch} batch @returns {Promise<boolean>} true once all of it was stored or skipped
   */
  async _deliver(batch) {
    /** @type {[number, number][]} the parts still to send, the next first */
    const parts = [[0, batch.events.length]];
    const account = this._account;
    while (parts.length) {
      // Relay turned off, or another account (whose database is another): the rest waits.
      if (!this._canRelay() || this._account !== account) return false;
      const [start, end] = /** @type {[number, number]} */ (parts.shift());
      const sent = await this._send(batch.events.slice(start, end));
      if (!sent.ok && !sent.refused) return false;
      if (!sent.ok && end - start > 1) {
        const middle = start + Math.ceil((end - start) / 2);
        parts.unshift([start, middle], [middle, end]);
        continue;
      }
      await this._data.run(async () => reply(await this._python().mark_relayed(JSON.stringify(positions(batch, start, end)))));
      if (sent.ok) {
        this._sent += end - start;
      } else {
        const event = /** @type {{table: string, id: string}} */ (batch.events[start]);
        this._skipped++;
        this._lastRefusal = { status: sent.refused, error: sent.error, table: event.table, id: event.id, at: Date.now() };
        this._status(); // the page hears of it now: a "data" event
      }
    }
    return true;
  }

  /** POST some events; whether the server stored them, and if not whether it refused them for good. @param {object[]} events @returns {Promise<Sent>} */
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
    if (response.ok) return { ok: true };
    const told = errorText(await response.text().catch(() => ""));
    if (REFUSED_FOR_GOOD.has(response.status)) return { ok: false, refused: response.status, error: told };
    if (response.status === 401 || response.status === 403) {
      // A token the server refuses will not get better by retrying: wait for another account.
      this._lastError = `the server refused the account (HTTP ${response.status}): ${told}`;
      this._setState("unauthorized");
      return { ok: false, refused: 0, error: told };
    }
    if (response.status === 404) {
      // Publishing may come later (the app can run a version the server has not been given yet):
      // ask again on the long backoff, keeping every event.
      this._retryMs = RETRY_MAX_MS;
      return this._retry(`bundle ${bundle.bundle} ${bundle.version} is not published on the server; relay paused (HTTP 404: ${told})`, RETRY_MAX_MS, "unpublished");
    }
    // 408, 429, 5xx and anything unexpected: transient as far as this client can tell.
    return this._retry(`HTTP ${response.status}: ${told}`, retryAfterMs(response.headers.get("Retry-After")));
  }

  /** @param {string} message @param {number} [waitMs] @param {RelayState} [state] @returns {{ok: false, refused: 0, error: string}} */
  _retry(message, waitMs, state = "retrying") {
    this._lastError = message;
    this._setState(state);
    const wait = waitMs ?? this._retryMs;
    this._retryMs = Math.min(RETRY_MAX_MS, this._retryMs * 2);
    if (this._relayTimer !== null) clearTimeout(this._relayTimer);
    this._relayTimer = setTimeout(() => {
      this._relayTimer = null;
      this.relayNow().catch(() => {});
    }, wait);
    return { ok: false, refused: 0, error: message };
  }

  /** @param {RelayState} [state] */
  _setState(state) {
    const next = state ?? (!this._relayOn || !this._bundle?.relays ? "off" : !this._account ? "signed-out" : !this._online ? "offline"
      : this._state === "unauthorized" || this._state === "retrying" || this._state === "unpublished" ? this._state : "idle");
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

/**
 * The relay positions that cover events [start, end) of a batch: per table, its last seq there.
 * Events of a table come in seq order, so every earlier event of it was taken or skipped already.
 * @param {Batch} batch @param {number} start @param {number} end @returns {Record<string, number>}
 */
function positions(batch, start, end) {
  /** @type {Record<string, number>} */
  const upto = {};
  for (let i = start; i < end; i++) upto[/** @type {{table: string}} */ (batch.events[i]).table] = batch.seqs[i];
  return upto;
}

/** Retry-After in ms (seconds or an HTTP date), or undefined. @param {string | null} value */
function retryAfterMs(value) {
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 10 * RETRY_MAX_MS) : undefined;
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
