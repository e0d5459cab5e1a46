// What can go wrong with a bundle on the device, as codes plus a message table (after
// Workbox's WorkboxError and messages.js). The code travels to the page as the name of a
// WaystationError; the message says what happened and what state the device is left in.

export { UpdateError };

/** @type {Record<string, (d: any) => string>} */
const MESSAGES = {
  "not-found": (d) => `no version of bundle "${d.bundle}" to fetch: ${d.detail}`,
  "not-installed": (d) => `${d.bundle} ${d.version} is not stored complete on this device${d.detail ? ` (${d.detail})` : ""}`,
  "network": (d) => `the network failed while fetching ${d.url}${d.detail ? ` (${d.detail})` : ""}`,
  "timeout": (d) => `the server stalled: ${d.url} did not arrive within ${d.ms} ms`,
  "server-error": (d) => `the server answered HTTP ${d.status} for ${d.url}`,
  "manifest-invalid": (d) => `the manifest of ${d.bundle} from ${d.url} is not valid: ${d.reason}`,
  "signature-invalid": (d) => `the manifest of ${d.bundle} ${d.version} is refused: ${d.reason}`,
  "incompatible": (d) => `${d.bundle} ${d.version} needs Waystation ${d.runtime} or newer; this app is ${d.have}`,
  "chunk-corrupt": (d) => `chunk ${d.sha256.slice(0, 16)}… of ${d.path} does not match its sha256, ${d.attempts} times`,
  "file-corrupt": (d) => `file ${d.path} assembled from its chunks does not match its sha256 in the manifest`,
  "quota-exceeded": (d) => `storage is full: the update needs ${kib(d.need)} more, and ${d.free === undefined ? "the browser refused to store it" : `only ${kib(d.free)} of the ${kib(d.quota)} quota are free`}`,
  "no-previous-version": (d) => `${d.bundle} has no previous version on this device to roll back to`,
  "not-staged": (d) => `${d.bundle} ${d.version} is not staged on this device (staged: ${d.staged ?? "nothing"})`,
  "revoked": (d) => `${d.bundle} ${d.version} was revoked by its publisher and no earlier version is on this device`,
  "smoke-check-failed": (d) => `${d.bundle} ${d.version} failed its smoke check: ${d.reason}`,
  "unsupported": (d) => d.reason,
};

class UpdateError extends Error {
  /**
   * @param {string} code a key of MESSAGES, e.g. "chunk-corrupt"
   * @param {Record<string, any>} details what the message is made of
   * @param {string} [suffix] what state the device is in now, e.g. "1.0.0 stays active"
   */
  constructor(code, details = {}, suffix = "") {
    const message = (MESSAGES[code] ?? ((/** @type {any} */ d) => d.reason ?? code))(details);
    super(suffix ? `${message}; ${suffix}` : message);
    this.name = code;
    this.code = code;
    this.details = details;
  }

  /** Another error with the same code and details, and what state the device is left in. */
  withSuffix(/** @type {string} */ suffix) {
    return new UpdateError(this.code, this.details, suffix);
  }

  /** What crosses postMessage to the page. */
  toJSON() {
    return { type: this.code, message: this.message, details: this.details };
  }
}

function kib(/** @type {number} */ bytes) {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
