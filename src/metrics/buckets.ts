/**
 * Time buckets of the metrics: UTC hours, days, weeks (from Monday) and months, over ranges
 * widened to whole hours (rollups are hourly). Pure: the JS side for the services and tests,
 * the SQL side (over an `hour` column of ms) for the queries and views.
 */
export const METRIC_BUCKETS = ["hour", "day", "week", "month"] as const;
export type MetricBucket = (typeof METRIC_BUCKETS)[number];

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export const minuteOf = (ms: number) => Math.floor(ms / MINUTE_MS) * MINUTE_MS;
export const hourOf = (ms: number) => Math.floor(ms / HOUR_MS) * HOUR_MS;

/** The start of the bucket holding `ms`. Weeks start on Monday 00:00 UTC. */
export function bucketStart(ms: number, bucket: MetricBucket): number {
  const d = new Date(ms);
  switch (bucket) {
    case "hour":
      return hourOf(ms);
    case "day":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    case "week": {
      const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      return day - sinceMonday * DAY_MS;
    }
    case "month":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  }
}

/** The start of the bucket after the one starting at `start`. */
export function nextBucket(start: number, bucket: MetricBucket): number {
  const d = new Date(start);
  switch (bucket) {
    case "hour":
      return start + HOUR_MS;
    case "day":
      return start + DAY_MS;
    case "week":
      return start + 7 * DAY_MS;
    case "month":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  }
}

/** Every bucket start from the one holding `from` up to the one holding `to − 1`. */
export function bucketsBetween(from: number, to: number, bucket: MetricBucket): number[] {
  const out: number[] = [];
  for (let b = bucketStart(from, bucket); b < to; b = nextBucket(b, bucket)) out.push(b);
  return out;
}

/** How many buckets [from, to) spans, without listing them. */
export function bucketCount(from: number, to: number, bucket: MetricBucket): number {
  if (bucket === "month") {
    const a = new Date(from);
    const b = new Date(to - 1);
    return (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + b.getUTCMonth() - a.getUTCMonth() + 1;
  }
  const size = bucket === "hour" ? HOUR_MS : bucket === "day" ? DAY_MS : 7 * DAY_MS;
  return Math.floor((to - 1 - bucketStart(from, bucket)) / size) + 1;
}

/**
 * Milliseconds of the bucket starting at `start` that lie inside [from, min(to, now)): the
 * time a rate is divided by (a partial first or last bucket, or the bucket now running).
 */
export function coveredMs(start: number, bucket: MetricBucket, from: number, to: number, now: number): number {
  const end = Math.min(nextBucket(start, bucket), to, now);
  return Math.max(0, end - Math.max(start, from));
}

/** SQL: the ISO-8601 start of the bucket of `column` (ms), e.g. "2026-11-30T00:00:00.000Z". */
export function sqlBucketStart(column: string, bucket: MetricBucket): string {
  const seconds = `${column} / 1000`;
  switch (bucket) {
    case "hour":
      return `strftime('%Y-%m-%dT%H:00:00.000Z', ${seconds}, 'unixepoch')`;
    case "day":
      return `strftime('%Y-%m-%dT00:00:00.000Z', ${seconds}, 'unixepoch')`;
    // Six days back, then forward to the next Monday: the Monday on or before the day.
    case "week":
      return `strftime('%Y-%m-%dT00:00:00.000Z', ${seconds}, 'unixepoch', '-6 days', 'weekday 1')`;
    case "month":
      return `strftime('%Y-%m-01T00:00:00.000Z', ${seconds}, 'unixepoch')`;
  }
}

export const iso = (ms: number) => new Date(ms).toISOString();
