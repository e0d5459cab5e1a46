// Offload: a call answered by the server when the device cannot answer it (yet), within the
// policy each function declares in its workflow script (`@export(offload=...)`, README
// "Running on the server (offload)").
//
//   const app = await open({ bundle: "digits", sync: account, fallback: "auto" });
//   const answer = await app.call("classify", { pixels, width, height });
//   app.lastCall.ranOn;                                   // "device" or "server"
//   app.addEventListener("offload", (e) => console.log(e.detail.name, e.detail.reason));
//   await app.ready;                                      // the device answers from now on
//
// `fallback: "never"` (the default) sends nothing. With "auto", a function's policy decides:
//   never               never sent, whatever happens: its call waits for the device, or fails there
//   allowed             sent while the device is not ready (a first visit: installing, Python
//                       booting), when the device could not open the bundle, and when its call
//                       failed on the device with a runtime error (not an error of the call itself,
//                       which the server would give the same)
//   on-low-confidence   as allowed, and asked again when the device's answer has
//                       result[confidence] < threshold (the server's answer is then used)
// The server needs an account (open({sync})): its run API serves signed-in users only.
// Offline, what the device has answers; what neither side can answer (a bundle not installed
// yet, a device that cannot open it) is refused with a WaystationError named "offline".

import { STORE } from "./protocol.js";

export { answering, isDeviceFailure, Offload, offlineError, reviveServerReply, toJsonArgs, trackDevice };

/**
 * @typedef {{offload: "never" | "allowed" | "on-low-confidence", writes_state?: boolean, threshold?: number,
 *   confidence?: string}} Policy
 * @typedef {{name: string, version: string, functions: Record<string, string[]>, offload: Record<string, Policy>}} Described
 * @typedef {{result: any, ms?: number, workerMs?: number, metrics?: Record<string, number>}} Reply
 * @typedef {{state: "loading" | "ready" | "failed", ready: Promise<unknown>, info: any}} Device what the page's
 *   worker can do now: `ready` settles when it has opened the bundle (or failed to)
 * @typedef {{reply: Reply, ranOn: "device" | "server"}} Answer
 */

/** @type {Policy} */
const NEVER = { offload: "never" };

// Failures of the device itself, not of the call: worth asking the server. Everything else (a bad
// argument, no such function, the function's own exception) would fail the same there.
const DEVICE_FAILURES = new Set(["model-error", "ModelError", "internal-error", "worker-failed", "WorkerError", "MemoryError", "RangeError"]);

// Answers of the server that say it cannot run the call now (not what the call itself did): the
// page then waits for the device instead, when it can.
const SERVER_UNAVAILABLE = new Set(["network", "unauthorized", "not-found", "offload-refused", "rate-limited",
  "server-busy", "timeout", "server-error"]);

/** @type {Record<string, any>} dtype -> typed array constructor (as the worker's results use) */
const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array, float16: Uint16Array,
};

class Offload {
  /**
   * @param {{bundle: string, channel: string, baseUrl: string | URL, fallback: string,
   *   account: () => ({token: string} | null), emit: (detail: {name: string, reason: string, version: string}) => void,
   *   toError: (error: any, status: number) => Error}} options `toError` makes the page's error from a reply's
   *   `error` object, as it does for the worker's replies
   */
  constructor({ bundle, channel, baseUrl, fallback, account, emit, toError }) {
    if (fallback !== "auto" && fallback !== "never") throw new TypeError('open(): `fallback` is "auto" or "never"');
    this.bundle = bundle;
    this.channel = channel;
    this.baseUrl = baseUrl;
    this.enabled = fallback === "auto";
    this.account = account;
    this.emit = emit;
    this.toError = toError;
    /** @type {Described | null} what the server said it can answer, before the device could */
    this.remote = null;
  }

  /**
   * Ask the server which version the channel serves `device` and what it can answer of it.
   * Resolves to that description, or null when the server cannot answer for this page (fallback
   * "never", no account, offline, not published): the page then waits for the device.
   * @param {string} device the device id the bundle store uses for rollouts (the same version as it installs)
   * @returns {Promise<Described | null>}
   */
  async connect(device) {
    if (!this.enabled || !this.account()) return null;
    try {
      const name = encodeURIComponent(this.bundle);
      const channel = await this._get(`api/bundles/${name}/channels/${encodeURIComponent(this.channel)}?device=${encodeURIComponent(device)}`, false);
      this.remote = await this._get(`api/run/${name}/${encodeURIComponent(channel.version)}`, true);
      return this.remote;
    } catch {
      return null;
    }
  }

  /** @param {string} path @param {boolean} signed @returns {Promise<any>} */
  async _get(path, signed) {
    /** @type {Record<string, string>} */
    const headers = {};
    const account = this.account();
    if (signed && account) headers.Authorization = `Bearer ${account.token}`;
    const response = await fetch(new URL(path, this.baseUrl), { headers, cache: "no-store" });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  /**
   * A function's policy: the device's own description once it has one, else the server's.
   * @param {string} name @param {any} info the device's describe() (app.info), or null
   * @returns {Policy}
   */
  policy(name, info) {
    return (info?.offload ?? this.remote?.offload)?.[name] ?? NEVER;
  }

  /**
   * Answer a call on the device or on the server, as the function's policy and the device allow.
   * @param {string} name @param {any} args
   * @param {Device} device
   * @param {() => Promise<Reply>} onDevice the call on the device's worker
   * @returns {Promise<Answer>}
   */
  async route(name, args, device, onDevice) {
    const policy = this.policy(name, device.info);
    if (!this.enabled || policy.offload === "never" || !this.account()) {
      if (device.state !== "ready") await device.ready; // a "never" function waits for the device, or fails with it
      return { reply: await onDevice(), ranOn: "device" };
    }
    if (device.state === "loading") {
      return this._onServer(name, args, device, "device-loading", () => device.ready.then(onDevice));
    }
    if (device.state === "failed") return this._onServer(name, args, device, "device-unavailable", null);
    let reply;
    try {
      reply = await onDevice();
    } catch (err) {
      if (!isDeviceFailure(err)) throw err;
      return this._onServer(name, args, device, "device-error", () => Promise.reject(err));
    }
    if (policy.offload === "on-low-confidence" && lowConfidence(reply.result, policy)) {
      try {
        return await this._onServer(name, args, device, "low-confidence", null);
      } catch {
        return { reply, ranOn: "device" }; // the server could not do better: the device's answer stands
      }
    }
    return { reply, ranOn: "device" };
  }

  /**
   * Ask the server; when it cannot run the call now, `otherwise` (the device) answers, if given.
   * @param {string} name @param {any} args @param {Device} device @param {string} reason
   * @param {(() => Promise<Reply>) | null} otherwise
   * @returns {Promise<Answer>}
   */
  async _onServer(name, args, device, reason, otherwise) {
    const version = device.info?.version ?? this.remote?.version;
    try {
      if (!version) throw this.toError({ code: "not-found", type: "not-found", message: "the server has not described this bundle" }, 0);
      const reply = await this._post(name, version, args);
      this.emit({ name, reason, version });
      return { reply, ranOn: "server" };
    } catch (err) {
      const code = /** @type {any} */ (err)?.name;
      if (otherwise && SERVER_UNAVAILABLE.has(code)) return { reply: await otherwise(), ranOn: "device" };
      if (!otherwise && reason === "device-unavailable" && isOffline()) {
        throw offlineError(`${name}()`, this.bundle, await device.ready.catch((/** @type {unknown} */ e) => e), this.toError, true);
      }
      throw err;
    }
  }

  /** @param {string} name @param {string} version @param {any} args @returns {Promise<Reply>} */
  async _post(name, version, args) {
    const account = this.account();
    const path = `api/run/${encodeURIComponent(this.bundle)}/${encodeURIComponent(version)}/${encodeURIComponent(name)}`;
    let response;
    try {
      response = await fetch(new URL(path, this.baseUrl), {
        method: "POST", cache: "no-store",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${account?.token}` },
        body: JSON.stringify({ args: toJsonArgs(args) }),
      });
    } catch (err) {
      throw this.toError({ code: "network", type: "network", message: `cannot reach the server: ${/** @type {Error} */ (err).message}` }, 0);
    }
    const answer = await response.json().catch(() => null);
    if (response.ok && answer?.ok) return reviveServerReply(answer);
    // A refusal before the route (413 from the body limit) answers {"error": "..."}.
    const error = typeof answer?.error === "object" && answer.error !== null ? answer.error
      : { code: "server-error", type: "server-error", message: answer?.error ?? `the server answered HTTP ${response.status}` };
    throw this.toError({ ...error, retryAfter: Number(response.headers.get("Retry-After")) || undefined }, response.status);
  }
}

/**
 * The device's progress as `route` reads it: state "loading" until `opened` settles, then "ready" or "failed".
 * @param {Promise<unknown>} opened the page's worker opening the bundle
 * @returns {{state: "loading" | "ready" | "failed", ready: Promise<unknown>}}
 */
function trackDevice(opened) {
  /** @type {{state: "loading" | "ready" | "failed", ready: Promise<unknown>}} */
  const device = { state: "loading", ready: opened };
  opened.then(() => { device.state = "ready"; }, () => { device.state = "failed"; });
  return device;
}

/**
 * Resolve when the app can answer: the device ready, or (fallback "auto") the server ready to
 * answer for it, whichever comes first. A device that fails to open leaves the server answering
 * the functions it may run; with neither, this rejects with the device's error.
 * @param {Offload} offload @param {Promise<unknown>} opened the page's worker opening the bundle
 * @param {{request: (type: (typeof STORE)[keyof typeof STORE], data: object) => Promise<unknown>} | null} store the service worker's
 *   bundle store, whose device id the server's answer uses (so it answers with the version the device installs)
 * @param {string} bundle
 * @returns {Promise<"device" | "server">}
 */
async function answering(offload, opened, store, bundle) {
  if (!offload.enabled || !offload.account()) {
    await opened;
    return "device";
  }
  const deviceId = store
    ? store.request(STORE.versions, { bundle }).then((held) => /** @type {any} */ (held).device)
    : Promise.resolve(crypto.randomUUID()); // no store: no rollout to agree with
  const described = deviceId.then((id) => offload.connect(id), () => null);
  const first = await Promise.race([
    opened.then(() => "device", () => "device-failed"),
    described.then((d) => (d ? "server" : "no-server")),
  ]);
  if (first === "device" || first === "server") return first;
  if (first === "device-failed" && (await described)) return "server";
  // The device's own answer: ready, or its error; offline, that neither side can answer.
  await opened.catch((err) => {
    throw isOffline() ? offlineError("open()", bundle, err, offload.toError, true) : err;
  });
  return "device";
}

/** Whether the browser says it has no network (Playwright's context.set_offline too). */
function isOffline() {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

/**
 * The error of a call or an open() that neither the device nor the server can answer because the
 * device is offline: named "offline", its message says what failed on each side, and
 * `details.device` is the device's own error code.
 * @param {string} what "open()" or the function called, "classify()"
 * @param {string} bundle
 * @param {any} deviceError why the device cannot answer: the bundle is not installed, or did not open
 * @param {(error: any, status: number) => Error} toError
 * @param {boolean} serverAsked whether the server would have answered had it been reachable (fallback "auto")
 * @returns {Error}
 */
function offlineError(what, bundle, deviceError, toError, serverAsked) {
  const cause = deviceError?.message ?? String(deviceError);
  const server = serverAsked ? ", and the server cannot be reached to answer instead" : "";
  const message = `${what}: this device is offline: bundle ${JSON.stringify(bundle)} cannot be installed or opened on it (${cause})${server}`;
  return toError({ code: "offline", message, details: { device: deviceError?.name ?? null } }, 0);
}

/** @param {any} result @param {Policy} policy */
function lowConfidence(result, policy) {
  const confidence = result?.[policy.confidence ?? "confidence"];
  return typeof confidence !== "number" || confidence < (policy.threshold ?? 0);
}

/** Whether `err` is a failure of the device rather than of the call. @param {unknown} err */
function isDeviceFailure(err) {
  const e = /** @type {any} */ (err);
  return DEVICE_FAILURES.has(e?.name) || DEVICE_FAILURES.has(e?.code);
}

/**
 * A server reply ({ok, result, metrics, ms, tensors: [base64]}) as the worker's: tensors revived
 * to {dtype, shape, data: TypedArray}.
 * @param {any} answer @returns {Reply}
 */
function reviveServerReply(answer) {
  const buffers = (answer.tensors ?? []).map((/** @type {string} */ b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
  const revive = (/** @type {any} */ value) => {
    if (Array.isArray(value)) return value.map(revive);
    if (value === null || typeof value !== "object") return value;
    if ("$tensor" in value) {
      const Typed = ARRAYS[value.dtype] ?? Uint8Array;
      return { dtype: value.dtype, shape: value.shape, data: new Typed(buffers[value.$tensor]) };
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  };
  return { result: revive(answer.result), ms: answer.ms, metrics: answer.metrics };
}

/**
 * A call's arguments as JSON for the server: typed arrays as arrays of numbers, {dtype, shape,
 * data} tensors as nested lists (the workflow's argument checks then see what they see on the device).
 * @param {any} args @returns {any}
 */
function toJsonArgs(args) {
  const plain = (/** @type {any} */ value) => {
    if (ArrayBuffer.isView(value)) return Array.from(/** @type {any} */ (value), Number);
    if (value && typeof value === "object" && ArrayBuffer.isView(value.data) && Array.isArray(value.shape)) {
      return nest(Array.from(/** @type {any} */ (value.data), Number), value.shape);
    }
    return value;
  };
  return Array.isArray(args) ? args.map(plain) : Object.fromEntries(Object.entries(args ?? {}).map(([k, v]) => [k, plain(v)]));
}

/** @param {number[]} flat @param {number[]} shape @returns {any} */
function nest(flat, shape) {
  if (shape.length <= 1) return flat;
  const size = flat.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) => nest(flat.slice(i * size, (i + 1) * size), shape.slice(1)));
}
