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
  /** @type {WeakMap<object, any>} the onnxruntime-web build of each preloaded session: its inputs are that build's tensors */
  const builds = new WeakMap();
  const options = () => ({ executionProviders, graphOptimizationLevel: "all" });
  /** @type {Promise<unknown>} WebGPU sessions are created one at a time: onnxruntime-web refuses a second meanwhile */
  let webgpuTurn = Promise.resolve();
  /** @type {WeakMap<object, string>} the file path of each preloaded session, for `observe` */
  const paths = new WeakMap();
  /** @type {((path: string, ms: number) => void) | null} told each run's time (telemetry), or nobody */
  let observer = null;

  /**
   * A session of `model` where `where` says; its build remembered for `run`.
   * @typedef {{ort?: any | Promise<any>, executionProviders?: string[]}} Where
   * @param {Uint8Array} model @param {Where} where
   */
  function start(model, where) {
    const providers = where.executionProviders ?? executionProviders;
    const create = async () => {
      const build = await (where.ort ?? ort);
      const created = await build.InferenceSession.create(model, { ...options(), executionProviders: providers });
      builds.set(created, build);
      return created;
    };
    if (!providers.includes("webgpu")) return create();
    const session = webgpuTurn.then(create);
    webgpuTurn = session.catch(() => {});
    return session;
  }

  return {
    executionProviders,

    /** @param {Uint8Array} model @param {object} [sessionOptions] */
    createSession(model, sessionOptions = options()) {
      return ort.InferenceSession.create(model, sessionOptions);
    },

    /**
     * Start a session for the model file at `path` (its FS path once the bundle is open).
     * A failure surfaces when Python takes the session, as that model's load error.
     * `on` runs it elsewhere than the host's defaults: on another build of onnxruntime-web (the
     * WebGPU one, imported once web/execution.js chose it) with other execution providers, and
     * `otherwise` where it runs when that fails (a model with operators the WebGPU build lacks:
     * it has none of ai.onnx.ml), after telling `onFallback` why.
     * @param {string} path @param {Uint8Array} model
     * @param {Where & {otherwise?: Where, onFallback?: (err: Error) => void}} [on]
     */
    preload(path, model, on = {}) {
      let session = start(model, on);
      const { otherwise, onFallback } = on;
      if (otherwise) {
        session = session.catch((/** @type {Error} */ err) => {
          onFallback?.(err);
          return start(model, otherwise);
        });
      }
      session.then((s) => paths.set(s, path), () => {}); // a failure is reported by takeSession's caller
      preloaded.set(path, session);
      return session;
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
     * Tell `fn` the file path and time (ms) of each model run from now on; null stops it. Without
     * an observer a run costs nothing more.
     * @param {((path: string, ms: number) => void) | null} fn
     */
    observe(fn) {
      observer = fn;
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
      const build = builds.get(session) ?? ort;
      for (const [name, dtype, data, dims] of feeds) inputs[name] = new build.Tensor(dtype, data, dims);
      try {
        const started = observer ? performance.now() : 0;
        const results = await session.run(inputs);
        if (observer) observer(paths.get(session) ?? "?", performance.now() - started);
        const rows = outputNames.map((name) => [name, results[name].type, results[name].dims, results[name].data]);
        for (const value of Object.values(results)) value.dispose();
        return rows;
      } finally {
        for (const tensor of Object.values(inputs)) tensor.dispose();
      }
    },
  };
}
