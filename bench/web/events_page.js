// bench/events.py drives this page: it opens a bundle with waystation.open() and adds, queries, syncs.
import * as waystation from "/waystation.js";

Object.assign(globalThis, { waystation });
document.documentElement.dataset.ready = "1";
