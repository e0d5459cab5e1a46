// Side-by-side timings in one page: Waystation's app.call vs onnxruntime-web called directly.
import { open } from "../waystation.js";
import * as ort from "../ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;

const median = (/** @type {number[]} */ xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/** Time `fn` `runs` times after `warmup` calls, interleaving nothing else; returns ms per call. */
async function timeIt(/** @type {() => Promise<unknown>} */ fn, runs, warmup = 20) {
  for (let i = 0; i < warmup; i++) await fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return times;
}

/** @param {{batch: number, runs: number, rounds: number}} options */
async function benchmark({ batch, runs, rounds }) {
  const bootStart = performance.now();
  const app = await open({ bundle: "digits", serviceWorker: false });
  const startupMs = performance.now() - bootStart;
  const samples = await app.call("samples");
  const features = Array.from({ length: batch }, (_, i) => samples[i % samples.length].pixels);
  const flat = new Float32Array(features.flat());
  const dims = [batch, 64];

  const { version } = await (await fetch("../bundles/digits/latest.json")).json();
  const model = new Uint8Array(await (await fetch(`../bundles/digits/${version}/classifier.onnx`)).arrayBuffer());
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const worker = new Worker(new URL("ort_worker.js", import.meta.url), { type: "module" });
  const ask = (/** @type {any} */ msg) => new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.postMessage(msg);
  });
  await ask({ type: "load", model });

  const series = { waystation: [], ortMainThread: [], ortWorker: [] };
  // Rounds alternate the three paths so that machine noise hits them alike.
  for (let r = 0; r < rounds; r++) {
    series.waystation.push(...(await timeIt(() => app.call("classify_features", { features }), runs)));
    series.ortMainThread.push(...(await timeIt(async () => {
      const out = await session.run({ pixels: new ort.Tensor("float32", flat, dims) });
      return out.probabilities.data;
    }, runs)));
    series.ortWorker.push(...(await timeIt(() => ask({ type: "run", data: flat, dims }), runs)));
  }
  const pythonMs = [];
  const workerMs = [];
  for (let i = 0; i < runs; i++) {
    await app.call("classify_features", { features });
    pythonMs.push(app.lastCall.pythonMs);
    workerMs.push(app.lastCall.workerMs);
  }
  worker.terminate();
  app.close();
  return {
    batch,
    samples: series.waystation.length,
    startupMs,
    workerStartupMs: app.info.startupMs,
    timings: app.info.timings,
    crossOriginIsolated: self.crossOriginIsolated,
    medianMs: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)])),
    pythonMedianMs: median(pythonMs),
    workerMedianMs: median(workerMs),
  };
}

// @ts-ignore: the harness calls this through page.evaluate
window.benchmark = benchmark;
document.title = "ready";
