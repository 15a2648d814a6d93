/**
 * Cost reports over `cost_rollups` (each run's priced cost per UTC hour and model): every figure
 * is an exact SQL sum, read back as decimal text (CAST(SUM(…) AS TEXT)) into bigint so no total
 * passes through a double, and split in two so no sum overflows SQLite's 64-bit integers either
 * (see `splitSum`). Every query reads an index: the primary key (hour first) for time ranges
 * across customers, `cost_rollups_customer_hour` for one customer.
 */
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { allocateFixedCost, ALLOCATION_METHODS, type AllocationMethod, type CustomerMonth } from "../domain/allocation";
import { HOUR_MS, hourOf } from "../domain/cost-records";
import { divideHalfEven, nanoJson, nanoToUsdString, usdToNano } from "../domain/money";
import type { RunRollup } from "../data-plane/messages";
import { countD1 } from "../lib/usage";
import { jsonChunks, selectFromJson } from "../db/json-rows";

export const COST_GROUPS = ["customer", "project", "runType", "model", "pool"] as const;
export type CostGroup = (typeof COST_GROUPS)[number];
export const COST_BUCKETS = ["hour", "day", "week", "month"] as const;
export type CostBucket = (typeof COST_BUCKETS)[number];

/** More rows than this is a report nobody reads in one response: narrow it instead. */
export const MAX_REPORT_ROWS = 10_000;

// SQL fragments chosen from closed lists; nothing a client sends is ever spliced into SQL.
// The AI part of a row is keyed by its model; a row's infrastructure (model "") by "(infra)".
const GROUP_KEY: Record<CostGroup, string> = {
  customer: "customer_id",
  project: "project_id",
  runType: "COALESCE(run_type, '(inline)')",
  model: "model",
  pool: "pool",
};
// `hour` is ms; integer division gives whole seconds for 'unixepoch'. Weeks start on Monday:
// six days back, then forward to the next Monday, lands on the Monday on or before the day.
const BUCKET_START: Record<CostBucket, string> = {
  hour: "strftime('%Y-%m-%dT%H:00:00.000Z', hour / 1000, 'unixepoch')",
  day: "strftime('%Y-%m-%dT00:00:00.000Z', hour / 1000, 'unixepoch')",
  week: "strftime('%Y-%m-%dT00:00:00.000Z', hour / 1000, 'unixepoch', '-6 days', 'weekday 1')",
  month: "strftime('%Y-%m-01T00:00:00.000Z', hour / 1000, 'unixepoch')",
};
const BUCKET_MS: Record<CostBucket, number> = { hour: 3_600_000, day: 86_400_000, week: 7 * 86_400_000, month: 28 * 86_400_000 };

const TOKEN_COLUMNS = "input_tokens, cached_input_tokens, output_tokens, reasoning_tokens";

/**
 * The rows a report sums, as (part_total, part_ai, tokens…). Grouped by model, each row counts
 * twice: its AI under its model, its infrastructure under "(infra)".
 */
function reportParts(where: string, byModel: boolean): string {
  if (!byModel) return `SELECT *, nano_usd AS part_total, ai_nano_usd AS part_ai FROM cost_rollups WHERE ${where}`;
  return `SELECT hour, customer_id, project_id, run_type, pool, run_id, model, ai_nano_usd AS part_total, ai_nano_usd AS part_ai, ${TOKEN_COLUMNS}
            FROM cost_rollups WHERE ${where} AND model != ''
          UNION ALL
          SELECT hour, customer_id, project_id, run_type, pool, run_id, '(infra)', infra_nano_usd, 0, 0, 0, 0, 0
            FROM cost_rollups WHERE ${where} AND infra_nano_usd != 0`;
}

/**
 * An exact SUM of nano-USD as two text columns, whole USD and the nano-USD below a dollar:
 * SQLite's SUM of integers fails past 2^63 nano-USD (9.2 billion USD), and TOTAL is a double.
 * Each part stays far inside 64 bits; `exactSum` puts them back together as a bigint.
 */
const splitSum = (expr: string, alias: string) =>
  `CAST(SUM((${expr}) / 1000000000) AS TEXT) AS ${alias}_usd, CAST(SUM((${expr}) % 1000000000) AS TEXT) AS ${alias}_nano`;
const exactSum = (row: Record<string, unknown>, alias: string) =>
  BigInt((row[`${alias}_usd`] as string | null) ?? "0") * 1_000_000_000n + BigInt((row[`${alias}_nano`] as string | null) ?? "0");

const FIGURES = `
  COUNT(DISTINCT run_id) AS runs,
  ${splitSum("part_total", "total")},
  ${splitSum("part_ai", "ai")},
  CAST(SUM(input_tokens) AS TEXT) AS input_tokens,
  CAST(SUM(cached_input_tokens) AS TEXT) AS cached_tokens,
  CAST(SUM(output_tokens) AS TEXT) AS output_tokens,
  CAST(SUM(reasoning_tokens) AS TEXT) AS reasoning_tokens`;

interface FigureRow {
  runs: number;
  total_usd: string | null;
  total_nano: string | null;
  ai_usd: string | null;
  ai_nano: string | null;
  input_tokens: string | null;
  cached_tokens: string | null;
  output_tokens: string | null;
  reasoning_tokens: string | null;
}

const big = (text: string | null | undefined) => BigInt(text ?? "0");

/** One report row's figures: money as exact nano-USD plus a display string, tokens exact. */
function presentFigures(row: FigureRow) {
  const total = exactSum(row as unknown as Record<string, unknown>, "total");
  const ai = exactSum(row as unknown as Record<string, unknown>, "ai");
  const infra = total - ai;
  const perRun = row.runs > 0 ? divideHalfEven(total, BigInt(row.runs)) : 0n;
  const reasoning = big(row.reasoning_tokens);
  return {
    runs: row.runs,
    totalNanoUsd: nanoJson(total),
    aiNanoUsd: nanoJson(ai),
    infraNanoUsd: nanoJson(infra),
    costPerRunNanoUsd: nanoJson(perRun),
    totalUsd: nanoToUsdString(total),
    aiUsd: nanoToUsdString(ai),
    infraUsd: nanoToUsdString(infra),
    costPerRunUsd: nanoToUsdString(perRun),
    /** uncached input tokens */
    inputTokens: nanoJson(big(row.input_tokens)),
    /** every generated token, reasoning included */
    outputTokens: nanoJson(big(row.output_tokens) + reasoning),
    cachedTokens: nanoJson(big(row.cached_tokens)),
    reasoningTokens: nanoJson(reasoning),
  };
}

export interface CostReportQuery {
  from?: string;
  to?: string;
  groupBy?: CostGroup;
  bucket?: CostBucket;
  customerId?: string;
}

const startOfMonthUtc = (ms: number) => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
};

/** "2026-11" → [start, start of next month) in ms, UTC. */
export function monthRange(month: string): { from: number; to: number } {
  const match = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
  if (!match) throw new DomainError("validation_failed", `month "${month}" is not YYYY-MM`, [{ field: "query.month", message: "must be YYYY-MM" }]);
  const year = Number(match[1]);
  const index = Number(match[2]) - 1;
  return { from: Date.UTC(year, index, 1), to: Date.UTC(year, index + 1, 1) };
}

const ROLLUP_COLUMNS = [
  "hour", "customer_id", "run_id", "model", "part", "project_id", "run_type", "pool",
  "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "ai_nano_usd", "infra_nano_usd", "nano_usd",
  "attempts", "lines", "price_versions", "version", "updated_at", "first_hour",
] as const;
// One statement per batch (src/db/json-rows.ts); `WHERE true` keeps SQLite from reading ON CONFLICT as the SELECT's.
const ROLLUP_UPSERT = `INSERT INTO cost_rollups (${ROLLUP_COLUMNS.join(", ")})
  SELECT ${selectFromJson(ROLLUP_COLUMNS)} FROM json_each(?1) WHERE true
  ON CONFLICT (hour, customer_id, run_id, model, part) DO UPDATE SET
    ${ROLLUP_COLUMNS.slice(5).map((c) => `${c} = excluded.${c}`).join(", ")}
  WHERE excluded.version > cost_rollups.version`;
const STATEMENTS_PER_BATCH = 100;

/**
 * Stores runs' cost rollups in D1's `cost_rollups`, the table reports read. Each row is an
 * upsert guarded by the run's record sequence: an older or repeated rollup changes nothing, a
 * newer one replaces the rows it holds (a run's rows only ever grow). Amounts are bound as
 * decimal text, which the INTEGER columns store as exact 64-bit integers. `after` is written
 * with (in the same batch as) the last of them.
 */
export async function writeRollups(db: D1Database, rollups: readonly RunRollup[], after: readonly D1PreparedStatement[] = []): Promise<void> {
  const now = Date.now();
  const rows = rollups.flatMap((r) => {
    // A rollup holds all of its run's rows: the first hour of each model is where cost per run counts the run.
    const firstHour = new Map<string, number>();
    for (const row of r.rows) firstHour.set(row.model, Math.min(firstHour.get(row.model) ?? row.hour, row.hour));
    return r.rows.map((row) => [
      row.hour, r.customerId, r.runId, row.model, row.part, r.projectId, r.runType, r.pool,
      row.inputTokens, row.cachedInputTokens, row.outputTokens, row.reasoningTokens, row.aiNanoUsd, row.infraNanoUsd, row.nanoUsd,
      row.attempts, JSON.stringify(row.lines), row.priceVersions.join(","), r.version, now, firstHour.get(row.model)!,
    ]);
  });
  const statements = jsonChunks(rows).map((chunk) => db.prepare(ROLLUP_UPSERT).bind(chunk));
  // `after` (the metrics' dirty marks) rides in the last batch: with the rows it is about, never before them.
  statements.push(...after);
  for (let i = 0; i < statements.length; i += STATEMENTS_PER_BATCH) countD1(await db.batch(statements.slice(i, i + STATEMENTS_PER_BATCH)));
}

export class CostsService {
  constructor(private readonly env: Env) {}

  /** The customer a principal may report on: a customer key only itself (another id is a 404). */
  private scope(principal: Principal, customerId: string | undefined): string | undefined {
    if (principal.kind === "admin") return customerId;
    if (customerId !== undefined && customerId !== principal.customerId) throw new DomainError("not_found", `customer "${customerId}" not found`);
    return principal.customerId;
  }

  /** GET /v1/costs: cost grouped by one dimension and/or time bucket over [from, to). */
  async report(principal: Principal, query: CostReportQuery, now = Date.now()) {
    const customerId = this.scope(principal, query.customerId);
    // Costs are kept per UTC hour: the range widens to whole hours (and says so in the reply).
    const asked = query.to ? Date.parse(query.to) : now;
    const to = hourOf(asked - 1) + HOUR_MS;
    const from = hourOf(query.from ? Date.parse(query.from) : startOfMonthUtc(asked - 1));
    if (!(from < to)) throw new DomainError("validation_failed", "`from` must be before `to`", [{ field: "query.from", message: "must be before `to`" }]);
    if (query.bucket && (to - from) / BUCKET_MS[query.bucket] > MAX_REPORT_ROWS) {
      throw new DomainError("validation_failed", `more than ${MAX_REPORT_ROWS} ${query.bucket} buckets between from and to: narrow the range or use a larger bucket`, [
        { field: "query.bucket", message: "too many buckets for the range" },
      ]);
    }
    const key = query.groupBy ? GROUP_KEY[query.groupBy] : "'all'";
    const bucket = query.bucket ? BUCKET_START[query.bucket] : "NULL";
    // A project id is chosen by its customer, so two customers may share one: keep them apart.
    const projectOwner = query.groupBy === "project" ? ", customer_id AS owner" : "";
    const where = `hour >= ?1 AND hour < ?2${customerId !== undefined ? " AND customer_id = ?3" : ""}`;
    const binds = customerId !== undefined ? [from, to, customerId] : [from, to];
    const parts = reportParts(where, query.groupBy === "model");
    const [grouped, totals] = await this.env.DB.batch<FigureRow & { group_key: string; bucket_start: string | null; owner?: string }>([
      this.env.DB.prepare(
        `SELECT ${key} AS group_key, ${bucket} AS bucket_start${projectOwner}, ${FIGURES}
         FROM (${parts})
         GROUP BY group_key, bucket_start${projectOwner ? ", owner" : ""}
         ORDER BY bucket_start, group_key${projectOwner ? ", owner" : ""}
         LIMIT ${MAX_REPORT_ROWS + 1}`,
      ).bind(...binds),
      this.env.DB.prepare(`SELECT ${FIGURES} FROM (${reportParts(where, false)})`).bind(...binds),
    ]);
    countD1([grouped!, totals!]);
    const rows = grouped!.results;
    if (rows.length > MAX_REPORT_ROWS) {
      throw new DomainError("validation_failed", `the report has more than ${MAX_REPORT_ROWS} rows: narrow the range, use a larger bucket or filter by customer`, [
        { field: "query.groupBy", message: "too many rows" },
      ]);
    }
    const total = presentFigures(totals!.results[0]!);
    return {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      groupBy: query.groupBy ?? null,
      bucket: query.bucket ?? null,
      rows: rows.map((r) => ({
        key: r.group_key,
        ...(r.owner !== undefined ? { customerId: r.owner } : {}),
        ...(query.bucket ? { bucket: r.bucket_start ?? "" } : {}),
        ...presentFigures(r),
      })),
      totals: total,
      totalNanoUsd: total.totalNanoUsd,
      totalUsd: total.totalUsd,
    };
  }

  private fixedCostSettings(): { amount: bigint; method: AllocationMethod } {
    const raw = String(this.env.FIXED_MONTHLY_COST_USD ?? "0") || "0";
    let amount: bigint;
    try {
      amount = usdToNano(raw);
    } catch (err) {
      throw new DomainError("misconfigured", `FIXED_MONTHLY_COST_USD is not a USD amount: ${(err as Error).message}`);
    }
    const method = String(this.env.FIXED_COST_ALLOCATION ?? "even") || "even";
    if (!(ALLOCATION_METHODS as readonly string[]).includes(method)) {
      throw new DomainError("misconfigured", `FIXED_COST_ALLOCATION is "${method}"; it must be one of ${ALLOCATION_METHODS.join(", ")}`);
    }
    return { amount, method: method as AllocationMethod };
  }

  /**
   * GET /v1/customers/:id/profitability: revenue (the plan's monthly fee plus its price per
   * run for every run created in the month, whatever its outcome), direct cost (the
   * customer's cost events), its share of the fixed monthly cost, and the margin left. The
   * operator's business: the route serves it to the admin key only.
   */
  async profitability(customerId: string, month: string | undefined, now = Date.now()) {
    const { amount: fixedCost, method } = this.fixedCostSettings();
    const monthName = month ?? new Date(now).toISOString().slice(0, 7);
    const { from, to } = monthRange(monthName);
    const db = this.env.DB;
    const [customer, runsByCustomer, costByCustomer] = await db.batch<Record<string, unknown>>([
      db.prepare("SELECT plan FROM customers WHERE id = ?1").bind(customerId),
      db.prepare("SELECT customer_id, COUNT(*) AS runs FROM runs WHERE created_at >= ?1 AND created_at < ?2 GROUP BY customer_id").bind(from, to),
      db
        .prepare(
          `SELECT customer_id, ${splitSum("nano_usd", "total")}, ${splitSum("ai_nano_usd", "ai")}
           FROM cost_rollups WHERE hour >= ?1 AND hour < ?2 GROUP BY customer_id`,
        )
        .bind(from, to),
    ]);
    countD1([customer!, runsByCustomer!, costByCustomer!]);
    const planRow = customer!.results[0] as { plan: string } | undefined;
    if (!planRow) throw new DomainError("not_found", `customer "${customerId}" not found`);
    const plan = JSON.parse(planRow.plan) as { monthlyFeeNanoUsd?: string; pricePerRunNanoUsd?: string };

    const months = new Map<string, CustomerMonth & { aiNanoUsd: bigint }>();
    const monthOf = (id: string) => {
      let entry = months.get(id);
      if (!entry) months.set(id, (entry = { customerId: id, runs: 0, directCostNanoUsd: 0n, aiNanoUsd: 0n }));
      return entry;
    };
    for (const r of runsByCustomer!.results as { customer_id: string; runs: number }[]) monthOf(r.customer_id).runs = r.runs;
    for (const r of costByCustomer!.results) {
      const entry = monthOf(r.customer_id as string);
      entry.directCostNanoUsd = exactSum(r, "total");
      entry.aiNanoUsd = exactSum(r, "ai");
    }
    const allocation = allocateFixedCost(fixedCost, method, [...months.values()]);
    const own = months.get(customerId) ?? { customerId, runs: 0, directCostNanoUsd: 0n, aiNanoUsd: 0n };

    const monthlyFee = big(plan.monthlyFeeNanoUsd);
    const pricePerRun = big(plan.pricePerRunNanoUsd);
    const runFees = pricePerRun * BigInt(own.runs);
    const revenue = monthlyFee + runFees;
    const direct = own.directCostNanoUsd;
    const allocated = allocation.get(customerId) ?? 0n;
    const margin = revenue - direct - allocated;
    return {
      customerId,
      month: monthName,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      /** false while the month is still running: the figures are month-to-date */
      complete: to <= now,
      runs: own.runs,
      revenueNanoUsd: nanoJson(revenue),
      revenueUsd: nanoToUsdString(revenue),
      revenue: {
        monthlyFeeNanoUsd: nanoJson(monthlyFee),
        pricePerRunNanoUsd: nanoJson(pricePerRun),
        runFeesNanoUsd: nanoJson(runFees),
      },
      directCostNanoUsd: nanoJson(direct),
      directCostUsd: nanoToUsdString(direct),
      directCost: { aiNanoUsd: nanoJson(own.aiNanoUsd), infraNanoUsd: nanoJson(direct - own.aiNanoUsd) },
      allocatedFixedCostNanoUsd: nanoJson(allocated),
      allocatedFixedCostUsd: nanoToUsdString(allocated),
      allocation: { method, fixedMonthlyCostNanoUsd: nanoJson(fixedCost), sharedAmong: allocation.size },
      marginNanoUsd: nanoJson(margin),
      marginUsd: nanoToUsdString(margin),
    };
  }
}
