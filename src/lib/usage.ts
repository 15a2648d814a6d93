/**
 * Billable operations this isolate has caused, counted where they happen (not estimated):
 * every Worker invocation, queue message written/read/deleted, Durable Object request and
 * SQLite row, D1 row. Cloudflare bills exactly these meters; the benchmark reads the totals.
 * In-memory per isolate: on one machine (wrangler dev) that is the whole platform.
 */
export const USAGE_METERS = [
  "worker_requests",
  "queue_operations",
  "do_requests",
  "do_rows_read",
  "do_rows_written",
  "d1_rows_read",
  "d1_rows_written",
] as const;
export type UsageMeter = (typeof USAGE_METERS)[number];

const totals: Record<UsageMeter, number> = Object.fromEntries(USAGE_METERS.map((m) => [m, 0])) as Record<UsageMeter, number>;

export function countUsage(meter: UsageMeter, quantity = 1): void {
  totals[meter] += quantity;
}

export function usageTotals(reset = false): Record<UsageMeter, number> {
  const snapshot = { ...totals };
  if (reset) for (const meter of USAGE_METERS) totals[meter] = 0;
  return snapshot;
}

/** D1 reports the rows each statement read and wrote. */
export function countD1(results: { meta: { rows_read?: number; rows_written?: number } } | { meta: { rows_read?: number; rows_written?: number } }[]): void {
  for (const result of Array.isArray(results) ? results : [results]) {
    countUsage("d1_rows_read", result.meta.rows_read ?? 0);
    countUsage("d1_rows_written", result.meta.rows_written ?? 0);
  }
}
