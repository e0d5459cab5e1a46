// What the page's worker needs of Yjs and its providers, as one ES module: `waystation build`
// bundles this with esbuild into dist/vendor/crdt.js. A module worker cannot resolve bare
// specifiers ("yjs", "lib0/...") and has no import maps, and Yjs must be one copy: its types
// are checked with instanceof, so Y, the IndexedDB provider and the WebSocket provider share it.
export * as Y from "yjs";
export { IndexeddbPersistence } from "y-indexeddb";
export { WebsocketProvider } from "y-websocket";
