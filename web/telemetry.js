// Telemetry on the device (docs/telemetry.md): what an App's calls cost and how they ended,
// aggregated in memory on the page, sealed into reports and sent to POST /api/telemetry; and the
// bundle's declared alerts, raised on the App as "alert" events.
//
//   const app = await open({ bundle: "digits", telemetry: true });    // default false: nothing collected, nothing sent
//   await app.telemetry.pending();     // the reports that would be sent next, exactly as they will be sent
//   await app.telemetry.flush();       // send them now: {sent, pending}
//   app.addEventListener("alert", (e) => console.warn(e.detail));  // {name, bundle, version, metric, value, threshold}
//
// Why on the page, not in the worker: the page is the only place that sees every call, whether
// the device or the server answered it (web/offload.js), with its latency as the app saw it and
// the failures that never reach the worker (a closed app, a worker that died, the network); and
// it is the App that raises "alert". The worker adds what only it can time: each model run
// (web/ort_host.js), handed back with the call's reply. A call costs a few additions here.
//
// The open period is checkpointed to IndexedDB as calls come (at most once per CHECKPOINT_MS, the
// calls meanwhile joining the next write), because the write a page makes as it goes (pagehide) is best
// effort: the browser may tear the page down before it commits. A checkpoint belongs to its page
// through a Web Lock the page holds while it lives; the next page to send turns the checkpoints of
// pages that are gone (their lock free) into reports. A period keeps one report id from its first
// checkpoint to its seal, and sealing deletes the checkpoint in the same transaction, so a period
// is counted once whichever of the two survives.
//
// Reports wait in IndexedDB (the outbox, bounded: MAX_REPORTS and MAX_OUTBOX_BYTES, oldest
// dropped) until the server accepts them, so they survive offline periods and reloads; each has a
// uuid the server counts once. Tabs send under one Web Lock, re-reading the outbox inside it, so
// two tabs never send the same report (and the server would count it once if they did).
import { addLatency, addSignal, emptyLatency, emptySignal, latencyJson, psi, quantile } from "./histogram.js";
import { WORKER } from "./protocol.js";

export { Alerts, AppTelemetry, deviceFacts, installationId, Outbox, TelemetryAggregator, TelemetrySender, BATCH_MS, MAX_OUTBOX_BYTES, MAX_REPORTS };

/** A report is sealed after this long of activity (the first call after a seal starts the clock). */
const BATCH_MS = 60_000;
/**
 * The open period is written to IndexedDB at most this often: what a crash can lose. A write per
 * call cost a third of a warm call's time (bench/telemetry.py); one a second costs nothing seen.
 */
const CHECKPOINT_MS = 1000;
/** At most this many reports wait in the outbox; the oldest go first. */
const MAX_REPORTS = 200;
/** ... and at most this many bytes of them. */
const MAX_OUTBOX_BYTES = 2 * 1024 * 1024;
/** The server refuses a report past this (setting telemetry_report_bytes). */
const MAX_REPORT_BYTES = 64 * 1024;
const DB_NAME = "waystation-telemetry";
const SEND_LOCK = "waystation-telemetry-send";
/** The Web Lock a page holds while it lives, naming its checkpoints' owner. */
const OWNER_LOCK = "waystation-telemetry-page-";
/** Orders reports kept in the same millisecond by this page (`at` orders the rest). */
let kept = 0;
/** Oldest first. @param {{at: number, seq?: number}} a @param {{at: number, seq?: number}} b */
const byAge = (a, b) => a.at - b.at || (a.seq ?? 0) - (b.seq ?? 0);

/**
 * @typedef {import("./histogram.js").Latency} Latency
 * @typedef {import("./histogram.js").SignalCounts} SignalCounts
 * @typedef {{edges: string[], reference: number[]}} SignalDeclaration
 * @typedef {{name: string, function?: string, signal?: string, p95_ms?: string, error_rate?: string, psi?: string, min_calls: number}} AlertDeclaration
 * @typedef {{signals: Record<string, SignalDeclaration>, alerts: AlertDeclaration[]}} Declarations the manifest's "telemetry"
 * @typedef {{name: string, ms: number, error: string | null, metrics?: Record<string, number>, ranOn: "device" | "server",
 *   runs?: [string, number][]}} CallRecord
 * @typedef {{calls: number, errors: Record<string, number>, latency: Latency, ranOn: Record<string, number>}} FunctionStats
 * @typedef {{bundle: string, version: string, functions: Record<string, FunctionStats>,
 *   models: Record<string, {runs: number, latency: Latency}>, startup: Record<string, Latency>,
 *   signals: Record<string, SignalCounts>}} Section
 */

/** The declared signals' edges as numbers, by name. @param {Declarations | undefined} declared */
function edgesOf(declared) {
  /** @type {Record<string, {edges: number[], reference: number[]}>} */
  const out = {};
  for (const [name, s] of Object.entries(declared?.signals ?? {})) out[name] = { edges: s.edges.map(Number), reference: s.reference };
  return out;
}

/** One report period's numbers, per bundle version. Nothing here but counts, names and times. */
class TelemetryAggregator {
  constructor() {
    /** @type {Map<string, Section>} by "bundle@version" */
    this.sections = new Map();
    /** @type {Map<string, Record<string, {edges: number[], reference: number[]}>>} declared signals, by "bundle@version" */
    this.declared = new Map();
    this.start = Date.now();
  }

  /** The signals `version` of `bundle` declares (only those are ever counted). @param {string} bundle @param {string} version @param {Declarations | undefined} declared */
  declare(bundle, version, declared) {
    this.declared.set(`${bundle}@${version}`, edgesOf(declared));
  }

  /** @param {string} bundle @param {string} version @returns {Section} */
  section(bundle, version) {
    const key = `${bundle}@${version}`;
    let s = this.sections.get(key);
    if (!s) {
      s = { bundle, version, functions: {}, models: {}, startup: {}, signals: {} };
      this.sections.set(key, s);
    }
    return s;
  }

  /** One call, failed or not. @param {string} bundle @param {string} version @param {CallRecord} call */
  call(bundle, version, { name, ms, error, metrics, ranOn, runs }) {
    const s = this.section(bundle, version);
    const f = (s.functions[name] ??= { calls: 0, errors: {}, latency: emptyLatency(), ranOn: {} });
    f.calls += 1;
    if (error) f.errors[error] = (f.errors[error] ?? 0) + 1;
    addLatency(f.latency, ms);
    f.ranOn[ranOn] = (f.ranOn[ranOn] ?? 0) + 1;
    if (runs) {
      for (const [model, runMs] of runs) {
        const m = (s.models[model] ??= { runs: 0, latency: emptyLatency() });
        m.runs += 1;
        addLatency(m.latency, runMs);
      }
    }
    const signals = this.declared.get(`${bundle}@${version}`);
    if (metrics && signals) {
      for (const signal in signals) {
        const v = metrics[signal];
        if (typeof v === "number" && Number.isFinite(v)) {
          const { edges } = signals[signal];
          addSignal((s.signals[signal] ??= emptySignal(edges.length + 1)), edges, v);
        }
      }
    }
  }

  /** A start-up phase's time. @param {string} bundle @param {string} version @param {string} phase @param {number} ms */
  startup(bundle, version, phase, ms) {
    if (typeof ms === "number" && Number.isFinite(ms) && ms >= 0) addLatency((this.section(bundle, version).startup[phase] ??= emptyLatency()), ms);
  }

  get empty() {
    return this.sections.size === 0;
  }

  /**
   * The period so far as a report's `bundles`, `start` and `end`, and a new period begun; null when nothing happened.
   * @returns {{start: number, end: number, bundles: object[]} | null}
   */
  take() {
    const period = this.snapshot();
    if (period) {
      this.sections = new Map();
      this.start = period.end;
    }
    return period;
  }

  /**
   * The period so far, left going on (a checkpoint); null when nothing happened.
   * @returns {{start: number, end: number, bundles: object[]} | null}
   */
  snapshot() {
    if (this.empty) return null;
    const end = Date.now();
    const bundles = [...this.sections.values()].map((s) => ({
      bundle: s.bundle,
      version: s.version,
      functions: Object.fromEntries(Object.entries(s.functions).map(([k, f]) => [k, { calls: f.calls, errors: { ...f.errors }, latency: latencyJson(f.latency), ranOn: { ...f.ranOn } }])),
      models: Object.fromEntries(Object.entries(s.models).map(([k, m]) => [k, { runs: m.runs, latency: latencyJson(m.latency) }])),
      startup: Object.fromEntries(Object.entries(s.startup).map(([k, h]) => [k, latencyJson(h)])),
      signals: Object.fromEntries(Object.entries(s.signals).map(([k, c]) => [k, { n: c.n, counts: [...c.counts] }])),
    }));
    return { start: this.start, end: Math.max(end, this.start), bundles };
  }
}

/**
 * The bundle's declared alerts over this session's calls of one version (a new version starts
 * afresh). Each fires once when its value goes above its threshold (after its min_calls), and
 * again only after it went back below.
 */
class Alerts {
  /**
   * @param {string} bundle @param {string} version @param {Declarations | undefined} declared
   * @param {(detail: {name: string, bundle: string, version: string, metric: string, value: number, threshold: number}) => void} fire
   */
  constructor(bundle, version, declared, fire) {
    this.bundle = bundle;
    this.version = version;
    this.fire = fire;
    const signals = edgesOf(declared);
    this.watches = (declared?.alerts ?? []).map((a) => {
      const metric = a.p95_ms !== undefined ? "p95_ms" : a.error_rate !== undefined ? "error_rate" : "psi";
      const signal = a.signal ? signals[a.signal] : undefined;
      return { name: a.name, fn: a.function, metric, threshold: Number(a[/** @type {"p95_ms" | "error_rate" | "psi"} */ (metric)]),
        minCalls: a.min_calls ?? 20, signalName: a.signal, signal, above: false,
        calls: 0, errors: 0, latency: emptyLatency(), counts: signal ? emptySignal(signal.edges.length + 1) : null };
    });
  }

  /** @param {CallRecord} call */
  call({ name, ms, error, metrics }) {
    for (const w of this.watches) {
      if (w.fn !== undefined && w.fn !== name) continue;
      let value = null;
      if (w.metric === "psi") {
        const v = w.signalName ? metrics?.[w.signalName] : undefined;
        if (typeof v !== "number" || !Number.isFinite(v) || !w.signal || !w.counts) continue;
        addSignal(w.counts, w.signal.edges, v);
        if (w.counts.n >= w.minCalls) value = psi(w.counts.counts, w.signal.reference);
      } else {
        w.calls += 1;
        if (error) w.errors += 1;
        addLatency(w.latency, ms);
        if (w.calls >= w.minCalls) value = w.metric === "p95_ms" ? quantile(w.latency, 0.95) : w.errors / w.calls;
      }
      if (value === null) continue;
      const above = value > w.threshold;
      if (above && !w.above) {
        this.fire({ name: w.name, bundle: this.bundle, version: this.version, metric: w.metric, value: Math.round(value * 1e4) / 1e4, threshold: w.threshold });
      }
      w.above = above;
    }
  }
}

/** What a report says of the device, coarse on purpose (docs/telemetry.md). @param {number} threads onnxruntime-web's */
function deviceFacts(threads) {
  const cores = Math.min(16, 2 ** Math.floor(Math.log2(Math.max(1, navigator.hardwareConcurrency || 1))));
  const gb = /** @type {any} */ (navigator).deviceMemory;
  const memory = typeof gb !== "number" ? "unknown" : gb < 2 ? "<2GB" : gb < 4 ? "2-4GB" : gb < 8 ? "4-8GB" : "8GB+";
  return { cores, memory, isolated: Boolean(self.crossOriginIsolated), threads: threads || 1, browser: browserFamily() };
}

function browserFamily() {
  const ua = navigator.userAgent;
  if (/Firefox\//.test(ua)) return "firefox";
  if (/Chrom(e|ium)\//.test(ua)) return "chromium";
  if (/Safari\//.test(ua)) return "safari";
  return "other";
}

/** @param {IDBRequest | IDBTransaction} request @returns {Promise<any>} */
function done(request) {
  return new Promise((resolve, reject) => {
    if (request instanceof IDBTransaction) {
      request.oncomplete = () => resolve(undefined);
      request.onerror = request.onabort = () => reject(request.error ?? new Error("IndexedDB transaction aborted"));
    } else {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    }
  });
}

/** @type {Promise<IDBDatabase> | null} */
let database = null;
function db() {
  database ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 2);
    request.onupgradeneeded = () => {
      const names = request.result.objectStoreNames;
      if (!names.contains("reports")) request.result.createObjectStore("reports", { keyPath: "id" });
      if (!names.contains("meta")) request.result.createObjectStore("meta");
      // version 2: the open periods' checkpoints, {id, owner, at, seq, bytes, body}
      if (!names.contains("open")) request.result.createObjectStore("open", { keyPath: "id" });
    };
    request.onsuccess = () => {
      // a page with a newer version of this code upgrades the database: let it (opened again on next use)
      request.result.onversionchange = () => {
        request.result.close();
        database = null;
      };
      resolve(request.result);
    };
    request.onerror = () => {
      database = null;
      reject(request.error);
    };
  });
  return database;
}

/**
 * This installation's id: random, kept on the device, a new one every calendar month (UTC), so
 * reports of different months cannot be linked. Never the rollout device id.
 */
/** The calendar month now (UTC), e.g. "2026-12". */
function month() {
  return new Date().toISOString().slice(0, 7);
}

async function installationId() {
  const thisMonth = month();
  const tx = (await db()).transaction("meta", "readwrite");
  const meta = tx.objectStore("meta");
  const held = await done(meta.get("installation"));
  if (held?.month === thisMonth) return /** @type {string} */ (held.id);
  const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  meta.put({ id, month: thisMonth }, "installation");
  await done(tx);
  return id;
}

/** Sealed reports waiting to be sent, in IndexedDB: {id, at, bytes, body} with body the JSON text sent. */
class Outbox {
  /** Keep `body` (a report's JSON text); past the bounds, the oldest reports are dropped. @param {string} id @param {string} body */
  static async put(id, body) {
    const tx = (await db()).transaction(["reports", "open"], "readwrite");
    tx.objectStore("open").delete(id); // the period's checkpoint, superseded in the same transaction
    await Outbox.keep(tx, { id, at: Date.now(), seq: kept++, bytes: body.length, body });
  }

  /**
   * Keep `report` in transaction `tx` (over "reports"), dropping the oldest past the bounds.
   * @param {IDBTransaction} tx @param {{id: string, at: number, seq: number, bytes: number, body: string}} report
   */
  static async keep(tx, report) {
    const store = tx.objectStore("reports");
    const held = /** @type {{id: string, at: number, seq?: number, bytes: number}[]} */ (await done(store.getAll()));
    held.sort(byAge);
    let bytes = held.reduce((n, r) => n + r.bytes, 0) + report.bytes;
    let count = held.length + 1;
    for (const old of held) {
      if (count <= MAX_REPORTS && bytes <= MAX_OUTBOX_BYTES) break;
      store.delete(old.id);
      count -= 1;
      bytes -= old.bytes;
    }
    store.put(report);
    await done(tx);
  }

  /**
   * The checkpoints of pages that are gone (their owner lock free) become reports, each in one
   * transaction with its removal, so two pages adopting at once keep it once.
   * @param {string} self this page's owner id
   */
  static async adoptOrphans(self) {
    if (!navigator.locks) return; // no way to tell a living page's checkpoint from a dead one's
    const database = await db();
    const open = /** @type {{id: string, owner: string}[]} */ (await done(database.transaction("open").objectStore("open").getAll()));
    if (!open.length) return;
    const state = await navigator.locks.query();
    const alive = new Set([...(state.held ?? []), ...(state.pending ?? [])].map((lock) => lock.name));
    for (const { id, owner } of open) {
      if (owner === self || alive.has(OWNER_LOCK + owner)) continue;
      const tx = database.transaction(["reports", "open"], "readwrite");
      const checkpoint = await done(tx.objectStore("open").get(id));
      if (!checkpoint) continue; // another page adopted it meanwhile
      tx.objectStore("open").delete(id);
      await Outbox.keep(tx, { id, at: checkpoint.at, seq: checkpoint.seq, bytes: checkpoint.bytes, body: checkpoint.body });
    }
  }

  /** Every waiting report, oldest first. @returns {Promise<{id: string, at: number, body: string}[]>} */
  static async all() {
    const held = await done((await db()).transaction("reports").objectStore("reports").getAll());
    return held.sort(byAge);
  }

  /** @param {string} id */
  static async remove(id) {
    const tx = (await db()).transaction("reports", "readwrite");
    tx.objectStore("reports").delete(id);
    await done(tx);
  }
}

/** Seals an aggregator's periods into reports, keeps them in the outbox and sends them when it can. */
class TelemetrySender {
  /**
   * @param {{aggregator: TelemetryAggregator, url: URL, device: () => object}} options
   */
  constructor({ aggregator, url, device }) {
    this.aggregator = aggregator;
    this.url = url;
    this.device = device;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** @type {Promise<unknown>} seals in order */
    this.sealing = Promise.resolve();
    this.retryAt = 0;
    this.onOnline = () => void this.send().catch(() => {});
    this.onHide = () => {
      if (document.visibilityState === "hidden") void this.seal().then(() => this.send()).catch(() => {});
    };
    this.onPageHide = () => {
      this.sealOnExit();
      this.releaseOwner(); // a page kept for back/forward takes a new owner id when it shows again
    };
    this.onPageShow = (/** @type {PageTransitionEvent} */ e) => {
      if (e.persisted) this.holdOwner();
    };
    /** @type {string | null} the open period's report id, from its first checkpoint to its seal */
    this.periodId = null;
    this.checkpointing = false;
    this.checkpointAgain = false;
    this.lastCheckpoint = -Infinity;
    this.owner = "";
    this.releaseOwner = () => {};
    this.holdOwner();
    /** @type {{id: string, month: string} | null} the installation id, read once (a page going away has no time to) */
    this.installation = null;
    /** @type {IDBDatabase | null} the outbox's database once open, for the same reason */
    this.database = null;
    this.ready = Promise.all([installationId(), db()]).then(([id, database]) => {
      this.installation = { id, month: month() };
      this.database = database;
      this.checkpointSoon(); // what was counted before the database was open
    });
    this.ready.catch(() => {});
    addEventListener("online", this.onOnline);
    addEventListener("pagehide", this.onPageHide);
    addEventListener("pageshow", this.onPageShow);
    document.addEventListener("visibilitychange", this.onHide);
  }

  /** Hold a Web Lock named after a new owner id until the page goes: its checkpoints are not orphans meanwhile. */
  holdOwner() {
    this.owner = crypto.randomUUID();
    if (!navigator.locks) return;
    navigator.locks.request(OWNER_LOCK + this.owner, () => new Promise((resolve) => { this.releaseOwner = () => resolve(undefined); }))
      .catch(() => {});
  }

  /** Called after each recorded call: the first one after a seal starts the batch clock; a checkpoint follows. */
  touched() {
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.seal().then(() => this.send()).catch(() => {});
    }, BATCH_MS);
    this.checkpointSoon();
  }

  /** Checkpoint the open period after the caller's own work, and CHECKPOINT_MS after the last one. */
  checkpointSoon() {
    if (this.checkpointing) {
      this.checkpointAgain = true;
      return;
    }
    if (!this.installation || !this.database) return;
    this.checkpointing = true;
    const wait = this.lastCheckpoint + CHECKPOINT_MS - performance.now();
    if (wait > 0) setTimeout(() => this.checkpoint(), wait);
    else queueMicrotask(() => this.checkpoint());
  }

  /**
   * Write the open period to IndexedDB under its report id, replacing its last checkpoint; once
   * committed, again if calls came meanwhile. Synchronous up to the transaction, so a seal that
   * follows is ordered after it (IndexedDB runs overlapping read-write transactions in order).
   */
  checkpoint() {
    const period = this.aggregator.snapshot();
    if (!period || !this.installation || !this.database) {
      this.checkpointing = false;
      return;
    }
    this.checkpointAgain = false;
    this.periodId ??= crypto.randomUUID();
    const { id, body } = this.report(period, this.installation.id, this.periodId);
    const finished = () => {
      this.lastCheckpoint = performance.now();
      this.checkpointing = false;
      if (this.checkpointAgain) this.checkpointSoon();
    };
    try {
      const tx = this.database.transaction("open", "readwrite");
      tx.objectStore("open").put({ id, owner: this.owner, at: Date.now(), seq: kept++, bytes: body.length, body });
      tx.oncomplete = finished;
      tx.onerror = tx.onabort = () => {
        console.warn(`waystation: telemetry checkpoint not kept: ${tx.error?.message ?? "aborted"}`);
        finished();
      };
    } catch (err) {
      console.warn(`waystation: telemetry checkpoint not kept: ${/** @type {Error} */ (err).message}`);
      this.checkpointing = false;
    }
  }

  /** The period so far, as a report in the outbox (nothing when nothing happened). */
  seal() {
    const period = this.aggregator.take();
    const periodId = this.periodId;
    this.periodId = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!period) return this.sealing;
    this.sealing = this.sealing.then(async () => {
      const { id, body } = this.report(period, await installationId(), periodId ?? crypto.randomUUID());
      await Outbox.put(id, body);
    }).catch((err) => console.warn(`waystation: telemetry report not kept: ${err.message}`));
    return this.sealing;
  }

  /**
   * A period as a report: its id and the JSON text sent.
   * @param {{start: number, end: number, bundles: object[]}} period @param {string} installation @param {string} id
   */
  report(period, installation, id) {
    const report = { schema: 1, id, installation, start: period.start, end: period.end,
      device: this.device(), bundles: period.bundles };
    const body = JSON.stringify(report);
    if (body.length > MAX_REPORT_BYTES) console.warn(`waystation: a telemetry report of ${body.length} bytes is over the server's ${MAX_REPORT_BYTES}`);
    return { id: report.id, body };
  }

  /**
   * The page is going away (pagehide): seal what is counted without awaiting anything, since
   * nothing awaited here would run. The report is written to the outbox in a transaction
   * committed at once, and, online, also sent with a keepalive request that outlives the page;
   * if both arrive, the next page sends it again and the server counts it once by its id.
   */
  sealOnExit() {
    const thisMonth = month();
    if (!this.installation || !this.database || this.installation.month !== thisMonth) {
      void this.seal().catch(() => {}); // not ready yet (or a new month): the slower path, best effort
      return;
    }
    const period = this.aggregator.take();
    const periodId = this.periodId ?? crypto.randomUUID();
    this.periodId = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!period) return;
    const { id, body } = this.report(period, this.installation.id, periodId);
    try {
      const tx = this.database.transaction(["reports", "open"], "readwrite");
      tx.objectStore("reports").put({ id, at: Date.now(), seq: kept++, bytes: body.length, body });
      tx.objectStore("open").delete(id);
      tx.commit();
    } catch (err) {
      console.warn(`waystation: telemetry report not kept: ${/** @type {Error} */ (err).message}`);
    }
    if (navigator.onLine && body.length <= MAX_REPORT_BYTES) {
      fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json" }, body, keepalive: true }).catch(() => {});
    }
  }

  /** What would be sent next: the period so far sealed, and every report waiting. */
  async pending() {
    await this.seal();
    await Outbox.adoptOrphans(this.owner);
    return (await Outbox.all()).map((r) => JSON.parse(r.body));
  }

  /**
   * Send the waiting reports, oldest first, one tab at a time; a report leaves the outbox once
   * the server accepted it (202) or knew it (200 duplicate), or refused it for good (400, 413, 422).
   * @returns {Promise<{sent: number, pending: number}>}
   */
  async send() {
    if (!navigator.onLine || Date.now() < this.retryAt) return { sent: 0, pending: (await Outbox.all()).length };
    const run = async () => {
      let sent = 0;
      await Outbox.adoptOrphans(this.owner);
      const reports = await Outbox.all();
      for (const report of reports) {
        let response;
        try {
          response = await fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json" }, body: report.body });
        } catch {
          break; // offline after all: the rest waits too
        }
        if (response.status === 429 || response.status >= 500) {
          this.retryAt = Date.now() + 1000 * (Number(response.headers.get("Retry-After")) || 60);
          break;
        }
        if (!response.ok) {
          const told = await response.json().then((b) => b?.error, () => null);
          console.warn(`waystation: the server refused telemetry report ${report.id} (HTTP ${response.status}: ${told ?? "no reason"}); it is dropped`);
        } else {
          sent += 1;
        }
        await Outbox.remove(report.id);
      }
      return { sent, pending: (await Outbox.all()).length };
    };
    return navigator.locks ? navigator.locks.request(SEND_LOCK, run) : run();
  }

  /** Seal what is recorded and send everything now. */
  async flush() {
    this.retryAt = 0;
    await this.seal();
    return this.send();
  }

  close() {
    removeEventListener("online", this.onOnline);
    removeEventListener("pagehide", this.onPageHide);
    removeEventListener("pageshow", this.onPageShow);
    document.removeEventListener("visibilitychange", this.onHide);
    void this.seal().finally(() => this.releaseOwner());
  }
}

/**
 * An App's telemetry: `app.telemetry` and the "alert" events. Off (the default), it records
 * nothing, opens no database and sends nothing; the declared alerts are watched either way.
 */
class AppTelemetry {
  /**
   * @param {{enabled: boolean, bundle: string, baseUrl: string | URL, request: (message: any) => Promise<any>,
   *   emit: (detail: object) => void}} options `request` asks the App's current worker
   */
  constructor({ enabled, bundle, baseUrl, request, emit }) {
    this.enabled = enabled;
    this.bundle = bundle;
    this.request = request;
    this.emit = emit;
    /** @type {Alerts | null} */
    this.alerts = null;
    this.version = "";
    this.threads = 1;
    /** @type {{level: string} | null} remote logging as the last check-in said */
    this.logging = null;
    this.aggregator = enabled ? new TelemetryAggregator() : null;
    this.sender = this.aggregator
      ? new TelemetrySender({ aggregator: this.aggregator, url: new URL("api/telemetry", baseUrl), device: () => deviceFacts(this.threads) })
      : null;
    // The service worker tells every page after each check-in (GET .../status) whether logging is on for this device.
    this.onCheckin = (/** @type {MessageEvent} */ e) => {
      if (e.data?.type === "waystation-checkin" && e.data.bundle === bundle) void this.setRemoteLogging(e.data.status?.logging ?? null).catch(() => {});
    };
    if (enabled) {
      navigator.serviceWorker?.addEventListener("message", this.onCheckin);
      void this.sender?.send().catch(() => {}); // what earlier sessions left waiting
    }
  }

  /** A version opened on the device (at open, update or rollback): its declarations, alerts and start-up. @param {any} info */
  opened(info) {
    if (!info?.version) return;
    const fresh = info.version !== this.version || !this.alerts;
    this.version = info.version;
    this.threads = info.ortThreads ?? 1;
    if (fresh) this.alerts = info.telemetry?.alerts?.length ? new Alerts(this.bundle, info.version, info.telemetry, this.emit) : null;
    if (this.aggregator) {
      this.aggregator.declare(this.bundle, info.version, info.telemetry ?? undefined);
      const t = info.timings ?? {};
      this.aggregator.startup(this.bundle, info.version, "open", info.openTimings?.totalMs ?? info.startupMs);
      if (t.runtimeMs !== undefined) this.aggregator.startup(this.bundle, info.version, "python", t.runtimeMs + (t.packagesMs ?? 0));
      this.aggregator.startup(this.bundle, info.version, "models", t.modelsMs);
      this.sender?.touched();
    }
    if (this.enabled && this.logging) void this.request({ type: WORKER.logging, level: this.logging.level }).catch(() => {});
  }

  /** One call, as the page saw it. @param {CallRecord} call @param {string | undefined} version */
  call(call, version) {
    this.alerts?.call(call);
    if (!this.aggregator || !version) return;
    this.aggregator.call(this.bundle, version, call);
    /** @type {TelemetrySender} */ (this.sender).touched();
  }

  /** @returns {Promise<object[]>} */
  async pending() {
    return this.sender ? this.sender.pending() : [];
  }

  /** @returns {Promise<{sent: number, pending: number, logLines?: number}>} */
  async flush() {
    if (!this.sender) return { sent: 0, pending: 0 };
    const result = await this.sender.flush();
    if (!this.logging) return result;
    const logs = await this.request({ type: WORKER.logs }).catch(() => ({ sent: 0 }));
    return { ...result, logLines: logs.sent };
  }

  /**
   * Remote logging as a check-in says: {level} uploads ctx.log lines at or above it from now on,
   * null stops. Only with telemetry on: off, the device sends nothing at all.
   * @param {{level: string} | null} logging
   */
  async setRemoteLogging(logging) {
    if (!this.enabled) return { level: null };
    this.logging = logging?.level ? { level: logging.level } : null;
    return this.request({ type: WORKER.logging, level: this.logging?.level ?? null });
  }

  close() {
    navigator.serviceWorker?.removeEventListener("message", this.onCheckin);
    this.sender?.close();
  }
}
