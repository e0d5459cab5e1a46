// Waystation's service worker: the app shell precached by revision, and the bundle store:
// bundles in IndexedDB as content-addressed chunks, served to the worker from there (online or
// offline), updated by delta from the channel API at the page's request (sw/messages.js) and by
// background check-ins (sw/checkin.js): on this worker's start, and when an open page asks.
import { Precache } from "./sw/precache.js";
import { BundleStore } from "./sw/bundle-store.js";
import { Updater } from "./sw/updater.js";
import { bundleRoute } from "./sw/bundle-route.js";
import { handleMessage } from "./sw/messages.js";
import { CheckIns } from "./sw/checkin.js";

// Replaced at build time by `waystation build` with [{url, revision}, ...] for the app shell.
// @ts-expect-error: not a property, a placeholder `waystation build` replaces with the list
const PRECACHE_ENTRIES = self.__WAYSTATION_PRECACHE;
const SHELL_CACHE = "waystation-shell-v1";
// Bundles were cached by URL before they moved to IndexedDB: that cache goes on activate.
const STALE_CACHES = ["waystation-bundles-v1"];

const precache = new Precache(PRECACHE_ENTRIES, SHELL_CACHE);
const worker = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
const scope = new URL(worker.registration.scope);

/** @type {Promise<BundleStore> | null} */
let storeReady = null;
/** @type {Promise<any> | null} */
let bootReady = null;
/** @type {Updater | null} */
let updater = null;

/** The bundle store, opened once, and again if its connection was closed under it. */
async function store() {
  const bundles = await (storeReady ??= BundleStore.open().catch((err) => { storeReady = null; throw err; }));
  if (!bundles.closed) return bundles;
  storeReady = null;
  updater = null;
  return store();
}

/** boot.json of the site this worker came with: its Waystation version and trusted keys. */
function boot() {
  bootReady ??= (async () => {
    const request = new Request(new URL("boot.json", scope));
    const response = (await precache.match(request)) ?? (await fetch(request));
    return response.json();
  })().catch((err) => { bootReady = null; throw err; });
  return bootReady;
}

async function services() {
  const bundles = await store();
  updater ??= new Updater({ store: bundles, scope, boot });
  return { store: bundles, updater, checkIns };
}

/** Tell every page of this scope (a check-in's outcome: each open app acts on it for its bundle). */
async function broadcast(/** @type {object} */ message) {
  for (const client of await worker.clients.matchAll({ type: "window", includeUncontrolled: true })) client.postMessage(message);
}

const checkIns = new CheckIns({ services, scope, broadcast });
// A service worker is stopped when idle and started again for an event, with no timer or `online`
// event of its own: each start checks in once, on activation or at the first request it answers.
let checkedSinceStart = false;
function checkInOnStart() {
  if (checkedSinceStart) return Promise.resolve();
  checkedSinceStart = true;
  return checkIns.all().catch(() => {});
}

self.addEventListener("install", (/** @type {any} */ event) => {
  event.waitUntil(precache.install().then(() => worker.skipWaiting()));
});

self.addEventListener("activate", (/** @type {any} */ event) => {
  const stale = Promise.all(STALE_CACHES.map((name) => caches.delete(name)));
  event.waitUntil(Promise.all([precache.activate(), stale]).then(() => worker.clients.claim()));
  // Not part of the activation: pages are answered meanwhile, the check-in runs beside them.
  setTimeout(checkInOnStart, 0);
});

self.addEventListener("message", (/** @type {any} */ event) => {
  const port = event.ports?.[0];
  if (port) event.waitUntil(handleMessage(event.data, port, services));
});

self.addEventListener("fetch", (/** @type {any} */ event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  const path = url.pathname.slice(scope.pathname.length);
  if (!checkedSinceStart) event.waitUntil(checkInOnStart());
  const bundle = bundleRoute(path, store);
  if (bundle) {
    event.respondWith(bundle(request));
  } else {
    event.respondWith(precache.match(request).then((hit) => hit ?? fetch(request)));
  }
});
