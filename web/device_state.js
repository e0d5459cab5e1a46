// The user's state on this device, in the worker: the Yjs documents Python reaches through the
// state host (web/state_host.js), each persisted in IndexedDB (y-indexeddb) and, while the page
// has an account, synced with the server over y-websocket at /api/sync/ws/USER/DOC.
//
//   const state = new DeviceState(crdt, { onStatus, onChange });
//   pyodide.registerJsModule("_waystation_state", state.host);
//   await state.load();                     // every document this device holds, before Python reads
//   state.connect({ url, user, token });    // sync each document, now and as they are created
//   state.setOnline(false);                 // the page went offline: stop dialling until it is back
//
// Documents are created on first use (`ctx.state(name)`); one this device has stored before is
// loaded before the bundle opens, so Python never reads a half-loaded document. Offline edits are
// stored at once and reach the server when the connection syncs again.
import { LOCAL_ORIGIN, makeStateHost } from "./state_host.js";

export { DB_PREFIX, DeviceState };

/** IndexedDB database of document NAME: DB_PREFIX + NAME (y-indexeddb's own layout inside). */
const DB_PREFIX = "waystation-state:";
/** Remote changes are told to the page at most this often, in one message. */
const CHANGE_COALESCE_MS = 30;

/**
 * @typedef {{Y: typeof import("yjs"), IndexeddbPersistence: any, WebsocketProvider: any}} Crdt
 * @typedef {{url: string, user: string, token: string}} Account
 * @typedef {"local" | "offline" | "syncing" | "synced" | "unauthorized"} SyncState
 * @typedef {{state: SyncState, user: string | null, documents: Record<string, SyncState>, reason?: string}} SyncStatus
 */

class DeviceState {
  /**
   * @param {Crdt} crdt
   * @param {{onStatus?: (status: SyncStatus) => void, onChange?: (documents: string[]) => void}} [listeners]
   */
  constructor(crdt, { onStatus = () => {}, onChange = () => {} } = {}) {
    this._crdt = crdt;
    this._onStatus = onStatus;
    this._onChange = onChange;
    /** @type {Map<string, {doc: any, persistence: any, provider: any, state: SyncState, reason?: string}>} */
    this._docs = new Map();
    /** @type {Account | null} */
    this._account = null;
    this._online = typeof navigator === "undefined" ? true : navigator.onLine;
    /** @type {Set<string>} */
    this._changed = new Set();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._changeTimer = null;
    /** @type {Promise<void> | null} */
    this._loaded = null;
    this.host = makeStateHost(crdt.Y, { onDoc: (name, doc) => this._attach(name, doc) });
  }

  /** Open every document stored on this device and wait until each holds what IndexedDB has. */
  load() {
    this._loaded ??= (async () => {
      const databases = typeof indexedDB.databases === "function" ? await indexedDB.databases() : [];
      const names = databases.map((db) => db.name ?? "").filter((n) => n.startsWith(DB_PREFIX)).map((n) => n.slice(DB_PREFIX.length));
      await Promise.all(names.map((name) => this.whenLoaded(name)));
    })().catch((err) => {
      this._loaded = null;
      throw Object.assign(new Error(`cannot open this device's state in IndexedDB: ${err?.message ?? err}`), { name: "storage-unavailable" });
    });
    return this._loaded;
  }

  /** @param {string} name resolves once document `name` holds what IndexedDB has of it */
  whenLoaded(name) {
    this.host.doc(name);
    return /** @type {any} */ (this._docs.get(name)).persistence.whenSynced.then(() => undefined);
  }

  /** Sync every document with `account`'s rooms, now and as new ones are created. @param {Account} account */
  connect(account) {
    this.disconnect();
    this._account = account;
    for (const [name, entry] of this._docs) this._sync(name, entry);
    this._report();
  }

  /** Stop syncing; the documents stay on the device. */
  disconnect() {
    for (const entry of this._docs.values()) {
      entry.provider?.destroy();
      entry.provider = null;
      entry.state = "local";
      delete entry.reason;
    }
    this._account = null;
    this._report();
  }

  /** The page's network state: offline, providers stop dialling; back online, they connect at once. @param {boolean} online */
  setOnline(online) {
    if (online === this._online) return;
    this._online = online;
    for (const entry of this._docs.values()) {
      if (!entry.provider || entry.state === "unauthorized") continue;
      if (online) entry.provider.connect();
      else entry.provider.disconnect();
      entry.state = online ? "syncing" : "offline";
    }
    this._report();
  }

  /** @returns {SyncStatus} */
  status() {
    /** @type {Record<string, SyncState>} */
    const documents = {};
    let reason;
    for (const [name, entry] of this._docs) {
      documents[name] = entry.state;
      reason ??= entry.reason;
    }
    const states = Object.values(documents);
    /** @type {SyncState} */
    let state;
    if (!this._account) state = "local";
    else if (states.includes("unauthorized")) state = "unauthorized";
    else if (!this._online) state = "offline";
    else state = states.every((s) => s === "synced") ? "synced" : "syncing";
    return { state, user: this._account?.user ?? null, documents, ...(reason ? { reason } : {}) };
  }

  /** Persist a new document, watch it for changes that did not come from Python, sync it if there is an account. */
  _attach(/** @type {string} */ name, /** @type {any} */ doc) {
    const persistence = new this._crdt.IndexeddbPersistence(DB_PREFIX + name, doc);
    const entry = { doc, persistence, provider: null, state: /** @type {SyncState} */ ("local") };
    this._docs.set(name, entry);
    doc.on("update", (/** @type {Uint8Array} */ _update, /** @type {unknown} */ origin) => {
      if (origin !== LOCAL_ORIGIN) this._changedRemotely(name);
    });
    if (this._account) this._sync(name, entry);
  }

  _sync(/** @type {string} */ name, /** @type {any} */ entry) {
    const { url, user, token } = /** @type {Account} */ (this._account);
    // Cross-tab BroadcastChannel stays on: two tabs of one browser see each other's edits at once.
    const provider = new this._crdt.WebsocketProvider(url, `${user}/${name}`, entry.doc, { params: { token }, connect: this._online });
    entry.provider = provider;
    entry.state = this._online ? "syncing" : "offline";
    provider.on("sync", (/** @type {boolean} */ synced) => {
      if (entry.provider !== provider || entry.state === "unauthorized") return;
      entry.state = synced ? "synced" : "syncing";
      this._report();
    });
    provider.on("status", (/** @type {{status: string}} */ { status }) => {
      if (entry.provider !== provider || entry.state === "unauthorized" || status === "connected") return;
      entry.state = this._online ? "syncing" : "offline";
      this._report();
    });
    // 4401 (no or unknown token), 4403 (another user's room): y-websocket stops retrying on 44xx.
    provider.on("closed", (/** @type {{code: number, reason: string}} */ { code, reason }) => {
      if (entry.provider !== provider) return;
      entry.state = "unauthorized";
      entry.reason = `${code} ${reason}`;
      this._report();
    });
  }

  _changedRemotely(/** @type {string} */ name) {
    this._changed.add(name);
    this._changeTimer ??= setTimeout(() => {
      const names = [...this._changed].sort();
      this._changed.clear();
      this._changeTimer = null;
      this._onChange(names);
    }, CHANGE_COALESCE_MS);
  }

  _report() {
    this._onStatus(this.status());
  }
}
