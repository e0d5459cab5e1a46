// The type checker's view of dist/vendor/crdt.js, which `waystation build` bundles from build/modules/crdt.js.
export * from "../../modules/crdt.js";
