/**
 * GET /v1/insights/cost-drivers: the run types, models and customers that drive cost over
 * [from, to), against the period of the same length before it, from `cost_hourly` (rules in
 * src/metrics/cost-drivers.ts). A customer key sees its own cost only.
 */
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { nanoJson, nanoToUsdString } from "../domain/money";
import { DAY_MS, HOUR_MS, hourOf, iso } from "../metrics/buckets";
import { DRIVER_DIMENSIONS, emptyPeriodCost, findings, presentDriver, type DriverDimension, type DriverInput, type PeriodCost } from "../metrics/cost-drivers";
import { percentChange } from "../metrics/formulas";
import { countD1 } from "../lib/usage";

const KEY: Record<DriverDimension, string> = {
  runType: "CASE WHEN run_type = '' THEN '(inline)' ELSE run_type END",
  model: "CASE WHEN model = '' THEN '(infra)' ELSE model END",
  customer: "customer_id",
};

const big = (v: unknown) => BigInt((v as string | null | undefined) ?? "0");

export class InsightsService {
  constructor(private readonly env: Env) {}

  async costDrivers(principal: Principal, query: { from?: string; to?: string; limit: number; customerId?: string }, now = Date.now()) {
    let customerId = query.customerId;
    if (principal.kind === "customer") {
      if (customerId !== undefined && customerId !== principal.customerId) throw new DomainError("not_found", `customer "${customerId}" not found`);
      customerId = principal.customerId;
    }
    const asked = query.to ? Date.parse(query.to) : now;
    const to = hourOf(asked - 1) + HOUR_MS;
    const from = hourOf(query.from ? Date.parse(query.from) : to - 7 * DAY_MS);
    if (!(from < to)) throw new DomainError("validation_failed", "`from` must be before `to`", [{ field: "query.from", message: "must be before `to`" }]);
    const previousFrom = from - (to - from);
    const db = this.env.DB;
    const filter = customerId !== undefined ? " AND customer_id = ?4" : "";
    const binds = customerId !== undefined ? [from, previousFrom, to, customerId] : [from, previousFrom, to];
    const statement = (dimension: DriverDimension | null) =>
      db
        .prepare(
          `SELECT CASE WHEN hour >= ?1 THEN 'current' ELSE 'previous' END AS period, ${dimension ? KEY[dimension] : "''"} AS key,
             ${dimension === "model" ? "SUM(runs)" : "SUM(CASE WHEN model = '' THEN runs ELSE 0 END)"} AS runs,
             CAST(SUM(nano_usd / 1000000000) AS TEXT) AS t_usd, CAST(SUM(nano_usd % 1000000000) AS TEXT) AS t_nano,
             CAST(SUM(ai_nano_usd / 1000000000) AS TEXT) AS a_usd, CAST(SUM(ai_nano_usd % 1000000000) AS TEXT) AS a_nano
           FROM cost_hourly WHERE hour >= ?2 AND hour < ?3${filter} GROUP BY 1, 2`,
        )
        .bind(...binds);
    const results = await db.batch<Record<string, unknown>>([statement(null), ...DRIVER_DIMENSIONS.map((d) => statement(d))]);
    countD1(results);
    const cost = (r: Record<string, unknown>): PeriodCost => ({
      nanoUsd: big(r.t_usd) * 1_000_000_000n + big(r.t_nano),
      aiNanoUsd: big(r.a_usd) * 1_000_000_000n + big(r.a_nano),
      runs: Number(r.runs ?? 0),
    });
    const totals = { current: emptyPeriodCost(), previous: emptyPeriodCost() };
    for (const r of results[0]!.results) totals[r.period as "current" | "previous"] = cost(r);
    const inputs = {} as Record<DriverDimension, DriverInput[]>;
    DRIVER_DIMENSIONS.forEach((dimension, i) => {
      const byKey = new Map<string, DriverInput>();
      for (const r of results[i + 1]!.results) {
        const key = String(r.key);
        const entry = byKey.get(key) ?? { key, current: emptyPeriodCost(), previous: emptyPeriodCost() };
        entry[r.period as "current" | "previous"] = cost(r);
        byKey.set(key, entry);
      }
      inputs[dimension] = [...byKey.values()];
    });
    const rank = (list: DriverInput[]) =>
      [...list]
        .sort((a, b) => (b.current.nanoUsd > a.current.nanoUsd ? 1 : b.current.nanoUsd < a.current.nanoUsd ? -1 : b.previous.nanoUsd > a.previous.nanoUsd ? 1 : b.previous.nanoUsd < a.previous.nanoUsd ? -1 : a.key.localeCompare(b.key)))
        .slice(0, query.limit)
        .map((d) => presentDriver(d, totals.current.nanoUsd));
    const money = (p: PeriodCost) => ({ nanoUsd: nanoJson(p.nanoUsd), usd: nanoToUsdString(p.nanoUsd), aiNanoUsd: nanoJson(p.aiNanoUsd), runs: p.runs });
    return {
      from: iso(from),
      to: iso(to),
      previous: { from: iso(previousFrom), to: iso(from) },
      totals: {
        current: money(totals.current),
        previous: money(totals.previous),
        change: { nanoUsd: nanoJson(totals.current.nanoUsd - totals.previous.nanoUsd), usd: nanoToUsdString(totals.current.nanoUsd - totals.previous.nanoUsd), percent: percentChange(totals.previous.nanoUsd, totals.current.nanoUsd) },
      },
      drivers: { runTypes: rank(inputs.runType), models: rank(inputs.model), customers: rank(inputs.customer) },
      findings: findings(inputs, totals),
    };
  }
}
