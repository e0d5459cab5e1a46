// An app written in TypeScript against Waystation's shipped declarations (waystation.d.ts and
// widget.d.ts, which `waystation build` writes beside waystation.js and widget.js). Here the
// runtime sits in ./waystation/, as `waystation build --runtime-only --out waystation` puts it.
// tests/unit/test_types.py compiles this file with `tsc --noEmit --strict`: if the declarations
// stop describing the API this uses, that test fails.

import { type Account, App, login, open, register, type SyncStatus, WaystationError } from "./waystation/waystation.js";
import { WaystationApp, type WaystationAppEventMap } from "./waystation/widget.js";

type Answer = { digit: number };

async function classify(app: App, pixels: number[]): Promise<number> {
  const answers = (await app.call("classify_features", { features: [pixels] })) as Answer[];
  return answers[0].digit;
}

export async function main(pixels: number[]): Promise<void> {
  const app: App = await open({
    bundle: "digits",
    channel: "stable",
    onProgress: (p) => console.log(p.stage, p.loaded ?? 0, p.total ?? 0),
  });
  console.log(app.version, Object.keys(app.functions), await classify(app, pixels));

  try {
    await app.call("classify_features", { features: [[1, 2, 3]] });
  } catch (err) {
    if (err instanceof WaystationError) console.log(err.name, err.message, err.traceback ?? "", err.details);
  }

  const check = await app.checkForUpdate({ channel: "stable" });
  if (!check.upToDate) {
    const result = await app.update({ channel: "stable", activate: "now", onProgress: (p) => console.log(p) });
    const fetched: number = result.fetchedBytes;
    console.log(`${result.from} -> ${result.to}: ${fetched} of ${result.totalBytes} bytes`);
  }

  let account: Account;
  try {
    account = await register({ user: "ada", password: "a long passphrase" });
  } catch {
    account = await login({ user: "ada", password: "a long passphrase" });
  }
  const status: SyncStatus = await app.connect(account);
  console.log(status.state, status.user);
  app.addEventListener("sync", (e) => console.log((e as CustomEvent<SyncStatus>).detail.state));
  await app.events.add("clicks", { item_id: "r12", position: 3 });
  await app.disconnect();
  app.close();
}

export async function widget(pixels: number[]): Promise<void> {
  const el = document.createElement("waystation-app") as WaystationApp;
  el.bundle = "digits";
  el.channel = "stable";
  el.noServiceWorker = false;
  // The element's events are typed by name: `detail` needs no cast.
  el.addEventListener("progress", (e) => console.log(e.detail.stage, e.detail.loaded, e.detail.total));
  el.addEventListener("updateready", ({ detail }) => {
    if (confirm(`update to ${detail.to}?`)) el.update().then((r) => console.log(r.to));
  });
  el.addEventListener("error", ({ detail }) => console.log(detail.during, detail.error.name, detail.error.message));
  el.addEventListener("sync", ({ detail }) => console.log(detail.state));
  const onReady = (e: WaystationAppEventMap["ready"]) => console.log(e.detail.version);
  el.addEventListener("ready", onReady);
  el.removeEventListener("ready", onReady);
  document.body.append(el);
  const app: App = await el.ready;
  const viaWidget = (await el.call("classify_features", { features: [pixels] })) as Answer[];
  console.log(app.version === el.version, viaWidget[0].digit, el.state, el.offline, el.updateReady?.to);
}
