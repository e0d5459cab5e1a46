// The Pyodide host: runs workflow scripts in Python and lets them drive onnxruntime-web.
// One worker holds one open bundle. Protocol (page -> worker; the names live in protocol.js): {id, type: "boot"} (start
// Python early), {id, type: "open", bundle, version?, account?} (the active version when none is
// given; with an account, its state documents are the ones loaded and synced),
// {id, type: "smoke"} (the open bundle's smoke check), {id, type: "call", name, args},
// {id, type: "sync", account: {url, user, token} | null} (sync state with the server, or stop)
// and {id, type: "network", online}; replies {id, ok, value | error}, plus {id, type: "progress", ...}
// while opening. Events, without an id: {type: "sync", status} when the sync state changes and
// {type: "state", documents} when documents changed other than by this worker's Python.
//
// Data (web/device_data.js, web/data_sync.js): {id, type: "events", adds: [{name, events}, ...]}
// stores each add all or nothing and replies once they are durable, with one result per add
// ({ok, ids} or {ok: false, error}); {id, type: "relay", enabled, flush?}; {id, type: "features"}
// (sync the feature tables now); {id, type: "data-status"}. `open` takes `relay` too. Event:
// {type: "data", status} when relay or feature sync changes.
//
// Telemetry (web/telemetry.js aggregates on the page): `open` takes `telemetry`; with it each
// model run is timed (web/ort_host.js) and a call's reply carries `runs`, [[model, ms], ...] since
// the last reply. Remote logs (docs/telemetry.md): {id, type: "logging", level | null} keeps
// ctx.log lines at or above `level` from then on and uploads them to POST /api/logs, at most every
// LOG_UPLOAD_MS and at once on {id, type: "logs"}; nothing is kept or sent while it is null.
//
// Bundle files are fetched by URL: under the service worker they come from its IndexedDB store
// (service_worker/sw/bundle-route.js), without it from the site's own build. Either way the
// manifest's signature and each file are checked before Python sees any of it.
//
// Start-up runs in parallel: Python boots from the build's memory snapshot while the bundle's
// files are fetched and verified, and each model's onnxruntime-web session is created from its
// verified bytes in JS (web/ort_host.js), so the model never passes through Python. A call is
// driven from here, not by Python's event loop: a model run's promise is awaited in JS and
// Python resumed with its value (`drive`, py_src/waystation/device/_eager.py).
import { loadPyodide } from "./pyodide/pyodide.mjs";
import * as ort from "./ort/ort.wasm.min.mjs";
import { makeOrtHost } from "./ort_host.js";
import { afterFallbacks, chooseExecution, deviceGpu, executionInfo, modelProviders, onWasm } from "./execution.js";
import { tensorArgs } from "./tensor_args.js";
import { DeviceState } from "./device_state.js";
import * as crdt from "./vendor/crdt.js";
import { DeviceData } from "./device_data.js";
import { DataSync } from "./data_sync.js";
import { trustedManifest } from "./bundle_trust.js";
import { WORKER, WORKER_EVENT } from "./protocol.js";
import { RemoteLog } from "./remote_log.js";

const base = new URL("./", import.meta.url);
/** The settings of every onnxruntime-web build this worker runs. @param {any} build */
function setUpOrt(build) {
  // onnxruntime-web's wasm must come from the same build as its JS, self-hosted (no CDN).
  build.env.wasm.wasmPaths = new URL("ort/", base).href;
  // Threads need cross-origin isolation (COOP + COEP); ORT otherwise runs single-threaded.
  build.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency >> 1)) : 1;
  return build;
}
setUpOrt(ort);
const ortHost = makeOrtHost(ort);
/** @type {Promise<any> | null} onnxruntime-web's WebGPU build: imported the first time a bundle runs there */
let webgpuOrt = null;
/** @type {Promise<import("./execution.js").DeviceGpu> | null} the device's WebGPU adapter, asked once */
let gpu = null;

/**
 * Where a bundle's models run (web/execution.js decides) and the onnxruntime-web build for it:
 * the WASM-only build imported above, or the WebGPU one, imported now the first time it is chosen.
 * @param {any} manifest @param {unknown} mode open()'s `webgpu` option
 */
async function chooseOrt(manifest, mode) {
  const offered = Object.values(manifest.models ?? {}).some((/** @type {any} */ m) => m.execution?.includes("webgpu"));
  const chosen = await chooseExecution({ offered, mode: mode ?? "auto", gpu: () => (gpu ??= deviceGpu()) });
  if (!chosen.webgpu) return { ...chosen, ort };
  webgpuOrt ??= import("./ort/ort.webgpu.min.mjs").then(setUpOrt);
  try {
    return { ...chosen, ort: await webgpuOrt };
  } catch (err) {
    webgpuOrt = null; // offline and never fetched, say: WASM now, WebGPU again next time
    return { ...onWasm(`onnxruntime-web's WebGPU build did not load (${/** @type {Error} */ (err).message})`), ort };
  }
}

// The user's state: Yjs documents persisted in IndexedDB, synced while the page has an account.
const state = new DeviceState(crdt, {
  onStatus: (status) => self.postMessage({ type: WORKER_EVENT.sync, status }),
  onChange: (documents) => self.postMessage({ type: WORKER_EVENT.state, documents }),
});

/** @type {Promise<{pyodide: any, bridge: any}> | null} */
let pythonReady = null;
/** @type {Promise<any> | null} the site's boot.json: versions, the wheel, the snapshot */
let bootFacts = null;
/** @type {DeviceData | null} the account's database in OPFS, once Python's FS exists */
let data = null;
/** @type {any} the Python module waystation.device._data_bridge, once a bundle is open */
let dataBridge = null;
const dataSync = new DataSync({
  data: /** @type {any} */ ({ run: (/** @type {() => any} */ work) => /** @type {DeviceData} */ (data).run(work) }),
  python: () => dataBridge,
  base,
  onStatus: (status) => self.postMessage({ type: WORKER_EVENT.data, status }),
});
/** How long `open` waits for the first feature sync before answering from the copy it has. */
const FEATURES_AT_OPEN_MS = 3_000;
/** @type {any} the Python module waystation.device._bridge, once booted */
let bridge = null;
/** @type {Record<string, any>} where start-up time went, for app.info.timings */
const timings = {};
/** @type {Record<string, Record<string, string>>} per function, its parameters that take tensors (dtype) */
let tensorParams = {};
/** @type {Record<string, string[]>} per function, its parameter names in order (for positional arguments) */
let functionParams = {};
/** @type {[string, number][] | null} model runs since the last call's reply, [model, ms]; null: telemetry is off */
let modelRuns = null;
/** @type {Map<string, string>} each model file's FS path -> its name in the manifest, for `modelRuns` */
const modelNames = new Map();
/** ctx.log lines for remote logging, kept only while it is on */
const remoteLog = new RemoteLog(new URL("api/logs", base));

/** Boot Pyodide once: the runtime (from the snapshot when there is one), then the waystation wheel. */
async function bootPython(/** @type {(p: object) => void} */ progress) {
  const started = performance.now();
  bootFacts ??= fetchOk(new URL("boot.json", base), "boot.json").then((r) => r.json());
  const boot = await bootFacts;
  progress({ stage: "runtime", message: `starting Python (Pyodide ${boot.pyodide})` });
  const wheelBytes = fetchOk(new URL(boot.wheel, base), "the waystation wheel").then((r) => r.arrayBuffer());
  wheelBytes.catch(() => {}); // awaited below, after the runtime
  const pyodide = await loadPython(boot);
  pyodide.registerJsModule("_waystation_ort", ortHost);
  pyodide.registerJsModule("_waystation_state", state.host);
  // An account's first sign-in moves the device's events into it (Python, once the wheel is unpacked).
  data = new DeviceData(pyodide.FS, () => pyodide.pyimport("waystation.device.data.adopt"));
  pyodide.registerJsModule("_waystation_data", data.host);
  pyodide.registerJsModule("_waystation_log", remoteLog.host);
  timings.runtimeMs = performance.now() - started;
  progress({ stage: "packages", message: "installing waystation" });
  // The waystation wheel is pure and has no dependencies in Pyodide: unpacking it directly
  // costs ~20 ms where micropip's resolver costs ~500 ms (measured, bench/README.md).
  // micropip and packaging still ship in pyodide/ for workflows that install their own wheels.
  // From a snapshot its modules are imported already; the files are still needed for the rest.
  pyodide.unpackArchive(await wheelBytes, "wheel");
  const bridge = pyodide.pyimport("waystation.device._bridge");
  timings.packagesMs = performance.now() - started - timings.runtimeMs;
  timings.pythonReadyAt = performance.now(); // ms since the worker started, like bundleReadyAt
  return { pyodide, bridge };
}

/**
 * Pyodide from the build's memory snapshot (the interpreter with Waystation's modules imported:
 * py_src/waystation/pyodide_snapshot.py), or booted from scratch when the site has none or it
 * cannot be used; app.info.timings says which, and why.
 * @param {any} boot the site's boot.json
 */
async function loadPython(boot) {
  const options = {
    indexURL: new URL("pyodide/", base).href,
    lockFileURL: new URL("pyodide/pyodide-lock.json", base).href,
    stdout: (/** @type {string} */ line) => console.log(line),
    stderr: (/** @type {string} */ line) => console.warn(line),
  };
  if (boot.snapshot) {
    try {
      const snapshot = await fetchSnapshot(new URL(boot.snapshot, base));
      const pyodide = await loadPyodide({ ...options, _loadSnapshot: snapshot });
      timings.snapshot = true;
      return pyodide;
    } catch (err) {
      const e = /** @type {Error} */ (err);
      timings.snapshotError = `${e.name}: ${e.message}`.slice(0, 300);
      console.warn(`waystation: starting Python without its snapshot (${timings.snapshotError})`);
    }
  }
  timings.snapshot = false;
  return loadPyodide(options);
}

/** The snapshot, gunzipped as it streams in. @param {URL} url */
async function fetchSnapshot(url) {
  const response = await fetchOk(url, "the Python start-up snapshot");
  const body = /** @type {ReadableStream<Uint8Array<ArrayBuffer>>} */ (response.body).pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/**
 * Fetch a bundle's files and verify each against the (verified) manifest, all at once; start each
 * model's session from its bytes. What Python reads (workflow, tokenizers, ...) is returned, to be
 * written into its FS once Python is up (`writeBundle`).
 * @param {string} name @param {string | undefined} version the active one if undefined
 * @param {(p: object) => void} progress @param {unknown} webgpu open()'s option: "auto", "force" or "never"
 */
async function fetchBundle(name, version, progress, webgpu) {
  const root = new URL(`bundles/${encodeURIComponent(name)}/`, base);
  if (!version) {
    const latest = await fetchOk(new URL("latest.json", root), `bundle "${name}"`);
    ({ version } = await latest.json());
  }
  const dir = new URL(`${encodeURIComponent(/** @type {string} */ (version))}/`, root);
  const manifestText = await (await fetchOk(new URL("manifest.json", dir), `manifest of ${name} ${version}`)).text();
  // Signed by a key the site trusts, or refused before any of the bundle reaches Python.
  const manifest = await trustedManifest(manifestText, { bundle: name, version: /** @type {string} */ (version), url: new URL("manifest.json", dir).pathname, timings });
  const total = manifest.files.reduce((/** @type {number} */ n, /** @type {any} */ f) => n + f.size, 0);
  const path = `/bundles/${name}/${version}`;
  /** @type {Map<string, string[] | undefined>} each model file, and the execution providers it offers */
  const models = new Map(Object.values(manifest.models ?? {}).map((/** @type {any} */ m) => [m.file, m.execution]));
  for (const [model, entry] of Object.entries(manifest.models ?? {})) modelNames.set(`${path}/${/** @type {any} */ (entry).file}`, model);
  const chosen = await chooseOrt(manifest, webgpu);
  const execution = { chosen, onWebgpu: /** @type {string[]} */ ([]), fellBack: /** @type {string[]} */ ([]) };
  /** @type {[string, Uint8Array][]} */
  const files = [];
  let loaded = 0;
  await Promise.all(manifest.files.map(async (/** @type {any} */ file) => {
    const bytes = new Uint8Array(await (await fetchOk(new URL(file.path, dir), file.path)).arrayBuffer());
    const fetchedAt = performance.now();
    const digest = await sha256Hex(bytes);
    if (bytes.length !== file.size || digest !== file.sha256) {
      throw Object.assign(new Error(`bundle file ${file.path} does not match its manifest (size or sha256)`), { name: "bundle-error" });
    }
    if (models.has(file.path)) {
      // Where a model's start-up goes, ms since the worker started: for app.info.timings.models.
      const when = { fetchedAt, verifiedAt: performance.now(), sessionAt: 0 };
      (timings.models ??= {})[file.path] = when;
      preloadModel(`${path}/${file.path}`, bytes, modelProviders(chosen, models.get(file.path)), execution)
        ?.then(() => { when.sessionAt = performance.now(); }, () => {});
    } else {
      files.push([file.path, bytes]);
    }
    loaded += file.size;
    progress({ stage: "bundle", file: file.path, loaded, total });
  }));
  return { path, version, manifestText, files, execution, telemetry: /** @type {any} */ (manifest).telemetry ?? null };
}

/**
 * Start a model's session: on the WebGPU build when `providers` has WebGPU (and on the WASM build
 * if that fails, noted in `execution`), else on the WASM build.
 * @param {string} path @param {Uint8Array} bytes @param {string[]} providers
 * @param {{chosen: {ort: any}, onWebgpu: string[], fellBack: string[]}} execution
 */
function preloadModel(path, bytes, providers, execution) {
  if (!providers.includes("webgpu")) return ortHost.preload(path, bytes);
  const model = path.split("/").pop();
  execution.onWebgpu.push(model);
  return ortHost.preload(path, bytes, {
    ort: execution.chosen.ort,
    executionProviders: providers,
    otherwise: { ort, executionProviders: ["wasm"] },
    onFallback: (err) => execution.fellBack.push(`${model} (${err.message.slice(0, 200)})`),
  });
}

/**
 * Write a fetched bundle's files (all but its models) into Python's FS.
 * @param {any} FS @param {{path: string, manifestText: string, files: [string, Uint8Array][]}} bundle
 */
function writeBundle(FS, { path, manifestText, files }) {
  FS.mkdirTree(path);
  FS.writeFile(`${path}/manifest.json`, manifestText);
  for (const [name, bytes] of files) {
    const parent = name.split("/").slice(0, -1).join("/");
    if (parent) FS.mkdirTree(`${path}/${parent}`);
    FS.writeFile(`${path}/${name}`, bytes);
  }
}

async function fetchOk(/** @type {URL} */ url, /** @type {string} */ what) {
  const response = await fetch(url);
  if (!response.ok) {
    // The service worker's bundle store explains its errors: {error: {type, message}}.
    const told = await response.json().then((body) => body?.error, () => null);
    if (typeof told?.type === "string") {
      throw Object.assign(new Error(`cannot fetch ${what}: ${told.message}`), { name: told.type });
    }
    throw Object.assign(new Error(`cannot fetch ${what}: HTTP ${response.status} for ${url.pathname}`), { name: "bundle-error" });
  }
  return response;
}

async function sha256Hex(/** @type {Uint8Array} */ bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", /** @type {Uint8Array<ArrayBuffer>} */ (bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** @type {string | null} the FS folder of the open bundle */
let openPath = null;

/** Open a bundle version (the active one if none is given); the one open before stays open until this one is. */
async function openBundle(/** @type {number} */ id, /** @type {string} */ name, /** @type {string | undefined} */ version, /** @type {any} */ account, /** @type {boolean} */ relay, /** @type {unknown} */ webgpu, /** @type {string | undefined} */ logLevel) {
  const progress = (/** @type {object} */ p) => self.postMessage({ id, type: WORKER_EVENT.progress, ...p });
  const started = performance.now();
  pythonReady ??= bootPython(progress);
  // The bundle's files and models, and the state documents, while Python boots.
  const fetching = fetchBundle(name, version, progress, webgpu).then((bundle) => {
    timings.bundleMs = performance.now() - started;
    timings.bundleReadyAt = performance.now();
    return bundle;
  });
  const loading = account ? state.connect(account) : state.load();
  let python;
  let bundle;
  try {
    [python, bundle] = await Promise.all([pythonReady, fetching, loading]);
  } catch (err) {
    ortHost.dropPreloaded();
    throw err;
  }
  const { path } = bundle;
  writeBundle(python.pyodide.FS, bundle);
  // A reopen without an account (rollback) keeps the database the worker has mounted.
  await /** @type {DeviceData} */ (data).use(account === undefined && data?.owner !== undefined ? /** @type {string | null} */ (data.owner) : account?.user ?? null);
  progress({ stage: "models", message: "loading models" });
  const opening = performance.now();
  if (logLevel !== undefined) python.pyodide.pyimport("waystation.device.log").set_log_level(logLevel);
  remoteLog.bundle = { bundle: name, version: bundle.version };
  const info = JSON.parse(await python.bridge.open_bundle(path));
  if (info.ok === false) throw fromPython(info.error); // e.g. workflow-import-failed, in one line
  timings.modelsMs = performance.now() - opening;
  tensorParams = info.tensorParams ?? {};
  functionParams = info.functions ?? {};
  bridge = python.bridge;
  if (openPath && openPath !== path) removeTree(python.pyodide.FS, openPath);
  openPath = path;
  await startDataSync(python.pyodide, account, relay);
  progress({ stage: "ready" });
  return {
    ...info,
    timings: { ...timings },
    startupMs: performance.now() - started,
    crossOriginIsolated: self.crossOriginIsolated,
    ortThreads: ort.env.wasm.numThreads,
    ...executionInfo(afterFallbacks(bundle.execution.chosen, bundle.execution.onWebgpu, bundle.execution.fellBack)),
    telemetry: bundle.telemetry, // the bundle's declared signals and alerts (web/telemetry.js)
  };
}

/**
 * Relay and feature sync for the bundle just opened. The first feature sync is waited for (up to
 * FEATURES_AT_OPEN_MS), so a first visit online answers with the server's tables.
 * @param {any} pyodide @param {any} account @param {boolean} relay
 */
async function startDataSync(pyodide, account, relay) {
  dataBridge ??= pyodide.pyimport("waystation.device._data_bridge");
  const described = JSON.parse(dataBridge.describe());
  if (!described.ok) throw Object.assign(new Error(described.error.message), { name: described.error.type });
  if (account !== undefined) dataSync.setAccount(account);
  if (relay !== undefined) dataSync.setRelay(Boolean(relay));
  dataSync.configure(described.value);
  if (described.value.features.length && navigator.onLine) {
    await Promise.race([dataSync.syncFeatures(), new Promise((resolve) => setTimeout(resolve, FEATURES_AT_OPEN_MS))]);
  }
}

/** @type {{adds: {name: string, events: object[]}[], resolve: (r: object[]) => void, reject: (e: Error) => void}[]} */
let addQueue = [];
/** @type {Promise<void> | null} */
let storing = null;

/**
 * Queue the adds of one message; messages that arrive while a store runs are stored together
 * in the next (group commit: one transaction and one write to OPFS for all of them).
 * @param {{name: string, events: object[]}[]} adds
 * @returns {Promise<object[]>} one result per add
 */
function queueEvents(adds) {
  return new Promise((resolve, reject) => {
    addQueue.push({ adds, resolve, reject });
    storing ??= drainEvents();
  });
}

async function drainEvents() {
  while (addQueue.length) {
    const messages = addQueue;
    addQueue = [];
    try {
      const results = await addEvents(messages.flatMap((m) => m.adds));
      let at = 0;
      for (const m of messages) {
        m.resolve(results.slice(at, at + m.adds.length));
        at += m.adds.length;
      }
    } catch (err) {
      for (const m of messages) m.reject(/** @type {Error} */ (err));
    }
  }
  storing = null;
}

/**
 * Store the adds of one burst: each add is all or nothing. Consecutive adds to one table go in
 * one transaction; when that fails, each is stored on its own so only the bad ones fail.
 * @param {{name: string, events: object[]}[]} adds
 */
async function addEvents(adds) {
  if (!dataBridge) throw Object.assign(new Error("no bundle is open"), { name: "not-open" });
  /** @type {object[]} */
  const results = [];
  for (let start = 0; start < adds.length;) {
    let stop = start + 1;
    while (stop < adds.length && adds[stop].name === adds[start].name) stop++;
    const group = adds.slice(start, stop);
    const together = await storeEvents(group[0].name, group.flatMap((add) => add.events));
    if (together.ok || group.length === 1) {
      let at = 0;
      for (const add of group) {
        results.push(together.ok ? { ok: true, ids: together.value.slice(at, at + add.events.length) } : { ok: false, error: together.error });
        at += add.events.length;
      }
    } else {
      for (const add of group) {
        const alone = await storeEvents(add.name, add.events);
        results.push(alone.ok ? { ok: true, ids: alone.value } : { ok: false, error: alone.error });
      }
    }
    start = stop;
  }
  dataSync.kick();
  return results;
}

async function storeEvents(/** @type {string} */ name, /** @type {object[]} */ events) {
  return JSON.parse(await /** @type {DeviceData} */ (data).run(() => dataBridge.add_events(name, JSON.stringify(events))));
}

/** Delete a folder of Python's in-memory FS: a bundle version no longer open. */
function removeTree(/** @type {any} */ FS, /** @type {string} */ path) {
  for (const entry of FS.readdir(path)) {
    if (entry === "." || entry === "..") continue;
    const child = `${path}/${entry}`;
    if (FS.isDir(FS.stat(child).mode)) removeTree(FS, child);
    else FS.unlink(child);
  }
  FS.rmdir(path);
}

/**
 * Drive a workflow call to its end (py_src/waystation/device/_eager.py): while Python hands back
 * a Pending, await its JS promise (a model run) here and resume Python with the value, so the
 * call crosses no event-loop task. A future (the call awaited something else) is awaited as is.
 * @param {any} answer what bridge.call returned
 */
async function drive(answer) {
  while (answer?.type === "Pending") {
    const pending = answer;
    let value;
    let failure = null;
    try {
      value = await pending.promise;
    } catch (err) {
      failure = /** @type {Error} */ (err);
    }
    answer = failure ? pending.fail(String(failure.message ?? failure)) : pending.resume(value);
    pending.destroy();
  }
  return typeof answer?.then === "function" ? await answer : answer;
}

/**
 * Copy each Python buffer (a memoryview of a Tensor) into a typed array of its own, which the
 * page then receives by transfer: one copy in all, and every proxy destroyed here.
 * @param {any} proxies a PyProxy of a list of memoryviews
 */
function takeBuffers(proxies) {
  const arrays = [];
  for (const proxy of proxies) {
    const view = proxy.getBuffer();
    arrays.push(view.data.slice());
    view.release();
    proxy.destroy();
  }
  proxies.destroy();
  return arrays;
}

self.onmessage = async (/** @type {MessageEvent} */ event) => {
  const { id, type } = event.data;
  try {
    if (type === WORKER.boot) {
      pythonReady ??= bootPython((p) => self.postMessage({ id, type: WORKER_EVENT.progress, ...p }));
      await pythonReady;
      self.postMessage({ id, ok: true, value: { ...timings } });
    } else if (type === WORKER.open) {
      if (event.data.telemetry && !modelRuns) {
        modelRuns = [];
        ortHost.observe((path, ms) => modelRuns?.push([modelNames.get(path) ?? "?", ms]));
      }
      self.postMessage({ id, ok: true, value: await openBundle(id, event.data.bundle, event.data.version, event.data.account, event.data.relay, event.data.webgpu, event.data.logLevel) });
    } else if (type === WORKER.sync) {
      if (event.data.account) await state.connect(event.data.account);
      else await state.disconnect();
      if (data) await data.use(event.data.account?.user ?? null);
      dataSync.setAccount(event.data.account ?? null);
      self.postMessage({ id, ok: true, value: state.status() });
    } else if (type === WORKER.network) {
      state.setOnline(Boolean(event.data.online));
      dataSync.setOnline(Boolean(event.data.online));
      self.postMessage({ id, ok: true, value: state.status() });
    } else if (type === WORKER.events) {
      self.postMessage({ id, ok: true, value: await queueEvents(event.data.adds) });
    } else if (type === WORKER.relay) {
      if (event.data.enabled !== undefined) dataSync.setRelay(Boolean(event.data.enabled));
      if (event.data.flush) await dataSync.relayNow();
      self.postMessage({ id, ok: true, value: dataSync.status() });
    } else if (type === WORKER.features) {
      await dataSync.syncFeatures();
      self.postMessage({ id, ok: true, value: dataSync.status() });
    } else if (type === WORKER.logging) {
      remoteLog.setLevel(event.data.level ?? null);
      self.postMessage({ id, ok: true, value: remoteLog.status() });
    } else if (type === WORKER.logs) {
      self.postMessage({ id, ok: true, value: await remoteLog.upload() });
    } else if (type === WORKER.dataStatus) {
      self.postMessage({ id, ok: true, value: dataSync.status() });
    } else if (type === WORKER.smoke) {
      if (!bridge) throw Object.assign(new Error("no bundle is open"), { name: "not-open" });
      const reply = JSON.parse(await bridge.smoke_check());
      if (modelRuns) modelRuns = []; // the smoke check's runs are not the app's: telemetry counts calls' runs only
      if (!reply.ok) self.postMessage({ id, ok: false, error: reply.error });
      else self.postMessage({ id, ok: true, value: reply.result });
    } else if (type === WORKER.call) {
      if (!bridge) throw Object.assign(new Error("no bundle is open"), { name: "not-open" });
      const started = performance.now();
      const { json, buffers } = tensorArgs(event.data.args ?? {}, tensorParams[event.data.name], functionParams[event.data.name]);
      // Under the data lock: a workflow may read or add events, and tabs take turns on the database.
      const answer = await /** @type {DeviceData} */ (data).run(() => drive(bridge.call(event.data.name, json, buffers)));
      /** @type {any} */
      let reply;
      /** @type {ArrayBufferView[]} */
      let tensors = [];
      if (typeof answer === "string") {
        reply = JSON.parse(answer);
      } else {
        reply = JSON.parse(answer.get(0));
        tensors = takeBuffers(answer.get(1));
        answer.destroy();
      }
      reply.workerMs = performance.now() - started;
      if (modelRuns?.length) {
        reply.runs = modelRuns;
        modelRuns = [];
      }
      if (!reply.ok) self.postMessage({ id, ok: false, error: reply.error });
      else self.postMessage({ id, ok: true, value: reply, tensors }, tensors.map((t) => t.buffer));
    } else {
      throw new Error(`unknown message type ${type}`);
    }
  } catch (err) {
    self.postMessage({ id, ok: false, error: errorReply(/** @type {Error} */ (err)) });
  }
};

/**
 * An error of Python's reply (`_bridge._error`: code, message, pythonType, traceback) as a JS Error
 * named by its code, so that it reaches the page as Python sent it.
 * @param {{code?: string, type: string, message: string, pythonType?: string, traceback?: string}} error
 */
function fromPython(error) {
  return Object.assign(new Error(error.message), { name: error.code ?? error.type, pythonType: error.pythonType, traceback: error.traceback });
}

/**
 * What crosses to the page for an error thrown here: a name that is a code of docs/errors.md (a JS
 * error without one, a bug, is "internal-error" with its own name in the message).
 * @param {Error & {pythonType?: string, traceback?: string}} e
 */
function errorReply(e) {
  const coded = /^[a-z]+(-[a-z]+)*$/.test(e.name ?? "");
  const code = coded ? e.name : "internal-error";
  return { code, type: code, message: coded ? e.message : `${e.name || "Error"}: ${e.message}`, pythonType: e.pythonType, traceback: e.traceback ?? (coded ? undefined : e.stack) };
}
