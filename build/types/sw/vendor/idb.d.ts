// The type checker's view of dist/sw/vendor/idb.js, which `waystation build` copies from npm's idb.
export * from "idb";
