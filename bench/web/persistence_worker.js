// Three ways to keep the device's SQLite database in the browser, measured in one worker with the
// same 100,000 events (bench/events.py --persistence drives it): the cost of one durable batch of
// 100 events, and of starting up with the 100,000 stored.
//   (a) IDBFS: the database in MEMFS, FS.syncfs() to IndexedDB after each batch (whole changed files);
//   (b) OPFS sync access handles under an Emscripten FS (web/device_data.js, what Waystation ships);
//   (c) events appended to IndexedDB from JS, mirrored into an in-memory SQLite on start-up.
import { loadPyodide } from "../pyodide/pyodide.mjs";
import { DeviceData } from "../device_data.js";

const N = 100_000;
const BATCH = 100;
const ROUNDS = 20;
const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const SETUP = `
import os, random, secrets, sqlite3, time
def rows(n, seed):
    # The stored events are spread over the last hour; a batch is added now, as a page adds them.
    r = random.Random(seed)
    now = time.time()
    spread = 3600 if n > 1000 else 1
    return [(secrets.token_hex(16), now - r.uniform(0, spread), f"i{r.randrange(1000):05d}", r.randrange(40)) for _ in range(n)]
def create(path, journal="DELETE", sync="FULL"):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={journal}"); db.execute(f"PRAGMA synchronous={sync}")
    db.execute("CREATE TABLE IF NOT EXISTS ev (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, ts REAL NOT NULL, item_id TEXT, position INTEGER)")
    db.execute("CREATE INDEX IF NOT EXISTS ev_ts ON ev (ts)")
    return db
def insert(db, batch):
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO ev (id, ts, item_id, position) VALUES (?, ?, ?, ?)", batch)
    db.execute("COMMIT")
`;

async function measure() {
  const pyodide = await loadPyodide({ indexURL: new URL("../pyodide/", import.meta.url).href });
  pyodide.runPython(SETUP);
  const py = (/** @type {string} */ code) => pyodide.runPython(code);
  const out = {};

  // (a) IDBFS
  {
    const FS = pyodide.FS;
    FS.mkdirTree("/idb");
    FS.mount(FS.filesystems.IDBFS, {}, "/idb");
    const sync = (/** @type {boolean} */ populate) => new Promise((resolve, reject) => FS.syncfs(populate, (/** @type {any} */ e) => (e ? reject(e) : resolve(undefined))));
    await sync(true);
    py(`dba = create("/idb/a.sqlite3"); insert(dba, rows(${N}, 1))`);
    let t = performance.now();
    await sync(false);
    const firstSync = performance.now() - t;
    const batches = [];
    for (let i = 0; i < ROUNDS; i++) {
      t = performance.now();
      py(`insert(dba, rows(${BATCH}, ${100 + i}))`);
      await sync(false);
      batches.push(performance.now() - t);
    }
    py("dba.close()");
    FS.unmount("/idb");
    FS.rmdir("/idb");
    FS.mkdirTree("/idb");
    FS.mount(FS.filesystems.IDBFS, {}, "/idb");
    t = performance.now();
    await sync(true);
    const count = py(`dba = create("/idb/a.sqlite3"); dba.execute("SELECT COUNT(*) FROM ev WHERE ts > ?", (time.time() - 300,)).fetchone()[0]`);
    out.idbfs = { batchMedianMs: median(batches), firstSyncMs: firstSync, startupMs: performance.now() - t, count,
                  fileBytes: FS.stat("/idb/a.sqlite3").size };
    py("dba.close()");
  }

  // (b) OPFS sync access handles (the shipped backend)
  {
    // As hosts/data_browser.py opens it: the journal in memory, each batch written at durable().
    const data = new DeviceData(pyodide.FS);
    await data.use("bench-b");
    const path = data.host.path();
    await data.run(() => py(`dbb = create(${JSON.stringify(path)}, "MEMORY", "OFF"); insert(dbb, rows(${N}, 1))`));
    const batches = [];
    for (let i = 0; i < ROUNDS; i++) {
      const t = performance.now();
      await data.run(() => py(`insert(dbb, rows(${BATCH}, ${100 + i}))`));
      batches.push(performance.now() - t);
    }
    py("dbb.close()");
    await data.use("bench-other");
    const t = performance.now();
    await data.use("bench-b");   // mounts again: reads the file into its image
    const count = py(`dbb = create(${JSON.stringify(path)}, "MEMORY", "OFF"); dbb.execute("SELECT COUNT(*) FROM ev WHERE ts > ?", (time.time() - 300,)).fetchone()[0]`);
    out.opfs = { batchMedianMs: median(batches), startupMs: performance.now() - t, count };
    py("dbb.close()");
  }

  // (c) IndexedDB append + in-memory SQLite mirror
  {
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open("bench-c", 1);
      request.onupgradeneeded = () => request.result.createObjectStore("events", { keyPath: "id" });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const put = (/** @type {any[]} */ events) => new Promise((resolve, reject) => {
      const tx = /** @type {IDBDatabase} */ (db).transaction("events", "readwrite", { durability: "strict" });
      const store = tx.objectStore("events");
      for (const e of events) store.put(e);
      tx.oncomplete = () => resolve(undefined);
      tx.onerror = () => reject(tx.error);
    });
    const make = (/** @type {number} */ n, /** @type {number} */ seed) => JSON.parse(py(`import json; json.dumps([dict(zip(("id", "ts", "item_id", "position"), r)) for r in rows(${n}, ${seed})])`));
    const all = make(N, 1);
    for (let i = 0; i < N; i += 10_000) await put(all.slice(i, i + 10_000));
    py(`mirror = create(":memory:")`);
    const batches = [];
    for (let i = 0; i < ROUNDS; i++) {
      const events = make(BATCH, 100 + i);
      const t = performance.now();
      await put(events);
      py(`insert(mirror, rows(${BATCH}, ${100 + i}))`);  // the in-memory copy queries read
      batches.push(performance.now() - t);
    }
    const t = performance.now();
    const stored = await new Promise((resolve, reject) => {
      const request = /** @type {IDBDatabase} */ (db).transaction("events").objectStore("events").getAll();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const loadedMs = performance.now() - t;
    pyodide.globals.set("stored_json", JSON.stringify(stored));
    const count = py(`import json
dbc = create(":memory:")
insert(dbc, [(e["id"], e["ts"], e["item_id"], e["position"]) for e in json.loads(stored_json)])
dbc.execute("SELECT COUNT(*) FROM ev WHERE ts > ?", (time.time() - 300,)).fetchone()[0]`);
    out.indexeddb = { batchMedianMs: median(batches), startupMs: performance.now() - t, idbGetAllMs: loadedMs, count };
  }
  return out;
}

self.onmessage = () => measure().then((value) => self.postMessage({ ok: true, value }), (err) => self.postMessage({ ok: false, error: String(err?.stack ?? err) }));
