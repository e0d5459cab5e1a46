// The notes demo: semantic search and zero-shot tagging, on the device, offline after one visit.
// The notes live in the workflow's CRDT state (ctx.state("notes")): kept in IndexedDB, and synced
// between the user's devices through the server once they sign in.
import { login, open, register } from "./waystation.js";

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const ACCOUNT = "waystation-account"; // {user, token, issuedAt, expiresAt} of the signed-in user, on this device
const SYNC_TEXT = {
  local: () => "Notes stay on this device.",
  offline: () => "Offline: edits are kept on this device and sent when the network is back.",
  syncing: () => "Syncing with the server…",
  synced: (/** @type {any} */ s) => `Up to date: synced with the server as ${s.user}.`,
  unauthorized: (/** @type {any} */ s) => `The server refused to sync (${s.reason}): sign in again.`,
  refused: (/** @type {any} */ s) => `The server refused to sync (${s.reason}); notes stay on this device.`,
};
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

function savedAccount() {
  try {
    const saved = JSON.parse(localStorage.getItem(ACCOUNT) ?? "null");
    return typeof saved?.user === "string" && typeof saved?.token === "string" ? saved : null;
  } catch {
    return null;
  }
}

/** Keep `account` for the next visit, unless it is the one kept already (other tabs follow a change). */
function saveAccount(/** @type {any} */ account) {
  const saved = savedAccount();
  if (account && (saved?.user !== account.user || saved?.token !== account.token)) localStorage.setItem(ACCOUNT, JSON.stringify(account));
}

function showSync(/** @type {any} */ status) {
  $("sync").textContent = SYNC_TEXT[/** @type {keyof typeof SYNC_TEXT} */ (status.state)](status);
  $("sync").dataset.state = status.state;
  // A refused token will not work next time either: forget it and ask to sign in again.
  if (status.state === "unauthorized") localStorage.removeItem(ACCOUNT);
  const signedIn = status.user !== null && status.state !== "unauthorized";
  $("signed-in").hidden = !signedIn;
  $("account-form").hidden = signedIn;
  $("user-name").textContent = status.user ?? "";
}

async function main() {
  const progress = $("progress");
  app = await open({
    bundle: "minilm",
    sync: savedAccount(), // signed in on an earlier visit: that account's notes, synced
    telemetry: new URLSearchParams(location.search).has("telemetry"), // ?telemetry opts in (docs/telemetry.md)
    onProgress: (p) => {
      const mb = p.total ? ` ${((p.loaded ?? 0) / 1e6).toFixed(1)} / ${(p.total / 1e6).toFixed(1)} MB` : "";
      // A first visit the network interrupted says so, and goes on by itself when it is back.
      setStatus(p.message ?? `${p.stage}${p.file ? `: ${p.file}` : ""}${mb}`, p.stage === "waiting-for-network" ? "waiting" : "loading");
      if (p.total) progress.value = (p.loaded ?? 0) / p.total;
    },
  });
  progress.hidden = true;
  Object.assign(globalThis, { app }); // the open app, for the console (and the end-to-end tests), as on the digits page
  saveAccount(app.account); // open() renews a token past half its life
  app.addEventListener("account", (/** @type {any} */ e) => saveAccount(e.detail.account));
  app.addEventListener("sync", (/** @type {any} */ e) => showSync(e.detail));
  app.addEventListener("statechange", () => render());
  showSync(app.syncStatus);
  // Another tab of this browser signed in or out: follow it, so both show the same notes.
  addEventListener("storage", async (/** @type {StorageEvent} */ e) => {
    if (e.key !== ACCOUNT) return;
    const account = savedAccount();
    showSync(account ? await app.connect(account) : await app.disconnect({ revoke: false })); // it revoked it
    await render();
  });
  await render();
  showOnline();
  addEventListener("online", showOnline);
  addEventListener("offline", showOnline);
  $("facts").textContent = `Started in ${Math.round(app.info.startupMs)} ms · cross-origin isolated: ${app.info.crossOriginIsolated} · ORT threads: ${app.info.ortThreads}`;
  for (const id of ["add", "search", "login", "register"]) $(id).disabled = false;
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
  $("count").textContent = `(${notes.length})`;
  $("empty").hidden = notes.length > 0;
  $("notes").replaceChildren(...notes.map((/** @type {any} */ note) => {
    const li = document.createElement("li");
    li.dataset.id = note.id;
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

$("examples").addEventListener("click", async () => {
  await call("add_notes", { texts: EXAMPLES });
  await render();
});

/** Sign in (or create the account), keep the token on this device and start syncing. */
async function signIn(/** @type {typeof login} */ how) {
  $("account-error").hidden = true;
  try {
    const account = await how({ user: $("user").value.trim(), password: $("password").value });
    saveAccount(account);
    $("password").value = "";
    showSync(await app.connect(account));
    await render();
  } catch (err) {
    const e = /** @type {Error} */ (err);
    $("account-error").textContent = e.message;
    $("account-error").hidden = false;
  }
}

$("account-form").addEventListener("submit", (/** @type {Event} */ e) => {
  e.preventDefault();
  signIn(login);
});
$("register").addEventListener("click", () => {
  if ($("account-form").reportValidity()) signIn(register);
});
$("sign-out").addEventListener("click", async () => {
  localStorage.removeItem(ACCOUNT);
  showSync(await app.disconnect()); // revokes the token on the server when online
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
