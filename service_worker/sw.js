// Waystation's service worker: the app shell precached by revision, bundle files cached
// by their immutable versioned URLs, so that after one visit the app boots with no network.
import { Precache } from "./sw/precache.js";

// Replaced at build time by `waystation build` with [{url, revision}, ...] for the app shell.
const PRECACHE_ENTRIES = self.__WAYSTATION_PRECACHE;
const SHELL_CACHE = "waystation-shell-v1";
const BUNDLE_CACHE = "waystation-bundles-v1";

const precache = new Precache(PRECACHE_ENTRIES, SHELL_CACHE);
const scope = new URL(self.registration.scope);

self.addEventListener("install", (/** @type {any} */ event) => {
  event.waitUntil(precache.install().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (/** @type {any} */ event) => {
  event.waitUntil(precache.activate().then(() => self.clients.claim()));
});

self.addEventListener("fetch", (/** @type {any} */ event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  const path = url.pathname.slice(scope.pathname.length);
  if (/^bundles\/[^/]+\/[^/]+\/.+/.test(path) && !path.endsWith("latest.json")) {
    event.respondWith(cacheFirst(request, BUNDLE_CACHE));
  } else if (/^bundles\/[^/]+\/latest\.json$/.test(path)) {
    event.respondWith(networkFirst(request, BUNDLE_CACHE));
  } else {
    event.respondWith(precache.match(request).then((hit) => hit ?? fetch(request)));
  }
});

/** Versioned bundle files never change under the same URL: serve from cache, else fetch and keep. */
async function cacheFirst(/** @type {Request} */ request, /** @type {string} */ cacheName) {
  const cache = await caches.open(cacheName);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

/** Which version is current changes: ask the network, fall back to the last answer offline. */
async function networkFirst(/** @type {Request} */ request, /** @type {string} */ cacheName) {
  const cache = await caches.open(cacheName);
  try {
    const response = await fetch(request, { cache: "no-store" });
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const hit = await cache.match(request);
    if (hit) return hit;
    throw err;
  }
}
