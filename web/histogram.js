// The telemetry histograms' arithmetic on the device; the server does the same in Python
// (py_src/waystation/server/histogram.py), so a report's numbers mean one thing on both sides.
//
// A latency histogram (ms) is DDSketch-style: log buckets of ratio GAMMA, mergeable by adding
// counts, any quantile read from it within 2% of a sample:
//   {n: 12, sum: 123.4, min: 0.8, max: 31.0, b: {"-5": 1, "12": 3}}
//   index(v) = ceil(log(max(v, 1e-3)) / log(GAMMA)), value(i) = 2 * GAMMA**i / (GAMMA + 1)
// A signal histogram counts recorded values per bin of a bundle's declared edges:
//   {n: 40, counts: [c0, ..., c_len(edges)]}, bins (-inf, e0), [e0, e1), ..., [e_last, +inf)
// and PSI compares its counts with the bundle's reference distribution.
export { addLatency, addSignal, emptyLatency, emptySignal, GAMMA, index, latencyJson, mergeLatency, psi, quantile, signalBin, value };

const GAMMA = 1.04;
const LOG_GAMMA = Math.log(GAMMA);
const SMALLEST = 1e-3; // ms: every shorter time shares the bucket of 1 microsecond
const PSI_FLOOR = 1e-4; // a proportion of zero would make ln(a / r) infinite

/** @typedef {{n: number, sum: number, min: number | null, max: number | null, b: Record<string, number>}} Latency */
/** @typedef {{n: number, counts: number[]}} SignalCounts */

/** The bucket of `v` ms. @param {number} v */
function index(v) {
  return Math.ceil(Math.log(Math.max(v, SMALLEST)) / LOG_GAMMA);
}

/** A bucket's representative value. @param {number} i */
function value(i) {
  return (2 * GAMMA ** i) / (GAMMA + 1);
}

/** @returns {Latency} */
function emptyLatency() {
  return { n: 0, sum: 0, min: null, max: null, b: {} };
}

/** Count one sample of `v` ms. @param {Latency} h @param {number} v */
function addLatency(h, v) {
  const key = index(v);
  h.b[key] = (h.b[key] ?? 0) + 1;
  h.n += 1;
  h.sum += v;
  if (h.min === null || v < h.min) h.min = v;
  if (h.max === null || v > h.max) h.max = v;
}

/** `into` plus `h`'s samples (in place). @param {Latency} into @param {Latency} h */
function mergeLatency(into, h) {
  for (const [key, count] of Object.entries(h.b)) into.b[key] = (into.b[key] ?? 0) + count;
  into.n += h.n;
  into.sum += h.sum;
  if (h.min !== null && (into.min === null || h.min < into.min)) into.min = h.min;
  if (h.max !== null && (into.max === null || h.max > into.max)) into.max = h.max;
  return into;
}

/**
 * The q-quantile (0 <= q <= 1) of the histogram's samples, null when it has none.
 * @param {Latency} h @param {number} q
 */
function quantile(h, q) {
  if (h.n <= 0 || h.min === null || h.max === null) return null;
  const rank = q * (h.n - 1);
  const keys = Object.keys(h.b).map(Number).sort((a, b) => a - b);
  let seen = 0;
  for (const i of keys) {
    seen += h.b[i];
    if (seen > rank) return Math.min(Math.max(value(i), h.min), h.max);
  }
  return h.max; // counts that add up to less than n: the largest sample is the best answer
}

/** @param {number} x */
const round4 = (x) => Math.round(x * 1e4) / 1e4;

/** The histogram as a report holds it: its numbers rounded to 4 decimals. @param {Latency} h @returns {Latency} */
function latencyJson(h) {
  return { n: h.n, sum: round4(h.sum), min: h.min === null ? null : round4(h.min), max: h.max === null ? null : round4(h.max), b: { ...h.b } };
}

/** @param {number} bins @returns {SignalCounts} */
function emptySignal(bins) {
  return { n: 0, counts: new Array(bins).fill(0) };
}

/**
 * The bin of `v` among increasing `edges`: 0 below edges[0], i for [edges[i-1], edges[i]), edges.length at or above the last.
 * @param {number[]} edges @param {number} v
 */
function signalBin(edges, v) {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v >= edges[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Count one recorded value. @param {SignalCounts} s @param {number[]} edges @param {number} v */
function addSignal(s, edges, v) {
  s.counts[signalBin(edges, v)] += 1;
  s.n += 1;
}

/**
 * The population stability index of `actual` counts against `reference` counts (same bins),
 * rounded to 4 decimals; null when either side has no counts.
 * @param {number[]} actual @param {number[]} reference
 */
function psi(actual, reference) {
  if (actual.length !== reference.length) throw new RangeError(`PSI needs as many bins on both sides: ${actual.length} actual, ${reference.length} reference`);
  const totalA = actual.reduce((s, c) => s + c, 0);
  const totalR = reference.reduce((s, c) => s + c, 0);
  if (totalA <= 0 || totalR <= 0) return null;
  let score = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = Math.max(actual[i] / totalA, PSI_FLOOR);
    const r = Math.max(reference[i] / totalR, PSI_FLOOR);
    score += (a - r) * Math.log(a / r);
  }
  return round4(score);
}
