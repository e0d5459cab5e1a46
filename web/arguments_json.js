// A call's arguments as JSON text that keeps NaN and Infinity visible to Python.
//
// JSON has no NaN or Infinity, and JSON.stringify quietly writes them as null: a NaN in the
// page would reach the workflow as None, where CPython's `waystation run` refuses it. So such a
// number is written as the literal NaN, Infinity or -Infinity (which Python's json reads), and
// waystation.device.arguments refuses it on both hosts alike, naming where it is. A text
// without "null" in it had none, so the common case costs one scan of the text.
export { argumentsJson };

const MARK = "\u0000waystation-non-finite:";
const MARKED = /"\\u0000waystation-non-finite:(NaN|Infinity|-Infinity)"/g;

/** @param {unknown} args @returns {string} */
function argumentsJson(args) {
  const text = JSON.stringify(args);
  if (!text.includes("null")) return text;
  const marked = JSON.stringify(args, (_key, value) => (typeof value === "number" && !Number.isFinite(value) ? MARK + value : value));
  return marked.replace(MARKED, "$1");
}
