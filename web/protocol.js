// Every message between the page (web/waystation.js), its bundle worker (web/worker.js) and the
// service worker (sw/messages.js), named once. Each side imports these names instead of spelling
// the strings itself, so a renamed or misspelt message is a type error (tsc --checkJs), not a
// request that is never answered. It sits at the site's root beside waystation.js and worker.js;
// the service worker's modules import it from there (../protocol.js).
//
// Page -> bundle worker: {id, type: WORKER.*, ...}; the worker replies {id, ok, value | error},
// sends {id, type: WORKER_EVENT.progress, ...} while it opens, and events without an id.
// Page -> service worker: {type: STORE.*, ...} with a MessagePort of its own; progress comes back
// on it as {type: STORE_EVENT.progress, progress}, then one reply {ok, value | error}.

export { STORE, STORE_BROADCAST, STORE_EVENT, WORKER, WORKER_EVENT };

/** What the page asks its bundle worker (see web/worker.js for each one's fields). */
const WORKER = Object.freeze({
  /** start Python now */
  boot: "boot",
  /** {bundle, version?, account?, relay?, webgpu?, logLevel?, telemetry?}: open a bundle version */
  open: "open",
  /** {name, args}: call an exported workflow function */
  call: "call",
  /** the open bundle's smoke check */
  smoke: "smoke",
  /** {account | null}: sync state with the server as this account, or stop */
  sync: "sync",
  /** {online}: the page's view of the network */
  network: "network",
  /** {adds: [{name, events}]}: store events */
  events: "events",
  /** {enabled?, flush?}: relay events to the server */
  relay: "relay",
  /** sync the feature tables now */
  features: "features",
  /** the relay's and the feature sync's state */
  dataStatus: "data-status",
  /** {level: "debug" | "info" | "warning" | "error" | null}: remote logging on at that level, or off */
  logging: "logging",
  /** upload the remote log lines kept now */
  logs: "logs",
});

/** What the bundle worker tells the page without being asked (no id), and its progress (with one). */
const WORKER_EVENT = Object.freeze({
  progress: "progress",
  /** {status}: the sync state changed */
  sync: "sync",
  /** {documents}: state documents changed other than by this worker's Python */
  state: "state",
  /** {status}: the relay or the feature sync changed */
  data: "data",
});

/** What the page asks the service worker's bundle store (see sw/messages.js for each one's fields). */
const STORE = Object.freeze({
  install: "install",
  check: "check",
  update: "update",
  activate: "activate",
  discard: "discard",
  rollback: "rollback",
  versions: "versions",
  /** {bundle, channel?, updates?, saveData?}: check in with the server now (service_worker/sw/checkin.js) */
  checkin: "checkin",
});

/** What the service worker sends on a request's port before its reply. */
const STORE_EVENT = Object.freeze({ progress: "progress" });

/** What the service worker posts to every page of its scope, unasked. */
const STORE_BROADCAST = Object.freeze({
  /** {bundle, status, active, moved, update}: a check-in's answer (status: the server's) and what the store did */
  checkin: "waystation-checkin",
});
