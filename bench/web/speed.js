// The speed benchmark's page (bench/speed.py drives it): start-up to the first MiniLM embedding,
// warm calls, bulk rows, each path side by side with its peer on the same model file.
//   Waystation: open() + app.call in its worker (Python + onnxruntime-web).
//   transformers.js 4.3.1 on the page: AutoTokenizer + AutoModel, its own onnxruntime-web.
//   Raw onnxruntime-web: a session from the same model file, pre-tokenised input, in a worker
//   with one postMessage round trip per call (the fair peer) and on the page.
const median = (/** @type {number[]} */ xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function times(/** @type {() => Promise<unknown>} */ fn, /** @type {number} */ runs, warmup = 5) {
  for (let i = 0; i < warmup; i++) await fn();
  const out = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** @type {Record<string, any>} what a start-up left behind, for the warm-call runs that follow */
const opened = {};

/** Start-up to the first embedding, as a page would do it. @param {{path: string, text: string, tokens: any}} o */
async function startup(o) {
  const t = performance.now();
  if (o.path === "waystation") {
    const { open } = await import("../waystation.js");
    const app = await open({ bundle: "minilm" });
    await app.call("embed", { texts: [o.text] });
    opened.app = app;
    return { ms: performance.now() - t, info: app.info };
  }
  if (o.path === "transformersjs") {
    const tjs = await import("./tjs/transformers.js");
    tjs.env.allowLocalModels = true;
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = new URL("./models/", import.meta.url).pathname;
    tjs.env.backends.onnx.wasm.wasmPaths = new URL("./tjs/", import.meta.url).href;
    tjs.env.backends.onnx.wasm.numThreads = 1;
    const tokenizer = await tjs.AutoTokenizer.from_pretrained("minilm");
    const model = await tjs.AutoModel.from_pretrained("minilm", { dtype: "q8", device: "wasm" });
    const embed = async (/** @type {string[]} */ texts) => (await model(await tokenizer(texts, { padding: true, truncation: true, max_length: 256 }))).sentence_embedding.data;
    await embed([o.text]);
    opened.tjs = embed;
    return { ms: performance.now() - t };
  }
  // Raw onnxruntime-web in a worker, from the same model file (no tokenizer: pre-tokenised input).
  const file = await minilmFile();
  const worker = new Worker(new URL("ort_worker.js", import.meta.url), { type: "module" });
  const ask = (/** @type {any} */ msg, /** @type {Transferable[]} */ transfer = []) => new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.postMessage(msg, transfer);
  });
  const model = new Uint8Array(await (await fetch(file)).arrayBuffer());
  await ask({ type: "load", model }, [model.buffer]);
  const run = () => ask({ type: "run", feeds: feeds(o.tokens), output: "sentence_embedding" });
  await run();
  opened.raw = run;
  return { ms: performance.now() - t };
}

async function minilmFile() {
  const { version } = await (await fetch("../bundles/minilm/latest.json")).json();
  const manifest = await (await fetch(`../bundles/minilm/${version}/manifest.json`)).json();
  return `../bundles/minilm/${version}/${manifest.models.encoder.file}`;
}

/** @param {{ids: number[][], mask: number[][], types: number[][]}} tokens */
function feeds(tokens) {
  const dims = [tokens.ids.length, tokens.ids[0].length];
  const tensor = (/** @type {number[][]} */ rows) => ["int64", BigInt64Array.from(rows.flat(), BigInt), dims];
  return { input_ids: tensor(tokens.ids), attention_mask: tensor(tokens.mask), token_type_ids: tensor(tokens.types) };
}

/** Warm MiniLM batch-1 calls, the three paths alternated in rounds. @param {{text: string, tokens: any, runs: number, rounds: number, warmupMs: number}} o */
async function warm(o) {
  await Promise.all(["waystation", "transformersjs", "raw"].map((path) => startup({ ...o, path })));
  const paths = {
    waystation: () => opened.app.call("embed", { texts: [o.text] }),
    transformersjs: () => opened.tjs([o.text]),
    ortWorker: opened.raw,
  };
  /** @type {Record<string, number[]>} */
  const series = { waystation: [], transformersjs: [], ortWorker: [] };
  // Warm until steady: right after start-up each engine's wasm is still tiering up (V8 compiles
  // Pyodide's 9.6 MB in the background), and the first calls of a round run tens of ms slow.
  for (const fn of Object.values(paths)) {
    for (const until = performance.now() + o.warmupMs; performance.now() < until;) await fn();
  }
  /** @type {Record<string, number>[]} */
  const rounds = [];
  for (let r = 0; r < o.rounds; r++) {
    /** @type {Record<string, number>} */
    const round = {};
    for (const [name, fn] of Object.entries(paths)) {
      const ms = await times(fn, o.runs);
      series[name].push(...ms);
      round[name] = Math.round(median(ms) * 100) / 100;
    }
    rounds.push(round);
  }
  const parts = [];
  for (let i = 0; i < o.runs; i++) {
    await paths.waystation();
    parts.push(opened.app.lastCall);
  }
  return { medianMs: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)])), parts: breakdown(parts), rounds };
}

/** @param {any[]} calls app.lastCall of each */
function breakdown(calls) {
  return {
    pageMs: median(calls.map((c) => c.ms)),
    workerMs: median(calls.map((c) => c.workerMs)),
    pythonMs: median(calls.map((c) => c.pythonMs)),
    modelMs: median(calls.map((c) => c.metrics.model_ms ?? NaN)),
  };
}

/** The digits model, batch 1: Waystation against ORT in a worker. @param {{runs: number, rounds: number, warmupMs: number}} o */
async function digits(o) {
  const { open } = await import("../waystation.js");
  const app = await open({ bundle: "digits" });
  const samples = await app.call("samples");
  const features = [samples[0].pixels];
  const flat = new Float32Array(features.flat());
  const { version } = await (await fetch("../bundles/digits/latest.json")).json();
  const model = new Uint8Array(await (await fetch(`../bundles/digits/${version}/classifier.onnx`)).arrayBuffer());
  const worker = new Worker(new URL("ort_worker.js", import.meta.url), { type: "module" });
  const ask = (/** @type {any} */ msg) => new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.postMessage(msg);
  });
  await ask({ type: "load", model });
  /** @type {Record<string, () => Promise<unknown>>} */
  const paths = {
    // The workflow's probabilities(): a tensor out, no post-processing in Python.
    waystationTensor: () => app.call("probabilities", { features }),
    // classify_features(): JSON out, with the workflow's top-3 post-processing in Python.
    waystationJson: () => app.call("classify_features", { features }),
    ortWorker: () => ask({ data: flat, dims: [1, 64] }),
  };
  for (const fn of Object.values(paths)) {
    for (const until = performance.now() + o.warmupMs; performance.now() < until;) await fn();
  }
  /** @type {Record<string, number[]>} */
  const series = { waystationTensor: [], waystationJson: [], ortWorker: [] };
  for (let r = 0; r < o.rounds; r++) {
    for (const [name, fn] of Object.entries(paths)) series[name].push(...(await times(fn, o.runs, 20)));
  }
  const parts = [];
  for (let i = 0; i < o.runs; i++) {
    await paths.waystationTensor();
    parts.push(app.lastCall);
  }
  app.close();
  worker.terminate();
  return { medianMs: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)])), parts: breakdown(parts) };
}

/** 100,000 rows of 4 floats in, labels and probabilities out. @param {{rows: number, runs: number}} o */
async function rows(o) {
  const { open } = await import("../waystation.js");
  const app = await open({ bundle: "rows" });
  const typed = new Float32Array(o.rows * 4);
  for (let i = 0; i < typed.length; i++) typed[i] = ((i * 7919) % 97) / 13;
  const nested = Array.from({ length: o.rows }, (_, i) => Array.from(typed.subarray(i * 4, i * 4 + 4)));
  const asTensor = { dtype: "float32", shape: [o.rows, 4], data: typed };
  const first = await app.call("classify", { rows: asTensor });
  const typedMs = await times(() => app.call("classify", { rows: asTensor }), o.runs, 1);
  const typedParts = app.lastCall;
  const nestedMs = await times(() => app.call("classify", { rows: nested }), o.runs, 1);
  app.close();
  return {
    typedMs: median(typedMs), nestedMs: median(nestedMs), parts: typedParts,
    labels: Array.from(first.labels.data.slice(0, 5), Number), rows: o.rows,
  };
}

Object.assign(window, { startup, warm, digits, rows });
document.title = "ready";
