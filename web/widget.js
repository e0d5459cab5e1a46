// <waystation-app>: a bundle opened by a custom element, with its install progress, offline
// state, errors and "update ready" shown in a default look that an app restyles (::part(),
// custom properties) or replaces (named slots, events). Importing this module defines it.
//
//   <script type="module" src="/waystation/widget.js"></script>
//   <waystation-app bundle="digits" channel="stable"></waystation-app>
//
//   const el = document.querySelector("waystation-app");
//   el.addEventListener("ready", (e) => console.log(e.detail.version));
//   const answer = await el.call("classify_features", { features: [[0, 3, 16 /* ... */]] });
//
// Everything an app needs goes through properties, methods and bubbling, composed DOM events,
// so plain HTML, React and Vue use it without wrappers (docs/widget.md).

import { open, WaystationError } from "./waystation.js";

export { WaystationApp };

/**
 * @typedef {import("./waystation.js").Account} Account
 * @typedef {import("./waystation.js").Progress} Progress
 * @typedef {import("./waystation.js").SyncStatus} SyncStatus
 * @typedef {import("./waystation.js").UpdateOptions} UpdateOptions
 * @typedef {Awaited<ReturnType<typeof open>>} App
 * @typedef {"idle" | "loading" | "ready" | "updating" | "error"} WidgetState what the `state` attribute says
 * @typedef {{from: string | null, to: string, staged: boolean, fetchBytes?: number, totalBytes?: number}} UpdateReady
 *   an update the device can move to: fetched already (`staged`) or `fetchBytes` to fetch
 * @typedef {{error: Error, during: "open" | "update" | "call"}} ErrorDetail
 * @typedef {{
 *   progress: CustomEvent<Progress>, ready: CustomEvent<{app: App, version: string}>,
 *   error: CustomEvent<ErrorDetail>, updateready: CustomEvent<UpdateReady>,
 *   updated: CustomEvent<Awaited<ReturnType<App["update"]>>>, offlinechange: CustomEvent<{offline: boolean}>,
 *   sync: CustomEvent<SyncStatus>, statechange: CustomEvent<{documents: Record<string, string>}>,
 *   data: CustomEvent<any>, account: CustomEvent<{account: Account}>
 * }} WaystationAppEventMap the events a <waystation-app> dispatches, by type
 */

const TAG = "waystation-app";
// The App's own events, dispatched again by the element (same type, same detail).
const APP_EVENTS = ["sync", "statechange", "data", "account"];
// Attributes that say how the bundle is opened: a change opens it again.
const OPEN_ATTRIBUTES = ["bundle", "channel", "no-service-worker", "relay"];
// The runtime's folder: the service worker registered from there controls only pages under it.
const RUNTIME_BASE = new URL("./", import.meta.url);

// A constructed stylesheet, not a <style>: the server's CSP (style-src 'self') refuses inline
// styles, and CSSOM sheets are outside it. One sheet, shared by every element.
const CSS = `
:host {
  display: block;
  font: var(--waystation-font, inherit);
  color: var(--waystation-color, inherit);
}
:host([hidden]), [hidden] { display: none !important; }
[part~="panel"] {
  display: flex; flex-wrap: wrap; align-items: center; gap: 0.5em;
  padding: var(--waystation-padding, 0.5em 0.75em);
  border: 1px solid var(--waystation-border-color, #d0d7de);
  border-radius: var(--waystation-radius, 6px);
  background: var(--waystation-background, transparent);
}
[part~="progress"] { flex: 1 1 10em; accent-color: var(--waystation-accent, #0969da); }
[part~="progress-text"] { font-size: 0.85em; opacity: 0.8; }
[part~="offline"] {
  padding: 0 0.5em; border-radius: 1em; font-size: 0.85em;
  background: var(--waystation-offline-background, #fff8c5); color: var(--waystation-offline-color, #7d4e00);
}
[part~="error"] { flex-basis: 100%; color: var(--waystation-error-color, #cf222e); }
[part~="error-name"] { font-weight: 600; }
[part~="update"] { flex-basis: 100%; display: flex; align-items: center; gap: 0.5em; }
[part~="update-button"] {
  font: inherit; cursor: pointer; padding: 0.2em 0.8em; border: 0;
  border-radius: var(--waystation-radius, 6px);
  background: var(--waystation-accent, #0969da); color: var(--waystation-accent-contrast, #fff);
}
`;
/** @type {CSSStyleSheet | null} */
let sheet = null;

function styleSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

/** The default look; each piece can be replaced by a light-DOM child with the same slot name. */
const TEMPLATE = `
<div part="panel">
  <slot name="status"><span part="status" role="status" aria-live="polite"></span></slot>
  <slot name="offline"><span part="offline" hidden>offline</span></slot>
  <slot name="progress"><progress part="progress" hidden></progress><span part="progress-text" hidden></span></slot>
  <slot name="error"><div part="error" role="alert" hidden><span part="error-name"></span>: <span part="error-message"></span></div></slot>
  <slot name="update"><div part="update" hidden><span part="update-text"></span><button part="update-button" type="button">Update</button></div></slot>
</div>
<slot></slot>
`;

/**
 * The `<waystation-app>` element: opens `bundle` from `channel` while it is in the document.
 * Attributes: bundle, channel, no-service-worker, relay (set by the app); state, offline,
 * update-ready (set by the element, for CSS and tests). Events: WaystationAppEventMap.
 */
class WaystationApp extends HTMLElement {
  static observedAttributes = OPEN_ATTRIBUTES;

  /** @type {App | null} */
  #app = null;
  /** @type {Account | null} */
  #sync = null;
  /** @type {Error | null} */
  #error = null;
  /** @type {Progress | null} */
  #progress = null;
  /** @type {UpdateReady | null} */
  #updateReady = null;
  /** @type {SyncStatus | null} */
  #syncStatus = null;
  #relayOffline = false;
  /** @type {WidgetState} */
  #state = "idle";
  #generation = 0; // each open counts one: an open overtaken by a newer one closes what it got
  #scheduled = false;
  /** @type {Promise<App>} */
  #ready = Promise.resolve(/** @type {any} */ (null));
  /** @type {(app: App) => void} */
  #resolveReady = () => {};
  /** @type {(error: Error) => void} */
  #rejectReady = () => {};
  #onNetwork = () => this.#networkChanged();
  /** @type {{status: HTMLElement, offline: HTMLElement, progress: HTMLProgressElement, progressText: HTMLElement,
   *   error: HTMLElement, errorName: HTMLElement, errorMessage: HTMLElement, update: HTMLElement, updateText: HTMLElement,
   *   updateButton: HTMLButtonElement}} */
  #parts;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [styleSheet()];
    // A fixed template of our own, no page data in it: innerHTML is safe here.
    root.innerHTML = TEMPLATE;
    /** @type {(name: string) => HTMLElement} */
    const part = (name) => /** @type {HTMLElement} */ (root.querySelector(`[part~="${name}"]`));
    this.#parts = {
      status: part("status"), offline: part("offline"), progress: /** @type {HTMLProgressElement} */ (part("progress")),
      progressText: part("progress-text"), error: part("error"), errorName: part("error-name"),
      errorMessage: part("error-message"), update: part("update"), updateText: part("update-text"),
      updateButton: /** @type {HTMLButtonElement} */ (part("update-button")),
    };
    this.#parts.updateButton.addEventListener("click", () => this.update().catch(() => {}));
    this.#newReady();
  }

  // ---- attributes reflected as properties -------------------------------------------------

  /** The bundle to open, e.g. "digits". */
  get bundle() { return this.getAttribute("bundle") ?? ""; }
  set bundle(value) { this.setAttribute("bundle", String(value)); }

  /** The release channel it is installed and updated from (default "stable"). */
  get channel() { return this.getAttribute("channel") || "stable"; }
  set channel(value) { this.setAttribute("channel", String(value)); }

  /** Open without the service worker: no offline store, no updates (attribute no-service-worker). */
  get noServiceWorker() { return this.hasAttribute("no-service-worker"); }
  set noServiceWorker(value) { this.toggleAttribute("no-service-worker", Boolean(value)); }

  /** Relay the bundle's relayable events to the server (open({relay})). */
  get relay() { return this.hasAttribute("relay"); }
  set relay(value) { this.toggleAttribute("relay", Boolean(value)); }

  /** The account whose state documents it syncs (open({sync})); setting it connects or signs out. */
  get sync() { return this.#sync; }
  set sync(account) {
    this.#sync = account ?? null;
    const app = this.#app;
    if (!app) return;
    (account ? app.connect(account) : app.disconnect()).catch((err) => this.#fail(err, "open"));
  }

  // ---- read-only state --------------------------------------------------------------------

  /** The opened App (web/waystation.js), or null before it is ready. */
  get app() { return this.#app; }

  /** Resolves to the App once the bundle is open; rejects with the error that stopped it. */
  get ready() { return this.#ready; }

  /** "idle" (no bundle or not in the document), "loading", "ready", "updating" or "error". */
  get state() { return this.#state; }

  /** True when the browser is offline or the app's sync or relay cannot reach the server. */
  get offline() {
    return !navigator.onLine || this.#syncStatus?.state === "offline" || this.#relayOffline;
  }

  /** The last install or update progress, {stage, loaded?, total?, message?}. */
  get progress() { return this.#progress; }

  /** The error shown, or null. */
  get error() { return this.#error; }

  /** The update the device can move to (`update()`), or null. */
  get updateReady() { return this.#updateReady; }

  /** The running bundle version. @returns {string | null} */
  get version() { return this.#app?.version ?? null; }

  // ---- methods ----------------------------------------------------------------------------

  /**
   * Call an exported workflow function once the bundle is open: app.call(name, args).
   * @param {string} name
   * @param {Record<string, unknown> | unknown[]} [args]
   * @returns {Promise<any>}
   */
  async call(name, args) {
    const app = await this.#ready;
    return app.call(name, args);
  }

  /**
   * Update to what the channel serves (app.update, the element's channel unless `options` says
   * otherwise), showing its progress; a failure is shown and rejects, the running version goes on.
   * @param {UpdateOptions} [options]
   */
  async update(options = {}) {
    const app = await this.#ready;
    const { onProgress = () => {}, ...rest } = options;
    this.#setState("updating");
    this.#showError(null);
    try {
      const result = await app.update({
        channel: this.channel, ...rest,
        onProgress: (p) => {
          this.#showProgress(p);
          onProgress(p);
        },
      });
      this.#showUpdateReady(null);
      this.#setState("ready");
      this.#emit("updated", result);
      return result;
    } catch (err) {
      this.#setState("ready");
      this.#fail(err, "update");
      throw err;
    } finally {
      this.#showProgress(null);
    }
  }

  /**
   * Ask whether an update is there: one already staged on the device, or a newer version on
   * the channel. Shows "update ready" and dispatches "updateready" when there is one. Resolves
   * to it, or null (also offline, or without the service worker's store: nothing to offer).
   * @returns {Promise<UpdateReady | null>}
   */
  async checkForUpdate() {
    const app = this.#app;
    if (!app || this.#state !== "ready") return null;
    /** @type {UpdateReady | null} */
    let found = null;
    try {
      const held = await app.versions();
      const staged = held.versions?.find((/** @type {any} */ v) => v.version === held.staged);
      if (held.staged && held.staged !== app.version && (staged?.state === "ready" || staged?.state === "verified")) {
        found = { from: app.version, to: held.staged, staged: true };
      } else if (navigator.onLine) {
        const check = await app.checkForUpdate({ channel: this.channel });
        if (!check.upToDate) found = { ...check, staged: false };
      }
    } catch {
      return null; // no store, or the channel out of reach: nothing to offer now
    }
    if (app !== this.#app) return null;
    this.#showUpdateReady(found);
    if (found) this.#emit("updateready", found);
    return found;
  }

  // ---- typed listeners (the element's own "progress" and "error" are CustomEvents, not the DOM's) ----

  /**
   * @template {keyof WaystationAppEventMap} K
   * @overload
   * @param {K} type
   * @param {(this: WaystationApp, event: WaystationAppEventMap[K]) => unknown} listener
   * @param {boolean | AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject} listener
   * @param {boolean | AddEventListenerOptions} [options]
   * @returns {void}
   */
  /** @param {string} type @param {any} listener @param {boolean | AddEventListenerOptions} [options] */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options);
  }

  /**
   * @template {keyof WaystationAppEventMap} K
   * @overload
   * @param {K} type
   * @param {(this: WaystationApp, event: WaystationAppEventMap[K]) => unknown} listener
   * @param {boolean | EventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject} listener
   * @param {boolean | EventListenerOptions} [options]
   * @returns {void}
   */
  /** @param {string} type @param {any} listener @param {boolean | EventListenerOptions} [options] */
  removeEventListener(type, listener, options) {
    super.removeEventListener(type, listener, options);
  }

  // ---- lifecycle --------------------------------------------------------------------------

  connectedCallback() {
    addEventListener("online", this.#onNetwork);
    addEventListener("offline", this.#onNetwork);
    this.#renderOffline();
    if (!this.#app && this.#state !== "loading") this.#scheduleOpen();
  }

  disconnectedCallback() {
    removeEventListener("online", this.#onNetwork);
    removeEventListener("offline", this.#onNetwork);
    // Moved within the document (disconnected, then connected again at once): keep the app.
    queueMicrotask(() => {
      if (!this.isConnected) this.#close();
    });
  }

  /** @param {string} _name @param {string | null} before @param {string | null} after */
  attributeChangedCallback(_name, before, after) {
    if (before !== after && this.isConnected) this.#scheduleOpen();
  }

  // ---- internals --------------------------------------------------------------------------

  /** Open once per task, after the attributes a framework sets one by one are all there. */
  #scheduleOpen() {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (this.isConnected) this.#open();
    });
  }

  async #open() {
    const generation = ++this.#generation;
    this.#closeApp();
    if (this.#state !== "idle" && this.#state !== "loading") this.#newReady(); // a fresh promise per open
    this.#showError(null);
    this.#showUpdateReady(null);
    if (!this.bundle) {
      this.#setState("idle");
      return;
    }
    this.#setState("loading");
    const current = () => generation === this.#generation;
    try {
      const app = await open({
        bundle: this.bundle, channel: this.channel, serviceWorker: this.#useServiceWorker(),
        sync: this.#sync, relay: this.relay,
        onProgress: (p) => current() && this.#showProgress(p),
      });
      if (!current()) {
        app.close();
        return;
      }
      this.#adopt(app);
    } catch (err) {
      if (!current()) return;
      this.#showProgress(null);
      this.#setState("error");
      this.#rejectReady(/** @type {Error} */ (err));
      this.#fail(err, "open");
    }
  }

  /** @param {App} app */
  #adopt(app) {
    this.#app = app;
    for (const type of APP_EVENTS) app.addEventListener(type, this.#relayed);
    this.#syncStatus = app.syncStatus;
    this.#showProgress(null);
    this.#setState("ready");
    this.#renderOffline();
    this.#resolveReady(app);
    this.#emit("ready", { app, version: app.version });
    this.checkForUpdate();
  }

  /** An App event, dispatched again by the element; sync and data also say whether it is offline. */
  #relayed = (/** @type {Event} */ event) => {
    const detail = /** @type {CustomEvent} */ (event).detail;
    if (event.type === "sync") this.#syncStatus = detail;
    if (event.type === "data") this.#relayOffline = detail?.relay?.state === "offline";
    if (event.type === "sync" || event.type === "data") this.#renderOffline();
    this.#emit(event.type, detail);
  };

  /**
   * The service worker controls only pages inside its scope, the runtime's folder. A page
   * outside it (an app that put the runtime under /static/waystation/) would wait forever for
   * it to take control, so such a page opens the bundle without it (docs/embedding.md).
   */
  #useServiceWorker() {
    return !this.noServiceWorker && "serviceWorker" in navigator && location.pathname.startsWith(RUNTIME_BASE.pathname);
  }

  #close() {
    this.#generation++;
    this.#closeApp();
    if (this.#state === "loading") this.#rejectReady(new WaystationError("closed", "the element left the document before its bundle opened"));
    this.#newReady();
    this.#setState("idle");
  }

  #closeApp() {
    const app = this.#app;
    if (!app) return;
    for (const type of APP_EVENTS) app.removeEventListener(type, this.#relayed);
    this.#app = null;
    this.#syncStatus = null;
    this.#relayOffline = false;
    app.close();
  }

  #networkChanged() {
    this.#renderOffline();
    if (navigator.onLine) this.checkForUpdate(); // back online: the channel may have moved meanwhile
  }

  #newReady() {
    this.#ready = /** @type {Promise<App>} */ (new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    }));
    // Nobody may be awaiting it: an open that failed is told by the "error" event and the view.
    this.#ready.catch(() => {});
  }

  /** @param {unknown} err @param {ErrorDetail["during"]} during */
  #fail(err, during) {
    const error = err instanceof Error ? err : new WaystationError("internal-error", String(err));
    this.#showError(error);
    this.#emit("error", { error, during });
  }

  /** @param {WidgetState} state */
  #setState(state) {
    this.#state = state;
    this.setAttribute("state", state);
    this.#renderStatus();
  }

  /** @param {string} type @param {unknown} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  // ---- the default look -------------------------------------------------------------------

  #renderStatus() {
    const name = this.bundle || "no bundle";
    const text = {
      idle: this.bundle ? `${name}` : "no bundle",
      loading: `loading ${name}…`,
      ready: `${name} ${this.version ?? ""} ready`.replace("  ", " "),
      updating: `updating ${name}…`,
      error: `${name} failed to open`,
    }[this.#state];
    this.#parts.status.textContent = text;
    this.#parts.status.dataset.state = this.#state;
  }

  #renderOffline() {
    const offline = this.offline;
    if (offline === this.hasAttribute("offline")) return;
    this.toggleAttribute("offline", offline);
    this.#parts.offline.hidden = !offline;
    this.#emit("offlinechange", { offline });
  }

  /** @param {Progress | null} progress */
  #showProgress(progress) {
    this.#progress = progress;
    const { progress: bar, progressText } = this.#parts;
    bar.hidden = progressText.hidden = !progress;
    if (!progress) return;
    const { loaded, total } = progress;
    const bytes = typeof loaded === "number" && typeof total === "number" && total > 0;
    if (bytes) {
      bar.max = total;
      bar.value = Math.min(loaded, total);
    } else {
      bar.removeAttribute("value"); // indeterminate
    }
    // The install's own words when it has them (they say what is waiting for the network, too).
    progressText.textContent = progress.message ?? (bytes ? `${kib(loaded)} of ${kib(total)}` : progress.stage);
    this.#emit("progress", progress);
  }

  /** @param {Error | null} error */
  #showError(error) {
    this.#error = error;
    this.#parts.error.hidden = !error;
    this.#parts.errorName.textContent = error?.name ?? "";
    this.#parts.errorMessage.textContent = error?.message ?? "";
  }

  /** @param {UpdateReady | null} update */
  #showUpdateReady(update) {
    this.#updateReady = update;
    this.toggleAttribute("update-ready", Boolean(update));
    this.#parts.update.hidden = !update;
    this.#parts.updateText.textContent = update ? `${this.bundle} ${update.to} is ready` +
      (update.staged || !update.fetchBytes ? "" : ` (${kib(update.fetchBytes)} to fetch)`) : "";
  }
}

/** @param {number} bytes */
function kib(bytes) {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

if (!customElements.get(TAG)) customElements.define(TAG, WaystationApp);
