// The digits demo: draw a digit, and a Python workflow in a worker classifies it on the device.
import { open } from "./waystation.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const pad = /** @type {HTMLCanvasElement} */ ($("pad"));
const INPUT_SIZE = 32; // the drawing is sent to Python as 32x32 ink intensities

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
      setStatus(p.message ?? `${p.stage}${p.file ? `: ${p.file}` : ""}`, "loading");
      if (p.total) progress.value = (p.loaded ?? 0) / p.total;
    },
  });
  progress.hidden = true;
  showOnline();
  addEventListener("online", showOnline);
  addEventListener("offline", showOnline);
  $("facts").textContent = `Started in ${Math.round(app.info.startupMs)} ms · cross-origin isolated: ${app.info.crossOriginIsolated} · ORT threads: ${app.info.ortThreads}`;
  /** @type {HTMLButtonElement} */ ($("classify")).disabled = false;
  await showSamples();
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
}

setUpPad();
main().catch((err) => {
  setStatus(`Failed to start: ${err.name}: ${err.message}`, "error");
  console.error(err);
});
