// Direct onnxruntime-web in a worker, no Python: the fair peer for a UI-friendly app (the model
// runs off the page's main thread, one postMessage round trip per call).
//   {type: "load", model}                       -> {ok: true}
//   {feeds: {name: [dtype, data, dims]}, output}  -> {data} of that output
//   {data, dims} (the digits model's "pixels")   -> {label, probabilities}
import * as ort from "../ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;
/** @type {any} */
let session = null;

self.onmessage = async (/** @type {MessageEvent} */ e) => {
  if (e.data.type === "load") {
    session = await ort.InferenceSession.create(e.data.model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    self.postMessage({ ok: true });
  } else if (e.data.feeds) {
    /** @type {Record<string, any>} */
    const feeds = {};
    for (const [name, [dtype, data, dims]] of Object.entries(e.data.feeds)) feeds[name] = new ort.Tensor(dtype, data, dims);
    const out = await session.run(feeds);
    const data = out[e.data.output].data;
    self.postMessage({ data }, [data.buffer]);
  } else {
    const { data, dims } = e.data;
    const out = await session.run({ pixels: new ort.Tensor("float32", data, dims) });
    self.postMessage({ label: Array.from(out.label.data, Number), probabilities: out.probabilities.data });
  }
};
