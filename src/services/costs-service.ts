/**
 * Cost reports over `cost_events`: every figure is an exact SQL sum of priced events, read
 * back as decimal text (CAST(SUM(…) AS TEXT)) into bigint so no total passes through a double
 * (and split in two so no sum overflows SQLite's 64-bit integers either: see `splitSum`).
 */
import type { Principal } from "../api/context";
import { ApiError } from "../api/errors";
import { allocateFixedCost, ALLOCATION_METHODS, type AllocationMethod, type CustomerMonth } from "../domain/allocation";
import { summarizeCosts, type CostEvent } from "../domain/cost-events";
import { divideHalfEven, nanoJson, nanoToUsdString, usdToNano } from "../domain/money";
import { TOKEN_METERS } from "../domain/pricing";
import { countD1 } from "../lib/usage";

export const COST_GROUPS = ["customer", "project", "runType", "model", "pool"] as const;
export type CostGroup = (typeof COST_GROUPS)[number];
export const COST_BUCKETS = ["hour", "day", "week", "month"] as const;
export type CostBucket = (typeof COST_BUCKETS)[number];

/** More rows than this is a report nobody reads in one response: narrow it instead. */
export const MAX_REPORT_ROWS = 10_000;

// SQL fragments chosen from closed lists; nothing a client sends is ever spliced into SQL.
const GROUP_KEY: Record<CostGroup, string> = {
  customer: "customer_id",
  project: "project_id",
  runType: "COALESCE(run_type, '(inline)')",
  model: "COALESCE(model, '(infra)')",
  pool: "pool",
};
// `at` is ms; integer division gives whole seconds for 'unixepoch'. Weeks start on Monday:
// six days back, then forward to the next Monday, lands on the Monday on or before the day.
const BUCKET_START: Record<CostBucket, string> = {
  hour: "strftime('%Y-%m-%dT%H:00:00.000Z', at / 1000, 'unixepoch')",
  day: "strftime('%Y-%m-%dT00:00:00.000Z', at / 1000, 'unixepoch')",
  week: "strftime('%Y-%m-%dT00:00:00.000Z', at / 1000, 'unixepoch', '-6 days', 'weekday 1')",
  month: "strftime('%Y-%m-01T00:00:00.000Z', at / 1000, 'unixepoch')",
};
const BUCKET_MS: Record<CostBucket, number> = { hour: 3_600_000, day: 86_400_000, week: 7 * 86_400_000, month: 28 * 86_400_000 };

const TOKEN_METER_LIST = TOKEN_METERS.map((m) => `'${m}'`).join(", ");
const AI_NANO = `CASE WHEN meter IN (${TOKEN_METER_LIST}) THEN nano_usd ELSE 0 END`;

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
  ${splitSum("nano_usd", "total")},
  ${splitSum(AI_NANO, "ai")},
  CAST(SUM(CASE WHEN meter = 'input_tokens' THEN quantity ELSE 0 END) AS TEXT) AS input_tokens,
  CAST(SUM(CASE WHEN meter = 'cached_input_tokens' THEN quantity ELSE 0 END) AS TEXT) AS cached_tokens,
  CAST(SUM(CASE WHEN meter = 'output_tokens' THEN quantity ELSE 0 END) AS TEXT) AS output_tokens,
  CAST(SUM(CASE WHEN meter = 'reasoning_tokens' THEN quantity ELSE 0 END) AS TEXT) AS reasoning_tokens`;

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
  if (!match) throw new ApiError("validation_failed", `month "${month}" is not YYYY-MM`, [{ field: "query.month", message: "must be YYYY-MM" }]);
  const year = Number(match[1]);
  const index = Number(match[2]) - 1;
  return { from: Date.UTC(year, index, 1), to: Date.UTC(year, index + 1, 1) };
}

const COST_EVENT_COLUMNS = [
  "id", "customer_id", "project_id", "run_id", "run_type", "pool", "step", "attempt", "meter", "model",
  "quantity", "per_million", "nano_usd", "price_version", "estimated", "at",
] as const;
// D1 binds at most 100 parameters per statement.
const EVENTS_PER_STATEMENT = Math.floor(100 / COST_EVENT_COLUMNS.length);

/**
 * Stores cost events in D1's `cost_events`, the table reports read. INSERT OR IGNORE on the
 * deterministic id: recording an event again (a retried write, a redelivered message)
 * changes nothing. Amounts are bound as decimal text, which the INTEGER columns store as
 * exact 64-bit integers. Returns how many events were new.
 */
export async function recordCostEvents(db: D1Database, events: readonly CostEvent[]): Promise<number> {
  if (events.length === 0) return 0;
  const statements: D1PreparedStatement[] = [];
  for (let i = 0; i < events.length; i += EVENTS_PER_STATEMENT) {
    const slice = events.slice(i, i + EVENTS_PER_STATEMENT);
    const placeholders = slice.map(() => `(${COST_EVENT_COLUMNS.map(() => "?").join(", ")})`).join(", ");
    const binds = slice.flatMap((e) => [
      e.id, e.customerId, e.projectId, e.runId, e.runType, e.pool, e.step, e.attempt, e.meter, e.model,
      e.quantity.toString(), e.perMillion.toString(), e.nanoUsd.toString(), e.priceVersion, e.estimated ? 1 : 0, e.at,
    ]);
    statements.push(db.prepare(`INSERT OR IGNORE INTO cost_events (${COST_EVENT_COLUMNS.join(", ")}) VALUES ${placeholders}`).bind(...binds));
  }
  const results = await db.batch(statements);
  countD1(results);
  return results.reduce((n, r) => n + (r.meta.changes ?? 0), 0);
}

export class CostsService {
  constructor(private readonly env: Env) {}

  /** The customer a principal may report on: a customer key only itself (another id is a 404). */
  private scope(principal: Principal, customerId: string | undefined): string | undefined {
    if (principal.kind === "admin") return customerId;
    if (customerId !== undefined && customerId !== principal.customerId) throw new ApiError("not_found", `customer "${customerId}" not found`);
    return principal.customerId;
  }

  /** GET /v1/costs: cost grouped by one dimension and/or time bucket over [from, to). */
  async report(principal: Principal, query: CostReportQuery, now = Date.now()) {
    const customerId = this.scope(principal, query.customerId);
    const to = query.to ? Date.parse(query.to) : now;
    const from = query.from ? Date.parse(query.from) : startOfMonthUtc(to - 1);
    if (!(from < to)) throw new ApiError("validation_failed", "`from` must be before `to`", [{ field: "query.from", message: "must be before `to`" }]);
    if (query.bucket && (to - from) / BUCKET_MS[query.bucket] > MAX_REPORT_ROWS) {
      throw new ApiError("validation_failed", `more than ${MAX_REPORT_ROWS} ${query.bucket} buckets between from and to: narrow the range or use a larger bucket`, [
        { field: "query.bucket", message: "too many buckets for the range" },
      ]);
    }
    const key = query.groupBy ? GROUP_KEY[query.groupBy] : "'all'";
    const bucket = query.bucket ? BUCKET_START[query.bucket] : "NULL";
    // A project id is chosen by its customer, so two customers may share one: keep them apart.
    const projectOwner = query.groupBy === "project" ? ", customer_id AS owner" : "";
    const where = `at >= ?1 AND at < ?2${customerId !== undefined ? " AND customer_id = ?3" : ""}`;
    const binds = customerId !== undefined ? [from, to, customerId] : [from, to];
    const [grouped, totals] = await this.env.DB.batch<FigureRow & { group_key: string; bucket_start: string | null; owner?: string }>([
      this.env.DB.prepare(
        `SELECT ${key} AS group_key, ${bucket} AS bucket_start${projectOwner}, ${FIGURES}
         FROM cost_events WHERE ${where}
         GROUP BY group_key, bucket_start${projectOwner ? ", owner" : ""}
         ORDER BY bucket_start, group_key${projectOwner ? ", owner" : ""}
         LIMIT ${MAX_REPORT_ROWS + 1}`,
      ).bind(...binds),
      this.env.DB.prepare(`SELECT ${FIGURES} FROM cost_events WHERE ${where}`).bind(...binds),
    ]);
    countD1([grouped!, totals!]);
    const rows = grouped!.results;
    if (rows.length > MAX_REPORT_ROWS) {
      throw new ApiError("validation_failed", `the report has more than ${MAX_REPORT_ROWS} rows: narrow the range, use a larger bucket or filter by customer`, [
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
      throw new ApiError("misconfigured", `FIXED_MONTHLY_COST_USD is not a USD amount: ${(err as Error).message}`);
    }
    const method = String(this.env.FIXED_COST_ALLOCATION ?? "even") || "even";
    if (!(ALLOCATION_METHODS as readonly string[]).includes(method)) {
      throw new ApiError("misconfigured", `FIXED_COST_ALLOCATION is "${method}"; it must be one of ${ALLOCATION_METHODS.join(", ")}`);
    }
    return { amount, method: method as AllocationMethod };
  }

  /**
   * GET /v1/customers/:id/profitability: revenue (the plan's monthly fee plus its price per
   * run for every run created in the month, whatever its outcome), direct cost (the
   * customer's cost events), its share of the fixed monthly cost, and the margin left.
   */
  async profitability(customerId: string, month: string | undefined, options: { showAllocationBasis?: boolean } = {}, now = Date.now()) {
    const { amount: fixedCost, method } = this.fixedCostSettings();
    const monthName = month ?? new Date(now).toISOString().slice(0, 7);
    const { from, to } = monthRange(monthName);
    const db = this.env.DB;
    const [customer, runsByCustomer, costByCustomer] = await db.batch<Record<string, unknown>>([
      db.prepare("SELECT plan FROM customers WHERE id = ?1").bind(customerId),
      db.prepare("SELECT customer_id, COUNT(*) AS runs FROM runs WHERE created_at >= ?1 AND created_at < ?2 GROUP BY customer_id").bind(from, to),
      db
        .prepare(
          `SELECT customer_id, ${splitSum("nano_usd", "total")}, ${splitSum(AI_NANO, "ai")}
           FROM cost_events WHERE at >= ?1 AND at < ?2 GROUP BY customer_id`,
        )
        .bind(from, to),
    ]);
    countD1([customer!, runsByCustomer!, costByCustomer!]);
    const planRow = customer!.results[0] as { plan: string } | undefined;
    if (!planRow) throw new ApiError("not_found", `customer "${customerId}" not found`);
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
      // How the platform's fixed cost is split is the operator's business, not the customer's.
      ...(options.showAllocationBasis ? { allocation: { method, fixedMonthlyCostNanoUsd: nanoJson(fixedCost), sharedAmong: allocation.size } } : {}),
      marginNanoUsd: nanoJson(margin),
      marginUsd: nanoToUsdString(margin),
    };
  }
}

/** One run's cost from its recorded events: totals, and lines by meter and model. */
export async function runCost(db: D1Database, runId: string) {
  const rows = await db
    .prepare(
      `SELECT meter, model, CAST(SUM(quantity) AS TEXT) AS quantity, CAST(SUM(nano_usd) AS TEXT) AS nano_usd, MAX(estimated) AS estimated
       FROM cost_events WHERE run_id = ? GROUP BY meter, model ORDER BY meter, model`,
    )
    .bind(runId)
    .all<{ meter: string; model: string | null; quantity: string; nano_usd: string; estimated: number }>();
  countD1(rows);
  const lines = rows.results.map((r) => ({ meter: r.meter, model: r.model, quantity: BigInt(r.quantity), nanoUsd: BigInt(r.nano_usd), estimated: r.estimated === 1 }));
  const summary = summarizeCosts(lines);
  return { ...summary, lines };
}
