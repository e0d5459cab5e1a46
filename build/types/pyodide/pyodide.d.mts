// The type checker's view of dist/pyodide/pyodide.mjs, which `waystation build` copies from npm's pyodide.
export * from "pyodide";
