/**
 * GET /v1/metrics/*: the seed's operational metrics over [from, to), per bucket and group, read
 * from the hourly rollups (src/services/rollups.ts) — never from the raw events. Every count is
 * an exact SQL sum; ratios and percentiles are taken in src/metrics/formulas.ts after summing,
 * percentiles from the merged duration sketches (src/metrics/sketch.ts: exact below 128 ms, else
 * within 1/128 of the exact value). A customer key sees its own slice only; platform-wide
 * figures (pool state, which no customer owns) are null for it.
 */
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { FAILURE_TYPES } from "../domain/run-status";
import { POOLS } from "../config/pools";
import { DAY_MS, HOUR_MS, MINUTE_MS, bucketCount, bucketStart, minuteOf, bucketsBetween, coveredMs, hourOf, iso, nextBucket, sqlBucketStart, type MetricBucket } from "../metrics/buckets";
import { SKETCH_DESCRIPTION, type Histogram } from "../metrics/sketch";
import {
  addCounts,
  apiFigures,
  attemptFigures,
  costFigures,
  emptyApiCounts,
  emptyAttemptCounts,
  emptyCostCounts,
  emptyPoolCounts,
  emptyRunCounts,
  percentChange,
  poolFigures,
  rate,
  runFigures,
  uptimeFigures,
  type ApiCounts,
  type AttemptCounts,
  type CostCounts,
  type PoolCounts,
  type RunCounts,
} from "../metrics/formulas";
import { countD1 } from "../lib/usage";

export const METRIC_GROUPS = ["customer", "project", "runType", "pool", "model", "route"] as const;
export type MetricGroup = (typeof METRIC_GROUPS)[number];

/** Which groupings each endpoint takes (its route's zod enum lists the same). */
export const GROUPS_BY_ENDPOINT = {
  runs: ["customer", "project", "runType", "pool"],
  costs: ["customer", "project", "runType", "pool", "model"],
  queues: ["pool"],
  workers: ["customer", "project", "runType", "pool"],
  api: ["route", "customer"],
  reliability: ["customer", "project", "runType", "pool"],
} as const satisfies Record<string, readonly MetricGroup[]>;

export interface MetricsQuery {
  from?: string;
  to?: string;
  bucket?: MetricBucket;
  groupBy?: MetricGroup;
  customerId?: string;
}

/** More buckets, or grouped rows, than this is a report nobody reads in one response. */
export const MAX_BUCKETS = 2_000;
export const MAX_SERIES_ROWS = 10_000;
/** Without `from`: the 7 days before `to`. */
export const DEFAULT_SPAN_MS = 7 * DAY_MS;

interface Range {
  from: number;
  to: number;
  bucket: MetricBucket;
  now: number;
}

interface Scope {
  customerId: string | undefined;
  admin: boolean;
}

/** A rollup table's SQL for a grouping: the key, and the customer owning it (projects are per customer). */
const GROUP_SQL: Record<MetricGroup, { key: string; owner?: string }> = {
  customer: { key: "customer_id" },
  project: { key: "project_id", owner: "customer_id" },
  runType: { key: "CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END" },
  pool: { key: "pool" },
  model: { key: "CASE WHEN model = '' THEN '(infra)' ELSE model END" },
  route: { key: "method || ' ' || route" },
};

interface GroupedRow {
  bucket_start: string;
  group_key: string | null;
  owner: string | null;
  [column: string]: unknown;
}

/** Series rows keyed by (bucket, group, owner), each holding the counts summed into it. */
class Series<C extends object> {
  readonly rows = new Map<string, { bucket: number; key: string | null; owner: string | null; counts: C }>();
  constructor(private readonly empty: () => C) {}

  at(bucket: number, key: string | null, owner: string | null): C {
    const id = `${bucket}\u0000${key ?? ""}\u0000${owner ?? ""}`;
    let row = this.rows.get(id);
    if (!row) this.rows.set(id, (row = { bucket, key, owner, counts: this.empty() }));
    return row.counts;
  }

  of(r: GroupedRow): C {
    return this.at(Date.parse(r.bucket_start), r.group_key, r.owner);
  }

  /** Every bucket of the range appears once when there is no grouping (zeros where nothing happened). */
  fill(range: Range, grouped: boolean) {
    if (!grouped) for (const b of bucketsBetween(range.from, range.to, range.bucket)) this.at(b, null, null);
  }

  sorted() {
    return [...this.rows.values()].sort((a, b) => a.bucket - b.bucket || (a.key ?? "").localeCompare(b.key ?? "") || (a.owner ?? "").localeCompare(b.owner ?? ""));
  }

  total(): C {
    const sum = this.empty();
    for (const row of this.rows.values()) addCounts(sum as Record<string, unknown>, row.counts as Record<string, unknown>);
    return sum;
  }
}

const n = (v: unknown) => Number(v ?? 0);
const big = (v: unknown) => BigInt((v as string | number | null | undefined) ?? 0);
/** An exact SUM of nano-USD in two parts (whole USD, nano-USD below a dollar), as costs-service does. */
const splitSum = (expr: string, alias: string) => `CAST(SUM((${expr}) / 1000000000) AS TEXT) AS ${alias}_usd, CAST(SUM((${expr}) % 1000000000) AS TEXT) AS ${alias}_nano`;
const exactSum = (row: Record<string, unknown>, alias: string) => big(row[`${alias}_usd`]) * 1_000_000_000n + big(row[`${alias}_nano`]);

export class MetricsService {
  constructor(private readonly env: Env) {}

  private scope(principal: Principal, customerId: string | undefined): Scope {
    if (principal.kind === "admin") return { customerId, admin: true };
    if (customerId !== undefined && customerId !== principal.customerId) throw new DomainError("not_found", `customer "${customerId}" not found`);
    return { customerId: principal.customerId, admin: false };
  }

  private range(query: MetricsQuery, now: number): Range {
    const bucket = query.bucket ?? "day";
    // Rollups are hourly: the range widens to whole hours (the reply says which).
    const asked = query.to ? Date.parse(query.to) : now;
    const to = hourOf(asked - 1) + HOUR_MS;
    const from = hourOf(query.from ? Date.parse(query.from) : to - DEFAULT_SPAN_MS);
    if (!(from < to)) throw new DomainError("validation_failed", "`from` must be before `to`", [{ field: "query.from", message: "must be before `to`" }]);
    if (bucketCount(from, to, bucket) > MAX_BUCKETS) {
      throw new DomainError("validation_failed", `more than ${MAX_BUCKETS} ${bucket} buckets between from and to: narrow the range or use a larger bucket`, [
        { field: "query.bucket", message: `too many buckets for the range (at most ${MAX_BUCKETS})` },
      ]);
    }
    return { from, to, bucket, now };
  }

  /** `SELECT bucket, key, owner, <figures> FROM table WHERE time range [AND customer] GROUP BY …`, or the histogram rows of `hist`. */
  private grouped(
    table: string,
    figures: string,
    range: Range,
    scope: Scope,
    groupBy: MetricGroup | undefined,
    options: { hist?: string; timeColumn?: string; where?: string; from?: string; key?: string; owner?: string; customerColumn?: string } = {},
  ) {
    const time = options.timeColumn ?? "hour";
    const g = groupBy ? GROUP_SQL[groupBy] : undefined;
    const key = options.key ?? (g ? g.key : "NULL");
    const owner = options.owner ?? g?.owner ?? "NULL";
    const customer = options.customerColumn ?? "customer_id";
    const where = [`${time} >= ?1`, `${time} < ?2`, ...(scope.customerId !== undefined ? [`${customer} = ?3`] : []), ...(options.where ? [options.where] : [])].join(" AND ");
    const binds = scope.customerId !== undefined ? [range.from, range.to, scope.customerId] : [range.from, range.to];
    const from = options.from ?? table;
    const select = options.hist
      ? `SELECT ${sqlBucketStart(time, range.bucket)} AS bucket_start, ${key} AS group_key, ${owner} AS owner, CAST(j.key AS INTEGER) AS idx, SUM(j.value) AS n
         FROM ${from}, json_each(${table}.${options.hist}) AS j WHERE ${where} GROUP BY 1, 2, 3, 4`
      : `SELECT ${sqlBucketStart(time, range.bucket)} AS bucket_start, ${key} AS group_key, ${owner} AS owner, ${figures}
         FROM ${from} WHERE ${where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT ${MAX_SERIES_ROWS + 1}`;
    return this.env.DB.prepare(select).bind(...binds);
  }

  private async all(statements: D1PreparedStatement[]): Promise<GroupedRow[][]> {
    const results = await this.env.DB.batch<GroupedRow>(statements);
    countD1(results);
    for (const r of results) {
      // Grouped queries stop at MAX_SERIES_ROWS + 1 rows (histogram rows, one per bucket, are not series rows).
      if (!("idx" in (r.results[0] ?? {})) && r.results.length > MAX_SERIES_ROWS) {
        throw new DomainError("validation_failed", `the report has more than ${MAX_SERIES_ROWS} rows: narrow the range, use a larger bucket or filter by customer`, [
          { field: "query.groupBy", message: "too many rows" },
        ]);
      }
    }
    return results.map((r) => r.results);
  }

  private envelope<C extends object, F>(range: Range, groupBy: MetricGroup | undefined, series: Series<C>, figures: (c: C, bucket: number | null) => F, extra: Record<string, unknown> = {}) {
    return {
      from: iso(range.from),
      to: iso(range.to),
      bucket: range.bucket,
      groupBy: groupBy ?? null,
      series: series.sorted().map((r) => ({
        bucket: iso(r.bucket),
        ...(groupBy ? { key: r.key ?? "" } : {}),
        ...(r.owner !== null ? { customerId: r.owner } : {}),
        ...figures(r.counts, r.bucket),
      })),
      totals: figures(series.total(), null),
      ...extra,
    };
  }

  /** Milliseconds of a bucket (null: the whole range) inside [from, min(to, now)). */
  private covered(range: Range, bucket: number | null): number {
    if (bucket === null) return Math.max(0, Math.min(range.to, range.now) - range.from);
    return coveredMs(bucket, range.bucket, range.from, range.to, range.now);
  }

  // ---- /v1/metrics/runs ----

  async runs(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const figures = `SUM(runs) AS runs, SUM(succeeded) AS succeeded, SUM(failed) AS failed, SUM(cancelled) AS cancelled, SUM(unfinished) AS unfinished,
      ${FAILURE_TYPES.map((t) => `SUM(failures_${t}) AS failures_${t}`).join(", ")},
      SUM(timed) AS timed, SUM(duration_sum_ms) AS duration_sum_ms, MAX(duration_max_ms) AS duration_max_ms`;
    const [rows, hists] = await this.all([
      this.grouped("run_rollups", figures, range, scope, query.groupBy),
      this.grouped("run_rollups", "", range, scope, query.groupBy, { hist: "duration_hist" }),
    ]);
    const series = new Series<RunCounts>(emptyRunCounts);
    series.fill(range, query.groupBy !== undefined);
    for (const r of rows!) {
      const c = series.of(r);
      c.runs += n(r.runs);
      c.succeeded += n(r.succeeded);
      c.failed += n(r.failed);
      c.cancelled += n(r.cancelled);
      c.unfinished += n(r.unfinished);
      for (const t of FAILURE_TYPES) c.failures[t] += n(r[`failures_${t}`]);
      c.timed += n(r.timed);
      c.durationSumMs += n(r.duration_sum_ms);
      c.durationMax = Math.max(c.durationMax, n(r.duration_max_ms));
    }
    for (const r of hists!) addHist(series.of(r).hist, r);
    return this.envelope(range, query.groupBy, series, runFigures, { percentiles: SKETCH_DESCRIPTION });
  }

  // ---- /v1/metrics/costs ----

  async costs(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const byModel = query.groupBy === "model";
    // A run counts once: on its infrastructure row ('' model) where it first cost; by model, once per model it used.
    const runs = byModel ? "SUM(runs)" : "SUM(CASE WHEN model = '' THEN runs ELSE 0 END)";
    const figures = `${runs} AS runs, COUNT(DISTINCT customer_id) AS customers,
      CAST(SUM(input_tokens) AS TEXT) AS input_tokens, CAST(SUM(cached_input_tokens) AS TEXT) AS cached_tokens,
      CAST(SUM(output_tokens) AS TEXT) AS output_tokens, CAST(SUM(reasoning_tokens) AS TEXT) AS reasoning_tokens,
      ${splitSum("nano_usd", "total")}, ${splitSum("ai_nano_usd", "ai")}, ${splitSum("infra_nano_usd", "infra")}`;
    const where = scope.customerId !== undefined ? "hour >= ?1 AND hour < ?2 AND customer_id = ?3" : "hour >= ?1 AND hour < ?2";
    const binds = scope.customerId !== undefined ? [range.from, range.to, scope.customerId] : [range.from, range.to];
    const [rows, customers] = await this.all([
      this.grouped("cost_hourly", figures, range, scope, query.groupBy),
      // Totals count each run and customer once, whatever the grouping.
      this.env.DB.prepare(
        `SELECT '' AS bucket_start, NULL AS group_key, NULL AS owner, COUNT(DISTINCT customer_id) AS customers,
           SUM(CASE WHEN model = '' THEN runs ELSE 0 END) AS runs FROM cost_hourly WHERE ${where}`,
      ).bind(...binds),
    ]);
    const series = new Series<CostCounts>(emptyCostCounts);
    series.fill(range, query.groupBy !== undefined);
    for (const r of rows!) {
      const c = series.of(r);
      c.runs += n(r.runs);
      c.customers += n(r.customers);
      c.inputTokens += big(r.input_tokens);
      c.cachedTokens += big(r.cached_tokens);
      c.outputTokens += big(r.output_tokens);
      c.reasoningTokens += big(r.reasoning_tokens);
      c.nanoUsd += exactSum(r, "total");
      c.aiNanoUsd += exactSum(r, "ai");
      c.infraNanoUsd += exactSum(r, "infra");
    }
    const ordered = series.sorted();
    // Trend: each row against the same key's bucket before it (0 when it had none); null for the range's first bucket.
    const previous = new Map<string, bigint>();
    for (const r of ordered) previous.set(`${r.bucket}\u0000${r.key ?? ""}\u0000${r.owner ?? ""}`, r.counts.nanoUsd);
    const firstBucket = bucketStart(range.from, range.bucket);
    const result = this.envelope(range, query.groupBy, series, costFigures, { trend: trendOf(ordered, range.bucket) });
    result.series = result.series.map((row, i) => {
      const r = ordered[i]!;
      if (r.bucket <= firstBucket) return { ...row, changeNanoUsd: null, changePercent: null };
      const before = previous.get(`${previousBucket(r.bucket, range.bucket)}\u0000${r.key ?? ""}\u0000${r.owner ?? ""}`) ?? 0n;
      return { ...row, changeNanoUsd: nanoNumber(r.counts.nanoUsd - before), changePercent: percentChange(before, r.counts.nanoUsd) };
    });
    result.totals = costFigures({ ...series.total(), customers: n(customers![0]?.customers), runs: n(customers![0]?.runs) });
    return result;
  }

  // ---- /v1/metrics/queues ----

  async queues(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const groupBy = query.groupBy;
    const statements = [
      this.grouped("attempt_rollups", ATTEMPT_FIGURES, range, scope, groupBy),
      this.grouped("dlq_entries", "COUNT(*) AS dead_lettered", range, scope, groupBy, { timeColumn: "dead_at", where: "state IN ('open', 'retried', 'discarded')" }),
      this.env.DB.prepare(
        `SELECT '' AS bucket_start, ${groupBy ? "pool" : "NULL"} AS group_key, NULL AS owner, COUNT(*) AS open FROM dlq_entries WHERE state = 'open'${scope.customerId !== undefined ? " AND customer_id = ?1" : ""} GROUP BY 2`,
      ).bind(...(scope.customerId !== undefined ? [scope.customerId] : [])),
    ];
    // The pools' state belongs to no customer: only the admin sees it.
    if (scope.admin) statements.push(this.grouped("pool_rollups", POOL_FIGURES, range, { customerId: undefined, admin: true }, groupBy));
    const [attempts, dead, open, pools] = await this.all(statements);
    type Counts = { pool: PoolCounts; attempts: AttemptCounts; deadLettered: number };
    const series = new Series<Counts>(() => ({ pool: emptyPoolCounts(), attempts: emptyAttemptCounts(), deadLettered: 0 }));
    series.fill(range, groupBy !== undefined);
    for (const r of attempts!) addAttempts(series.of(r).attempts, r);
    for (const r of dead!) series.of(r).deadLettered += n(r.dead_lettered);
    for (const r of pools ?? []) addPool(series.of(r).pool, r);
    const openByPool = new Map(open!.map((r) => [r.group_key ?? "", n(r.open)]));
    const figures = (c: Counts, bucket: number | null) => {
      const a = attemptFigures(c.attempts, this.covered(range, bucket), null);
      const p = poolFigures(c.pool);
      return {
        depth: scope.admin ? p.depth : null,
        inFlight: scope.admin ? p.inFlight : null,
        desiredConcurrency: scope.admin ? p.desiredConcurrency : null,
        samples: scope.admin ? p.samples : null,
        processed: a.processed,
        processingRatePerSecond: a.processingRatePerSecond,
        attempts: a.attempts,
        retries: a.retries,
        retryRate: a.retryRate,
        deadLettered: c.deadLettered,
        dlqSize: scope.admin ? p.dlqSize : null,
      };
    };
    const result = this.envelope(range, groupBy, series, figures);
    const dlqOpen = [...openByPool.values()].reduce((x, y) => x + y, 0);
    return {
      ...result,
      totals: { ...result.totals, dlqOpen },
      ...(groupBy === "pool" ? { dlqOpenByPool: Object.fromEntries(openByPool) } : {}),
      notes: scope.admin
        ? { poolState: "depth, in flight, desired concurrency and utilization are sampled once a minute per pool from its controller (source 'controller'), or from the run index while the controller is idle (source 'cron'); see README" }
        : { poolState: "a pool's depth, in-flight work and desired concurrency are platform-wide: admin only" },
    };
  }

  // ---- /v1/metrics/workers ----

  async workers(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const groupBy = query.groupBy;
    const statements = [this.grouped("attempt_rollups", ATTEMPT_FIGURES, range, scope, groupBy)];
    const sampled = scope.admin && (groupBy === undefined || groupBy === "pool");
    if (sampled) statements.push(this.grouped("pool_rollups", POOL_FIGURES, range, { customerId: undefined, admin: true }, groupBy));
    const [attempts, pools] = await this.all(statements);
    type Counts = { attempts: AttemptCounts; pool: PoolCounts; key: string | null };
    const series = new Series<Counts>(() => ({ attempts: emptyAttemptCounts(), pool: emptyPoolCounts(), key: null }));
    series.fill(range, groupBy !== undefined);
    for (const r of attempts!) {
      const c = series.of(r);
      c.key = r.group_key;
      addAttempts(c.attempts, r);
    }
    for (const r of pools ?? []) {
      const c = series.of(r);
      c.key = r.group_key;
      addPool(c.pool, r);
    }
    const allPools = Object.values(POOLS).reduce((sum, p) => sum + p.maxConcurrency, 0);
    const concurrencyOf = (key: string | null) => (groupBy === "pool" ? (key !== null && Object.hasOwn(POOLS, key) ? POOLS[key]!.maxConcurrency : 0) : allPools);
    const figures = (c: Counts, bucket: number | null) => {
      const covered = this.covered(range, bucket);
      const a = attemptFigures(c.attempts, covered, bucket === null && groupBy === "pool" ? null : concurrencyOf(c.key) * covered);
      return {
        attempts: a.attempts,
        processed: a.processed,
        busyMs: a.busyMs,
        capacityMs: a.capacityMs,
        utilization: a.utilization,
        sampledUtilization: sampled ? poolFigures(c.pool).sampledUtilization : null,
        failedAttempts: a.failedAttempts,
        attemptFailureRate: a.attemptFailureRate,
        workerErrors: a.workerErrors,
        workerErrorRate: a.workerErrorRate,
      };
    };
    const result = this.envelope(range, groupBy, series, figures);
    if (groupBy === "pool") {
      // Totals across pools: the sum of their capacities.
      const busy = result.series.reduce((s, r) => s + r.busyMs, 0);
      const capacity = result.series.reduce((s, r) => s + (r.capacityMs ?? 0), 0);
      result.totals = { ...result.totals, capacityMs: capacity, utilization: rate(busy, capacity) };
    }
    return {
      ...result,
      notes: {
        utilization: "busy worker time (finished attempts' durations) ÷ capacity (each pool's max_concurrency × the time covered); sampledUtilization: in-flight ÷ concurrency, averaged over the minute samples (admin)",
      },
    };
  }

  // ---- /v1/metrics/api ----

  async api(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const figures = "SUM(requests) AS requests, SUM(responses_4xx) AS r4, SUM(responses_5xx) AS r5, SUM(sum_ms) AS sum_ms, MAX(max_ms) AS max_ms";
    const [rows, hists] = await this.all([
      this.grouped("api_rollups", figures, range, scope, query.groupBy),
      this.grouped("api_rollups", "", range, scope, query.groupBy, { hist: "hist" }),
    ]);
    const series = new Series<ApiCounts>(emptyApiCounts);
    series.fill(range, query.groupBy !== undefined);
    for (const r of rows!) {
      const c = series.of(r);
      c.requests += n(r.requests);
      c.responses4xx += n(r.r4);
      c.responses5xx += n(r.r5);
      c.sumMs += n(r.sum_ms);
      c.latencyMax = Math.max(c.latencyMax, n(r.max_ms));
    }
    for (const r of hists!) addHist(series.of(r).hist, r);
    return this.envelope(range, query.groupBy, series, apiFigures, {
      percentiles: SKETCH_DESCRIPTION,
      notes: { timings: "measured in the Worker from the request's arrival to its response; each isolate flushes its aggregates every 10 s, so the last seconds may still be on their way, and an evicted isolate's unflushed seconds are lost" },
    });
  }

  // ---- /v1/metrics/reliability ----

  async reliability(principal: Principal, query: MetricsQuery, now = Date.now()) {
    const scope = this.scope(principal, query.customerId);
    const range = this.range(query, now);
    const groupBy = query.groupBy;
    const platform: Scope = { customerId: undefined, admin: true };
    const apiGrouped = groupBy === undefined || groupBy === "customer";
    const projectDlq = groupBy === "project";
    const [uptime, firstProbe, runs, attempts, dead, open, api] = await this.all([
      this.grouped("uptime_rollups", "SUM(probes) AS probes, SUM(ok) AS ok", range, platform, undefined),
      this.env.DB.prepare("SELECT '' AS bucket_start, NULL AS group_key, NULL AS owner, COALESCE((SELECT MIN(minute) FROM uptime_probes), (SELECT MIN(hour) FROM uptime_rollups)) AS first"),
      this.grouped("run_rollups", "SUM(succeeded + failed + cancelled) AS finished, SUM(failed) AS failed", range, scope, groupBy),
      this.grouped("attempt_rollups", ATTEMPT_FIGURES, range, scope, groupBy),
      projectDlq
        ? // dead letters carry no project: their run's index row does
          this.grouped("dlq_entries", "COUNT(*) AS dead_lettered", range, scope, undefined, {
            timeColumn: "d.dead_at",
            where: "d.state IN ('open', 'retried', 'discarded')",
            from: "dlq_entries d LEFT JOIN runs r ON r.id = d.run_id",
            key: "COALESCE(r.project_id, '(unknown)')",
            owner: "d.customer_id",
            customerColumn: "d.customer_id",
          })
        : this.grouped("dlq_entries", "COUNT(*) AS dead_lettered", range, scope, groupBy, { timeColumn: "dead_at", where: "state IN ('open', 'retried', 'discarded')" }),
      this.env.DB.prepare(
        `SELECT '' AS bucket_start, NULL AS group_key, NULL AS owner, COUNT(*) AS open FROM dlq_entries WHERE state = 'open'${scope.customerId !== undefined ? " AND customer_id = ?1" : ""}`,
      ).bind(...(scope.customerId !== undefined ? [scope.customerId] : [])),
      apiGrouped ? this.grouped("api_rollups", "SUM(requests) AS requests, SUM(responses_5xx) AS r5", range, scope, groupBy) : this.env.DB.prepare("SELECT 1 WHERE 0"),
    ]);
    type Counts = { finished: number; failed: number; attempts: AttemptCounts; deadLettered: number; requests: number; r5: number };
    const series = new Series<Counts>(() => ({ finished: 0, failed: 0, attempts: emptyAttemptCounts(), deadLettered: 0, requests: 0, r5: 0 }));
    series.fill(range, groupBy !== undefined);
    for (const r of runs!) {
      const c = series.of(r);
      c.finished += n(r.finished);
      c.failed += n(r.failed);
    }
    for (const r of attempts!) addAttempts(series.of(r).attempts, r);
    for (const r of dead!) series.of(r).deadLettered += n(r.dead_lettered);
    for (const r of api!) {
      const c = series.of(r);
      c.requests += n(r.requests);
      c.r5 += n(r.r5);
    }
    const probes = new Map<number, { probes: number; ok: number }>();
    for (const r of uptime!) probes.set(Date.parse(r.bucket_start), { probes: n(r.probes), ok: n(r.ok) });
    const first = firstProbe![0]?.first === null || firstProbe![0]?.first === undefined ? null : n(firstProbe![0]!.first);
    // A minute's probe reaches the rollups through the queue and the next tick: the minute now
    // running and the one before it are not expected yet.
    const probedUntil = minuteOf(range.now) - MINUTE_MS;
    const uptimeOf = (bucket: number | null) => {
      const start = Math.max(bucket ?? range.from, range.from);
      const end = bucket === null ? Math.min(range.to, probedUntil) : Math.min(nextBucket(bucket, range.bucket), range.to, probedUntil);
      const since = first === null ? end : Math.max(start, first);
      const expected = Math.max(0, Math.ceil((end - since) / MINUTE_MS));
      let p = { probes: 0, ok: 0 };
      if (bucket === null) for (const v of probes.values()) p = { probes: p.probes + v.probes, ok: p.ok + v.ok };
      else p = probes.get(bucket) ?? p;
      // A minute that has its probe already is expected, however recent.
      return uptimeFigures(p.probes, p.ok, Math.max(expected, p.probes));
    };
    const figures = (c: Counts, bucket: number | null) => {
      const a = attemptFigures(c.attempts, 0, null);
      return {
        uptime: uptimeOf(bucket),
        runFailureRate: rate(c.failed, c.finished),
        workerErrorRate: a.workerErrorRate,
        retryRate: a.retryRate,
        apiErrorRate: apiGrouped ? rate(c.r5, c.requests) : null,
        deadLettered: c.deadLettered,
      };
    };
    const result = this.envelope(range, groupBy, series, figures);
    return {
      ...result,
      totals: { ...result.totals, dlqOpen: n(open![0]?.open) },
      notes: { uptime: "the minute cron probes GET /health/ready through the Worker's router; a minute without a successful probe counts as down (the control plane is the same for every customer)" },
    };
  }
}

const ATTEMPT_FIGURES = `SUM(attempts) AS attempts, SUM(first_attempts) AS first_attempts, SUM(retried_steps) AS retried_steps, SUM(retries) AS retries,
  SUM(running) AS running, SUM(succeeded) AS succeeded, SUM(failed) AS failed,
  ${FAILURE_TYPES.map((t) => `SUM(failures_${t}) AS failures_${t}`).join(", ")}, SUM(busy_ms) AS busy_ms`;

const POOL_FIGURES = `SUM(samples) AS samples, SUM(depth_sum) AS depth_sum, MAX(depth_max) AS depth_max, SUM(in_flight_sum) AS in_flight_sum,
  MAX(in_flight_max) AS in_flight_max, SUM(utilization_sum) AS utilization_sum, SUM(desired_sum) AS desired_sum,
  SUM(desired_samples) AS desired_samples, SUM(dlq_open_sum) AS dlq_open_sum, MAX(dlq_open_max) AS dlq_open_max`;

function addAttempts(c: AttemptCounts, r: GroupedRow) {
  c.attempts += n(r.attempts);
  c.firstAttempts += n(r.first_attempts);
  c.retriedSteps += n(r.retried_steps);
  c.retries += n(r.retries);
  c.running += n(r.running);
  c.succeeded += n(r.succeeded);
  c.failed += n(r.failed);
  for (const t of FAILURE_TYPES) c.failures[t] += n(r[`failures_${t}`]);
  c.busyMs += n(r.busy_ms);
}

function addPool(c: PoolCounts, r: GroupedRow) {
  c.samples += n(r.samples);
  c.depthSum += n(r.depth_sum);
  c.depthMax = Math.max(c.depthMax, n(r.depth_max));
  c.inFlightSum += n(r.in_flight_sum);
  c.inFlightMax = Math.max(c.inFlightMax, n(r.in_flight_max));
  c.utilizationSum += n(r.utilization_sum);
  c.desiredSum += n(r.desired_sum);
  c.desiredSamples += n(r.desired_samples);
  c.dlqOpenSum += n(r.dlq_open_sum);
  c.dlqOpenMax = Math.max(c.dlqOpenMax, n(r.dlq_open_max));
}

function addHist(hist: Histogram, r: GroupedRow) {
  const key = String(r.idx);
  hist[key] = (hist[key] ?? 0) + n(r.n);
}

const nanoNumber = (v: bigint) => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());

function previousBucket(start: number, bucket: MetricBucket): number {
  if (bucket === "month") {
    const d = new Date(start);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1);
  }
  return start - (bucket === "hour" ? HOUR_MS : bucket === "day" ? DAY_MS : 7 * DAY_MS);
}

/** The range's cost trend: its first and last bucket with cost, and the change between them. */
function trendOf(rows: { bucket: number; key: string | null; counts: CostCounts }[], bucket: MetricBucket) {
  const byBucket = new Map<number, bigint>();
  for (const r of rows) byBucket.set(r.bucket, (byBucket.get(r.bucket) ?? 0n) + r.counts.nanoUsd);
  const withCost = [...byBucket].filter(([, v]) => v !== 0n).sort((a, b) => a[0] - b[0]);
  if (withCost.length === 0) return null;
  const [firstAt, first] = withCost[0]!;
  const [lastAt, last] = withCost[withCost.length - 1]!;
  return { bucket, first: { bucket: iso(firstAt), nanoUsd: nanoNumber(first) }, last: { bucket: iso(lastAt), nanoUsd: nanoNumber(last) }, changeNanoUsd: nanoNumber(last - first), changePercent: percentChange(first, last) };
}
