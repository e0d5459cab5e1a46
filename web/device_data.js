// The device's events and feature tables, in the worker: one SQLite database per account (and
// the device's own, for use without one), kept in the Origin Private File System and reached by
// Python's sqlite3 through a small Emscripten file system whose files are OPFS sync access
// handles. Every write SQLite makes goes straight to the OPFS file and its fsync is the handle's
// flush(), so a committed transaction survives the tab being killed right after; nothing is
// loaded at start-up, whatever the size of the database (docs/NOTES.md has the measurements).
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
/** SQLite's other file next to the database: its rollback journal (the only one in journal_mode=DELETE). */
const FILES = [DB_FILE, `${DB_FILE}-journal`];
/** Where the database is mounted in Python's file system. */
const MOUNT_ROOT = "/waystation-data";
const LOCK_NAME = "waystation-data";

// Emscripten errno values (not POSIX numbers): ENOENT, EPERM, EINVAL.
const ENOENT = 44;
const EPERM = 63;
const EINVAL = 28;

/** @param {string | null} owner a user, or null for the device's own database */
function dataFolderName(owner) {
  return owner === null ? "device" : `user-${encodeURIComponent(owner)}`;
}

class DeviceData {
  /** @param {any} FS Pyodide's Emscripten FS (pyodide.FS) */
  constructor(FS) {
    this._FS = FS;
    /** @type {string | null | undefined} whose database is mounted; undefined: none yet */
    this._owner = undefined;
    /** @type {Map<string, any>} file name -> FileSystemSyncAccessHandle of the mounted folder */
    this._handles = new Map();
    /** @type {string | null} */
    this._path = null;
    /** @type {(() => void) | null} Python's: close the connection before its files go */
    this._release = null;
    /** @type {Promise<void> | null} the Web Lock held while `_busy` > 0 */
    this._held = null;
    /** @type {(() => void) | null} */
    this._releaseLock = null;
    this._busy = 0;
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
      /** Flush the handles: SQLite already does at each commit (fsync), this makes it explicit. */
      flush() {
        for (const handle of self._handles.values()) handle.flush();
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
    try {
      if (!this._held) this._held = this._acquire();
      await this._held;
      return await work();
    } finally {
      if (--this._busy === 0) {
        const release = this._releaseLock;
        this._held = null;
        this._releaseLock = null;
        release?.();
      }
    }
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
    const root = await navigator.storage.getDirectory();
    const dir = await (await root.getDirectoryHandle(DATA_DIR, { create: true })).getDirectoryHandle(dataFolderName(owner), { create: true });
    const handles = new Map();
    try {
      for (const name of FILES) handles.set(name, await openHandle(await dir.getFileHandle(name, { create: true })));
    } catch (err) {
      for (const handle of handles.values()) handle.close();
      throw Object.assign(new Error(`cannot open this device's database in OPFS: ${/** @type {Error} */ (err).message}`), { name: "storage-unavailable" });
    }
    const path = `${MOUNT_ROOT}/${dataFolderName(owner)}`;
    this._FS.mkdirTree(path);
    this._FS.mount(handleFS(this._FS, handles), {}, path);
    this._handles = handles;
    this._path = `${path}/${DB_FILE}`;
    this._owner = owner;
  }

  _unmount() {
    if (this._path === null) return;
    this._release?.();
    this._FS.unmount(this._path.slice(0, this._path.lastIndexOf("/")));
    for (const handle of this._handles.values()) handle.close();
    this._handles = new Map();
    this._path = null;
    this._owner = undefined;
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
 * An Emscripten file system of one folder whose files are the given sync access handles: MEMFS
 * for the folder, each file's reads, writes, size and fsync on its handle. Files other than the
 * handles' cannot be created; deleting one empties it (an empty journal is no journal to SQLite).
 * A file "exists" while it is open here or not empty, so a journal another tab left (a tab
 * killed mid-commit) is found and rolled back like a hot journal after a crash.
 * @param {any} FS @param {Map<string, any>} handles
 */
function handleFS(FS, handles) {
  const MEMFS = FS.filesystems.MEMFS;
  const fail = (/** @type {number} */ errno) => {
    throw new FS.ErrnoError(errno);
  };

  const fileNodeOps = {
    getattr(/** @type {any} */ node) {
      const attr = MEMFS.node_ops.getattr(node);
      attr.size = node.handle.getSize();
      attr.blocks = Math.ceil(attr.size / attr.blksize);
      return attr;
    },
    setattr(/** @type {any} */ node, /** @type {any} */ attr) {
      for (const key of ["mode", "atime", "mtime", "ctime"]) if (attr[key] != null) node[key] = attr[key];
      if (attr.size !== undefined) node.handle.truncate(attr.size);
    },
  };

  const fileStreamOps = {
    llseek(/** @type {any} */ stream, /** @type {number} */ offset, /** @type {number} */ whence) {
      let position = offset;
      if (whence === 1) position += stream.position;
      else if (whence === 2) position += stream.node.handle.getSize();
      if (position < 0) fail(EINVAL);
      return position;
    },
    read(/** @type {any} */ stream, /** @type {Int8Array} */ buffer, /** @type {number} */ offset, /** @type {number} */ length, /** @type {number} */ position) {
      return stream.node.handle.read(buffer.subarray(offset, offset + length), { at: position });
    },
    write(/** @type {any} */ stream, /** @type {Int8Array} */ buffer, /** @type {number} */ offset, /** @type {number} */ length, /** @type {number} */ position) {
      return stream.node.handle.write(buffer.subarray(offset, offset + length), { at: position });
    },
    fsync(/** @type {any} */ stream) {
      stream.node.handle.flush();
      return 0;
    },
  };

  /** @param {any} parent @param {string} name */
  function fileNode(parent, name) {
    const node = MEMFS.createNode(parent, name, 0o100666, 0);
    node.handle = handles.get(name);
    node.node_ops = fileNodeOps;
    node.stream_ops = fileStreamOps;
    return node;
  }

  const dirNodeOps = {
    getattr: MEMFS.node_ops.getattr,
    setattr: MEMFS.node_ops.setattr,
    readdir: MEMFS.node_ops.readdir,
    lookup(/** @type {any} */ parent, /** @type {string} */ name) {
      if (handles.has(name) && handles.get(name).getSize() > 0) return fileNode(parent, name);
      return fail(ENOENT);
    },
    mknod(/** @type {any} */ parent, /** @type {string} */ name, /** @type {number} */ mode) {
      if (!handles.has(name) || !FS.isFile(mode)) return fail(EPERM);
      return fileNode(parent, name);
    },
    unlink(/** @type {any} */ parent, /** @type {string} */ name) {
      handles.get(name)?.truncate(0);
      handles.get(name)?.flush();
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
