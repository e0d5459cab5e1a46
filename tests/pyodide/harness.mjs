// Runs Python check functions inside real Pyodide under Node, with onnxruntime-web's Node
// build as the model runtime: the browser host, minus the browser.
//
//   node tests/pyodide/harness.mjs SITE_DIR BUNDLE_DIR CHECKS.py
//
// Boots Pyodide from the built site (its trimmed lock file and wheels), installs the
// waystation wheel with micropip, mounts the bundle at /bundle, runs every `async def check_*`
// in CHECKS.py and prints one JSON line: {name: {ok, value | error}}.
import fs from "node:fs";
import path from "node:path";
import { loadPyodide } from "pyodide";
import * as ort from "onnxruntime-web";
import { makeOrtHost } from "../../web/ort_host.js";

const [siteDir, bundleDir, checksFile] = process.argv.slice(2).map((p) => path.resolve(p));
const boot = JSON.parse(fs.readFileSync(path.join(siteDir, "boot.json"), "utf8"));

const pyodide = await loadPyodide({
  indexURL: path.join(siteDir, "pyodide") + "/",
  lockFileURL: path.join(siteDir, "pyodide", "pyodide-lock.json"),
  stdout: (line) => process.stderr.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
pyodide.registerJsModule("_waystation_ort", makeOrtHost(ort));
await pyodide.loadPackage("micropip", { messageCallback: () => {} });
const wheelName = path.basename(boot.wheel);
pyodide.FS.writeFile(`/tmp/${wheelName}`, fs.readFileSync(path.join(siteDir, boot.wheel)));
const micropip = pyodide.pyimport("micropip");
await micropip.install.callKwargs(`emfs:/tmp/${wheelName}`, { deps: false });
micropip.destroy();

pyodide.FS.mkdirTree("/bundle");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: bundleDir }, "/bundle");

const namespace = pyodide.globals.get("dict")();
await pyodide.runPythonAsync(fs.readFileSync(checksFile, "utf8"), { globals: namespace, filename: checksFile });
const runner = await pyodide.runPythonAsync(
  `
import json, traceback

async def run_checks(namespace):
    results = {}
    for name, fn in list(namespace.items()):
        if name.startswith("check_") and callable(fn):
            try:
                results[name] = {"ok": True, "value": await fn()}
            except BaseException as exc:
                results[name] = {"ok": False, "error": "".join(traceback.format_exception(exc))}
    return json.dumps(results)
run_checks
`,
);
console.log(await runner(namespace));
namespace.destroy();
runner.destroy();
