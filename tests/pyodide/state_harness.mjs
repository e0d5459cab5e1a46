// Serves state commands to pytest from real Pyodide under Node, with real Yjs as the CRDT:
// the browser state backend (hosts/state_browser.py + web/state_host.js), minus the browser.
//
//   node tests/pyodide/state_harness.mjs PY_SRC_DIR DRIVER.py
//
// Boots Pyodide, registers `makeStateHost(Y)` as `_waystation_state` (as web/worker.js does),
// puts PY_SRC_DIR and the driver's folder on sys.path, prints "ready", then answers each
// JSON line on stdin with one JSON line on stdout: the driver's `handle(line)`, or for
// {"cmd": "js_snapshot", "doc"} the document read by Yjs itself, not through Python.
import path from "node:path";
import readline from "node:readline";
import { loadPyodide } from "pyodide";
import * as Y from "yjs";
import { makeStateHost } from "../../web/state_host.js";

const [pySrc, driverFile] = process.argv.slice(2).map((p) => path.resolve(p));
const log = (line) => process.stderr.write(line + "\n");

const pyodide = await loadPyodide({ stdout: log, stderr: log });
const host = makeStateHost(Y);
pyodide.registerJsModule("_waystation_state", host);
for (const [dir, at] of [[pySrc, "/py_src"], [path.dirname(driverFile), "/driver"]]) {
  pyodide.FS.mkdirTree(at);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: dir }, at);
}
const handle = await pyodide.runPythonAsync(`
import sys
sys.path[:0] = ["/py_src", "/driver"]
from ${path.basename(driverFile, ".py")} import handle
handle
`);

/** @param {string} name */
function jsSnapshot(name) {
  const doc = host.doc(name);
  let total = 0;
  for (const value of doc.getMap("c").values()) total += value;
  return { m: doc.getMap("m").toJSON(), l: doc.getArray("l").toJSON(), t: doc.getText("t").toString(), c: total };
}

console.log("ready");
for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  const command = JSON.parse(line);
  if (command.cmd === "js_snapshot") console.log(JSON.stringify({ ok: true, value: jsSnapshot(command.doc) }));
  else console.log(handle(line));
}
handle.destroy();
