// The bundle store in IndexedDB: chunks by hash, versions by [name, version], and one
// pointer record per bundle naming its active, previous and staged versions. Activation and
// rollback rewrite the pointer record in one transaction, so a device is always on exactly one
// complete version; garbage collection keeps the chunks of the versions some pointer names.
//
//   chunks    sha256 -> ArrayBuffer                   (shared by every version and bundle)
//   versions  [name, version] -> {manifest: text, state, size, storedAt}
//             state: fetching -> verified (chunks and files checked) -> ready (smoke check passed,
//             active on next load) -> installed (active or previous)
//   pointers  name -> {name, active, previous, staged}
//   meta      "device" -> the device id sent to the channel API
//             "follow:NAME" -> {channel, updates}: what the page that opened NAME last asked for
//             (background check-ins ask that channel, and stage per `updates`, sw/checkin.js)
//             "revoked:NAME" -> [version, ...]: NAME's revoked versions, as the last check-in said

import { openDB } from "./vendor/idb.js";
import { UpdateError } from "./errors.js";

export { BundleStore };

/**
 * @typedef {{name: string, active: string | null, previous: string | null, staged: string | null}} Pointers
 * @typedef {{channel: string, updates: "now" | "next-load" | "ask" | "off"}} Follow
 * @typedef {{name: string, version: string, manifest: string, state: string, size: number, storedAt: number}} VersionRecord
 * @typedef {import("./verify.js").Manifest} Manifest
 */

const DB_NAME = "waystation-bundles";
const COMPLETE = new Set(["verified", "ready", "installed"]);

class BundleStore {
  /** @param {import("./vendor/idb.js").IDBPDatabase} db */
  constructor(db) {
    this.db = db;
    /** @type {Map<string, Manifest>} parsed manifests by "name@version": versions never change */
    this._manifests = new Map();
    /** Whether the connection was closed under us (see `open`): then open another store. */
    this.closed = false;
  }

  static async open(name = DB_NAME) {
    /** @type {BundleStore | null} */
    let store = null;
    const db = await openDB(name, 1, {
      upgrade(db) {
        db.createObjectStore("chunks");
        db.createObjectStore("versions", { keyPath: ["name", "version"] });
        db.createObjectStore("pointers", { keyPath: "name" });
        db.createObjectStore("meta");
      },
      // Another context wants a newer schema: let it; whoever holds this store opens a new one.
      blocking() {
        db.close();
        if (store) store.closed = true;
      },
      terminated() {
        if (store) store.closed = true;
      },
    });
    store = new BundleStore(db);
    return store;
  }

  close() {
    this.db.close();
    this.closed = true;
  }

  /** @returns {Promise<Pointers>} */
  async pointers(/** @type {string} */ name) {
    return (await this.db.get("pointers", name)) ?? { name, active: null, previous: null, staged: null };
  }

  /** @returns {Promise<VersionRecord | undefined>} */
  async version(/** @type {string} */ name, /** @type {string} */ version) {
    return this.db.get("versions", [name, version]);
  }

  /** The parsed manifest of a stored version, if it is stored. */
  async manifest(/** @type {string} */ name, /** @type {string} */ version) {
    const key = `${name}@${version}`;
    if (!this._manifests.has(key)) {
      const record = await this.version(name, version);
      if (!record) return undefined;
      this._manifests.set(key, JSON.parse(record.manifest));
    }
    return this._manifests.get(key);
  }

  /** Which of `chunks` ({sha256: size}) are not stored yet. */
  async missing(/** @type {Map<string, number>} */ chunks) {
    const tx = this.db.transaction("chunks");
    const present = await Promise.all([...chunks.keys()].map((sha) => tx.store.getKey(sha)));
    await tx.done;
    return [...chunks].filter((_, i) => present[i] === undefined);
  }

  async putChunk(/** @type {string} */ sha256, /** @type {Uint8Array} */ bytes) {
    try {
      await this.db.put("chunks", bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer, sha256);
    } catch (err) {
      throw storageError(err);
    }
  }

  /** A file of a complete version, assembled from its chunks; undefined if not stored. */
  async readFile(/** @type {string} */ name, /** @type {string} */ version, /** @type {string} */ path) {
    const record = await this.version(name, version);
    const manifest = record && COMPLETE.has(record.state) ? await this.manifest(name, version) : undefined;
    const file = manifest?.files.find((f) => f.path === path);
    return file ? this.assemble(file, name, version) : undefined;
  }

  /** A file's bytes from its chunks, in order (not checked: see verify.js). */
  async assemble(/** @type {import("./verify.js").FileEntry} */ file, /** @type {string} */ name, /** @type {string} */ version) {
    const tx = this.db.transaction("chunks");
    const parts = await Promise.all(file.chunks.map(([sha]) => tx.store.get(sha)));
    await tx.done;
    const bytes = new Uint8Array(file.size);
    let offset = 0;
    for (const [i, part] of parts.entries()) {
      if (!part) throw new UpdateError("not-installed", { bundle: name, version, detail: `chunk ${file.chunks[i][0].slice(0, 16)}… of ${file.path} is gone` });
      bytes.set(new Uint8Array(part), offset);
      offset += part.byteLength;
    }
    return bytes;
  }

  /**
   * Record `version` as the staged one (before any of its chunks is stored, so that garbage
   * collection keeps them), unless it is already stored complete; returns its state.
   * @param {string} name @param {string} version @param {string} manifestText @param {number} size
   */
  async stage(name, version, manifestText, size) {
    const tx = this.db.transaction(["pointers", "versions"], "readwrite");
    const pointers = (await tx.objectStore("pointers").get(name)) ?? { name, active: null, previous: null, staged: null };
    /** @type {VersionRecord | undefined} */
    let record = await tx.objectStore("versions").get([name, version]);
    if (!record || record.manifest !== manifestText) {
      record = { name, version, manifest: manifestText, state: "fetching", size, storedAt: Date.now() };
      await tx.objectStore("versions").put(record);
      this._manifests.delete(`${name}@${version}`);
    }
    if (pointers.active !== version) await tx.objectStore("pointers").put({ ...pointers, staged: version });
    await tx.done;
    return record.state;
  }

  async setState(/** @type {string} */ name, /** @type {string} */ version, /** @type {string} */ state) {
    const tx = this.db.transaction("versions", "readwrite");
    const record = await tx.store.get([name, version]);
    if (record) await tx.store.put({ ...record, state });
    await tx.done;
  }

  /**
   * Make a complete version active in one transaction: the active one becomes previous (unless it
   * was revoked), the one previous before is let go (garbage collection takes its chunks).
   * @returns {Promise<Pointers>} the pointers before
   */
  async activate(/** @type {string} */ name, /** @type {string} */ version) {
    const tx = this.db.transaction(["pointers", "versions", "meta"], "readwrite");
    const pointers = (await tx.objectStore("pointers").get(name)) ?? { name, active: null, previous: null, staged: null };
    const record = await tx.objectStore("versions").get([name, version]);
    if (!record || !COMPLETE.has(record.state)) {
      abort(tx);
      throw new UpdateError("not-staged", { bundle: name, version, staged: pointers.staged });
    }
    const revoked = /** @type {string[]} */ ((await tx.objectStore("meta").get(`revoked:${name}`)) ?? []);
    const kept = pointers.active === version ? pointers.previous : pointers.active;
    const previous = kept && !revoked.includes(kept) ? kept : null;
    await tx.objectStore("pointers").put({ name, active: version, previous, staged: pointers.staged === version ? null : pointers.staged });
    await tx.objectStore("versions").put({ ...record, state: "installed" });
    await tx.done;
    return pointers;
  }

  /** The staged version passed its smoke check: it becomes active on the next load. */
  async markReady(/** @type {string} */ name, /** @type {string} */ version) {
    const tx = this.db.transaction(["pointers", "versions"], "readwrite");
    const pointers = await tx.objectStore("pointers").get(name);
    const record = await tx.objectStore("versions").get([name, version]);
    if (pointers?.staged !== version || !record || !COMPLETE.has(record.state)) {
      abort(tx);
      throw new UpdateError("not-staged", { bundle: name, version, staged: pointers?.staged });
    }
    await tx.objectStore("versions").put({ ...record, state: "ready" });
    await tx.done;
  }

  /**
   * Activate the staged version if it passed its smoke check for the next load; returns the
   * active version. Only the page opening the bundle calls this (the "install" request): reads
   * of what is active (`pointers`, latest.json) never activate anything.
   */
  async promoteReady(/** @type {string} */ name) {
    const pointers = await this.pointers(name);
    const staged = pointers.staged && (await this.version(name, pointers.staged));
    if (staged?.state !== "ready") return pointers.active;
    await this.activate(name, staged.version);
    await this.collectGarbage();
    return staged.version;
  }

  /** Go back to the previous version in one transaction; the version left is let go. */
  async rollback(/** @type {string} */ name) {
    const tx = this.db.transaction("pointers", "readwrite");
    const pointers = await tx.store.get(name);
    if (!pointers?.previous) {
      abort(tx);
      throw new UpdateError("no-previous-version", { bundle: name });
    }
    await tx.store.put({ ...pointers, active: pointers.previous, previous: null });
    await tx.done;
    return { from: pointers.active, to: pointers.previous };
  }

  /** Drop a staged version (it failed its smoke check, or was replaced). */
  async discard(/** @type {string} */ name, /** @type {string} */ version) {
    const tx = this.db.transaction("pointers", "readwrite");
    const pointers = await tx.store.get(name);
    if (pointers?.staged === version) await tx.store.put({ ...pointers, staged: null });
    await tx.done;
  }

  /**
   * Delete the versions no pointer names, and the chunks none of the kept versions uses.
   * One transaction over the three stores, so it never races a staging or an activation.
   */
  async collectGarbage() {
    const tx = this.db.transaction(["pointers", "versions", "chunks"], "readwrite");
    const kept = new Set();
    for (const p of await tx.objectStore("pointers").getAll()) {
      for (const v of [p.active, p.previous, p.staged]) if (v) kept.add(`${p.name}@${v}`);
    }
    const used = new Set();
    for (const record of await tx.objectStore("versions").getAll()) {
      const key = `${record.name}@${record.version}`;
      if (!kept.has(key)) {
        await tx.objectStore("versions").delete([record.name, record.version]);
        this._manifests.delete(key);
        continue;
      }
      for (const file of JSON.parse(record.manifest).files) for (const [sha] of file.chunks) used.add(sha);
    }
    let deleted = 0;
    for (const sha of await tx.objectStore("chunks").getAllKeys()) {
      if (!used.has(sha)) {
        await tx.objectStore("chunks").delete(sha);
        deleted += 1;
      }
    }
    await tx.done;
    return { deletedChunks: deleted };
  }

  /** What the device holds of a bundle: pointers, versions with their states, stored chunks. */
  async describe(/** @type {string} */ name) {
    const pointers = await this.pointers(name);
    const records = (await this.db.getAll("versions")).filter((r) => r.name === name);
    const stored = new Set(await this.db.getAllKeys("chunks"));
    const versions = records.map((r) => {
      const chunks = new Map(JSON.parse(r.manifest).files.flatMap((/** @type {any} */ f) => f.chunks));
      const have = [...chunks].filter(([sha]) => stored.has(/** @type {string} */ (sha)));
      return {
        version: r.version, state: r.state, size: r.size,
        chunks: { stored: have.length, total: chunks.size },
        bytes: { stored: have.reduce((n, [, s]) => n + Number(s), 0), total: [...chunks.values()].reduce((n, s) => Number(n) + Number(s), 0) },
      };
    });
    return { ...pointers, versions, storedChunks: [...stored].map(String).sort() };
  }

  /**
   * Stop using revoked versions, in one transaction: a revoked active version gives way to the
   * newest held one that is not revoked (the previous one, or a staged one that passed its smoke
   * check), and revoked previous or staged versions are let go (rollback never goes back to one).
   * Returns the active version before and after; `to` is the revoked one still when nothing else is held.
   * @param {string} name @param {Set<string>} revoked
   * @returns {Promise<{from: string | null, to: string | null}>}
   */
  async leaveRevoked(name, revoked) {
    const tx = this.db.transaction(["pointers", "versions"], "readwrite");
    const pointers = await tx.objectStore("pointers").get(name);
    if (!pointers) {
      await tx.done;
      return { from: null, to: null };
    }
    const usable = async (/** @type {string | null} */ version, /** @type {Set<string>} */ states) => {
      if (!version || revoked.has(version)) return null;
      const record = await tx.objectStore("versions").get([name, version]);
      return record && states.has(record.state) ? version : null;
    };
    const previous = await usable(pointers.previous, COMPLETE);
    const staged = await usable(pointers.staged, COMPLETE);
    const next = { ...pointers, previous, staged };
    if (pointers.active && revoked.has(pointers.active)) {
      const ready = await usable(staged, new Set(["ready"]));
      const [newest] = [previous, ready].filter((v) => v !== null).sort((a, b) => compareVersions(b, a));
      if (newest) {
        const record = await tx.objectStore("versions").get([name, newest]);
        await tx.objectStore("versions").put({ ...record, state: "installed" });
        Object.assign(next, { active: newest, previous: newest === previous ? null : previous, staged: newest === staged ? null : staged });
      }
    }
    if (next.active !== pointers.active || next.previous !== pointers.previous || next.staged !== pointers.staged) {
      await tx.objectStore("pointers").put(next);
    }
    await tx.done;
    return { from: pointers.active, to: next.active };
  }

  /** What a page last asked background check-ins of `name` to follow; undefined if none did. */
  async following(/** @type {string} */ name) {
    return /** @type {Promise<Follow | undefined>} */ (this.db.get("meta", `follow:${name}`));
  }

  async follow(/** @type {string} */ name, /** @type {Follow} */ follow) {
    await this.db.put("meta", follow, `follow:${name}`);
  }

  /** The bundles some page opened under this service worker: those its own start checks in. */
  async followed() {
    const keys = await this.db.getAllKeys("meta");
    return keys.map(String).filter((k) => k.startsWith("follow:")).map((k) => k.slice("follow:".length));
  }

  /** `name`'s revoked versions, as the last check-in listed them (kept for offline starts). */
  async revoked(/** @type {string} */ name) {
    return /** @type {string[]} */ ((await this.db.get("meta", `revoked:${name}`)) ?? []);
  }

  async setRevoked(/** @type {string} */ name, /** @type {string[]} */ versions) {
    await this.db.put("meta", versions, `revoked:${name}`);
  }

  /** This device's id for staged rollouts: made once, kept with the bundles. */
  async deviceId() {
    const tx = this.db.transaction("meta", "readwrite");
    let id = await tx.store.get("device");
    if (!id) {
      id = crypto.randomUUID();
      await tx.store.put(id, "device");
    }
    await tx.done;
    return /** @type {string} */ (id);
  }
}

/** Semver order of release numbers ("1.0.10" after "1.0.9"), then by text. @param {string} a @param {string} b */
function compareVersions(a, b) {
  const parse = (/** @type {string} */ v) => v.split("-")[0].split(".").map(Number);
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** IndexedDB's QuotaExceededError becomes the update error a page can act on. */
function storageError(/** @type {unknown} */ err) {
  if (err instanceof DOMException && err.name === "QuotaExceededError") return new UpdateError("quota-exceeded", {});
  return err;
}

/** Abort a transaction whose outcome is an error of our own, not IndexedDB's AbortError. */
function abort(/** @type {{abort: () => void, done: Promise<void>}} */ tx) {
  tx.done.catch(() => {});
  tx.abort();
}
