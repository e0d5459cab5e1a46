// The JS half of the browser host (py_src/waystation/device/hosts/browser.py): onnxruntime-web
// behind two calls, so that one model run costs Python one interop round trip, not a dozen.
export { makeOrtHost };

/**
 * @param {any} ort the onnxruntime-web module
 */
function makeOrtHost(ort) {
  return {
    /**
     * @param {Uint8Array} model
     * @param {object} options onnxruntime-web session options
     */
    createSession(model, options) {
      return ort.InferenceSession.create(model, options);
    },

    /**
     * Run `session` on feeds given as [name, dtype, typed array, dims] rows; resolve to
     * [name, dtype, dims, typed array] rows for `outputNames`. Every ORT tensor is disposed here.
     * @param {any} session
     * @param {[string, string, any, number[]][]} feeds
     * @param {string[]} outputNames
     */
    async run(session, feeds, outputNames) {
      /** @type {Record<string, any>} */
      const inputs = {};
      for (const [name, dtype, data, dims] of feeds) inputs[name] = new ort.Tensor(dtype, data, dims);
      try {
        const results = await session.run(inputs);
        const rows = outputNames.map((name) => [name, results[name].type, results[name].dims, results[name].data]);
        for (const value of Object.values(results)) value.dispose();
        return rows;
      } finally {
        for (const tensor of Object.values(inputs)) tensor.dispose();
      }
    },
  };
}
