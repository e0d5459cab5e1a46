// The user's state on this device, in the worker: the Yjs documents Python reaches through the
// state host (web/state_host.js), each persisted in IndexedDB (y-indexeddb) and, while the page
// has an account, synced with the server over y-websocket at /api/sync/ws/USER/DOC.
//
//   const state = new DeviceState(crdt, { onStatus, onChange });
//   pyodide.registerJsModule("_waystation_state", state.host);
//   await state.load();                     // every document stored for the device's owner, before Python reads
//   await state.connect({ url, user, token });  // the account's documents, synced now and as they are created
//   state.setOnline(false);                 // the page went offline: stop dialling until it is back
//   await state.disconnect();               // back to the device's own documents; the account's stay stored
//
// Documents are created on first use (`ctx.state(name)`); one stored before is loaded before the
// bundle opens, so Python never reads a half-loaded document. Offline edits are stored at once
// and reach the server when the connection syncs again.
//
// Each account has its own documents on the device, and the device has its own for use without
// one: signing in as someone else never shows them the last user's notes. The first sign-in moves
// the device's documents into the account (they were made by the person signing in).
import { LOCAL_ORIGIN, makeStateHost } from "./state_host.js";

export { DeviceState };

/** IndexedDB database of document NAME: DB_PREFIX + NAME for the device, DB_PREFIX + USER/NAME for an account. */
const DB_PREFIX = "waystation-state:";
/** Remote changes are told to the page at most this often, in one message. */
const CHANGE_COALESCE_MS = 30;

/**
 * @typedef {{Y: typeof import("yjs"), IndexeddbPersistence: any, WebsocketProvider: any}} Crdt
 * @typedef {{url: string, user: string, token: string}} Account
 * @typedef {"local" | "offline" | "syncing" | "synced" | "unauthorized" | "refused"} SyncState
 * @typedef {{state: SyncState, user: string | null, documents: Record<string, SyncState>, reason?: string}} SyncStatus
 * @typedef {{doc: any, persistence: any, provider: any, state: SyncState, reason?: string}} Entry
 */

/** @param {string | null} owner a user name, or null for the device's own documents @param {string} name */
function databaseName(owner, name) {
  return owner === null ? DB_PREFIX + name : `${DB_PREFIX}${owner}/${name}`;
}

class DeviceState {
  /**
   * @param {Crdt} crdt
   * @param {{onStatus?: (status: SyncStatus) => void, onChange?: (documents: string[]) => void}} [listeners]
   */
  constructor(crdt, { onStatus = () => {}, onChange = () => {} } = {}) {
    this._crdt = crdt;
    this._onStatus = onStatus;
    this._onChange = onChange;
    /** @type {Map<string, Entry>} */
    this._docs = new Map();
    /** @type {string | null} whose documents the host holds: a user, or null for the device's */
    this._owner = null;
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

  /** Open every document stored for the current owner and wait until each holds what IndexedDB has. */
  load() {
    this._loaded ??= (async () => {
      const names = await storedNames(this._owner);
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
    return /** @type {Entry} */ (this._docs.get(name)).persistence.whenSynced.then(() => undefined);
  }

  /**
   * Hold `account`'s documents and sync each with its room, now and as new ones are created.
   * On the first sign-in of this device, its own documents move into the account.
   * @param {Account} account
   */
  async connect(account) {
    this._stopSync();
    if (account.user !== this._owner) await this._switch(account.user);
    this._account = account;
    for (const [name, entry] of this._docs) this._sync(name, entry);
    this._report();
  }

  /** Stop syncing and hold the device's own documents again; the account's stay stored for next time. */
  async disconnect() {
    this._stopSync();
    this._account = null;
    if (this._owner !== null) await this._switch(null);
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
    else if (states.includes("refused")) state = "refused";
    else if (!this._online) state = "offline";
    else state = states.every((s) => s === "synced") ? "synced" : "syncing";
    return { state, user: this._account?.user ?? null, documents, ...(reason ? { reason } : {}) };
  }

  /**
   * Hold `owner`'s documents instead of the current ones. Moving from the device's own to a user's
   * for the first time, the device's documents are written into the user's before they are deleted.
   * @param {string | null} owner
   */
  async _switch(owner) {
    await this.load();
    const previous = this._owner;
    const adopt = previous === null && owner !== null && !(await hasStored(owner));
    /** @type {[string, Uint8Array][]} */
    const moving = adopt ? [...this._docs].map(([name, { doc }]) => [name, this._crdt.Y.encodeStateAsUpdate(doc)]) : [];
    for (const [name, update] of moving) await appendUpdate(databaseName(owner, name), update);
    const before = [...this._docs.keys()];
    this.host.destroy(); // each document's persistence closes with it
    this._docs.clear();
    this._owner = owner;
    this._loaded = null;
    await this.load();
    // Only once the account's databases hold them: a deletion blocked by another tab finishes when it closes.
    for (const [name] of moving) indexedDB.deleteDatabase(databaseName(previous, name));
    this._changedRemotely(...new Set([...before, ...this._docs.keys()]));
  }

  /** Persist a new document, relay it between tabs, watch it for changes that did not come from Python, sync it with an account. */
  _attach(/** @type {string} */ name, /** @type {any} */ doc) {
    const db = databaseName(this._owner, name);
    const persistence = new this._crdt.IndexeddbPersistence(db, doc);
    // Other tabs of this browser hold the same documents: each update crosses to them at once,
    // account or not (the IndexedDB store alone would show it them on their next load only).
    const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel(db) : null;
    if (tabs) tabs.onmessage = (event) => this._crdt.Y.applyUpdate(doc, new Uint8Array(event.data), tabs);
    /** @type {Entry} */
    const entry = { doc, persistence, provider: null, state: "local" };
    this._docs.set(name, entry);
    doc.on("update", (/** @type {Uint8Array} */ update, /** @type {unknown} */ origin) => {
      if (origin !== tabs && origin !== persistence) tabs?.postMessage(update); // stored ones, they have
      if (origin !== LOCAL_ORIGIN) this._changedRemotely(name);
    });
    doc.on("destroy", () => {
      tabs?.close();
      entry.provider?.destroy();
    });
    if (this._account) this._sync(name, entry);
  }

  _sync(/** @type {string} */ name, /** @type {Entry} */ entry) {
    const { url, user, token } = /** @type {Account} */ (this._account);
    // y-websocket's own BroadcastChannel is off: the tab relay in _attach covers every document.
    const provider = new this._crdt.WebsocketProvider(url, `${user}/${name}`, entry.doc, { params: { token }, connect: this._online, disableBc: true });
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
    // y-websocket stops retrying on 44xx and tells "closed". 4401: the token is missing, revoked or
    // expired (sign in again). The others refuse this socket, not the account: 4403 another user's
    // room, 4429 too many sockets of this user, 4413 a document past the server's limits.
    provider.on("closed", (/** @type {{code: number, reason: string}} */ { code, reason }) => {
      if (entry.provider !== provider) return;
      entry.state = code === 4401 ? "unauthorized" : "refused";
      entry.reason = `${code} ${reason}`;
      this._report();
    });
  }

  _stopSync() {
    for (const entry of this._docs.values()) {
      entry.provider?.destroy();
      entry.provider = null;
      entry.state = "local";
      delete entry.reason;
    }
  }

  _changedRemotely(/** @type {string[]} */ ...names) {
    for (const name of names) this._changed.add(name);
    this._changeTimer ??= setTimeout(() => {
      const changed = [...this._changed].sort();
      this._changed.clear();
      this._changeTimer = null;
      this._onChange(changed);
    }, CHANGE_COALESCE_MS);
  }

  _report() {
    this._onStatus(this.status());
  }
}

/** The documents stored on this device for `owner`. @param {string | null} owner */
async function storedNames(owner) {
  const prefix = databaseName(owner, "");
  const databases = typeof indexedDB.databases === "function" ? await indexedDB.databases() : [];
  return databases.map((db) => db.name ?? "")
    .filter((name) => name.startsWith(prefix) && !name.slice(prefix.length).includes("/"))
    .map((name) => name.slice(prefix.length));
}

/** @param {string} owner */
async function hasStored(owner) {
  return (await storedNames(owner)).length > 0;
}

/**
 * Add one Yjs update to a y-indexeddb database (its layout: an auto-keyed "updates" store and a
 * "custom" one), resolving once the write is committed, which y-indexeddb does not tell.
 * @param {string} name @param {Uint8Array} update
 */
function appendUpdate(name, update) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name);
    request.onupgradeneeded = () => {
      request.result.createObjectStore("updates", { autoIncrement: true });
      request.result.createObjectStore("custom");
    };
    request.onerror = () => reject(request.error);
    request.onsuccess = () => {
      const db = request.result;
      const transaction = db.transaction("updates", "readwrite");
      transaction.objectStore("updates").add(update);
      transaction.oncomplete = () => {
        db.close();
        resolve(undefined);
      };
      transaction.onerror = transaction.onabort = () => {
        db.close();
        reject(transaction.error);
      };
    };
  });
}
