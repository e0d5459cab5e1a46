// The digits demo: draw a digit, and a Python workflow in a worker classifies it on the device.
// The model version panel updates the bundle by delta from a channel (?channel=beta; default
// stable), showing bytes fetched, the total and what the chunks already on the device saved.
import { open } from "./waystation.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const pad = /** @type {HTMLCanvasElement} */ ($("pad"));
const INPUT_SIZE = 32; // the drawing is sent to Python as 32x32 ink intensities
const CHANNEL = new URLSearchParams(location.search).get("channel") ?? "stable";

/** @type {import("./waystation.js").App | any} */
let app = null;

function setStatus(/** @type {string} */ text, /** @type {string} */ state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function showOnline() {
  if (app) setStatus(navigator.onLine ? `Ready: ${app.info.name} ${app.version}` : `Offline: ${app.info.name} ${app.version} runs on this device`, navigator.onLine ? "ready" : "offline");
}

async function main() {
  const progress = /** @type {HTMLProgressElement} */ ($("progress"));
  app = await open({
    bundle: "digits",
    onProgress: (p) => {
      // A first visit the network interrupted says so, and goes on by itself when it is back.
      setStatus(p.message ?? `${p.stage}${p.file ? `: ${p.file}` : ""}`, p.stage === "waiting-for-network" ? "waiting" : "loading");
      if (p.total) progress.value = (p.loaded ?? 0) / p.total;
    },
  });
  progress.hidden = true;
  // The open app, for the console (and the end-to-end tests).
  Object.assign(globalThis, { app });
  showOnline();
  addEventListener("online", showOnline);
  addEventListener("offline", showOnline);
  $("facts").textContent = `Started in ${Math.round(app.info.startupMs)} ms · cross-origin isolated: ${app.info.crossOriginIsolated} · ORT threads: ${app.info.ortThreads}`;
  /** @type {HTMLButtonElement} */ ($("classify")).disabled = false;
  await showSamples();
  await showVersions();
}

const kib = (/** @type {number} */ bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

function setUpdateStatus(/** @type {string} */ text, /** @type {string} */ state) {
  $("update-status").textContent = text;
  $("update-status").dataset.state = state;
}

/** The running version, and whether there is one to roll back to. */
async function showVersions() {
  const update = /** @type {HTMLButtonElement} */ ($("update"));
  const rollback = /** @type {HTMLButtonElement} */ ($("rollback"));
  try {
    const held = await app.versions();
    const staged = held.versions.find((/** @type {any} */ v) => v.version === held.staged && v.state === "ready");
    $("version").textContent = `${app.info.name} ${app.version} · channel ${CHANNEL}` +
      (held.previous ? ` · previous ${held.previous} kept for rollback` : "") + (staged ? ` · ${staged.version} active on next load` : "");
    update.disabled = false;
    rollback.disabled = !held.previous;
  } catch (err) {
    $("version").textContent = `${app.info.name} ${app.version} (updates need the service worker: ${/** @type {Error} */ (err).message})`;
  }
}

async function runUpdate() {
  const bar = /** @type {HTMLProgressElement} */ ($("update-progress"));
  /** @type {HTMLButtonElement} */ ($("update")).disabled = true;
  setUpdateStatus(`checking channel ${CHANNEL}…`, "busy");
  try {
    const result = await app.update({
      channel: CHANNEL,
      onProgress: (/** @type {any} */ p) => {
        if (p.stage === "available") setUpdateStatus(`${p.to} available: ${kib(p.fetchBytes)} to fetch of ${kib(p.totalBytes)}, ${kib(p.savedBytes)} already here`, "busy");
        if (p.stage === "download") {
          bar.hidden = false;
          bar.value = p.total ? p.loaded / p.total : 1;
          setUpdateStatus(`fetching ${kib(p.loaded)} of ${kib(p.total)} · ${kib(p.savedBytes)} saved`, "busy");
        }
        if (p.stage === "smoke-check" && p.message) setUpdateStatus(p.message, "busy");
      },
    });
    const share = result.totalBytes ? Math.round((100 * result.savedBytes) / result.totalBytes) : 100;
    setUpdateStatus(result.upToDate ? `Up to date: ${result.to} is the newest on ${CHANNEL}` :
      `Updated ${result.from} → ${result.to}: fetched ${kib(result.fetchedBytes)} of ${kib(result.totalBytes)}, saved ${kib(result.savedBytes)} (${share}%)`, "done");
    showOnline();
  } catch (err) {
    const e = /** @type {Error} */ (err);
    setUpdateStatus(`${e.name}: ${e.message}`, "error");
  } finally {
    bar.hidden = true;
    await showVersions();
  }
}

async function runRollback() {
  try {
    const moved = await app.rollback();
    setUpdateStatus(`Rolled back ${moved.from} → ${moved.to}`, "done");
    showOnline();
  } catch (err) {
    const e = /** @type {Error} */ (err);
    setUpdateStatus(`${e.name}: ${e.message}`, "error");
  }
  await showVersions();
}

async function classifyDrawing() {
  const small = document.createElement("canvas");
  small.width = small.height = INPUT_SIZE;
  const ctx = /** @type {CanvasRenderingContext2D} */ (small.getContext("2d", { willReadFrequently: true }));
  ctx.drawImage(pad, 0, 0, INPUT_SIZE, INPUT_SIZE);
  const rgba = ctx.getImageData(0, 0, INPUT_SIZE, INPUT_SIZE).data;
  const pixels = [];
  for (let i = 3; i < rgba.length; i += 4) pixels.push(rgba[i] / 255); // ink is the alpha channel
  await show(() => app.call("classify", { pixels, width: INPUT_SIZE, height: INPUT_SIZE }));
}

async function show(/** @type {() => Promise<any>} */ call) {
  $("error").hidden = true;
  try {
    const result = await call();
    const best = Array.isArray(result) ? result[0] : result;
    $("answer").textContent = String(best.digit);
    $("top").replaceChildren(...best.top.map((/** @type {{digit: number, p: number}} */ t) => {
      const li = document.createElement("li");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(t.p * 8)}rem`;
      li.append(`${t.digit}: ${(t.p * 100).toFixed(1)}%`, bar);
      return li;
    }));
    const { ms, pythonMs, metrics } = app.lastCall;
    $("latency").textContent = `on-device latency ${ms.toFixed(2)} ms (Python ${pythonMs.toFixed(2)} ms, model ${(metrics.model_ms ?? 0).toFixed(2)} ms)`;
  } catch (err) {
    const e = /** @type {Error} */ (err);
    $("error").textContent = `${e.name}: ${e.message}`;
    $("error").hidden = false;
  }
}

async function showSamples() {
  const samples = await app.call("samples");
  $("samples").replaceChildren(...samples.map((/** @type {{label: number, pixels: number[]}} */ s) => {
    const button = document.createElement("button");
    button.title = `a held-out ${s.label}`;
    button.append(drawSample(s.pixels));
    button.addEventListener("click", () => show(() => app.call("classify_features", { features: [s.pixels] })));
    return button;
  }));
}

function drawSample(/** @type {number[]} */ pixels) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 8;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const image = ctx.createImageData(8, 8);
  pixels.forEach((v, i) => {
    const shade = 255 - Math.round((v / 16) * 255);
    image.data.set([shade, shade, shade, 255], i * 4);
  });
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function setUpPad() {
  const ctx = /** @type {CanvasRenderingContext2D} */ (pad.getContext("2d"));
  ctx.lineWidth = 22; // with THICKEN in the workflow, close to the data set's pen (measured)
  ctx.lineCap = ctx.lineJoin = "round";
  let drawing = false;
  /** @returns {[number, number]} */
  const point = (/** @type {PointerEvent} */ e) => {
    const r = pad.getBoundingClientRect();
    return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.moveTo(...point(e));
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...point(e));
    ctx.stroke();
  });
  pad.addEventListener("pointerup", () => {
    drawing = false;
    if (app) classifyDrawing();
  });
  $("clear").addEventListener("click", () => ctx.clearRect(0, 0, pad.width, pad.height));
  $("classify").addEventListener("click", classifyDrawing);
  $("update").addEventListener("click", runUpdate);
  $("rollback").addEventListener("click", runRollback);
}

setUpPad();
main().catch((err) => {
  setStatus(`Failed to start: ${err.name}: ${err.message}`, "error");
  console.error(err);
});
