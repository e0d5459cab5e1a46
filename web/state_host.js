// The JS half of the browser state backend (py_src/waystation/device/hosts/state_browser.py):
// Yjs documents by name, reached from Python in few interop crossings. Values cross as JSON
// text; Python's writes cross as one JSON array of operations, applied in one transaction.
// Whoever owns persistence and sync gets the same Y.Doc objects: `host.doc(name)`, or the
// `onDoc` option, called once for each document the moment it is created.
export { LOCAL_ORIGIN, makeStateHost };

/** The origin of the transactions Python makes (providers skip only their own origin). */
const LOCAL_ORIGIN = "waystation.state";
/** The origin of the updates Python applies. */
const REMOTE_ORIGIN = "waystation.state.remote";
const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * @typedef {import("yjs").Doc} YDoc
 * @typedef {{onDoc?: (name: string, doc: YDoc) => void}} StateHostOptions
 */

/**
 * @param {typeof import("yjs")} Y the yjs module
 * @param {StateHostOptions} [options]
 */
function makeStateHost(Y, { onDoc } = {}) {
  /** @type {Map<string, YDoc>} */
  const docs = new Map();

  /** @param {string} name */
  function doc(name) {
    let found = docs.get(name);
    if (found === undefined) {
      found = new Y.Doc();
      docs.set(name, found);
      onDoc?.(name, found);
    }
    return found;
  }

  /** @param {unknown} value a value read from Yjs, as JSON-able data */
  const plain = (value) => (value instanceof Y.AbstractType ? value.toJSON() : value ?? null);

  /** @type {Record<string, (d: YDoc, ...args: any[]) => void>} */
  const writes = {
    mapSet(d, root, key, value) {
      d.getMap(root).set(key, value);
    },
    mapDelete(d, root, key) {
      d.getMap(root).delete(key);
    },
    listInsert(d, root, index, values) {
      const array = d.getArray(root);
      if (values.length === 0) return;
      if (index === null || index >= array.length) array.push(values);
      else array.insert(index, values);
    },
    listDelete(d, root, index, length) {
      const array = d.getArray(root);
      const start = Math.min(index, array.length);
      const stop = Math.min(index + length, array.length);
      if (start < stop) array.delete(start, stop - start);
    },
    textInsert(d, root, index, text) {
      const ytext = d.getText(root);
      ytext.insert(utf16Index(ytext.toString(), index), text);
    },
    textDelete(d, root, index, length) {
      const ytext = d.getText(root);
      const current = ytext.toString();
      const start = utf16Index(current, index);
      const stop = utf16Index(current, index + length);
      if (start < stop) ytext.delete(start, stop - start);
    },
    // A counter is a map of per-client totals; each replica writes only its own key.
    counterAdd(d, root, amount) {
      const map = d.getMap(root);
      const key = String(d.clientID);
      map.set(key, count(map.get(key)) + amount);
    },
  };

  /** @type {Record<string, (d: YDoc, root: string) => unknown>} */
  const getters = {
    map: (d, root) => d.getMap(root),
    list: (d, root) => d.getArray(root),
    text: (d, root) => d.getText(root),
  };

  return {
    doc,
    /** @returns {string[]} the names of the documents created so far */
    names: () => [...docs.keys()].sort(),
    /** Destroy every document (their providers' listeners go with them). */
    destroy() {
      for (const d of docs.values()) d.destroy();
      docs.clear();
    },

    // What Python calls (hosts/state_browser.py); every call names its document first.
    /** @param {string} name */
    clientId: (name) => doc(name).clientID,
    /** Throws if `root` is already another kind of shared type. @param {string} name @param {string} root @param {string} kind */
    declare: (name, root, kind) => void getters[kind](doc(name), root),
    /** Apply a JSON array of [operation, root, ...arguments] in one transaction. @param {string} name @param {string} ops */
    run(name, ops) {
      const d = doc(name);
      Y.transact(d, () => {
        for (const [op, ...args] of JSON.parse(ops)) writes[op](d, ...args);
      }, LOCAL_ORIGIN);
    },
    /** @param {string} name @param {string} root @param {string} key */
    mapGet(name, root, key) {
      const map = doc(name).getMap(root);
      return map.has(key) ? JSON.stringify(plain(map.get(key))) : undefined;
    },
    /** @param {string} name @param {string} root @param {string} key */
    mapHas: (name, root, key) => doc(name).getMap(root).has(key),
    /** @param {string} name @param {string} root */
    mapSize: (name, root) => doc(name).getMap(root).size,
    /** @param {string} name @param {string} root */
    mapJSON: (name, root) => JSON.stringify(doc(name).getMap(root).toJSON()),
    /** @param {string} name @param {string} root */
    listLength: (name, root) => doc(name).getArray(root).length,
    /** @param {string} name @param {string} root @param {number} start @param {number} stop */
    listSlice(name, root, start, stop) {
      const array = doc(name).getArray(root);
      const n = array.length;
      return JSON.stringify(array.slice(Math.min(start, n), Math.min(stop, n)).map(plain));
    },
    /** @param {string} name @param {string} root */
    textString: (name, root) => doc(name).getText(root).toString(),
    /** @param {string} name @param {string} root */
    textLength: (name, root) => codePoints(doc(name).getText(root).toString()),
    /** @param {string} name @param {string} root */
    counterValue(name, root) {
      let total = 0;
      for (const value of doc(name).getMap(root).values()) total += count(value);
      return total;
    },
    /** @param {string} name */
    stateVector: (name) => Y.encodeStateVector(doc(name)),
    /** @param {string} name @param {Uint8Array | null} [since] a state vector */
    encodeState: (name, since) => Y.encodeStateAsUpdate(doc(name), since ?? undefined),
    /** @param {string} name @param {Uint8Array} update */
    applyUpdate: (name, update) => Y.applyUpdate(doc(name), update, REMOTE_ORIGIN),
    /**
     * Call `callback(update)` after each change of document `name`; returns the unsubscribe function.
     * @param {string} name @param {(update: Uint8Array) => void} callback
     */
    onUpdate(name, callback) {
      const d = doc(name);
      /** @param {Uint8Array} update */
      const listener = (update) => callback(update);
      d.on("update", listener);
      return () => d.off("update", listener);
    },
  };
}

/** @param {unknown} value */
function count(value) {
  return typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : 0;
}

/**
 * The UTF-16 index of code point `index` of `text`, clamped to its end: Python counts code
 * points, Yjs counts UTF-16 units.
 * @param {string} text @param {number} index
 */
function utf16Index(text, index) {
  if (!SURROGATE.test(text)) return Math.min(index, text.length);
  let i = 0;
  for (let n = 0; n < index && i < text.length; n++) i += isPair(text, i) ? 2 : 1;
  return i;
}

/** @param {string} text */
function codePoints(text) {
  if (!SURROGATE.test(text)) return text.length;
  let n = 0;
  for (let i = 0; i < text.length; n++) i += isPair(text, i) ? 2 : 1;
  return n;
}

/** @param {string} text @param {number} i */
function isPair(text, i) {
  const high = text.charCodeAt(i);
  const low = text.charCodeAt(i + 1);
  return high >= 0xd800 && high <= 0xdbff && low >= 0xdc00 && low <= 0xdfff;
}
