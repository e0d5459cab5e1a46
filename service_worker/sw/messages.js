// The page's requests to the service worker, named in protocol.js (web/protocol.js, at the site's root). Each arrives with a
// MessagePort of its own (a MessageChannel per request): progress events go back on it as
// {type: "progress", progress},
// then one reply, {ok: true, value} or {ok: false, error: {type, message, details}}.
//
//   install  {bundle, channel?}            the version to open: a version made ready for the next load
//                                          becomes active here (opening the bundle is that load), else the
//                                          active one, else the channel's, installed (first visit)
//   check    {bundle, channel?}            what an update would fetch
//   update   {bundle, channel?, ...}       fetch, verify and stage the channel's version
//   activate {bundle, version, when}       "now": make the staged version active; "next-load": on next open
//   discard  {bundle, version}             drop a staged version (it failed its smoke check)
//   rollback {bundle}                      make the previous version active again
//   versions {bundle}                      what the device holds
//   checkin  {bundle, channel?, updates?, saveData?}
//                                          ask the server's check-in now (sw/checkin.js): leave a revoked
//                                          version, stage a new one per `updates`; also posted to every page

import { UpdateError } from "./errors.js";
import { STORE, STORE_EVENT } from "../protocol.js";

export { handleMessage };

/**
 * @typedef {{store: import("./bundle-store.js").BundleStore, updater: import("./updater.js").Updater,
 *   checkIns: import("./checkin.js").CheckIns}} Services
 * @typedef {(data: any, services: Services, progress: (p: object) => void) => Promise<unknown>} Handler
 */

/** @type {Record<string, Handler>} */
const HANDLERS = {
  [STORE.install]: (d, { updater }, progress) => updater.install(d.bundle, options(d), progress),
  [STORE.check]: (d, { updater }) => updater.check(d.bundle, options(d)),
  [STORE.update]: (d, { updater }, progress) => updater.update(d.bundle, options(d), progress),
  [STORE.activate]: async (d, { store }) => {
    if (d.when === "next-load") {
      await store.markReady(d.bundle, d.version);
      return { bundle: d.bundle, version: d.version, activates: "next-load" };
    }
    const before = await store.activate(d.bundle, d.version);
    const gc = await store.collectGarbage();
    return { bundle: d.bundle, from: before.active, to: d.version, activates: "now", ...gc };
  },
  [STORE.discard]: async (d, { store }) => {
    await store.discard(d.bundle, d.version);
    return store.collectGarbage();
  },
  [STORE.rollback]: async (d, { store }) => {
    const moved = await store.rollback(d.bundle);
    return { ...moved, ...(await store.collectGarbage()) };
  },
  [STORE.checkin]: (d, { checkIns }) => checkIns.one(d.bundle, { channel: d.channel, updates: d.updates, saveData: d.saveData }),
  [STORE.versions]: async (d, { store }) => {
    const estimate = await navigator.storage?.estimate?.();
    return { ...(await store.describe(d.bundle)), device: await store.deviceId(), usage: estimate?.usage, quota: estimate?.quota };
  },
};

/**
 * Answer one request on its port.
 * @param {any} data @param {MessagePort} port @param {() => Promise<Services>} services
 */
async function handleMessage(data, port, services) {
  const progress = (/** @type {object} */ p) => port.postMessage({ type: STORE_EVENT.progress, progress: p });
  try {
    const handler = HANDLERS[data?.type];
    if (!handler) throw new UpdateError("unsupported", { reason: `the service worker has no request ${JSON.stringify(data?.type)}` });
    port.postMessage({ ok: true, value: await handler(data, await services(), progress) });
  } catch (err) {
    const e = /** @type {any} */ (err);
    port.postMessage({ ok: false, error: e instanceof UpdateError ? e.toJSON() : { type: e?.name ?? "Error", message: String(e?.message ?? e) } });
  } finally {
    port.close();
  }
}

/** The update options a page may set. @param {any} d */
function options(d) {
  /** @type {Record<string, unknown>} */
  const picked = {};
  for (const key of ["channel", "device", "timeoutMs", "retries", "concurrency"]) if (d[key] !== undefined) picked[key] = d[key];
  return picked;
}
