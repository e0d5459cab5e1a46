// MiniLM end to end, text in, embedding out, side by side in one page on one model file:
// Waystation (worker: Python tokenizer + onnxruntime-web), transformers.js (main thread:
// its tokenizer + its bundled onnxruntime-web), and raw onnxruntime-web with pre-tokenised input.
import { open } from "../waystation.js";
import * as ort from "../ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;

const median = (/** @type {number[]} */ xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function times(/** @type {() => Promise<unknown>} */ fn, /** @type {number} */ runs, warmup = 3) {
  for (let i = 0; i < warmup; i++) await fn();
  const out = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

function feeds(/** @type {{ids: number[][], mask: number[][], types: number[][]}} */ tokens) {
  const dims = [tokens.ids.length, tokens.ids[0].length];
  const tensor = (/** @type {number[][]} */ rows) => new ort.Tensor("int64", BigInt64Array.from(rows.flat(), BigInt), dims);
  return { input_ids: tensor(tokens.ids), attention_mask: tensor(tokens.mask), token_type_ids: tensor(tokens.types) };
}

/** @param {{texts: string[], tokens: any, runs: number, rounds: number, batch: number}} o */
async function benchmark(o) {
  const texts = o.texts.slice(0, o.batch);
  const tokens = { ids: o.tokens.ids.slice(0, o.batch), mask: o.tokens.mask.slice(0, o.batch), types: o.tokens.types.slice(0, o.batch) };
  const started = {};

  let t = performance.now();
  const app = await open({ bundle: "minilm", serviceWorker: false });
  await app.call("embed", { texts: [texts[0]] });
  started.waystation = performance.now() - t;

  t = performance.now();
  const tjs = await import("./tjs/transformers.js");
  tjs.env.allowLocalModels = true;
  tjs.env.allowRemoteModels = false;
  // transformers.js 4 skips an absolute URL here (isValidUrl): it wants a path on this origin.
  tjs.env.localModelPath = new URL("./models/", import.meta.url).pathname;
  tjs.env.backends.onnx.wasm.wasmPaths = new URL("./tjs/", import.meta.url).href;
  tjs.env.backends.onnx.wasm.numThreads = 1;
  const tokenizer = await tjs.AutoTokenizer.from_pretrained("minilm");
  const model = await tjs.AutoModel.from_pretrained("minilm", { dtype: "q8", device: "wasm" });
  const tjsEmbed = async () => {
    const inputs = await tokenizer(texts, { padding: true, truncation: true, max_length: 256 });
    const out = await model(inputs);
    return out.sentence_embedding.data;
  };
  await tjsEmbed();
  started.transformersjs = performance.now() - t;

  const { version } = await (await fetch("../bundles/minilm/latest.json")).json();
  const manifest = await (await fetch(`../bundles/minilm/${version}/manifest.json`)).json();
  const file = manifest.models.encoder.file;
  t = performance.now();
  const bytes = new Uint8Array(await (await fetch(`../bundles/minilm/${version}/${file}`)).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  started.rawOrt = performance.now() - t;
  const rawEmbed = async () => (await session.run(feeds(tokens))).sentence_embedding.data;

  const series = { waystation: [], transformersjs: [], rawOrt: [] };
  for (let r = 0; r < o.rounds; r++) {
    series.waystation.push(...(await times(() => app.call("embed", { texts }), o.runs)));
    series.transformersjs.push(...(await times(tjsEmbed, o.runs)));
    series.rawOrt.push(...(await times(rawEmbed, o.runs)));
  }
  const metrics = [];
  for (let i = 0; i < o.runs; i++) {
    await app.call("embed", { texts });
    metrics.push(app.lastCall);
  }
  const outputs = {
    waystation: Array.from((await app.call("embed", { texts })).embeddings.data),
    transformersjs: Array.from(await tjsEmbed()),
    rawOrt: Array.from(await rawEmbed()),
  };
  app.close();
  return {
    batch: o.batch,
    medianMs: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)])),
    startupMs: started,
    waystationParts: {
      pageMs: median(metrics.map((m) => m.ms)), // the same calls as the parts: page to page
      workerMs: median(metrics.map((m) => m.workerMs)),
      pythonMs: median(metrics.map((m) => m.pythonMs)),
      tokenizeMs: median(metrics.map((m) => m.metrics.tokenize_ms)),
      modelMs: median(metrics.map((m) => m.metrics.model_ms)),
    },
    outputs,
  };
}

// @ts-ignore: the harness calls this through page.evaluate
window.benchmark = benchmark;
document.title = "ready";
