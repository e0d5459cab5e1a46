// The picks demo: recipes reordered by the clicks of the last five minutes, on the device.
// A click is an event (app.events.add), stored durably in the device's database before the list
// reorders; `rerank` joins the clicks with the items feature table (MiniLM embeddings published by
// the server) and scores the list with a small ONNX graph. Offline, all of it keeps working.
import { open } from "./waystation.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ACCOUNT = "waystation-account"; // the notes page's saved sign-in, if any: clicks then relay

/** @type {import("./waystation.js").App | any} */
let app = null;
/** @type {{item_id: string, title: string}[]} */
let items = [];
let renders = 0;

function setStatus(/** @type {string} */ text, /** @type {string} */ state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

function showOnline() {
  if (app) setStatus(navigator.onLine ? `Ready: ${app.info.name} ${app.version}` : `Offline: ${app.info.name} ${app.version} runs on this device`, navigator.onLine ? "ready" : "offline");
}

function showError(/** @type {unknown} */ err) {
  const e = /** @type {Error} */ (err);
  $("error").hidden = false;
  $("error").textContent = `${e.name}: ${e.message}`;
}

/** @param {any} status {relay: {state, sent}, features: {items: {version, changed, ...}}} */
function showData(status) {
  const relay = status.relay;
  const table = status.features?.items;
  const relayText = relay.state === "signed-out" ? "clicks stay on this device (not signed in)" : `relay ${relay.state}, ${relay.sent} sent`;
  $("data").textContent = `${relayText}` + (table?.version ? ` · items v${table.version}` : "");
  $("data").dataset.state = relay.state;
}

async function main() {
  const progress = /** @type {HTMLProgressElement} */ ($("progress"));
  const saved = JSON.parse(localStorage.getItem(ACCOUNT) ?? "null");
  app = await open({
    bundle: "picks",
    sync: saved,
    relay: true,
    onProgress: (p) => {
      // A first visit the network interrupted says so, and goes on by itself when it is back.
      setStatus(p.message ?? `${p.stage}${p.file ? `: ${p.file}` : ""}`, p.stage === "waiting-for-network" ? "waiting" : "loading");
      if (p.total) progress.value = (p.loaded ?? 0) / p.total;
    },
  });
  progress.hidden = true;
  Object.assign(globalThis, { app, picks: { render, load } }); // for the console and the end-to-end tests
  let version = 0;
  app.addEventListener("data", (/** @type {CustomEvent} */ e) => {
    showData(e.detail);
    const now = e.detail.features?.items?.version ?? 0;
    if (now !== version) {
      version = now;
      load().catch(showError);
    }
  });
  showData(await app.events.status());
  showOnline();
  addEventListener("online", showOnline);
  addEventListener("offline", showOnline);
  await load();
}

/** The recipes from the device's copy of the items table, then the list. */
async function load() {
  items = await app.call("catalog");
  await render();
}

/** Ask Python for the order and draw the list. */
async function render() {
  const started = performance.now();
  const order = await app.call("rerank", { item_ids: items.map((item) => item.item_id) });
  const byId = new Map(items.map((item) => [item.item_id, item]));
  const list = $("items");
  list.replaceChildren(...order.map((/** @type {string} */ id, /** @type {number} */ position) => {
    const li = document.createElement("li");
    li.dataset.id = id;
    const button = document.createElement("button");
    button.textContent = byId.get(id)?.title ?? id;
    button.addEventListener("click", () => click(id, position).catch(showError));
    li.append(button);
    return li;
  }));
  const recent = await app.call("recent_clicks");
  $("recent").replaceChildren(...recent.map((/** @type {any} */ row) => {
    const li = document.createElement("li");
    li.textContent = `${byId.get(row.item_id)?.title ?? row.item_id}: ${row.clicks}`;
    return li;
  }));
  $("latency").textContent = `reordered on the device in ${(performance.now() - started).toFixed(1)} ms`;
  list.dataset.renders = String(++renders);
}

async function click(/** @type {string} */ id, /** @type {number} */ position) {
  await app.events.add("clicks", { item_id: id, position });
  await render();
}

main().catch((err) => {
  setStatus(`Could not start: ${err.name}: ${err.message}`, "error");
  showError(err);
});
