// Where a bundle's models run: WebGPU or WASM, decided here and nowhere else.
//
// A bundle offers WebGPU model by model (bundle.toml `[models.NAME] execution = ["webgpu", "wasm"]`,
// carried into its manifest; without it a model runs on WASM). The page may override the choice
// with open({webgpu}): "auto" (the default), "force" or "never".
//
//   auto   WebGPU when a model of the bundle offers it and the device has a WebGPU adapter that
//          is real hardware; WASM otherwise. A software adapter (SwiftShader, llvmpipe, WARP: a GPU
//          emulated on the CPU) runs models slower than onnxruntime-web's WASM kernels.
//   force  WebGPU for every model whenever the device has an adapter at all, software included
//          (for tests and for apps that know better); WASM when there is none.
//   never  WASM.
//
// When WebGPU is chosen, the models that offer it (every model, forced) start on onnxruntime-web's
// WebGPU build and the others on the WASM build; a model the WebGPU build cannot load (it has no
// ai.onnx.ml operators: scikit-learn's) starts on the WASM build instead (afterFallbacks).
//
// The choice comes with its reason, "webgpu: ..." or "wasm: ...", which the worker reports as
// app.info.executionReason beside app.info.executionProviders.
export { afterFallbacks, checkWebgpuMode, chooseExecution, deviceGpu, executionInfo, modelProviders, onWasm, WEBGPU_MODES };

/** @typedef {"auto" | "force" | "never"} WebGpuMode */
/**
 * What the device offers: a WebGPU adapter (named, software or not) or none, and why none.
 * @typedef {{adapter: {name: string, software: boolean} | null, why?: string}} DeviceGpu
 */
/**
 * The decision: the execution providers of the bundle's sessions, in onnxruntime-web's order of
 * preference (WASM always last, the fallback for operators WebGPU lacks), and why.
 * `webgpu`: whether the bundle runs there; `forced`: on every model, offered or not.
 * @typedef {{executionProviders: string[], reason: string, webgpu: boolean, forced: boolean}} Execution
 */

/** @type {readonly WebGpuMode[]} */
const WEBGPU_MODES = Object.freeze(["auto", "force", "never"]);
/** Adapter architectures and descriptions of GPUs emulated on the CPU. */
const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|\bwarp\b/i;

/**
 * Refuse an unknown `webgpu` option where open() is called (a TypeError on the page), not in the worker.
 * @param {unknown} mode
 */
function checkWebgpuMode(mode) {
  if (!WEBGPU_MODES.includes(/** @type {WebGpuMode} */ (mode))) {
    throw new TypeError(`open(): \`webgpu\` must be one of ${WEBGPU_MODES.map((m) => `"${m}"`).join(", ")}, got ${JSON.stringify(mode)}`);
  }
}

/**
 * Decide where a bundle's models run.
 * @param {{offered: boolean, mode?: unknown, gpu: () => Promise<DeviceGpu>}} facts `offered`: whether
 *   a model of the bundle lists "webgpu"; `gpu`: asks the device (called only when the answer matters)
 * @returns {Promise<Execution>}
 */
async function chooseExecution({ offered, mode = "auto", gpu }) {
  checkWebgpuMode(mode);
  if (mode === "never") return onWasm('webgpu is "never" (open() option)');
  if (mode === "auto" && !offered) return onWasm("the bundle does not offer webgpu");
  const { adapter, why } = await gpu();
  if (!adapter) return onWasm(`no adapter (${why})`);
  if (mode === "force") return webgpu(true, `forced (open() option) on ${adapter.software ? "software" : "hardware"} adapter ${adapter.name}`);
  if (adapter.software) return onWasm(`software adapter ${adapter.name}: a GPU emulated on the CPU is slower than WASM`);
  return webgpu(false, `hardware adapter ${adapter.name}`);
}

/**
 * The execution providers of one model's session: WebGPU when the bundle runs there and the
 * model offers it (or the choice was forced), else WASM.
 * @param {Execution} execution @param {string[] | undefined} offered the model's manifest `execution`
 */
function modelProviders(execution, offered) {
  if (execution.webgpu && (execution.forced || offered?.includes("webgpu"))) return execution.executionProviders;
  return ["wasm"];
}

/**
 * The choice once the sessions exist: the models onnxruntime-web's WebGPU build could not load
 * (it lacks the ai.onnx.ml operators, say) run on the WASM build instead.
 * @param {Execution} execution @param {string[]} onWebgpu the models started on WebGPU
 * @param {string[]} fellBack "model (why)" for each of them that went to WASM
 * @returns {Execution}
 */
function afterFallbacks(execution, onWebgpu, fellBack) {
  if (!fellBack.length) return execution;
  if (fellBack.length === onWebgpu.length) return onWasm(`onnxruntime-web's WebGPU build cannot load ${fellBack.join("; ")}`);
  return { ...execution, reason: `${execution.reason}; on WASM instead: ${fellBack.join("; ")}` };
}

/** What app.info says of the choice. @param {Execution} execution */
function executionInfo({ executionProviders, reason }) {
  return { executionProviders, executionReason: reason };
}

/**
 * Ask the browser for a WebGPU adapter and whether it is a software one.
 * @param {any} [gpu] navigator.gpu (absent outside secure contexts and in browsers without WebGPU)
 * @returns {Promise<DeviceGpu>}
 */
async function deviceGpu(gpu = /** @type {any} */ (navigator).gpu) {
  if (!gpu) return { adapter: null, why: "navigator.gpu is absent" };
  let adapter;
  try {
    adapter = await gpu.requestAdapter();
  } catch (err) {
    return { adapter: null, why: `requestAdapter() failed: ${/** @type {Error} */ (err).message}` };
  }
  if (!adapter) return { adapter: null, why: "requestAdapter() found none" };
  const info = adapter.info ?? {};
  const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter) || SOFTWARE.test(`${info.architecture ?? ""} ${info.description ?? ""}`);
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "(unnamed)";
  return { adapter: { name, software } };
}

/** WASM, and why: also the worker's fallback when WebGPU was chosen but cannot run. @param {string} why @returns {Execution} */
function onWasm(why) {
  return { executionProviders: ["wasm"], reason: `wasm: ${why}`, webgpu: false, forced: false };
}

/** @param {boolean} forced @param {string} why @returns {Execution} */
function webgpu(forced, why) {
  return { executionProviders: ["webgpu", "wasm"], reason: `webgpu: ${why}`, webgpu: true, forced };
}
