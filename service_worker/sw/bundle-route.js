// The worker's bundle requests, answered from IndexedDB: `bundles/NAME/latest.json` (which
// version is active) and `bundles/NAME/VERSION/PATH` (a file assembled from its chunks), so a
// bundle works offline and is stored once. A version the store does not hold goes to the network
// (the site's own build, when the page runs without a bundle store). A GET changes nothing: a
// version staged for the next load becomes active when the page opens the bundle (the "install"
// request, sw/messages.js), not when something reads latest.json.

export { bundleRoute };

const ROUTE = /^bundles\/([^/]+)\/(?:latest\.json|([^/]+)\/(.+))$/;
const TYPES = { json: "application/json", py: "text/x-python; charset=utf-8", onnx: "application/octet-stream" };

/**
 * A handler for `path` (relative to the scope), or null when it is not a bundle request.
 * @param {string} path
 * @param {() => Promise<import("./bundle-store.js").BundleStore>} store
 * @returns {((request: Request) => Promise<Response>) | null}
 */
function bundleRoute(path, store) {
  const match = ROUTE.exec(path);
  if (!match) return null;
  const [name, version, file] = [match[1], match[2], match[3]].map((p) => p && decodeURIComponent(p));
  return async (request) => {
    try {
      const bundles = await store();
      if (!version) {
        const { active } = await bundles.pointers(name);
        return active ? reply(JSON.stringify({ version: active }), "json") : fetch(request);
      }
      const record = await bundles.version(name, version);
      if (!record || record.state === "fetching") return fetch(request);
      if (file === "manifest.json") return reply(record.manifest, "json");
      const bytes = await bundles.readFile(name, version, file);
      return bytes ? reply(bytes, file.split(".").pop() ?? "") : new Response(JSON.stringify({ error: { type: "not-found", message: `${name} ${version} has no file ${file}` } }), { status: 404 });
    } catch (err) {
      const e = /** @type {any} */ (err);
      return new Response(JSON.stringify({ error: { type: e.code ?? e.name, message: e.message } }), { status: 500, headers: { "Content-Type": TYPES.json } });
    }
  };
}

/** @param {BodyInit} body @param {string} extension */
function reply(body, extension) {
  const type = TYPES[/** @type {keyof typeof TYPES} */ (extension)] ?? "application/octet-stream";
  return new Response(body, { headers: { "Content-Type": type, "Cache-Control": "no-store", "X-Waystation-Source": "indexeddb" } });
}
