// Waystation's public page API.
//
//   import { open } from "/waystation.js";
//   const app = await open({ bundle: "digits", onProgress: (p) => console.log(p) });
//   const answer = await app.call("classify_features", { features: [[0, 3, 16, ...]] });
//   const update = await app.update({ onProgress: (p) => console.log(p.loaded, p.total) });
//   // {from: "1.0.0", to: "1.0.1", fetchedBytes, totalBytes, savedBytes, activated: "now"}
//   const account = await login({ user: "Ada", password: "..." });   // or register(...); account.user is "ada"
//   app.connect(account);                    // ctx.state documents sync with the server when online
//   app.addEventListener("account", (e) => save(e.detail.account));  // renewed or after a password change
//   await app.changePassword({ oldPassword, newPassword });           // other devices are signed out
//   app.disconnect();                        // sign out: the token is revoked on the server
//   app.addEventListener("sync", (e) => console.log(e.detail.state)); // "offline", "syncing", "synced"
//   app.addEventListener("statechange", (e) => rerender(e.detail.documents)); // edits from elsewhere
//   await app.events.add("clicks", { item_id: "r12" });  // durable on the device; relayed if open({relay: true})
//   app.addEventListener("data", (e) => console.log(e.detail.relay, e.detail.features)); // relay, feature sync
//   // open({updates: "now" | "next-load" | "ask" | "off"}): background updates (web/fleet_updates.js, docs/fleet.md)
//   app.addEventListener("updatestaged", (e) => console.log(e.detail.to));   // "updateavailable" with "ask"
//   app.addEventListener("revoked", (e) => console.warn(e.detail.message));  // the publisher revoked the running version
//   app.addEventListener("alert", (e) => console.warn(e.detail)); // a declared alert crossed its threshold
//   await app.telemetry.pending();           // with open({telemetry: true}): the reports to be sent next (docs/telemetry.md)
//   app.close();
//
// Workflow functions run in Python inside a Web Worker; a failure rejects the promise with a
// WaystationError whose `name` is a code of docs/errors.md ("invalid-argument", "workflow-error",
// ...), its Python type and traceback in `pythonType` and `traceback`. Bundles live in
// the service worker's store (IndexedDB); its errors carry a code as their name, e.g.
// "chunk-corrupt", "signature-invalid", "quota-exceeded", "smoke-check-failed". Account calls
// reject with "account-error" (status in details), "rate-limited" or "server-busy" (details.retryAfter
// in seconds) and "network".

import { DataClient } from "./events.js";
import { checkWebgpuMode } from "./execution.js";
import { STORE, STORE_EVENT, WORKER, WORKER_EVENT } from "./protocol.js";
import { answering, Offload, offlineError, trackDevice } from "./offload.js";
import { installBundle, OpenProgress } from "./first_install.js";
import { FleetUpdates, UPDATE_POLICIES } from "./fleet_updates.js";
import { AppTelemetry } from "./telemetry.js";

export { App, changePassword, login, logout, logoutAll, open, preload, register, registerServiceWorker, renew, WaystationError };

/** An error raised by a workflow function or by Waystation itself, carried to the page. */
class WaystationError extends Error {
  /**
   * @param {string} code what happened, a code of docs/errors.md: "invalid-argument", "workflow-error", "chunk-corrupt"...
   * @param {string} message
   * @param {string} [traceback] the Python traceback, when there is one
   * @param {Record<string, unknown>} [details] what an update error is made of (url, status, ...)
   * @param {string} [pythonType] the Python exception's type, e.g. "ValueError", when the error came from Python
   */
  constructor(code, message, traceback, details, pythonType) {
    super(message);
    this.name = code;
    this.type = code; // the same code, for pages written before `name` was one
    this.pythonType = pythonType;
    this.traceback = traceback;
    this.details = details;
  }
}

/**
 * @typedef {{stage: string, message?: string, file?: string, loaded?: number, total?: number}} Progress
 * @typedef {{user: string, token: string, issuedAt?: number, expiresAt?: number}} Account what register() and
 *   login() resolve to: the canonical (lower-case) user name, the token and its lifetime in ms since the epoch
 * @typedef {{state: "local" | "offline" | "syncing" | "synced" | "unauthorized" | "refused", user: string | null,
 *   documents: Record<string, string>, reason?: string}} SyncStatus
 * @typedef {{bundle: string, channel?: string, onProgress?: (p: Progress) => void, baseUrl?: string | URL, serviceWorker?: boolean,
 *   sync?: Account | null, relay?: boolean, installTimeoutMs?: number, webgpu?: "auto" | "force" | "never",
 *   logLevel?: "debug" | "info" | "warning" | "error", fallback?: "auto" | "never", telemetry?: boolean,
 *   updates?: "now" | "next-load" | "ask" | "off", checkIntervalMs?: number}} OpenOptions
 * @typedef {{channel?: string, activate?: "now" | "next-load", onProgress?: (p: any) => void, device?: string,
 *   timeoutMs?: number, retries?: number, concurrency?: number}} UpdateOptions
 */

/**
 * Start a worker, boot Python in it and open a bundle. Resolves when its models are loaded.
 * Under the service worker, the bundle's active version comes from the device's store; the
 * first time, it is installed from `channel` (progress as stage "download", bytes `loaded` of
 * `total`). A first install the network interrupts waits for it (progress as stage
 * "waiting-for-network", with a message to show) and goes on by itself when it is back; it
 * rejects only after `installTimeoutMs` (default: never; first_install.js).
 * `webgpu` says where models run: "auto" (WebGPU when the bundle offers it and the device has a
 * hardware adapter), "force" or "never"; app.info.executionProviders and executionReason tell
 * what was chosen and why (web/execution.js).
 * `fallback: "auto"` (with `sync`) lets the server answer the functions whose workflow allows it
 * while the device cannot (web/offload.js): open() then resolves as soon as either can answer,
 * and `app.ready` when the device can.
 * `telemetry: true` opts in to sending anonymous reports of call counts, errors and times
 * (web/telemetry.js, docs/telemetry.md); off, nothing is collected or sent.
 * `updates` says what a new version the channel serves does, found by the background check-ins
 * (web/fleet_updates.js): "now", "next-load", "ask" (an "updateavailable" event) or "off" (the
 * default: nothing is fetched unasked). A revoked version is left whatever it says. Check-ins run
 * at open, on `online` and every checkAfterSeconds the server says, or every `checkIntervalMs`.
 * @param {OpenOptions} options
 * @returns {Promise<App>}
 */
async function open({ bundle, channel = "stable", onProgress = () => {}, baseUrl = new URL("./", import.meta.url), serviceWorker = true, sync = null, relay = false, installTimeoutMs = Infinity, webgpu = "auto", logLevel = undefined, fallback = "never", telemetry = false, updates = "off", checkIntervalMs = undefined }) {
  if (typeof bundle !== "string" || !bundle) throw new TypeError("open(): `bundle` must be a bundle name, e.g. \"digits\"");
  checkWebgpuMode(webgpu);
  if (!UPDATE_POLICIES.includes(updates)) throw new TypeError(`open(): updates ${JSON.stringify(updates)} is not one of ${UPDATE_POLICIES.map((u) => `"${u}"`).join(", ")}`);
  if (checkIntervalMs !== undefined && !(checkIntervalMs > 0)) throw new TypeError(`open(): checkIntervalMs must be a number of ms above 0, got ${JSON.stringify(checkIntervalMs)}`);
  if (typeof telemetry !== "boolean") throw new TypeError(`open(): telemetry must be true or false, got ${JSON.stringify(telemetry)}`);
  // ctx.log's level in the worker (INFO unless given), as `waystation run --log-level` sets it on CPython
  if (logLevel !== undefined && !["debug", "info", "warning", "error"].includes(logLevel)) {
    throw new TypeError(`open(): logLevel ${JSON.stringify(logLevel)} is not one of "debug", "info", "warning", "error"`);
  }
  // Python starts booting at once when the worker's requests will reach the same place as after
  // the service worker connects: a page it controls already, or one without it. On a first visit
  // the worker waits for it to take control, so that the bundle comes from its store, not twice.
  const started = performance.now();
  const early = !serviceWorker || Boolean(navigator.serviceWorker?.controller);
  const progress = new OpenProgress(bundle, onProgress); // the worker's and the install's, as one story
  let worker = early ? startWorker(baseUrl, bundle, progress.fromWorker) : null;
  let store;
  try {
    store = serviceWorker ? await StoreClient.connect(baseUrl) : null;
  } catch (err) {
    worker?.close();
    // Offline on a first visit the service worker cannot be fetched: say that, not the browser's TypeError.
    throw navigator.onLine ? err : offlineError("open()", bundle, err, replyError, fallback === "auto" && Boolean(sync));
  }
  const connected = performance.now();
  worker ??= startWorker(baseUrl, bundle, progress.fromWorker);
  const app = new App(worker, { bundle, baseUrl, store, onProgress });
  app.telemetry = new AppTelemetry({ enabled: telemetry, bundle, baseUrl, request: (message) => app._worker.request(message),
    emit: (detail) => app.dispatchEvent(new CustomEvent("alert", { detail })) });
  try {
    if (sync) app._account = await app._renewed(checkAccount(sync, "open()"));
    app._offload = new Offload({ bundle, channel, baseUrl, fallback, account: () => app._account, toError: replyError,
      emit: (detail) => app.dispatchEvent(new CustomEvent("offload", { detail })) });
  } catch (err) {
    app.close();
    throw err;
  }
  // The device opens the bundle; with fallback "auto" open() may resolve before (offload.js).
  const opened = (async () => {
    const persisted = store ? persist() : Promise.resolve(false);
    const installed = store && /** @type {any} */ (await installBundle(store, { bundle, channel }, progress, { timeoutMs: installTimeoutMs }));
    const bundleInstalled = performance.now();
    app.events.relayEnabled = relay;
    app._webgpu = webgpu;
    app._logLevel = logLevel;
    app.info = await worker.request({ type: WORKER.open, bundle, version: installed?.version, account: app._syncAccount(), relay, webgpu, logLevel, telemetry });
    app.info.storagePersisted = await persisted;
    // Where open()'s time went on the page's side (the worker's is in app.info.timings): the
    // service worker taking control (a first visit: its precache of the shell) and the bundle's
    // install into its store (a first visit: every chunk), before the worker could open it.
    app.info.openTimings = { serviceWorkerMs: connected - started, installMs: bundleInstalled - connected,
      workerStartedEarly: early, totalMs: performance.now() - started };
    app.telemetry.opened(app.info);
    if (store) {
      app._fleet = new FleetUpdates(app, { store, bundle, channel, updates, checkIntervalMs });
      app._fleet.start();
    }
  })();
  app._device = trackDevice(opened);
  try {
    // Answering from the server first: its description (name, version, functions, offload) until the device's.
    if ((await answering(app._offload, opened, store, bundle)) === "server") app.info ??= { ...app._offload.remote };
  } catch (err) {
    app.close();
    throw err;
  }
  return app;
}

/**
 * A page error from a reply's `error` (the server's run API answers as the worker does).
 * @param {any} error @param {number} status
 */
function replyError(error, status) {
  return new WaystationError(error.code ?? error.type, error.message, error.traceback,
    { ...error.details, status, retryAfter: error.retryAfter }, error.pythonType);
}

/**
 * A worker for `bundle`, booting Python already: the one `preload()` started for this base URL, or a new one.
 * @param {string | URL} baseUrl @param {string} bundle @param {(p: Progress) => void} onProgress
 */
function startWorker(baseUrl, bundle, onProgress) {
  const key = new URL("./", baseUrl).href;
  const spare = spares.get(key);
  spares.delete(key);
  if (spare) {
    spare.onProgress = onProgress;
    return spare;
  }
  const worker = new WorkerPort(baseUrl, bundle, onProgress);
  worker.request({ type: WORKER.boot }).catch(() => {});
  return worker;
}

/** @type {Map<string, WorkerPort>} workers started by preload(), by base URL, until open() takes them */
const spares = new Map();

/**
 * Start Python (and its worker) now, before open() is called: a page that knows it will open a
 * bundle calls this early (at load, while the user reads), and the next open() from the same
 * base URL takes the booted worker. Does nothing on a first visit under the service worker
 * (see open()) or when a worker is already waiting.
 *
 *   preload();                                  // at page load
 *   button.onclick = async () => { const app = await open({ bundle: "minilm" }); ... };
 *
 * @param {{baseUrl?: string | URL, serviceWorker?: boolean}} [options] as open() will be given them
 */
function preload({ baseUrl = new URL("./", import.meta.url), serviceWorker = true } = {}) {
  const key = new URL("./", baseUrl).href;
  if (spares.has(key) || (serviceWorker && navigator.serviceWorker && !navigator.serviceWorker.controller)) return;
  const worker = new WorkerPort(baseUrl, "preloaded", () => {});
  worker.request({ type: WORKER.boot }).catch(() => {});
  spares.set(key, worker);
}

/**
 * Register the service worker that keeps the app usable offline (no-op where unsupported).
 * @param {string | URL} baseUrl
 */
async function registerServiceWorker(baseUrl = new URL("./", import.meta.url)) {
  if (!("serviceWorker" in navigator)) return null;
  const registration = await navigator.serviceWorker.register(new URL("sw.js", baseUrl), { type: "module", scope: new URL("./", baseUrl).pathname });
  return registration;
}

/** Ask for persistent storage where the browser grants it, so bundles are not evicted under pressure. */
async function persist() {
  try {
    return (await navigator.storage?.persisted?.()) || (await navigator.storage?.persist?.()) || false;
  } catch {
    return false;
  }
}

/**
 * A new account on the server; resolves to {user, token, ...} for `open({sync})` or `app.connect()`.
 * The user name is case-insensitive: `user` comes back canonical (lower case). Rejects with a
 * WaystationError named "account-error" saying why (name taken, password too short or too common),
 * "rate-limited" (too many tries: `details.retryAfter` s) or "server-busy".
 * @param {{user: string, password: string, baseUrl?: string | URL}} credentials
 * @returns {Promise<Account>}
 */
async function register({ user, password, baseUrl = new URL("./", import.meta.url) }) {
  return toAccount(await accountRequest("register", baseUrl, { body: { user, password } }));
}

/**
 * A token for an existing account; rejects like register(). After a few wrong passwords each try
 * must wait (up to a minute by default): "rate-limited", with `details.retryAfter` in seconds.
 * @param {{user: string, password: string, baseUrl?: string | URL}} credentials
 * @returns {Promise<Account>}
 */
async function login({ user, password, baseUrl = new URL("./", import.meta.url) }) {
  return toAccount(await accountRequest("login", baseUrl, { body: { user, password } }));
}

/**
 * A new token for `account` (the old one keeps working for a minute). open() and connect() do
 * this themselves once a token is past half its life.
 * @param {Account} account
 * @param {{baseUrl?: string | URL}} [options]
 * @returns {Promise<Account>}
 */
async function renew(account, { baseUrl = new URL("./", import.meta.url) } = {}) {
  return toAccount(await accountRequest("renew", baseUrl, { token: checkAccount(account, "renew()").token }));
}

/**
 * Revoke `account`'s token on the server: its sockets close, and it no longer works anywhere.
 * @param {Account} account
 * @param {{baseUrl?: string | URL}} [options]
 * @returns {Promise<void>}
 */
async function logout(account, { baseUrl = new URL("./", import.meta.url) } = {}) {
  await accountRequest("logout", baseUrl, { token: checkAccount(account, "logout()").token });
}

/**
 * Revoke every token of `account`'s user, on every device (a lost phone). Resolves to how many.
 * @param {Account} account
 * @param {{baseUrl?: string | URL}} [options]
 * @returns {Promise<number>}
 */
async function logoutAll(account, { baseUrl = new URL("./", import.meta.url) } = {}) {
  const answer = await accountRequest("logout-all", baseUrl, { token: checkAccount(account, "logoutAll()").token });
  return answer.revoked;
}

/**
 * Change the password; every other token of the user is revoked (other devices sign in again).
 * Resolves to the new account to use instead of `account`. A wrong `oldPassword` counts as a
 * wrong login ("account-error", then "rate-limited").
 * @param {{account: Account, oldPassword: string, newPassword: string, baseUrl?: string | URL}} options
 * @returns {Promise<Account>}
 */
async function changePassword({ account, oldPassword, newPassword, baseUrl = new URL("./", import.meta.url) }) {
  const { token } = checkAccount(account, "changePassword()");
  return toAccount(await accountRequest("password", baseUrl, { token, body: { old: oldPassword, new: newPassword } }));
}

/**
 * POST to the account API; resolves to its JSON answer, rejects with a WaystationError.
 * @param {string} what
 * @param {string | URL} baseUrl
 * @param {{token?: string, body?: object}} request
 * @returns {Promise<any>}
 */
async function accountRequest(what, baseUrl, { token, body }) {
  /** @type {Record<string, string>} */
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(new URL(`api/sync/${what}`, baseUrl), { method: "POST", headers, body: JSON.stringify(body ?? {}) });
  } catch (err) {
    throw new WaystationError("network", `cannot reach the server to ${what}: ${/** @type {Error} */ (err).message}`);
  }
  const answer = await response.json().catch(() => ({}));
  if (response.ok) return answer;
  const message = answer.error ?? `${what} failed: HTTP ${response.status}`;
  const retryAfter = Number(response.headers.get("Retry-After")) || undefined;
  const name = response.status === 429 ? "rate-limited" : response.status === 503 ? "server-busy" : "account-error";
  throw new WaystationError(name, message, undefined, { status: response.status, retryAfter });
}

/** @param {any} answer the server's {user, token, issued_at, expires_at} (seconds) @returns {Account} */
function toAccount(answer) {
  return { user: answer.user, token: answer.token, issuedAt: answer.issued_at * 1000, expiresAt: answer.expires_at * 1000 };
}

/** Past half its life, a token is renewed at open() and connect(). @param {Account} account */
function dueForRenewal({ issuedAt, expiresAt }) {
  return typeof issuedAt === "number" && typeof expiresAt === "number" && Date.now() > (issuedAt + expiresAt) / 2;
}

/**
 * One opened bundle in its worker. Events: "sync" (detail: SyncStatus) when the sync state
 * changes, "statechange" (detail: {documents}) when state documents changed other than by
 * this app's calls: synced from another device or tab, "account" (detail: {account}) when its
 * token was renewed or replaced by a password change: keep that one instead.
 */
class App extends EventTarget {
  /**
   * @param {WorkerPort} worker
   * @param {{bundle: string, baseUrl: string | URL, store: StoreClient | null, onProgress: (p: Progress) => void}} options
   */
  constructor(worker, { bundle, baseUrl, store, onProgress }) {
    super();
    this._worker = worker;
    this._bundle = bundle;
    this._baseUrl = baseUrl;
    this._store = store;
    this._onProgress = onProgress;
    /** @type {any} name, version, functions, models, startupMs of the opened bundle */
    this.info = null;
    /** @type {Offload | null} where a call may go besides the device (open({fallback})) */
    this._offload = null;
    /** @type {FleetUpdates | null} background check-ins, under the service worker (open({updates})) */
    this._fleet = null;
    /** @type {{version: string, message: string} | null} set while the running version is revoked and nothing replaces it */
    this._revoked = null;
    /** Telemetry (open({telemetry})): pending(), flush(), setRemoteLogging(); "alert" events either way. */
    this.telemetry = new AppTelemetry({ enabled: false, bundle, baseUrl, request: (message) => this._worker.request(message), emit: () => {} });
    /** @type {{state: "loading" | "ready" | "failed", ready: Promise<unknown>}} the device opening the bundle */
    this._device = { state: "ready", ready: Promise.resolve() };
    /** @type {{name: string, ranOn: "device" | "server", ms: number, workerMs: number, pythonMs: number,
     *   metrics: Record<string, number>} | null} */
    this.lastCall = null;
    /** @type {Account | null} */
    this._account = null;
    /** @type {unknown} open()'s `webgpu`: where models run, kept for the versions an update or rollback opens */
    this._webgpu = "auto";
    /** @type {string | undefined} ctx.log's level, given to each worker this app opens */
    this._logLevel = undefined;
    /** @type {SyncStatus} */
    this.syncStatus = { state: "local", user: null, documents: {} };
    /** Events and feature tables on the device (web/events.js): add, relay, flush, status, syncFeatures. */
    this.events = new DataClient(() => this._worker, (type, message) => new WaystationError(type, message));
    this._onNetwork = () => this._worker.request({ type: WORKER.network, online: navigator.onLine }).catch(() => {});
    addEventListener("online", this._onNetwork);
    addEventListener("offline", this._onNetwork);
    this._onNetwork(); // before "open": the page's view of the network, not the worker's, from the start
    this._listen(worker);
  }

  /**
   * Answer from `account`'s state documents and sync them with the server whenever the network
   * is there: edits made offline are kept on the device and sent on reconnect. Each account has
   * its own documents on the device; the first sign-in on a device moves the device's own state
   * into the account. Resolves with the sync status once they are loaded; "sync" events follow.
   * @param {Account} account from register() or login()
   * @returns {Promise<SyncStatus>}
   */
  async connect(account) {
    this._account = await this._renewed(checkAccount(account, "connect()"));
    return this._worker.request({ type: WORKER.sync, account: this._syncAccount() });
  }

  /**
   * Stop syncing and answer from the device's own state again (signing out): the account's
   * documents stay stored on this device for the next connect(), and nobody else sees them.
   * Online, the token is revoked on the server too (`revoke: false` keeps it, e.g. when another
   * tab signed out already); offline it is only forgotten here, and expires on its own.
   * @param {{revoke?: boolean}} [options]
   * @returns {Promise<SyncStatus>}
   */
  async disconnect({ revoke = true } = {}) {
    const account = this._account;
    this._account = null;
    const status = await this._worker.request({ type: WORKER.sync, account: null });
    if (revoke && account && navigator.onLine) await logout(account, { baseUrl: this._baseUrl }).catch(() => {});
    return status;
  }

  /** The account this app syncs as, its renewed token included; null when there is none. @returns {Account | null} */
  get account() {
    return this._account;
  }

  /**
   * Change the signed-in user's password: other devices are signed out, this app goes on syncing
   * with the new token it resolves to (also told as an "account" event: keep that one).
   * @param {{oldPassword: string, newPassword: string}} passwords
   * @returns {Promise<Account>}
   */
  async changePassword({ oldPassword, newPassword }) {
    if (!this._account) throw new WaystationError("account-error", "changePassword(): no account is connected");
    const account = await changePassword({ account: this._account, oldPassword, newPassword, baseUrl: this._baseUrl });
    this._account = account;
    this.dispatchEvent(new CustomEvent("account", { detail: { account } }));
    await this._worker.request({ type: WORKER.sync, account: this._syncAccount() });
    return account;
  }

  /**
   * `account`, renewed first ("account" event) if its token is past half its life and the network
   * is there. A failed renewal keeps it: offline it syncs later; refused, its sockets say so.
   * @param {Account} account
   * @returns {Promise<Account>}
   */
  async _renewed(account) {
    if (!dueForRenewal(account) || !navigator.onLine) return account;
    try {
      const renewed = await renew(account, { baseUrl: this._baseUrl });
      this.dispatchEvent(new CustomEvent("account", { detail: { account: renewed } }));
      return renewed;
    } catch {
      return account;
    }
  }

  _syncAccount() {
    if (!this._account) return null;
    const url = new URL("api/sync/ws", this._baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return { url: url.href, ...this._account };
  }

  /** Relay a worker's sync and state events as this app's events. @param {WorkerPort} worker */
  _listen(worker) {
    worker.onEvent = (/** @type {any} */ data) => {
      if (worker !== this._worker) return; // a smoke-check candidate, not adopted yet
      if (data.type === WORKER_EVENT.sync) {
        this.syncStatus = data.status;
        this.dispatchEvent(new CustomEvent("sync", { detail: data.status }));
      } else if (data.type === WORKER_EVENT.state) {
        this.dispatchEvent(new CustomEvent("statechange", { detail: { documents: data.documents } }));
      } else if (data.type === WORKER_EVENT.data) {
        this.dispatchEvent(new CustomEvent("data", { detail: data.status }));
      }
    };
  }

  /** Resolves when the device answers calls (with fallback "auto", open() may resolve before). */
  get ready() {
    return this._device.ready.then(() => undefined);
  }

  /** The active bundle version. */
  get version() {
    return this.info?.version;
  }

  /** {function name: parameter names} exported by the workflow script. */
  get functions() {
    return this.info?.functions ?? {};
  }

  /**
   * Call an exported workflow function; resolves to its JSON-able result.
   * @param {string} name
   * @param {Record<string, unknown> | unknown[]} [args] named arguments, or positional ones
   */
  async call(name, args = {}) {
    if (this._revoked) throw new WaystationError("revoked", this._revoked.message, undefined, { bundle: this._bundle, version: this._revoked.version });
    const started = performance.now();
    const onDevice = () => this._worker.request({ type: WORKER.call, name, args });
    let routed;
    try {
      routed = this._offload
        ? await this._offload.route(name, args, { ...this._device, info: this.info }, onDevice)
        : { reply: await onDevice(), ranOn: /** @type {"device"} */ ("device") };
    } catch (err) {
      const code = err instanceof WaystationError ? err.name : "internal-error";
      this.telemetry.call({ name, ms: performance.now() - started, error: code, ranOn: "device" }, this.version);
      throw err;
    }
    const { reply, ranOn } = routed;
    this.lastCall = { name, ranOn, ms: performance.now() - started, workerMs: reply.workerMs, pythonMs: reply.ms, metrics: reply.metrics };
    this.telemetry.call({ name, ms: this.lastCall.ms, error: null, metrics: reply.metrics, ranOn, runs: reply.runs }, this.version);
    return reply.result;
  }

  /**
   * Bring the bundle to the version `channel` serves this device, fetching only the chunks the
   * device lacks. The new version passes its smoke check in a fresh worker before it becomes
   * active, at once (`activate: "now"`, this app then answers with it) or on the next load.
   * Any failure leaves the running version active and answering.
   *
   *   const r = await app.update({ channel: "beta", onProgress: (p) => bar.value = p.loaded / p.total });
   *   console.log(`${r.from} -> ${r.to}: fetched ${r.fetchedBytes} of ${r.totalBytes} bytes`);
   *
   * @param {UpdateOptions} [options]
   * @returns {Promise<{from: string | null, to: string, upToDate: boolean, fetchedBytes: number, totalBytes: number,
   *   savedBytes: number, manifestBytes: number, activated: "now" | "next-load" | null}>}
   */
  async update({ channel = "stable", activate = "now", onProgress = () => {}, ...options } = {}) {
    if (activate !== "now" && activate !== "next-load") throw new TypeError('update(): `activate` is "now" or "next-load"');
    if (this._fleet) this._fleet.channel = channel; // background check-ins follow the channel updated from
    const store = this._requireStore("update()");
    const bundle = this._bundle;
    const staged = /** @type {any} */ (await store.request(STORE.update, { bundle, channel, ...options }, onProgress));
    if (staged.upToDate) return { ...staged, activated: null };
    onProgress({ stage: "smoke-check", message: `checking ${bundle} ${staged.to} in a fresh worker` });
    const candidate = new WorkerPort(this._baseUrl, `${bundle} ${staged.to} (smoke check)`, (p) => onProgress({ ...p, stage: "smoke-check" }));
    let info;
    try {
      info = await candidate.request({ type: WORKER.open, bundle, version: staged.to, account: this._syncAccount(), webgpu: this._webgpu, logLevel: this._logLevel, telemetry: this.telemetry.enabled });
      info.smokeCheck = await candidate.request({ type: WORKER.smoke });
    } catch (err) {
      const e = /** @type {WaystationError} */ (err);
      candidate.close();
      await store.request(STORE.discard, { bundle, version: staged.to }).catch(() => {});
      // What failed, by its Python type when it came from Python (SmokeCheckError, ModelError), else its code
      throw new WaystationError("smoke-check-failed", `${bundle} ${staged.to} failed its smoke check: ${e.pythonType ?? e.name}: ${e.message}; ` +
        `${bundle} ${this.version} stays active`, e.traceback, { version: staged.to, cause: e.name }, e.pythonType);
    }
    try {
      await store.request(STORE.activate, { bundle, version: staged.to, when: activate });
    } catch (err) {
      candidate.close();
      throw err;
    }
    if (activate === "now") this._adopt(candidate, info);
    else candidate.close();
    onProgress({ stage: "activated", version: staged.to, when: activate });
    return { ...staged, activated: activate };
  }

  /**
   * What an update from `channel` would fetch, without fetching it.
   * @param {{channel?: string, device?: string}} [options]
   * @returns {Promise<{from: string | null, to: string, upToDate: boolean, fetchBytes: number, totalBytes: number}>}
   */
  async checkForUpdate({ channel = "stable", ...options } = {}) {
    return /** @type {any} */ (this._requireStore("checkForUpdate()").request(STORE.check, { bundle: this._bundle, channel, ...options }));
  }

  /**
   * Make the previous version active again and answer with it; the version left is deleted.
   * @returns {Promise<{from: string, to: string}>}
   */
  async rollback() {
    const moved = /** @type {any} */ (await this._requireStore("rollback()").request(STORE.rollback, { bundle: this._bundle }));
    await this._reopen(moved.to);
    return moved;
  }

  /** Answer with another stored version from now on, in the same worker (a rollback, leaving a revoked version). */
  async _reopen(/** @type {string} */ version) {
    this.info = { ...this.info, ...(await this._worker.request({ type: WORKER.open, bundle: this._bundle, version, webgpu: this._webgpu, telemetry: this.telemetry.enabled })) };
    this.telemetry.opened(this.info);
  }

  /** What the device holds of this bundle: active, previous and staged versions, stored chunks, quota. */
  async versions() {
    const held = /** @type {any} */ (await this._requireStore("versions()").request(STORE.versions, { bundle: this._bundle }));
    return { ...held, running: this.version };
  }

  /** Stop the worker; pending calls reject. */
  close() {
    removeEventListener("online", this._onNetwork);
    removeEventListener("offline", this._onNetwork);
    this.telemetry.close();
    this._fleet?.stop();
    this._worker.close(new WaystationError("closed", "the app was closed"));
  }

  /** Answer from now on with the worker that opened and checked the new version. */
  _adopt(/** @type {WorkerPort} */ worker, /** @type {any} */ info) {
    const old = this._worker;
    worker.onProgress = this._onProgress;
    this._worker = worker;
    this._listen(worker);
    this.info = { ...this.info, ...info };
    this.telemetry.opened(this.info);
    old.close(new WaystationError("closed", `the app moved to ${info.version}`));
    worker.request({ type: WORKER.relay, enabled: this.events.relayEnabled }).catch(() => {});
    // What the new worker told while it was a candidate was not relayed: ask it now.
    worker.request({ type: WORKER.network, online: navigator.onLine }).then((status) => {
      this.syncStatus = status;
      this.dispatchEvent(new CustomEvent("sync", { detail: status }));
    }, () => {});
  }

  _requireStore(/** @type {string} */ what) {
    if (this._store) return this._store;
    throw new WaystationError("unsupported", `${what} needs the service worker's bundle store, and this page runs without one ` +
      "(open({serviceWorker: false}), no service worker support, or a reload that bypassed it)");
  }
}

/** A worker running worker.js, and the requests pending on it. */
class WorkerPort {
  /**
   * @param {string | URL} baseUrl
   * @param {string} label
   * @param {(p: Progress) => void} onProgress
   */
  constructor(baseUrl, label, onProgress) {
    this.worker = new Worker(new URL("worker.js", baseUrl), { type: "module", name: `waystation:${label}` });
    this.onProgress = onProgress;
    /** @type {(data: any) => void} what the worker tells without being asked (sync, state) */
    this.onEvent = () => {};
    this._nextId = 1;
    /** @type {Map<number, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
    this._pending = new Map();
    this._onMessage = (/** @type {MessageEvent} */ e) => this._receive(e.data);
    this._onError = (/** @type {ErrorEvent} */ e) => this._failAll(new WaystationError("worker-failed", e.message || "the worker failed to start"));
    this.worker.addEventListener("message", this._onMessage);
    this.worker.addEventListener("error", this._onError);
  }

  /** @param {{type: (typeof WORKER)[keyof typeof WORKER]} & Record<string, unknown>} message @returns {Promise<any>} */
  request(message) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...message });
    });
  }

  /** Stop the worker; pending requests reject with `reason`. */
  close(/** @type {Error} */ reason = new WaystationError("closed", "the worker was closed")) {
    this.worker.removeEventListener("message", this._onMessage);
    this.worker.removeEventListener("error", this._onError);
    this.worker.terminate();
    this._failAll(reason);
  }

  /** @param {any} data */
  _receive(data) {
    if (data.type === WORKER_EVENT.progress) {
      this.onProgress(data);
      return;
    }
    if (data.id === undefined) {
      this.onEvent(data);
      return;
    }
    const pending = this._pending.get(data.id);
    if (!pending) return;
    this._pending.delete(data.id);
    if (data.ok) pending.resolve(data.tensors?.length ? reviveTensors(data.value, data.tensors) : data.value);
    else pending.reject(new WaystationError(data.error.code ?? data.error.type, data.error.message, data.error.traceback, data.error.details, data.error.pythonType));
  }

  /** @param {Error} error */
  _failAll(error) {
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
  }
}

/** The service worker's bundle store, reached by postMessage with a MessageChannel per request. */
class StoreClient {
  /** @param {ServiceWorker} worker */
  constructor(worker) {
    this._worker = worker;
  }

  /**
   * The store of the service worker controlling this page; null without one. On a first visit
   * this waits for the service worker to take control, so that the bundle worker's requests
   * reach it (a reload that bypassed it, e.g. shift-reload, runs without a store).
   * @param {string | URL} baseUrl
   */
  static async connect(baseUrl) {
    const container = navigator.serviceWorker;
    if (!container) return null;
    // A page outside the service worker's scope (an app embedding the runtime under a prefix) is
    // never controlled by it: waiting for that would wait forever, so it runs without the store.
    if (!location.href.startsWith(new URL("./", baseUrl).href)) return null;
    const claimed = new Promise((resolve) => container.addEventListener("controllerchange", resolve, { once: true }));
    const registration = await registerServiceWorker(baseUrl);
    if (!registration) return null;
    const ready = await container.ready;
    if (!container.controller) {
      // Still activating: it claims this page when done. Already active: this load bypassed it.
      const waitMs = ready.active?.state === "activated" ? 1_000 : 60_000;
      await Promise.race([claimed, new Promise((resolve) => setTimeout(resolve, waitMs))]);
    }
    return container.controller ? new StoreClient(container.controller) : null;
  }

  /**
   * @param {(typeof STORE)[keyof typeof STORE]} type a request named in web/protocol.js
   * @param {object} data
   * @param {(p: any) => void} [onProgress]
   */
  request(type, data, onProgress = () => {}) {
    const channel = new MessageChannel();
    return new Promise((resolve, reject) => {
      channel.port1.onmessage = (/** @type {MessageEvent} */ event) => {
        const reply = event.data;
        if (reply.type === STORE_EVENT.progress) {
          onProgress(reply.progress);
          return;
        }
        channel.port1.close();
        if (reply.ok) resolve(reply.value);
        else reject(new WaystationError(reply.error.type, reply.error.message, undefined, reply.error.details));
      };
      // The worker controlling the page now: after a site update it is a newer one.
      const target = navigator.serviceWorker.controller ?? this._worker;
      target.postMessage({ type, ...data }, [channel.port2]);
    });
  }
}

/** @param {any} account @param {string} where @returns {Account} */
function checkAccount(account, where) {
  if (typeof account?.user !== "string" || typeof account?.token !== "string") {
    throw new TypeError(`${where}: give the {user, token} that register() or login() resolved to`);
  }
  const { user, token, issuedAt, expiresAt } = account;
  return typeof issuedAt === "number" && typeof expiresAt === "number" ? { user, token, issuedAt, expiresAt } : { user, token };
}

/**
 * Put the typed arrays that travelled beside a reply back where the workflow returned Tensors:
 * each becomes {dtype, shape, data}, `data` a typed array (Float32Array, BigInt64Array, ...).
 * @param {any} value
 * @param {ArrayBufferView[]} tensors
 * @returns {any}
 */
function reviveTensors(value, tensors) {
  if (Array.isArray(value)) return value.map((v) => reviveTensors(v, tensors));
  if (value === null || typeof value !== "object") return value;
  if ("$tensor" in value) return { dtype: value.dtype, shape: value.shape, data: tensors[value.$tensor] };
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reviveTensors(v, tensors)]));
}
