// The worker's own check of a bundle's manifest, before any file of the bundle reaches Python:
// its shape, its version, and its Ed25519 signature by a key the site trusts (boot.json's
// trustedKeys, the keys the service worker checks updates with). Without a service worker (a
// private window, open({serviceWorker: false}), a shift-reload, a first load before it controls
// the page) the manifest and files come straight from the site, and the files are only checked
// against the manifest: this check is what stops a changed manifest, with changed files, from
// running. Under the service worker it checks again what the store verified when it stored it,
// and what the store passes through from the network (a version it does not hold).
//
// The checks are service_worker/sw/verify.js's own (one copy: `waystation build` puts the service
// worker's modules under sw/ beside this file), so a refusal has the same names and messages as
// an update's: "manifest-invalid" or "signature-invalid".

import { UpdateError } from "./sw/errors.js";
import { parseManifest, prepareKeys, verifySignature } from "./sw/verify.js";

export { trustedKeys, trustedManifest };

/** @type {Promise<import("./sw/verify.js").TrustedKey[]> | null} */
let keysReady = null;

/**
 * The site's trusted keys, from boot.json beside this module (from the service worker's precache
 * when it controls the page). Fetched once per worker; a failed fetch is tried again next time.
 * @returns {Promise<import("./sw/verify.js").TrustedKey[]>}
 */
function trustedKeys() {
  keysReady ??= (async () => {
    const url = new URL("boot.json", import.meta.url);
    let response;
    try {
      response = await fetch(url);
    } catch (err) {
      throw new UpdateError("network", { url: url.pathname, detail: `the site's trusted keys: ${/** @type {Error} */ (err).message}` });
    }
    if (!response.ok) throw new UpdateError("server-error", { url: url.pathname, status: response.status });
    const boot = await response.json();
    const keys = Array.isArray(boot.trustedKeys) ? boot.trustedKeys : [];
    prepareKeys(keys);
    return keys;
  })().catch((err) => {
    keysReady = null;
    throw err;
  });
  return keysReady;
}

// Read and import the keys as the worker starts, while Python boots: the first manifest's check
// is then one signature verification, not three WebCrypto round trips (measured: README).
trustedKeys().catch(() => {});

/**
 * The manifest `text` of bundle `bundle` version `version`, parsed, once it is the one asked for
 * and signed by a trusted key; throws an UpdateError ("manifest-invalid", "signature-invalid")
 * otherwise. `timings.verifyMs` is set to what the check itself cost (the keys' fetch excluded).
 * @param {string} text
 * @param {{bundle: string, version: string, url: string, timings?: Record<string, number>}} where
 * @returns {Promise<import("./sw/verify.js").Manifest>}
 */
async function trustedManifest(text, { bundle, version, url, timings }) {
  const keys = trustedKeys();
  keys.catch(() => {}); // awaited below, after the parse: a bad manifest is named as such first
  const started = performance.now();
  const manifest = parseManifest(text, { bundle, url });
  if (manifest.version !== version) {
    throw new UpdateError("manifest-invalid", { bundle, url, reason: `it is the manifest of version ${JSON.stringify(manifest.version)}, not ${version}` });
  }
  const parsedMs = performance.now() - started;
  const trusted = await keys;
  const checked = performance.now();
  await verifySignature(manifest, trusted);
  if (timings) timings.verifyMs = parsedMs + performance.now() - checked;
  return manifest;
}
