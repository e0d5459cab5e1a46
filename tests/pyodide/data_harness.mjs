// Runs the data layer's query cases inside real Pyodide under Node (its own sqlite3), from the
// source tree: waystation.device.data is pure Python, so no wheel or built site is needed.
//
//   node tests/pyodide/data_harness.mjs PY_SRC_DIR CASES.json
//
// Prints one JSON line: {platform, answers}, the answers in the order of the cases (see data_parity.py).
import fs from "node:fs";
import path from "node:path";
import { loadPyodide } from "pyodide";

const [pySrc, casesFile] = process.argv.slice(2).map((p) => path.resolve(p));
const pyodide = await loadPyodide({
  stdout: (line) => process.stderr.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
pyodide.FS.mkdirTree("/src");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: pySrc }, "/src");
pyodide.FS.writeFile("/tmp/data_parity.py", fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "data_parity.py")));
const run = await pyodide.runPythonAsync(`
import sys
sys.path[:0] = ["/src", "/tmp"]
import data_parity, json
lambda text: json.dumps({"platform": sys.platform, "answers": json.loads(data_parity.run_cases_json(text))})
`);
console.log(run(fs.readFileSync(casesFile, "utf8")));
run.destroy();
