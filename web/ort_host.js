// The JS half of the browser host (py_src/waystation/device/hosts/browser.py): onnxruntime-web
// behind a few calls, so that one model run costs Python one interop round trip, not a dozen.
//
// Model bytes stay in JavaScript: the worker verifies a model file and hands its bytes to
// `preload`, which starts the session at once (while Python may still be booting); Python's
// `App.open` then takes the session by the file's path. No copy of the model goes through
// Python or its file system.
export { makeOrtHost };

/**
 * @param {any} ort the onnxruntime-web module
 * @param {{executionProviders?: string[]}} [choice] where models run (see `executionProviders`)
 */
function makeOrtHost(ort, { executionProviders = ["wasm"] } = {}) {
  /** @type {Map<string, Promise<any>>} sessions started from verified bytes, by file path */
  const preloaded = new Map();
  const options = () => ({ executionProviders, graphOptimizationLevel: "all" });
  return {
    executionProviders,

    /** @param {Uint8Array} model @param {object} [sessionOptions] */
    createSession(model, sessionOptions = options()) {
      return ort.InferenceSession.create(model, sessionOptions);
    },

    /**
     * Start a session for the model file at `path` (its FS path once the bundle is open).
     * A failure surfaces when Python takes the session, as that model's load error.
     * @param {string} path @param {Uint8Array} model
     */
    preload(path, model) {
      const session = ort.InferenceSession.create(model, options());
      session.catch(() => {}); // reported by takeSession's caller, not as an unhandled rejection
      preloaded.set(path, session);
    },

    /** The session preloaded for `path` (once), or null: Python then loads the file itself. @param {string} path */
    takeSession(path) {
      const session = preloaded.get(path) ?? null;
      preloaded.delete(path);
      return session;
    },

    /** Release what was preloaded and never taken (a bundle that failed to open). */
    dropPreloaded() {
      for (const session of preloaded.values()) session.then((s) => s.release(), () => {});
      preloaded.clear();
    },

    /**
     * Run `session` on feeds given as [name, dtype, typed array, dims] rows; resolve to
     * [name, dtype, dims, typed array] rows for `outputNames`. Every ORT tensor is disposed here.
     * @param {any} session
     * @param {[string, string, any, number[]][]} feeds
     * @param {string[]} outputNames
     */
    async run(session, feeds, outputNames) {
      /** @type {Record<string, any>} */
      const inputs = {};
      for (const [name, dtype, data, dims] of feeds) inputs[name] = new ort.Tensor(dtype, data, dims);
      try {
        const results = await session.run(inputs);
        const rows = outputNames.map((name) => [name, results[name].type, results[name].dims, results[name].data]);
        for (const value of Object.values(results)) value.dispose();
        return rows;
      } finally {
        for (const tensor of Object.values(inputs)) tensor.dispose();
      }
    },
  };
}
