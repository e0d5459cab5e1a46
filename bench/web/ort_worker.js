// Direct onnxruntime-web in a worker, no Python: the baseline for a UI-friendly app.
import * as ort from "../ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;
/** @type {any} */
let session = null;

self.onmessage = async (/** @type {MessageEvent} */ e) => {
  if (e.data.type === "load") {
    session = await ort.InferenceSession.create(e.data.model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    self.postMessage({ ok: true });
  } else {
    const { data, dims } = e.data;
    const out = await session.run({ pixels: new ort.Tensor("float32", data, dims) });
    self.postMessage({ label: Array.from(out.label.data, Number), probabilities: out.probabilities.data });
  }
};
