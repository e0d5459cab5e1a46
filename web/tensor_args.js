// A call's arguments as JSON text, with bulk numbers moved beside it as typed arrays.
//
// A typed array (or a {dtype, shape, data} tensor, as results come back) anywhere at the top
// level of the arguments travels as one buffer and reaches Python as a Tensor over one copy of
// its bytes; a nested list of numbers given to a parameter annotated `Tensor` is packed into
// a typed array here, in JS, instead of becoming a Python list of Python floats. Everything else
// is JSON, as before. The Python half is `_with_tensors` in py_src/waystation/device/_bridge.py.
import { argumentsJson } from "./arguments_json.js";

export { tensorArgs };

/** @type {Record<string, any>} dtype -> typed array constructor */
const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
};
const DTYPES = new Map(Object.entries(ARRAYS).map(([dtype, array]) => [array, dtype]));

/**
 * @param {Record<string, unknown> | unknown[]} args named arguments, or positional ones
 * @param {Record<string, string>} [tensorParams] parameter -> dtype, for parameters that take tensors
 * @param {string[]} [paramNames] the function's parameters in order (for positional arguments)
 * @returns {{json: string, buffers: ArrayBufferView[]}}
 */
function tensorArgs(args, tensorParams = {}, paramNames = []) {
  /** @type {ArrayBufferView[]} */
  const buffers = [];
  const place = (/** @type {unknown} */ value, /** @type {string | undefined} */ dtype) => {
    const tensor = asTensor(value, dtype);
    if (!tensor) return value;
    buffers.push(tensor.data);
    return { $tensor: buffers.length - 1, dtype: tensor.dtype, shape: tensor.shape };
  };
  const placed = Array.isArray(args)
    ? args.map((value, i) => place(value, tensorParams[paramNames[i]]))
    : Object.fromEntries(Object.entries(args).map(([name, value]) => [name, place(value, tensorParams[name])]));
  return { json: argumentsJson(placed), buffers }; // NaN and Infinity stay visible, for Python to refuse
}

/**
 * `value` as {dtype, shape, data}, or null when it stays JSON.
 * @param {unknown} value @param {string | undefined} dtype what the parameter takes, if a tensor
 * @returns {{dtype: string, shape: number[], data: ArrayBufferView} | null}
 */
function asTensor(value, dtype) {
  if (ArrayBuffer.isView(value) && DTYPES.has(/** @type {any} */ (value).constructor)) {
    return convert(value, [/** @type {any} */ (value).length], dtype);
  }
  const t = /** @type {any} */ (value);
  if (t && typeof t === "object" && ArrayBuffer.isView(t.data) && Array.isArray(t.shape) && DTYPES.has(t.data.constructor)) {
    return convert(t.data, t.shape, dtype);
  }
  if (dtype && Array.isArray(value)) return packNested(value, dtype);
  return null;
}

/** `data` in the parameter's dtype (converted in JS when it differs). @param {any} data @param {number[]} shape @param {string | undefined} dtype */
function convert(data, shape, dtype) {
  const have = /** @type {string} */ (DTYPES.get(data.constructor));
  if (!dtype || dtype === have || !ARRAYS[dtype]) return { dtype: have, shape, data };
  const bigint = dtype.endsWith("int64");
  if (bigint !== have.endsWith("int64")) return { dtype: have, shape, data }; // Python names the mismatch
  return { dtype, shape, data: ARRAYS[dtype].from(data) };
}

/**
 * A rectangular nested list of finite numbers (integers for an integer dtype) packed into one
 * typed array; null when it is not one (ragged, or holding anything else), so that Python's
 * argument check names the problem. int64 stays JSON: its values would need BigInts.
 * @param {unknown[]} rows @param {string} dtype
 */
function packNested(rows, dtype) {
  const Array_ = ARRAYS[dtype];
  if (!Array_ || dtype.endsWith("int64")) return null;
  /** @type {number[]} */
  const shape = [];
  for (let level = /** @type {any} */ (rows); Array.isArray(level); level = level[0]) {
    shape.push(level.length);
    if (!level.length) break;
  }
  const data = new Array_(shape.reduce((n, d) => n * d, 1));
  const ok = dtype.startsWith("float") ? Number.isFinite : Number.isInteger;
  let at = 0;
  const fill = (/** @type {any} */ level, /** @type {number} */ depth) => {
    if (!Array.isArray(level) || level.length !== shape[depth]) return false;
    if (depth === shape.length - 1) {
      for (const v of level) {
        if (typeof v !== "number" || !ok(v)) return false;
        data[at++] = v;
      }
      return true;
    }
    for (const row of level) if (!fill(row, depth + 1)) return false;
    return true;
  };
  return fill(rows, 0) ? { dtype, shape, data } : null;
}
