// Remote logging in the bundle worker (docs/telemetry.md): ctx.log lines uploaded to POST /api/logs,
// only while the device's check-in says logging is on for it (the page forwards that: WORKER.logging).
//
// While it is off nothing is kept: ctx.log prints to the console as always and that is all. While
// it is on at a level, the lines at or above it are kept (at most MAX_LINES, the oldest dropped)
// and uploaded at most every LOG_UPLOAD_MS, in uploads of at most 100 lines and 32 KiB, each line's
// message cut to 1 KiB, each upload with a uuid the server counts once. A 403 (the server says
// logging is off) turns it off here too; a network failure keeps the lines for the next try.
export { LOG_UPLOAD_MS, MAX_LINES, RemoteLog };

const LEVELS = ["debug", "info", "warning", "error"];
const LOG_UPLOAD_MS = 10_000;
const MAX_LINES = 500;
const LINES_PER_UPLOAD = 100;
const UPLOAD_BYTES = 32 * 1024;
const MESSAGE_BYTES = 1024;

/** @typedef {{t: number, level: string, logger: string, message: string}} Line */

/** A message cut to at most `bytes` UTF-8 bytes, on a character boundary. @param {string} text @param {number} bytes */
function cut(text, bytes) {
  const encoded = new TextEncoder().encode(text);
  if (encoded.length <= bytes) return text;
  return new TextDecoder().decode(encoded.slice(0, bytes)).replace(/\uFFFD$/, "");
}

class RemoteLog {
  /** @param {URL} url POST /api/logs */
  constructor(url) {
    this.url = url;
    /** @type {string | null} the level remote logging is on at; null: off */
    this.level = null;
    /** @type {{bundle: string, version: string} | null} the open bundle */
    this.bundle = null;
    /** @type {Line[]} */
    this.lines = [];
    this.dropped = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** @type {Promise<{sent: number, kept: number}> | null} */
    this.uploading = null;
    // What Python's ConsoleHandler calls with each line (py_src/waystation/device/hosts/log_browser.py).
    this.host = {
      /** @param {string} level @param {string} logger @param {string} message */
      line: (level, logger, message) => this.add(level, logger, message),
      /** Whether lines are wanted at all: Python formats nothing for us while it is off. */
      wanted: () => this.level !== null,
    };
  }

  /** @param {string | null} level */
  setLevel(level) {
    if (level !== null && !LEVELS.includes(level)) throw Object.assign(new Error(`remote logging level ${JSON.stringify(level)} is not one of ${LEVELS.join(", ")}`), { name: "invalid-argument" });
    this.level = level;
    if (level === null) this.lines = [];
  }

  status() {
    return { level: this.level, kept: this.lines.length, dropped: this.dropped };
  }

  /** @param {string} level @param {string} logger @param {string} message */
  add(level, logger, message) {
    if (this.level === null) return;
    const normalised = level === "critical" ? "error" : level;
    if (LEVELS.indexOf(normalised) < LEVELS.indexOf(this.level)) return;
    this.lines.push({ t: Date.now(), level: normalised, logger, message: cut(message, MESSAGE_BYTES) });
    if (this.lines.length > MAX_LINES) {
      this.dropped += this.lines.length - MAX_LINES;
      this.lines.splice(0, this.lines.length - MAX_LINES);
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.upload().catch(() => {});
    }, LOG_UPLOAD_MS);
  }

  /** Upload what is kept now, in as many uploads as it takes. @returns {Promise<{sent: number, kept: number}>} */
  upload() {
    this.uploading ??= this.drain().finally(() => {
      this.uploading = null;
    });
    return this.uploading;
  }

  async drain() {
    let sent = 0;
    while (this.lines.length && this.level !== null && this.bundle) {
      const batch = [];
      let bytes = 200; // the envelope
      for (const line of this.lines) {
        const size = new TextEncoder().encode(JSON.stringify(line)).length + 1;
        if (batch.length === LINES_PER_UPLOAD || bytes + size > UPLOAD_BYTES) break;
        batch.push(line);
        bytes += size;
      }
      const body = JSON.stringify({ schema: 1, id: crypto.randomUUID(), ...this.bundle, lines: batch });
      let response;
      try {
        response = await fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json" }, body });
      } catch {
        break; // offline: kept for the next try
      }
      if (response.status === 403) {
        this.setLevel(null); // the server has logging off for this bundle: so do we
        break;
      }
      if (response.status === 429 || response.status >= 500) break;
      this.lines.splice(0, batch.length); // accepted, or refused for good (400, 413): either way not sent again
      if (response.ok) sent += batch.length;
    }
    return { sent, kept: this.lines.length };
  }
}
