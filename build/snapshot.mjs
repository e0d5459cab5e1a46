// Make the Pyodide memory snapshot the worker starts from: the interpreter with the waystation
// wheel unpacked and the modules a worker imports to open a bundle already imported.
//
//   node build/snapshot.mjs PYODIDE_DIR WHEEL OUT_FILE PYTHON_IMPORT_STATEMENT
//
// Uses the site's own copy of Pyodide (the snapshot only fits the pyodide.asm.wasm it was made
// with) and writes the snapshot gzip-compressed (31 MB -> ~6 MB on the wire and in the cache).
// Nothing of JS may be held by Python at this point: the worker registers its JS modules
// (_waystation_ort, _waystation_state, _waystation_data) after loading, and the modules below
// reach them lazily.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";

const [pyodideDir, wheel, outFile] = process.argv.slice(2, 5).map((p) => path.resolve(p));
const imports = process.argv[5];
const { loadPyodide } = await import(pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({
  indexURL: pyodideDir + "/",
  lockFileURL: path.join(pyodideDir, "pyodide-lock.json"),
  _makeSnapshot: true,
  stdout: (line) => process.stderr.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
pyodide.unpackArchive(new Uint8Array(fs.readFileSync(wheel)), "wheel");
pyodide.runPython(imports);
fs.writeFileSync(outFile, gzipSync(pyodide.makeMemorySnapshot(), { level: 6 }));
