// Delta updates of bundles: ask the channel which manifest this device should run, verify it,
// fetch only the chunks the store lacks (bounded parallelism, retries, a deadline per request),
// verify every chunk and every file, and stage the version. Chunks are stored one by one as
// they arrive, so an update cut short resumes where it stopped: the next try skips them.
// Activation is the store's (bundle-store.js), after the page's smoke check.
//
// Chunks come from `chunks/<sha256>` under this worker's scope, or under the static host the
// channel API names in its Waystation-Chunk-Base header (a CDN: docs/static-hosting.md). Every
// chunk is checked against its hash wherever it came from, so that host cannot slip in other
// bytes; when it fails (down, missing a chunk, refused by CORS or the CSP, wrong bytes) the rest
// of that download comes from the scope, which serves every published chunk too.

import { UpdateError } from "./errors.js";
import { parseManifest, sha256Hex, verifySignature } from "./verify.js";

export { fetchText, Updater };

/**
 * @typedef {import("./bundle-store.js").BundleStore} BundleStore
 * @typedef {import("./verify.js").Manifest} Manifest
 * @typedef {{channel?: string, device?: string, timeoutMs?: number, retries?: number, concurrency?: number}} UpdateOptions
 * @typedef {(p: Record<string, unknown>) => void} Progress
 * @typedef {{bundle: string, channel: string, from: string | null, to: string, upToDate: boolean, state: string,
 *   fetchedBytes: number, fetchedChunks: number, totalBytes: number, totalChunks: number, savedBytes: number,
 *   manifestBytes: number, ms: number}} UpdateResult
 */

const DEFAULTS = { channel: "stable", timeoutMs: 30_000, retries: 2, concurrency: 6 };
const BACKOFF_MS = 250;
const CHUNK_BASE_HEADER = "Waystation-Chunk-Base";
const QUOTA_MARGIN = 1.1; // IndexedDB stores a little more than the raw bytes

class Updater {
  /**
   * @param {{store: BundleStore, scope: URL, boot: () => Promise<{waystation: string, trustedKeys: any[]}>}} options
   */
  constructor({ store, scope, boot }) {
    this.store = store;
    this.scope = scope;
    this.boot = boot;
    /** @type {Map<string, Promise<unknown>>} one operation at a time per bundle */
    this._locks = new Map();
  }

  /**
   * The version the page opens: a version staged for the next load becomes active here (the
   * page opening the bundle is that load), else the active one, else the channel's, installed
   * first (no smoke check: there is nothing older to fall back to, and opening it shows any
   * fault at once). A first install cut short keeps its chunks: the page asks again
   * (web/first_install.js) and only the missing ones are fetched.
   * @param {string} name @param {UpdateOptions} options @param {Progress} progress
   */
  install(name, options = {}, progress = () => {}) {
    return this._locked(name, async () => {
      const active = await this.store.promoteReady(name);
      if (active && !(await this.store.revoked(name)).includes(active)) return { bundle: name, version: active, installed: false };
      let result;
      try {
        result = await this._stage(name, { ...DEFAULTS, ...options }, progress, { firstInstall: !active });
      } catch (err) {
        // The only version held was revoked (a check-in said so) and the channel has no other for now.
        if (active) throw new UpdateError("revoked", { bundle: name, version: active });
        throw err;
      }
      await this.store.activate(name, result.to); // a revoked active version is not kept as previous
      if (active) await this.store.collectGarbage();
      return { ...result, version: result.to, installed: true };
    });
  }

  /**
   * Stage the version the channel serves this device, if it is not the active one.
   * @param {string} name @param {UpdateOptions} options @param {Progress} progress
   * @returns {Promise<UpdateResult>}
   */
  update(name, options = {}, progress = () => {}) {
    return this._locked(name, () => this._stage(name, { ...DEFAULTS, ...options }, progress, { firstInstall: false }));
  }

  /** What an update would fetch, without fetching it. @param {string} name @param {UpdateOptions} options */
  check(name, options = {}) {
    return this._locked(name, async () => {
      const opts = { ...DEFAULTS, ...options };
      const { manifest, text } = await this._manifest(name, opts, false);
      const plan = await this._plan(name, manifest);
      return { bundle: name, from: plan.from, to: manifest.version, upToDate: plan.upToDate, fetchBytes: plan.fetchBytes, totalBytes: plan.totalBytes };
    });
  }

  /**
   * @template T
   * @param {string} name @param {() => Promise<T>} task @returns {Promise<T>}
   */
  _locked(name, task) {
    const run = (this._locks.get(name) ?? Promise.resolve()).catch(() => {}).then(task);
    this._locks.set(name, run);
    return run;
  }

  /**
   * @param {string} name @param {Required<Omit<UpdateOptions, "device">> & {device?: string}} opts
   * @param {Progress} progress @param {{firstInstall: boolean}} how @returns {Promise<UpdateResult>}
   */
  async _stage(name, opts, progress, { firstInstall }) {
    const started = performance.now();
    const { manifest, text, chunkBase } = await this._manifest(name, opts, firstInstall);
    const plan = await this._plan(name, manifest);
    const result = {
      bundle: name, channel: opts.channel, from: plan.from, to: manifest.version, upToDate: plan.upToDate, state: "installed",
      totalBytes: plan.totalBytes, totalChunks: plan.chunks.size, manifestBytes: new TextEncoder().encode(text).byteLength, fetchedBytes: 0, fetchedChunks: 0,
    };
    if (!plan.upToDate) {
      const state = await this.store.stage(name, manifest.version, text, plan.totalBytes);
      const fetched = await this._complete(manifest, plan, state, { ...opts, chunkBase }, progress);
      Object.assign(result, { state: state === "fetching" ? "verified" : state, fetchedBytes: fetched.bytes, fetchedChunks: fetched.chunks });
    }
    return { ...result, savedBytes: plan.totalBytes - result.fetchedBytes, ms: performance.now() - started };
  }

  /**
   * Fetch the chunks a staged version lacks, then verify its files. An error says what stays
   * active and what is kept for the next try.
   * @param {Manifest} manifest @param {{from: string | null, chunks: Map<string, number>, totalBytes: number}} plan
   * @param {string} state the staged version's state
   * @param {{concurrency: number, retries: number, timeoutMs: number, chunkBase: URL | null}} opts
   * @param {Progress} progress
   */
  async _complete(manifest, plan, state, opts, progress) {
    const { name, version } = manifest;
    const missing = state === "fetching" ? await this.store.missing(plan.chunks) : [];
    const fetchBytes = missing.reduce((n, [, size]) => n + size, 0);
    const savedBytes = plan.totalBytes - fetchBytes;
    progress({
      stage: "available", from: plan.from, to: version, totalBytes: plan.totalBytes, fetchBytes, savedBytes,
      message: `${name} ${version} available: ${kib(fetchBytes)} to fetch of ${kib(plan.totalBytes)}`,
    });
    const done = { bytes: 0, chunks: 0 };
    const onChunk = (/** @type {number} */ size) => {
      done.bytes += size;
      done.chunks += 1;
      progress({
        stage: "download", loaded: done.bytes, total: fetchBytes, chunks: done.chunks, of: missing.length, totalBytes: plan.totalBytes, savedBytes,
        message: `fetching ${name} ${version}: ${kib(done.bytes)} of ${kib(fetchBytes)} (${kib(savedBytes)} already on this device)`,
      });
    };
    try {
      if (fetchBytes) await checkQuota(fetchBytes);
      await this._download(missing, manifest, opts, onChunk);
      if (state === "fetching") {
        progress({ stage: "verify", message: `verifying ${name} ${version}` });
        await this._verifyFiles(manifest);
        await this.store.setState(name, version, "verified");
      }
    } catch (caught) {
      if (!(caught instanceof UpdateError)) throw caught;
      // IndexedDB refused a write: say how much more was needed.
      const err = caught.code === "quota-exceeded" && caught.details.need === undefined ? new UpdateError("quota-exceeded", { need: fetchBytes - done.bytes }) : caught;
      const left = missing.length - done.chunks;
      throw err.withSuffix(`${plan.from ? `${name} ${plan.from} stays active` : "nothing was installed"}` +
        (left && done.chunks ? `; ${done.chunks} of ${missing.length} new chunks are stored, the next try fetches only the other ${left}` : ""));
    }
    return done;
  }

  /** The chunks of a manifest, what is active, and whether there is anything to do. */
  async _plan(/** @type {string} */ name, /** @type {Manifest} */ manifest) {
    const pointers = await this.store.pointers(name);
    /** @type {Map<string, number>} */
    const chunks = new Map(manifest.files.flatMap((f) => f.chunks));
    const totalBytes = [...chunks.values()].reduce((n, s) => n + s, 0);
    const upToDate = pointers.active === manifest.version; // a published version never changes
    const missing = upToDate ? [] : await this.store.missing(chunks);
    return { from: pointers.active, chunks, totalBytes, upToDate, fetchBytes: missing.reduce((n, [, s]) => n + s, 0) };
  }

  /**
   * The manifest this device should run: from the channel API; for a first install, from the
   * site's own build when no release includes the device (or the host has no API). `chunkBase` is
   * where the channel API says its chunks are (null: the scope, and always for the site's own build).
   * @param {string} name @param {{channel: string, device?: string, timeoutMs: number}} opts @param {boolean} siteFallback
   * @returns {Promise<{manifest: Manifest, text: string, chunkBase: URL | null}>}
   */
  async _manifest(name, { channel, device, timeoutMs }, siteFallback) {
    const id = device ?? (await this.store.deviceId());
    const api = new URL(`api/bundles/${encodeURIComponent(name)}/channels/${encodeURIComponent(channel)}?device=${encodeURIComponent(id)}`, this.scope);
    let url = api;
    let text;
    /** @type {URL | null} */
    let chunkBase = null;
    try {
      const answer = await fetchBody(api, timeoutMs);
      text = new TextDecoder().decode(answer.bytes);
      chunkBase = chunkBaseOf(answer.headers, this.scope);
    } catch (err) {
      if (!(err instanceof UpdateError && err.details.status === 404)) throw err;
      if (!siteFallback) throw new UpdateError("not-found", { bundle: name, detail: `channel "${channel}" has no release of it for this device` });
      url = new URL(`bundles/${encodeURIComponent(name)}/latest.json`, this.scope);
      const latest = await fetchText(url, timeoutMs).catch((e) => {
        throw e.details?.status === 404 ? new UpdateError("not-found", { bundle: name, detail: `channel "${channel}" has no release for this device and the site has no build of it (HTTP 404 for ${url.pathname})` }) : e;
      });
      const { version } = JSON.parse(latest);
      if (await this._revokedOnServer(name, channel, id, version, timeoutMs)) {
        throw new UpdateError("not-found", { bundle: name, detail: `channel "${channel}" has no release of it for this device and the site's build, ${version}, was revoked` });
      }
      url = new URL(`bundles/${encodeURIComponent(name)}/${encodeURIComponent(version)}/manifest.json`, this.scope);
      text = await fetchText(url, timeoutMs);
    }
    const manifest = parseManifest(text, { bundle: name, url: url.pathname });
    const boot = await this.boot();
    await verifySignature(manifest, boot.trustedKeys ?? []);
    if (newer(manifest.runtime, boot.waystation)) {
      throw new UpdateError("incompatible", { bundle: name, version: manifest.version, runtime: manifest.runtime, have: boot.waystation });
    }
    return { manifest, text, chunkBase };
  }

  /**
   * Whether the server's check-in lists `version` as revoked: the site's own build must not be
   * installed once its publisher revoked it. A host without the check-in (static files) has no registry to ask.
   * @param {string} name @param {string} channel @param {string} device @param {string} version @param {number} timeoutMs
   */
  async _revokedOnServer(name, channel, device, version, timeoutMs) {
    const url = new URL(`api/bundles/${encodeURIComponent(name)}/channels/${encodeURIComponent(channel)}/status?device=${encodeURIComponent(device)}`, this.scope);
    try {
      return JSON.parse(await fetchText(url, timeoutMs)).revoked?.includes(version) ?? false;
    } catch (err) {
      if (err instanceof UpdateError && err.details.status === 404) return false;
      throw err;
    }
  }

  /**
   * Fetch, check and store `missing` chunks, at most `concurrency` at once; the first failure
   * that outlives its retries (at every base) stops the others.
   * @param {[string, number][]} missing @param {Manifest} manifest
   * @param {{concurrency: number, retries: number, timeoutMs: number, chunkBase?: URL | null}} opts
   * @param {(size: number) => void} onChunk called as each chunk is stored
   */
  async _download(missing, manifest, { concurrency, retries, timeoutMs, chunkBase }, onChunk) {
    const where = chunkPaths(manifest);
    // Where chunks are fetched from, in order: the static host first, if any, then the scope. A base
    // that failed a chunk is dropped for the rest of this download, so a host that is down (or
    // refused by CORS, or by an older CSP this worker still runs under) costs its retries once.
    const bases = chunkBase && chunkBase.href !== this.scope.href ? [chunkBase, this.scope] : [this.scope];
    const stop = new AbortController();
    const queue = missing.slice();
    /** @type {unknown} */
    let failure = null;
    const worker = async () => {
      while (queue.length && !failure) {
        const [sha, size] = /** @type {[string, number]} */ (queue.shift());
        try {
          const bytes = await this._fetchChunkFrom(bases, sha, size, where.get(sha) ?? "?", { retries, timeoutMs, signal: stop.signal });
          await this.store.putChunk(sha, bytes);
          onChunk(size);
        } catch (err) {
          failure ??= err;
          stop.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    if (failure) throw failure;
  }

  /**
   * One chunk from the first of `bases` that has it; a base that fails is removed from `bases`
   * (shared by the download's workers) unless it is the last one, whose error is the one thrown.
   * @param {URL[]} bases @param {string} sha @param {number} size @param {string} path
   * @param {{retries: number, timeoutMs: number, signal: AbortSignal}} opts
   */
  async _fetchChunkFrom(bases, sha, size, path, opts) {
    for (;;) {
      const base = bases[0];
      try {
        return await this._fetchChunk(new URL(`chunks/${sha}`, base), sha, size, path, opts);
      } catch (err) {
        if (bases.length < 2 || opts.signal.aborted) throw err;
        if (bases[0] === base) {
          bases.shift();
          const e = /** @type {any} */ (err);
          console.warn(`waystation: chunks from ${base.href} failed (${e.code ?? e.name}: ${e.message}); fetching them from ${bases[0].href}`);
        }
      }
    }
  }

  /**
   * One chunk, checked against its hash; network faults, stalls, 5xx and a corrupt body are retried.
   * @param {URL} url @param {string} sha @param {number} size @param {string} path
   * @param {{retries: number, timeoutMs: number, signal: AbortSignal}} opts
   */
  async _fetchChunk(url, sha, size, path, { retries, timeoutMs, signal }) {
    for (let attempt = 0; ; attempt++) {
      try {
        const bytes = await fetchBytes(url, timeoutMs, signal);
        if (bytes.byteLength === size && (await sha256Hex(bytes)) === sha) return bytes;
        throw new UpdateError("chunk-corrupt", { sha256: sha, path, attempts: attempt + 1 });
      } catch (err) {
        if (!(err instanceof UpdateError) || !retryable(err) || attempt >= retries || signal.aborted) throw err;
      }
      await sleep(BACKOFF_MS * 2 ** attempt, signal);
    }
  }

  /** Every file, assembled from the stored chunks, against its own sha256. */
  async _verifyFiles(/** @type {Manifest} */ manifest) {
    for (const file of manifest.files) {
      const bytes = await this.store.assemble(file, manifest.name, manifest.version);
      if ((await sha256Hex(bytes)) !== file.sha256) throw new UpdateError("file-corrupt", { path: file.path });
    }
  }
}

/** @param {UpdateError} err */
function retryable(err) {
  return ["network", "timeout", "chunk-corrupt"].includes(err.code) || (err.code === "server-error" && err.details.status >= 500);
}

/** {chunk sha256: the first file it belongs to}, for error messages. */
function chunkPaths(/** @type {Manifest} */ manifest) {
  /** @type {Map<string, string>} */
  const paths = new Map();
  for (const file of manifest.files) for (const [sha] of file.chunks) if (!paths.has(sha)) paths.set(sha, file.path);
  return paths;
}

/**
 * A response's body, within `timeoutMs` for headers and body together; errors as UpdateErrors.
 * @param {URL} url @param {number} timeoutMs @param {AbortSignal} [signal] aborts without an error of its own
 */
async function fetchBytes(url, timeoutMs, signal) {
  return (await fetchBody(url, timeoutMs, signal)).bytes;
}

/**
 * A response's body and headers, as fetchBytes.
 * @param {URL} url @param {number} timeoutMs @param {AbortSignal} [signal]
 * @returns {Promise<{bytes: Uint8Array<ArrayBuffer>, headers: Headers}>}
 */
async function fetchBody(url, timeoutMs, signal) {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  const cancel = () => deadline.abort();
  signal?.addEventListener("abort", cancel);
  try {
    // no-store: chunks live in IndexedDB only, not a second time in the HTTP cache.
    const response = await fetch(url, { cache: "no-store", signal: deadline.signal });
    if (!response.ok) throw new UpdateError("server-error", { url: where(url), status: response.status });
    return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
  } catch (err) {
    if (err instanceof UpdateError) throw err;
    if (deadline.signal.aborted && !signal?.aborted) throw new UpdateError("timeout", { url: where(url), ms: timeoutMs });
    throw new UpdateError("network", { url: where(url), detail: /** @type {Error} */ (err).message });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", cancel);
  }
}

async function fetchText(/** @type {URL} */ url, /** @type {number} */ timeoutMs) {
  return new TextDecoder().decode(await fetchBytes(url, timeoutMs));
}

/** A URL for an error message: its path on this origin, all of it on another (a static host). */
function where(/** @type {URL} */ url) {
  return url.origin === self.location.origin ? url.pathname : url.origin + url.pathname;
}

/**
 * The static folder a channel answer names for its chunks (Waystation-Chunk-Base), or null: an
 * absent or unusable value means the scope, as a server without the setting.
 * @param {Headers} headers @param {URL} scope
 */
function chunkBaseOf(headers, scope) {
  const value = headers.get(CHUNK_BASE_HEADER);
  if (!value) return null;
  try {
    const base = new URL(value, scope);
    if (base.protocol !== "https:" && base.protocol !== "http:") return null;
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    return base;
  } catch {
    return null;
  }
}

/**
 * Refuse before fetching what cannot be stored, where the browser tells the quota (Chrome since
 * 138 reports usage + 10 GiB whatever it enforces: there, IndexedDB's QuotaExceededError says it).
 */
async function checkQuota(/** @type {number} */ bytes) {
  const estimate = await navigator.storage?.estimate?.();
  if (!estimate?.quota) return;
  const free = estimate.quota - (estimate.usage ?? 0);
  const need = Math.ceil(bytes * QUOTA_MARGIN);
  if (need > free) throw new UpdateError("quota-exceeded", { need, free: Math.max(0, free), quota: estimate.quota });
}

function sleep(/** @type {number} */ ms, /** @type {AbortSignal} */ signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(undefined); }, { once: true });
  });
}

/** Whether semver `a` is newer than `b` (release numbers only). */
function newer(/** @type {string} */ a, /** @type {string} */ b) {
  const parse = (/** @type {string} */ v) => v.split("-")[0].split(".").map(Number);
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
  return false;
}

function kib(/** @type {number} */ bytes) {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
