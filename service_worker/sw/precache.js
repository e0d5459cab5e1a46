// Revisioned app-shell precache, after Workbox's precaching contract: each entry is
// {url, revision}; the cache key carries the revision, so an app update fetches only the
// entries whose revision changed and `activate` deletes the rest. (Workbox ships no ES-module
// build usable without a bundler; this is the ~70 lines of it that Waystation needs.)

export { Precache };

const REVISION_PARAM = "__ws_rev";

class Precache {
  /**
   * @param {{url: string, revision: string}[]} entries URLs relative to the scope
   * @param {string} cacheName
   */
  constructor(entries, cacheName) {
    this.cacheName = cacheName;
    /** @type {Map<string, string>} absolute URL -> cache key */
    this.keys = new Map();
    for (const { url, revision } of entries) {
      const absolute = new URL(url, /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self)).registration.scope);
      const key = new URL(absolute);
      key.searchParams.set(REVISION_PARAM, revision);
      this.keys.set(absolute.href, key.href);
    }
  }

  /** Fetch and store every entry whose revision is not cached yet. */
  async install() {
    const cache = await caches.open(this.cacheName);
    const missing = [];
    for (const [url, key] of this.keys) {
      if (!(await cache.match(key))) missing.push([url, key]);
    }
    // Bounded parallelism: a few large files (wasm) dominate; 6 matches a browser's per-host limit.
    await runBounded(missing, 6, async ([url, key]) => {
      const response = await fetch(url, { cache: "reload" });
      if (!response.ok) throw new Error(`precache: ${url} answered HTTP ${response.status}`);
      await cache.put(key, response);
    });
    return { fetched: missing.length, total: this.keys.size };
  }

  /** Delete cached entries that no longer belong to the current revision set. */
  async activate() {
    const cache = await caches.open(this.cacheName);
    const wanted = new Set(this.keys.values());
    for (const request of await cache.keys()) {
      if (!wanted.has(request.url)) await cache.delete(request);
    }
  }

  /** @param {Request} request */
  async match(request) {
    const url = new URL(request.url);
    url.hash = "";
    url.search = "";
    if (request.mode === "navigate" && url.pathname.endsWith("/")) url.pathname += "index.html";
    const key = this.keys.get(url.href);
    if (!key) return undefined;
    const cache = await caches.open(this.cacheName);
    return cache.match(key);
  }
}

/**
 * @template T
 * @param {T[]} items
 * @param {number} limit
 * @param {(item: T) => Promise<void>} task
 */
async function runBounded(items, limit, task) {
  const queue = items.slice();
  const runners = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) await task(/** @type {T} */ (queue.shift()));
  });
  await Promise.all(runners);
}
