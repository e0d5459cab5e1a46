// Waystation's public page API.
//
//   import { open } from "/waystation.js";
//   const app = await open({ bundle: "digits", onProgress: (p) => console.log(p) });
//   const answer = await app.call("classify_features", { features: [[0, 3, 16, ...]] });
//   app.close();
//
// Workflow functions run in Python inside a Web Worker; a Python exception rejects the
// promise with a WaystationError whose `name` is the Python exception type.

export { open, registerServiceWorker, WaystationError };

/** An error raised by a workflow function or by Waystation itself, carried to the page. */
class WaystationError extends Error {
  /**
   * @param {string} type the Python (or JS) exception type, e.g. "ValueError"
   * @param {string} message
   * @param {string} [traceback] the Python traceback, when there is one
   */
  constructor(type, message, traceback) {
    super(message);
    this.name = type;
    this.type = type;
    this.traceback = traceback;
  }
}

/**
 * @typedef {{stage: string, message?: string, file?: string, loaded?: number, total?: number}} Progress
 * @typedef {{bundle: string, onProgress?: (p: Progress) => void, baseUrl?: string | URL, serviceWorker?: boolean}} OpenOptions
 */

/**
 * Start a worker, boot Python in it and open a bundle. Resolves when its models are loaded.
 * @param {OpenOptions} options
 * @returns {Promise<App>}
 */
async function open({ bundle, onProgress = () => {}, baseUrl = new URL("./", import.meta.url), serviceWorker = true }) {
  if (typeof bundle !== "string" || !bundle) throw new TypeError("open(): `bundle` must be a bundle name, e.g. \"digits\"");
  if (serviceWorker) await registerServiceWorker(baseUrl);
  const worker = new Worker(new URL("worker.js", baseUrl), { type: "module", name: `waystation:${bundle}` });
  const app = new App(worker, onProgress);
  try {
    app.info = await app._request({ type: "open", bundle });
  } catch (err) {
    app.close();
    throw err;
  }
  return app;
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

/** One opened bundle in its worker. */
class App {
  /**
   * @param {Worker} worker
   * @param {(p: Progress) => void} onProgress
   */
  constructor(worker, onProgress) {
    this._worker = worker;
    this._onProgress = onProgress;
    this._nextId = 1;
    /** @type {Map<number, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
    this._pending = new Map();
    /** @type {any} name, version, functions, models, startupMs of the opened bundle */
    this.info = null;
    /** @type {{name: string, ms: number, workerMs: number, pythonMs: number, metrics: Record<string, number>} | null} */
    this.lastCall = null;
    this._onMessage = (/** @type {MessageEvent} */ e) => this._receive(e.data);
    this._onError = (/** @type {ErrorEvent} */ e) => this._failAll(new WaystationError("WorkerError", e.message || "the worker failed to start"));
    worker.addEventListener("message", this._onMessage);
    worker.addEventListener("error", this._onError);
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
    const started = performance.now();
    const reply = await this._request({ type: "call", name, args });
    this.lastCall = { name, ms: performance.now() - started, workerMs: reply.workerMs, pythonMs: reply.ms, metrics: reply.metrics };
    return reply.result;
  }

  /** Stop the worker; pending calls reject. */
  close() {
    this._worker.removeEventListener("message", this._onMessage);
    this._worker.removeEventListener("error", this._onError);
    this._worker.terminate();
    this._failAll(new WaystationError("ClosedError", "the app was closed"));
  }

  /** @param {object} message */
  _request(message) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._worker.postMessage({ id, ...message });
    });
  }

  /** @param {any} data */
  _receive(data) {
    if (data.type === "progress") {
      this._onProgress(data);
      return;
    }
    const pending = this._pending.get(data.id);
    if (!pending) return;
    this._pending.delete(data.id);
    if (data.ok) pending.resolve(data.tensors?.length ? reviveTensors(data.value, data.tensors) : data.value);
    else pending.reject(new WaystationError(data.error.type, data.error.message, data.error.traceback));
  }

  /** @param {Error} error */
  _failAll(error) {
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
  }
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
