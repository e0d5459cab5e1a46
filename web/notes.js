// The notes demo: semantic search and zero-shot tagging, on the device, offline after one visit.
import { open } from "./waystation.js";

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const STORE = "waystation-notes"; // until notes live in CRDT state, the page keeps their texts
const EXAMPLES = [
  "Buy oat milk, coffee beans and bread",
  "Quarterly planning meeting with the design team on Thursday",
  "Book the flight to Lisbon and a hotel near the old town",
  "Run 5 km three times a week and sleep before midnight",
  "An app idea: a plant-watering reminder that learns from the weather",
];

/** @type {any} */
let app = null;

function setStatus(/** @type {string} */ text, /** @type {string} */ state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function showOnline() {
  const name = `${app.info.name} ${app.version}`;
  if (navigator.onLine) setStatus(`Ready: ${name}`, "ready");
  else setStatus(`Offline: ${name} runs on this device`, "offline");
}

function savedTexts() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) ?? "null");
    return Array.isArray(saved) ? saved : null;
  } catch {
    return null;
  }
}

async function main() {
  const progress = $("progress");
  app = await open({
    bundle: "minilm",
    onProgress: (p) => {
      const mb = p.total ? ` ${((p.loaded ?? 0) / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB` : "";
      setStatus(p.message ?? `${p.stage}${p.file ? `: ${p.file}` : ""}${mb}`, "loading");
      if (p.total) progress.value = (p.loaded ?? 0) / p.total;
    },
  });
  progress.hidden = true;
  await call("add_notes", { texts: savedTexts() ?? EXAMPLES });
  await render();
  showOnline();
  addEventListener("online", showOnline);
  addEventListener("offline", showOnline);
  $("facts").textContent = `Started in ${Math.round(app.info.startupMs)} ms · cross-origin isolated: ${app.info.crossOriginIsolated} · ORT threads: ${app.info.ortThreads}`;
  $("add").disabled = false;
  $("search").disabled = false;
}

/** Call a workflow function, showing its latency or its error. */
async function call(/** @type {string} */ name, /** @type {object} */ args) {
  $("error").hidden = true;
  try {
    const result = await app.call(name, args);
    const { ms, metrics } = app.lastCall;
    const parts = ["tokenize_ms", "model_ms", "similarity_ms"].filter((k) => k in metrics).map((k) => `${k.replace("_ms", "")} ${metrics[k].toFixed(1)} ms`);
    $("latency").textContent = `${name}: ${ms.toFixed(1)} ms on this device (${parts.join(", ")})`;
    return result;
  } catch (err) {
    const e = /** @type {Error} */ (err);
    $("error").textContent = `${e.name}: ${e.message}`;
    $("error").hidden = false;
    return null;
  }
}

async function render() {
  const notes = await app.call("notes");
  localStorage.setItem(STORE, JSON.stringify(notes.map((/** @type {any} */ n) => n.text)));
  $("count").textContent = `(${notes.length})`;
  $("notes").replaceChildren(...notes.map((/** @type {any} */ note) => {
    const li = document.createElement("li");
    li.dataset.id = String(note.id);
    const body = document.createElement("div");
    body.append(note.text, document.createElement("br"), ...tagChips(note.tags));
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.textContent = "✕";
    remove.title = "remove this note";
    remove.addEventListener("click", async () => {
      await call("remove_note", { id: note.id });
      await render();
    });
    li.append(body, remove);
    return li;
  }));
}

function tagChips(/** @type {string[]} */ tags) {
  return tags.map((tag) => {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.textContent = tag;
    return chip;
  });
}

$("add-form").addEventListener("submit", async (/** @type {Event} */ e) => {
  e.preventDefault();
  const text = $("note-text").value;
  if (await call("add_notes", { texts: [text] })) $("note-text").value = "";
  await render();
});

$("search-form").addEventListener("submit", async (/** @type {Event} */ e) => {
  e.preventDefault();
  const results = await call("search", { query: $("query").value, k: 5 });
  if (!results) return;
  $("results").replaceChildren(...results.map((/** @type {any} */ r) => {
    const li = document.createElement("li");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    li.append(r.text, score, document.createElement("br"), ...tagChips(r.tags));
    return li;
  }));
});

main().catch((err) => {
  setStatus(`Failed to start: ${err.name}: ${err.message}`, "error");
  console.error(err);
});
