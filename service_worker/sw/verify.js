// Checking what the server sends before it is stored: a manifest's shape and Ed25519 signature,
// and the SHA-256 of chunks and files, all with WebCrypto. The signed bytes are the canonical
// JSON defined in py_src/waystation/device/manifest.py: the manifest without its signature,
// keys sorted, no whitespace, UTF-8; JSON.stringify of a key-sorted copy gives the same bytes.

import { UpdateError } from "./errors.js";

export { canonicalJson, parseManifest, prepareKeys, sha256Hex, verifySignature };

/**
 * @typedef {{path: string, size: number, sha256: string, chunks: [string, number][]}} FileEntry
 * @typedef {{format: 2, name: string, version: string, parent: string | null, runtime: string, workflow: string,
 *   files: FileEntry[], models: Record<string, any>, signature?: {alg: string, key: string, value: string}}} Manifest
 * @typedef {{id: string, alg: string, publicKey: string}} TrustedKey
 */

const SHA256 = /^[0-9a-f]{64}$/;
const SEMVER = /^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$/;
const SAFE_PATH = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$/;

async function sha256Hex(/** @type {BufferSource} */ bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The canonical JSON text of a value: objects with their keys in sorted order, no whitespace. */
function canonicalJson(/** @type {unknown} */ value) {
  return JSON.stringify(sortKeys(value));
}

/** @returns {unknown} */
function sortKeys(/** @type {unknown} */ value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortKeys(v)]));
}

/**
 * Parse a manifest and check what the device relies on: its name, version and files.
 * @param {string} text
 * @param {{bundle: string, url: string}} where
 * @returns {Manifest}
 */
function parseManifest(text, { bundle, url }) {
  const fail = (/** @type {string} */ reason) => new UpdateError("manifest-invalid", { bundle, url, reason });
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw fail(`not JSON (${/** @type {Error} */ (err).message})`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw fail("not a JSON object");
  if (data.format !== 2) throw fail(`format ${JSON.stringify(data.format)} is not supported (expected 2)`);
  if (data.name !== bundle) throw fail(`it is the manifest of ${JSON.stringify(data.name)}`);
  for (const key of ["version", "runtime"]) {
    if (typeof data[key] !== "string" || !SEMVER.test(data[key])) throw fail(`${key} ${JSON.stringify(data[key])} is not semver`);
  }
  if (!Array.isArray(data.files)) throw fail("it has no files list");
  const paths = new Set();
  for (const file of data.files) checkFile(file, paths, fail);
  if (!paths.has(data.workflow)) throw fail(`its workflow ${JSON.stringify(data.workflow)} is not among its files`);
  return data;
}

/**
 * @param {any} file
 * @param {Set<string>} paths
 * @param {(reason: string) => Error} fail
 */
function checkFile(file, paths, fail) {
  const path = file?.path;
  if (typeof path !== "string" || !SAFE_PATH.test(path) || path.split("/").includes("..")) throw fail(`file path ${JSON.stringify(path)} is not safe`);
  if (paths.has(path)) throw fail(`file ${path} is listed twice`);
  paths.add(path);
  if (!Number.isSafeInteger(file.size) || file.size < 0 || typeof file.sha256 !== "string" || !SHA256.test(file.sha256)) {
    throw fail(`file ${path} has no valid size and sha256`);
  }
  if (!Array.isArray(file.chunks)) throw fail(`file ${path} has no chunks list`);
  let total = 0;
  for (const chunk of file.chunks) {
    if (!Array.isArray(chunk) || chunk.length !== 2 || !SHA256.test(chunk[0]) || !Number.isSafeInteger(chunk[1]) || chunk[1] <= 0) {
      throw fail(`file ${path} has a chunk that is not [sha256, size > 0]`);
    }
    total += chunk[1];
  }
  if (total !== file.size) throw fail(`the chunks of ${path} add up to ${total} bytes, not its size ${file.size}`);
}

/**
 * Refuse a manifest unless one of `trustedKeys` signed exactly its canonical JSON.
 * @param {Manifest} manifest
 * @param {TrustedKey[]} trustedKeys from boot.json
 */
async function verifySignature(manifest, trustedKeys) {
  const refuse = (/** @type {string} */ reason) => new UpdateError("signature-invalid", { bundle: manifest.name, version: manifest.version, reason });
  const signature = manifest.signature;
  if (!signature || signature.alg !== "Ed25519" || typeof signature.value !== "string") throw refuse("it carries no Ed25519 signature");
  const trusted = trustedKeys.find((k) => k.id === signature.key && k.alg === "Ed25519");
  if (!trusted) throw refuse(`it is signed by key ${signature.key}, which this app does not trust (trusted: ${trustedKeys.map((k) => k.id).join(", ") || "none"})`);
  const { signature: _, ...unsigned } = manifest;
  const payload = new TextEncoder().encode(canonicalJson(unsigned));
  const key = await importKey(trusted).catch((err) => { throw refuse(err.message); });
  let ok = false;
  try {
    ok = await crypto.subtle.verify({ name: "Ed25519" }, key, fromBase64(signature.value), payload);
  } catch (err) {
    throw refuse(`its signature cannot be checked (${/** @type {Error} */ (err).message})`);
  }
  if (!ok) throw refuse(`its signature does not verify with key ${signature.key}: the manifest was changed after it was signed`);
}

/** @type {Map<string, Promise<CryptoKey>>} each trusted key, checked against its id and imported once */
const imported = new Map();

/**
 * Check and import `trustedKeys` ahead of the first manifest (a worker does it while Python
 * boots): the check of a manifest is then one verify.
 * @param {TrustedKey[]} trustedKeys
 */
function prepareKeys(trustedKeys) {
  for (const key of trustedKeys) if (key.alg === "Ed25519") importKey(key).catch(() => {});
}

/** @param {TrustedKey} trusted @returns {Promise<CryptoKey>} */
function importKey(trusted) {
  const cacheKey = `${trusted.id}:${trusted.publicKey}`;
  let key = imported.get(cacheKey);
  if (!key) {
    key = (async () => {
      const raw = fromBase64(trusted.publicKey);
      if ((await sha256Hex(raw)).slice(0, 16) !== trusted.id) throw new Error(`trusted key ${trusted.id} in boot.json does not match its id`);
      try {
        return await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
      } catch (err) {
        throw new Error(`its signature cannot be checked (${/** @type {Error} */ (err).message})`);
      }
    })();
    imported.set(cacheKey, key);
  }
  return key;
}

function fromBase64(/** @type {string} */ text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
