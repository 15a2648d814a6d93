/**
 * The duration sketch every percentile comes from: a log-linear histogram of whole
 * milliseconds (the HDR-histogram layout). Values below 128 ms each have a bucket of their own
 * (exact); above, each power of two [2^k, 2^(k+1)) is split into 64 equal buckets, so a bucket
 * is never wider than 1/64 of its lower bound. A quantile is reported as the midpoint of the
 * bucket that holds the nearest-rank value, so it is within half a bucket of the exact value:
 * |reported − exact| ≤ exact / 128 (0.78 %), and exact below 128 ms.
 *
 * Histograms are sparse JSON objects {bucket index: count}, as D1 stores them
 * (`run_rollups.duration_hist`, `api_rollups.hist`); merging two is adding counts, so rollups
 * merge exactly: the sketch of a day is the sum of its hours' sketches. SQL computes the same
 * bucket index (`sqlBucketIndex`) and bounds (`sqlBucketLow`, `sqlBucketHigh`).
 */

/** Values below this are exact (one bucket per millisecond). */
export const EXACT_BELOW_MS = 128;
/** Sub-buckets per power of two above EXACT_BELOW_MS. */
const SUB_BUCKETS = 64;
/** The largest value kept; larger ones count in its bucket (about 2,230 years). */
export const MAX_SKETCH_MS = 2 ** 46 - 1;
/** The bound on a reported quantile's error, relative to the exact value. */
export const RELATIVE_ERROR = 1 / 128;

export const SKETCH_DESCRIPTION = {
  method: "log-linear histogram (exact below 128 ms, 64 buckets per power of two above), nearest rank, bucket midpoint",
  exactBelowMs: EXACT_BELOW_MS,
  relativeError: RELATIVE_ERROR,
} as const;

export type Histogram = Record<string, number>;

/** The bucket of a duration in ms (negative and fractional values are clamped and floored). */
export function bucketIndex(ms: number): number {
  const v = Math.min(MAX_SKETCH_MS, Math.max(0, Math.floor(ms)));
  if (v < EXACT_BELOW_MS) return v;
  const k = Math.floor(Math.log2(v));
  // log2 of a float can round across a power of two: settle k exactly.
  const exp = 2 ** k > v ? k - 1 : 2 ** (k + 1) <= v ? k + 1 : k;
  const width = 2 ** (exp - 6);
  return EXACT_BELOW_MS + (exp - 7) * SUB_BUCKETS + (Math.floor(v / width) - SUB_BUCKETS);
}

/** The whole milliseconds a bucket holds: [low, high]. */
export function bucketBounds(index: number): { low: number; high: number } {
  if (index < EXACT_BELOW_MS) return { low: index, high: index };
  const exp = 7 + Math.floor((index - EXACT_BELOW_MS) / SUB_BUCKETS);
  const sub = (index - EXACT_BELOW_MS) % SUB_BUCKETS;
  const width = 2 ** (exp - 6);
  const low = 2 ** exp + sub * width;
  return { low, high: low + width - 1 };
}

/** What a bucket reports: its midpoint (the value itself below 128 ms). */
export function bucketValue(index: number): number {
  const { low, high } = bucketBounds(index);
  return (low + high) / 2;
}

export function addToHistogram(hist: Histogram, ms: number, count = 1): Histogram {
  const key = String(bucketIndex(ms));
  hist[key] = (hist[key] ?? 0) + count;
  return hist;
}

/** Adds `from` into `into` (counts of the same bucket add up). */
export function mergeHistograms(into: Histogram, from: Histogram): Histogram {
  for (const [key, count] of Object.entries(from)) into[key] = (into[key] ?? 0) + count;
  return into;
}

export const histogramCount = (hist: Histogram) => Object.values(hist).reduce((a, b) => a + b, 0);

/**
 * The q-quantile (0 < q ≤ 1) by nearest rank: the value at rank ⌈q·N⌉ of the sorted values,
 * reported as its bucket's midpoint; null for an empty histogram.
 */
export function quantile(hist: Histogram, q: number): number | null {
  const entries = Object.entries(hist)
    .map(([k, n]) => [Number(k), n] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => a[0] - b[0]);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total - 1e-9));
  let seen = 0;
  for (const [index, n] of entries) {
    seen += n;
    if (seen >= rank) return bucketValue(index);
  }
  return bucketValue(entries[entries.length - 1]![0]);
}

/** The exact nearest-rank quantile of a list (what the sketch approximates); tests and docs. */
export function exactQuantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length - 1e-9)) - 1]!;
}

// ---- The same in SQL (SQLite integer arithmetic only: no math functions, which D1 may lack) ----

/** SQL: the bucket index of the integer expression `v` (ms), as bucketIndex computes it. */
export function sqlBucketIndex(v: string): string {
  const x = `MIN(MAX(CAST(${v} AS INTEGER), 0), ${MAX_SKETCH_MS})`;
  // floor(log2 x) for x ≥ 128: 7 plus the powers of two from 2^8 up that x reaches.
  const powers = Array.from({ length: 46 - 8 }, (_, i) => `(${x} >= ${2 ** (i + 8)})`).join(" + ");
  const exp = `(7 + ${powers})`;
  return `(CASE WHEN ${x} < ${EXACT_BELOW_MS} THEN ${x} ELSE ${EXACT_BELOW_MS} + (${exp} - 7) * ${SUB_BUCKETS} + ((${x} >> (${exp} - 6)) - ${SUB_BUCKETS}) END)`;
}

/** SQL: the lowest ms of bucket `i`. */
export function sqlBucketLow(i: string): string {
  return `(CASE WHEN ${i} < ${EXACT_BELOW_MS} THEN ${i} ELSE (1 << (7 + (${i} - ${EXACT_BELOW_MS}) / ${SUB_BUCKETS})) + ((${i} - ${EXACT_BELOW_MS}) % ${SUB_BUCKETS}) * (1 << (1 + (${i} - ${EXACT_BELOW_MS}) / ${SUB_BUCKETS})) END)`;
}

/** SQL: the highest ms of bucket `i`. */
export function sqlBucketHigh(i: string): string {
  return `(CASE WHEN ${i} < ${EXACT_BELOW_MS} THEN ${i} ELSE ${sqlBucketLow(i)} + (1 << (1 + (${i} - ${EXACT_BELOW_MS}) / ${SUB_BUCKETS})) - 1 END)`;
}
