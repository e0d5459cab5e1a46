// The device's events and feature tables, in the worker: one SQLite database per account (and
// the device's own, for use without one), kept in the Origin Private File System and reached by
// Python's sqlite3 through a small Emscripten file system over OPFS sync access handles. Each
// file is an image in memory written through to its handle when SQLite syncs and when a write
// batch is reported done, so a batch whose add() resolved survives the tab being killed right
// after, and only the changed bytes are written (docs/NOTES.md has the measurements).
//
//   const data = new DeviceData(pyodide.FS);
//   pyodide.registerJsModule("_waystation_data", data.host);   // hosts/data_browser.py
//   await data.use("ada");          // the account's database (null: the device's own), before Python reads
//   await data.run(() => python()); // every use of the database: tabs of one origin take turns
//
// Tabs: each tab's worker opens the same files ("readwrite-unsafe" handles, Chromium 121+), and
// SQLite's own file locks do nothing in Emscripten, so a Web Lock makes the workers take turns:
// a worker holds it while it has any database work in flight and releases it when idle. SQLite
// notices another tab's commits by the change counter in the file header, as it would across
// processes, and drops its page cache then.

export { DATA_DIR, DeviceData, dataFolderName };

/** OPFS folder holding a folder per owner (dataFolderName), each holding the database files. */
const DATA_DIR = "waystation-data";
const DB_FILE = "data.sqlite3";
/** SQLite's rollback journal: in memory only, as the undo log makes each flush atomic (FileImage). */
const JOURNAL_FILE = `${DB_FILE}-journal`;
/** In OPFS beside the database: the bytes a flush is about to overwrite, until it is done. */
const UNDO_FILE = `${DB_FILE}-undo`;
const UNDO_MAGIC = new TextEncoder().encode("WSUNDO01");
/** Undo granularity: SQLite's default page size. */
const BLOCK = 4096;
/** Changed byte runs this close together are written to OPFS in one call. */
const MERGE_GAP = 64 * 1024;
/** Where the database is mounted in Python's file system. */
const MOUNT_ROOT = "/waystation-data";
const LOCK_NAME = "waystation-data";
/** How long the lock stays with this worker after its last use (see `run`). */
const LOCK_LINGER_MS = 50;

// Emscripten errno values (not POSIX numbers): ENOENT, EPERM, EINVAL.
const ENOENT = 44;
const EPERM = 63;
const EINVAL = 28;

/** @param {string | null} owner a user, or null for the device's own database */
function dataFolderName(owner) {
  return owner === null ? "device" : `user-${encodeURIComponent(owner)}`;
}

class DeviceData {
  /**
   * @param {any} FS Pyodide's Emscripten FS (pyodide.FS)
   * @param {() => any} [adopter] Python's waystation.device.data.adopt (imported when first needed):
   *   an account's first sign-in moves the device's events into it
   */
  constructor(FS, adopter) {
    this._FS = FS;
    this._adopter = adopter;
    /** @type {{moved: number, finished: boolean} | {error: string} | null} what the last move of the device's events did */
    this.adoption = null;
    /** @type {string | null | undefined} whose database is mounted; undefined: none yet */
    this._owner = undefined;
    /** @type {Map<string, FileImage>} file name -> its image, over the OPFS sync access handle */
    this._files = new Map();
    /** @type {string | null} */
    this._path = null;
    /** @type {(() => void) | null} Python's: close the connection before its files go */
    this._release = null;
    /** @type {Promise<void> | null} the Web Lock held while `_busy` > 0 */
    this._held = null;
    /** @type {(() => void) | null} */
    this._releaseLock = null;
    this._busy = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} the lock's release, once idle for LOCK_LINGER_MS */
    this._lingering = undefined;
    /** @type {Promise<void>} account switches, one after another */
    this._switching = Promise.resolve();
    const self = this;
    /** What Python calls (hosts/data_browser.py). */
    this.host = {
      /** The mounted database's path; throws when no database is mounted yet. */
      path() {
        if (self._path === null) throw new Error("the device database is not open yet (the worker mounts it before a bundle opens)");
        return self._path;
      },
      /** Write what the last commit left in memory to OPFS: the batch survives the tab from here on. */
      flush() {
        self._flush();
      },
      /** @param {(() => void) | null} release called before the mounted database goes away */
      onRelease(release) {
        self._release = release;
      },
    };
  }

  /** Whose database is mounted: a user, null for the device's own, undefined before use(). */
  get owner() {
    return this._owner;
  }

  /**
   * Mount `owner`'s database (null: the device's own), closing the one mounted before.
   * @param {string | null} owner
   */
  use(owner) {
    this._switching = this._switching.catch(() => {}).then(() => (owner === this._owner ? undefined : this.run(() => this._mount(owner))));
    return this._switching;
  }

  /**
   * Run `work` while this worker holds the origin's data lock (re-entrant: work already running
   * here keeps it, other tabs wait until this worker has none left).
   * @template T @param {() => Promise<T> | T} work @returns {Promise<T>}
   */
  async run(work) {
    this._busy++;
    clearTimeout(this._lingering);
    try {
      if (!this._held) this._held = this._acquire().then(() => this._refresh());
      await this._held;
      return await work();
    } finally {
      if (--this._busy === 0) {
        this._flush(); // durable now, and another tab reads the file next: all of it must be in OPFS
        // The lock itself is kept a moment: a page calling in a loop takes it once, not once per
        // call (measured at about a third of a small call's cost); another tab waits at most this.
        this._lingering = setTimeout(() => this._releaseIfIdle(), LOCK_LINGER_MS);
      }
    }
  }

  _releaseIfIdle() {
    if (this._busy) return;
    const release = this._releaseLock;
    this._held = null;
    this._releaseLock = null;
    release?.();
  }

  _flush() {
    for (const file of this._files.values()) file.flush();
  }

  /** Just after taking the lock: reload what another tab changed since this worker last held it. */
  _refresh() {
    const db = this._files.get(DB_FILE);
    if (!db) return;
    const recovered = recoverUndo(db.handle, db.undo); // a tab killed mid-flush
    if (recovered || db.changedOnDisk()) db.load();
  }

  _acquire() {
    return new Promise((resolve, reject) => {
      navigator.locks.request(LOCK_NAME, () => new Promise((done) => {
        this._releaseLock = () => done(undefined);
        resolve(undefined);
      })).catch(reject);
    });
  }

  /** @param {string | null} owner */
  async _mount(owner) {
    this._unmount();
    const { files, path } = await openFolder(this._FS, owner);
    this._files = files;
    this._path = path;
    this._owner = owner;
    if (owner !== null && this._adopter) await this._adopt();
  }

  /**
   * The first sign-in of an account on this device (its database has no event table yet): the
   * device's own events move into it, with their relay positions, then leave the device's
   * database; a move a killed tab left half done is finished here (py_src/.../data/adopt.py has
   * the steps and why each is safe). The device's database is mounted beside the account's only
   * for this. A move that fails is made again, or finished, at the next mount of the account's.
   */
  async _adopt() {
    try {
      const mover = /** @type {() => any} */ (this._adopter)();
      if (!mover.needs_device(this._path)) return;
      const device = await openFolder(this._FS, null);
      try {
        const images = { account: this._files, device: device.files };
        const flush = (/** @type {"account" | "device"} */ which) => images[which].get(DB_FILE)?.flush();
        this.adoption = JSON.parse(mover.adopt(this._path, device.path, flush));
      } finally {
        closeFolder(this._FS, device);
      }
    } catch (err) {
      this._adoptFailed(err);
    }
  }

  /** @param {unknown} err */
  _adoptFailed(err) {
    this.adoption = { error: /** @type {Error} */ (err)?.message ?? String(err) };
    console.warn(`moving this device's events into the account failed (tried again at the next sign-in): ${this.adoption.error}`);
  }

  _unmount() {
    if (this._path === null) return;
    this._release?.();
    closeFolder(this._FS, { files: this._files, path: this._path });
    this._files = new Map();
    this._path = null;
    this._owner = undefined;
  }
}

/**
 * Open `owner`'s database folder in OPFS and mount it in Python's file system.
 * @param {any} FS @param {string | null} owner
 * @returns {Promise<{files: Map<string, FileImage>, path: string}>} the images and the database's path
 */
async function openFolder(FS, owner) {
  const root = await navigator.storage.getDirectory();
  const dir = await (await root.getDirectoryHandle(DATA_DIR, { create: true })).getDirectoryHandle(dataFolderName(owner), { create: true });
  /** @type {any[]} */
  const handles = [];
  const files = new Map();
  try {
    for (const name of [DB_FILE, UNDO_FILE]) handles.push(await openHandle(await dir.getFileHandle(name, { create: true })));
    const [db, undo] = handles;
    recoverUndo(db, undo);
    files.set(DB_FILE, new FileImage(db, undo));
    files.set(JOURNAL_FILE, new FileImage(null));
  } catch (err) {
    for (const handle of handles) handle.close();
    throw Object.assign(new Error(`cannot open this device's database in OPFS: ${/** @type {Error} */ (err).message}`), { name: "storage-unavailable" });
  }
  const folder = `${MOUNT_ROOT}/${dataFolderName(owner)}`;
  FS.mkdirTree(folder);
  FS.mount(imageFS(FS, files), {}, folder);
  return { files, path: `${folder}/${DB_FILE}` };
}

/** Unmount a folder openFolder mounted, writing what is left to OPFS. @param {any} FS @param {{files: Map<string, FileImage>, path: string}} folder */
function closeFolder(FS, { files, path }) {
  FS.unmount(path.slice(0, path.lastIndexOf("/")));
  for (const file of files.values()) {
    file.flush();
    file.handle?.close();
    file.undo?.close();
  }
}

/**
 * A sync access handle that other tabs may open too; the Web Lock makes them take turns.
 * Exclusive mode where "readwrite-unsafe" is unknown (a second tab then fails to open the database).
 * @param {any} file a FileSystemFileHandle
 */
async function openHandle(file) {
  try {
    return await file.createSyncAccessHandle({ mode: "readwrite-unsafe" });
  } catch (err) {
    if (/** @type {Error} */ (err).name !== "TypeError") throw err;
    return await file.createSyncAccessHandle();
  }
}

/**
 * One file as SQLite sees it: an image in memory, written through to its sync access handle.
 * Every call on a handle crosses into the browser (0.3-0.7 ms each measured in headless Chromium,
 * where SQLite makes ~400 small writes per committed batch and ~1,500 page reads for a cold query
 * over 100,000 events), so reads come from the image and writes are gathered into contiguous
 * runs and written when Python reports a batch done (`durable()`), before the Web Lock goes to
 * another tab and at unmount: always between transactions. SQLite's own syncs never arrive here
 * (Emscripten's fdatasync does nothing), so a flush is made atomic by an undo log of its own: the
 * bytes it is about to overwrite go to UNDO_FILE first (marked complete last), then the changes,
 * then the log is emptied. A tab killed mid-flush leaves a complete log, which the next mount (or
 * the next tab to take the lock) plays back: OPFS always holds a committed state of the database.
 * A file without a handle (SQLite's journal) lives in memory only.
 */
class FileImage {
  /** @param {any} handle a FileSystemSyncAccessHandle, or null for a file in memory only @param {any} [undo] the undo log's handle */
  constructor(handle, undo = null) {
    this.handle = handle;
    this.undo = undo;
    /** @type {Map<number, Uint8Array>} block number -> its bytes in OPFS, for blocks changed since the last flush */
    this.saved = new Map();
    this.bytes = new Uint8Array(0);
    this.size = 0;
    /** @type {number} the file's size in OPFS */
    this.stored = 0;
    /** @type {[number, number][]} byte ranges written since the last flush, in write order */
    this.dirty = [];
    this.load();
  }

  /** Read the whole file from OPFS: at mount, and when another tab has changed it. */
  load() {
    const size = this.handle?.getSize() ?? 0;
    this.bytes = new Uint8Array(Math.max(size, 64 * 1024));
    if (size) this.handle.read(this.bytes.subarray(0, size), { at: 0 });
    this.size = this.stored = size;
    this.dirty = [];
    this.saved.clear();
  }

  /** Whether OPFS holds other bytes than the image (another tab committed): size and SQLite's change counter. */
  changedOnDisk() {
    if (!this.handle) return false;
    if (this.handle.getSize() !== this.stored) return true;
    if (this.size < 28) return false;
    const counter = new Uint8Array(4);
    this.handle.read(counter, { at: 24 });
    return counter.some((b, i) => b !== this.bytes[24 + i]);
  }

  /** @param {Int8Array} target @param {number} position */
  read(target, position) {
    const n = Math.max(0, Math.min(target.length, this.size - position));
    target.set(/** @type {any} */ (this.bytes.subarray(position, position + n)));
    return n;
  }

  /** @param {Int8Array} source @param {number} position */
  write(source, position) {
    const end = position + source.length;
    this._save(position, end);
    this._reserve(end);
    this.bytes.set(/** @type {any} */ (source), position);
    if (end > this.size) this.size = end;
    const last = this.dirty.at(-1);
    if (last && position <= last[1] && end >= last[0]) {
      last[0] = Math.min(last[0], position); // SQLite appends its journal: one run, not thousands
      last[1] = Math.max(last[1], end);
    } else this.dirty.push([position, end]);
    return source.length;
  }

  /** @param {number} size */
  truncate(size) {
    this._save(size, this.stored);
    this._reserve(size);
    if (size < this.size) this.bytes.fill(0, size, this.size);
    this.size = size;
  }

  /** Write what changed to OPFS, in as few calls as the runs allow, and flush the handle. */
  flush() {
    if (!this.handle || (this.dirty.length === 0 && this.stored === this.size)) return;
    if (this.undo) writeUndo(this.undo, this.saved, this.stored);
    const runs = this.dirty.sort((a, b) => a[0] - b[0]);
    let i = 0;
    while (i < runs.length) {
      // Runs closer than MERGE_GAP go in one write: the bytes between are the image's, which
      // OPFS already holds, and a call costs about what copying 64-90 KiB does (measured).
      let [start, end] = runs[i++];
      while (i < runs.length && runs[i][0] <= end + MERGE_GAP) end = Math.max(end, runs[i++][1]);
      end = Math.min(end, this.size);
      if (start < end) this.handle.write(this.bytes.subarray(start, end), { at: start });
      this.stored = Math.max(this.stored, end);
    }
    if (this.stored !== this.size) this.handle.truncate(this.size);
    this.stored = this.size;
    this.dirty = [];
    this.handle.flush();
    if (this.undo) {
      this.undo.truncate(0);
      this.undo.flush();
      this.saved.clear();
    }
  }

  /** Keep the stored bytes of the blocks in [start, end) that this flush will overwrite. @param {number} start @param {number} end */
  _save(start, end) {
    if (!this.undo) return;
    for (let block = Math.floor(start / BLOCK); block * BLOCK < Math.min(end, this.stored); block++) {
      if (!this.saved.has(block)) this.saved.set(block, this.bytes.slice(block * BLOCK, Math.min((block + 1) * BLOCK, this.stored)));
    }
  }

  /** @param {number} size */
  _reserve(size) {
    if (size <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(size, Math.ceil(this.bytes.length * 1.5)));
    grown.set(this.bytes.subarray(0, this.size));
    this.bytes = grown;
  }
}

/**
 * Write the undo log: [magic][stored size: f64] then per block [offset: f64][length: u32][bytes];
 * the magic last, once the rest is flushed, so a log cut short is never played back.
 * @param {any} undo @param {Map<number, Uint8Array>} saved @param {number} stored
 */
function writeUndo(undo, saved, stored) {
  let total = 16;
  for (const bytes of saved.values()) total += 12 + bytes.length;
  const log = new Uint8Array(total);
  const view = new DataView(log.buffer);
  view.setFloat64(8, stored, true);
  let at = 16;
  for (const [block, bytes] of saved) {
    view.setFloat64(at, block * BLOCK, true);
    view.setUint32(at + 8, bytes.length, true);
    log.set(bytes, at + 12);
    at += 12 + bytes.length;
  }
  undo.truncate(0);
  undo.write(log, { at: 0 });
  undo.flush();
  undo.write(UNDO_MAGIC, { at: 0 });
  undo.flush();
}

/**
 * Play back an undo log a killed flush left (the database returns to the state before that
 * flush, a committed one) and empty it; an incomplete log is dropped, the database untouched.
 * @param {any} db @param {any} undo @returns {boolean} whether a log was played back
 */
function recoverUndo(db, undo) {
  const size = undo.getSize();
  if (size === 0) return false;
  const log = new Uint8Array(size);
  undo.read(log, { at: 0 });
  const complete = size >= 16 && UNDO_MAGIC.every((b, i) => log[i] === b);
  if (complete) {
    const view = new DataView(log.buffer);
    let at = 16;
    while (at + 12 <= size) {
      const length = view.getUint32(at + 8, true);
      db.write(log.subarray(at + 12, at + 12 + length), { at: view.getFloat64(at, true) });
      at += 12 + length;
    }
    db.truncate(view.getFloat64(8, true));
    db.flush();
  }
  undo.truncate(0);
  undo.flush();
  return complete;
}

/**
 * An Emscripten file system of one folder whose files are the given images: MEMFS for the folder,
 * each file's reads, writes, size and fsync on its image. Files other than these cannot be
 * created; deleting one empties it (an empty journal is no journal to SQLite). A file "exists"
 * while it is open here or not empty, so a journal a killed tab left is found and rolled back
 * like a hot journal after a crash.
 * @param {any} FS @param {Map<string, FileImage>} files
 */
function imageFS(FS, files) {
  const MEMFS = FS.filesystems.MEMFS;
  const fail = (/** @type {number} */ errno) => {
    throw new FS.ErrnoError(errno);
  };

  const fileNodeOps = {
    getattr(/** @type {any} */ node) {
      const attr = MEMFS.node_ops.getattr(node);
      attr.size = node.image.size;
      attr.blocks = Math.ceil(attr.size / attr.blksize);
      return attr;
    },
    setattr(/** @type {any} */ node, /** @type {any} */ attr) {
      for (const key of ["mode", "atime", "mtime", "ctime"]) if (attr[key] != null) node[key] = attr[key];
      if (attr.size !== undefined) node.image.truncate(attr.size);
    },
  };

  const fileStreamOps = {
    llseek(/** @type {any} */ stream, /** @type {number} */ offset, /** @type {number} */ whence) {
      let position = offset;
      if (whence === 1) position += stream.position;
      else if (whence === 2) position += stream.node.image.size;
      if (position < 0) fail(EINVAL);
      return position;
    },
    read(/** @type {any} */ stream, /** @type {Int8Array} */ buffer, /** @type {number} */ offset, /** @type {number} */ length, /** @type {number} */ position) {
      return stream.node.image.read(buffer.subarray(offset, offset + length), position);
    },
    write(/** @type {any} */ stream, /** @type {Int8Array} */ buffer, /** @type {number} */ offset, /** @type {number} */ length, /** @type {number} */ position) {
      return stream.node.image.write(buffer.subarray(offset, offset + length), position);
    },
    fsync(/** @type {any} */ stream) {
      stream.node.image.flush();
      return 0;
    },
  };

  /** @param {any} parent @param {string} name */
  function fileNode(parent, name) {
    const node = MEMFS.createNode(parent, name, 0o100666, 0);
    node.image = files.get(name);
    node.node_ops = fileNodeOps;
    node.stream_ops = fileStreamOps;
    return node;
  }

  const dirNodeOps = {
    getattr: MEMFS.node_ops.getattr,
    setattr: MEMFS.node_ops.setattr,
    readdir: MEMFS.node_ops.readdir,
    lookup(/** @type {any} */ parent, /** @type {string} */ name) {
      if ((files.get(name)?.size ?? 0) > 0) return fileNode(parent, name);
      return fail(ENOENT);
    },
    mknod(/** @type {any} */ parent, /** @type {string} */ name, /** @type {number} */ mode) {
      if (!files.has(name) || !FS.isFile(mode)) return fail(EPERM);
      return fileNode(parent, name);
    },
    unlink(/** @type {any} */ parent, /** @type {string} */ name) {
      files.get(name)?.truncate(0);
      delete parent.contents[name];
    },
    rename: () => fail(EPERM),
    rmdir: () => fail(EPERM),
    symlink: () => fail(EPERM),
  };

  return {
    mount() {
      const root = MEMFS.createNode(null, "/", 0o40777, 0);
      root.node_ops = dirNodeOps;
      return root;
    },
  };
}
