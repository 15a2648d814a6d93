/**
 * The scheduled degradation check (every minute, after the rollups are refreshed): for each run
 * type, p95 duration, failure rate and cost per run over the recent window (the hour before the
 * current one and the current one so far) against the trailing 24 hours before it; for each
 * pool, the backlog of the last 10 minutes against the 24 hours before. The rules and their
 * thresholds are src/metrics/anomaly.ts; an episode opens one alert and clears when the figure
 * recovers (src/services/alerts-service.ts). Reads rollups and the pool samples only.
 */
import { RULES, BACKLOG_RECENT_MINUTES, BASELINE_HOURS, RECENT_HOURS, episodeAction, episodeKey, evaluate, type AnomalyFigure, type Observation } from "../metrics/anomaly";
import { HOUR_MS, MINUTE_MS, hourOf, iso, minuteOf } from "../metrics/buckets";
import { quantile, type Histogram } from "../metrics/sketch";
import { divideHalfEven, nanoToUsdString } from "../domain/money";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";
import { DEGRADATION_DELIVERY_ATTEMPTS, clearEpisode, openEpisode } from "./alerts-service";
import { deliverAlert } from "./dead-letters";

type Window = "recent" | "baseline";

interface Candidate {
  figure: AnomalyFigure;
  scope: "runType" | "pool";
  key: string;
  obs: Observation;
}

const label = (scope: Candidate["scope"], key: string) => (scope === "pool" ? `pool ${key}` : `run type ${key === "" ? "(inline)" : key}`);

function show(figure: AnomalyFigure, value: number | bigint | null): string {
  if (value === null) return "n/a";
  if (figure === "cost_per_run") return `$${nanoToUsdString(BigInt(value))}`;
  if (figure === "failure_rate") return `${(Number(value) * 100).toFixed(1)}%`;
  if (figure === "p95_duration") return `${Math.round(Number(value))} ms`;
  return Number(value).toFixed(1);
}

const jsonValue = (v: number | bigint | null) => (typeof v === "bigint" ? v.toString() : v);

async function observe(env: Env, now: number): Promise<{ candidates: Candidate[]; windows: Record<string, string> }> {
  const db = env.DB;
  const recentFrom = hourOf(now) - RECENT_HOURS * HOUR_MS;
  const baselineFrom = recentFrom - BASELINE_HOURS * HOUR_MS;
  const backlogRecentFrom = minuteOf(now) - BACKLOG_RECENT_MINUTES * MINUTE_MS;
  const backlogBaselineFrom = backlogRecentFrom - BASELINE_HOURS * HOUR_MS;
  const w = (column: string, from: string) => `CASE WHEN ${column} >= ${from} THEN 'recent' ELSE 'baseline' END`;
  const [runs, hists, costs, backlog] = await db.batch<Record<string, unknown>>([
    db
      .prepare(
        `SELECT ${w("hour", "?1")} AS w, run_type, SUM(succeeded + failed + cancelled) AS finished, SUM(failed) AS failed
         FROM run_rollups WHERE hour >= ?2 AND hour < ?3 GROUP BY 1, 2`,
      )
      .bind(recentFrom, baselineFrom, now),
    db
      .prepare(
        `SELECT ${w("hour", "?1")} AS w, run_type, CAST(j.key AS INTEGER) AS idx, SUM(j.value) AS n
         FROM run_rollups, json_each(run_rollups.duration_hist) AS j WHERE hour >= ?2 AND hour < ?3 GROUP BY 1, 2, 3`,
      )
      .bind(recentFrom, baselineFrom, now),
    db
      .prepare(
        `SELECT ${w("hour", "?1")} AS w, run_type, SUM(CASE WHEN model = '' THEN runs ELSE 0 END) AS runs,
           CAST(SUM(nano_usd / 1000000000) AS TEXT) AS usd, CAST(SUM(nano_usd % 1000000000) AS TEXT) AS nano
         FROM cost_hourly WHERE hour >= ?2 AND hour < ?3 GROUP BY 1, 2`,
      )
      .bind(recentFrom, baselineFrom, now),
    db
      .prepare(
        `SELECT ${w("minute", "?1")} AS w, pool, COUNT(*) AS samples, SUM(depth) AS depth
         FROM pool_samples WHERE minute >= ?2 AND minute <= ?3 GROUP BY 1, 2`,
      )
      .bind(backlogRecentFrom, backlogBaselineFrom, now),
  ]);
  countD1([runs!, hists!, costs!, backlog!]);

  const byKey = <T>(rows: Record<string, unknown>[], keyOf: (r: Record<string, unknown>) => string, make: () => T, fold: (acc: T, r: Record<string, unknown>) => void) => {
    const out = new Map<string, Record<Window, T>>();
    for (const r of rows) {
      const key = keyOf(r);
      let entry = out.get(key);
      if (!entry) out.set(key, (entry = { recent: make(), baseline: make() }));
      fold(entry[r.w as Window], r);
    }
    return out;
  };

  const candidates: Candidate[] = [];
  const runTotals = byKey(runs!.results, (r) => String(r.run_type), () => ({ finished: 0, failed: 0 }), (a, r) => {
    a.finished += Number(r.finished);
    a.failed += Number(r.failed);
  });
  for (const [key, t] of runTotals) {
    candidates.push({
      figure: "failure_rate",
      scope: "runType",
      key,
      obs: {
        recent: t.recent.finished > 0 ? t.recent.failed / t.recent.finished : null,
        baseline: t.baseline.finished > 0 ? t.baseline.failed / t.baseline.finished : null,
        recentSamples: t.recent.finished,
        baselineSamples: t.baseline.finished,
      },
    });
  }
  const durations = byKey(hists!.results, (r) => String(r.run_type), (): Histogram => ({}), (h, r) => {
    h[String(r.idx)] = (h[String(r.idx)] ?? 0) + Number(r.n);
  });
  for (const [key, h] of durations) {
    const count = (x: Histogram) => Object.values(x).reduce((a, b) => a + b, 0);
    candidates.push({ figure: "p95_duration", scope: "runType", key, obs: { recent: quantile(h.recent, 0.95), baseline: quantile(h.baseline, 0.95), recentSamples: count(h.recent), baselineSamples: count(h.baseline) } });
  }
  const spend = byKey(costs!.results, (r) => String(r.run_type), () => ({ runs: 0, nano: 0n }), (a, r) => {
    a.runs += Number(r.runs);
    a.nano += BigInt((r.usd as string | null) ?? "0") * 1_000_000_000n + BigInt((r.nano as string | null) ?? "0");
  });
  for (const [key, c] of spend) {
    const perRun = (x: { runs: number; nano: bigint }) => (x.runs > 0 ? divideHalfEven(x.nano, BigInt(x.runs)) : null);
    candidates.push({ figure: "cost_per_run", scope: "runType", key, obs: { recent: perRun(c.recent), baseline: perRun(c.baseline), recentSamples: c.recent.runs, baselineSamples: c.baseline.runs } });
  }
  const depth = byKey(backlog!.results, (r) => String(r.pool), () => ({ samples: 0, depth: 0 }), (a, r) => {
    a.samples += Number(r.samples);
    a.depth += Number(r.depth);
  });
  for (const [key, d] of depth) {
    const avg = (x: { samples: number; depth: number }) => (x.samples > 0 ? x.depth / x.samples : null);
    candidates.push({ figure: "backlog", scope: "pool", key, obs: { recent: avg(d.recent), baseline: avg(d.baseline), recentSamples: d.recent.samples, baselineSamples: d.baseline.samples } });
  }
  return {
    candidates,
    windows: { recentFrom: iso(recentFrom), baselineFrom: iso(baselineFrom), backlogRecentFrom: iso(backlogRecentFrom), backlogBaselineFrom: iso(backlogBaselineFrom), to: iso(now) },
  };
}

export interface CheckReport {
  evaluated: number;
  opened: string[];
  cleared: string[];
}

export async function checkAnomalies(env: Env, now = Date.now()): Promise<CheckReport> {
  const { candidates, windows } = await observe(env, now);
  const episodes = await env.DB.prepare("SELECT key, state, alert_id FROM alert_episodes").all<{ key: string; state: string; alert_id: string | null }>();
  countD1(episodes);
  const state = new Map(episodes.results.map((e) => [e.key, e]));
  const report: CheckReport = { evaluated: 0, opened: [], cleared: [] };
  for (const c of candidates) {
    const rule = RULES[c.figure];
    const verdict = evaluate(rule, c.obs);
    if (verdict.verdict === "insufficient") continue;
    report.evaluated += 1;
    const key = episodeKey(c.figure, c.scope, c.key);
    const episode = state.get(key);
    const open = episode?.state === "open";
    const action = episodeAction(open, verdict.verdict);
    if (action === "none") continue;
    const last = {
      figure: c.figure,
      [c.scope]: c.key,
      unit: rule.unit,
      recent: jsonValue(c.obs.recent),
      baseline: jsonValue(c.obs.baseline),
      fireAt: jsonValue(verdict.fireAt),
      clearAt: jsonValue(verdict.clearAt),
      recentSamples: c.obs.recentSamples,
      baselineSamples: c.obs.baselineSamples,
      rule: { fire: rule.fire, clear: rule.clear },
      windows,
    };
    const what = `${rule.describe} of ${label(c.scope, c.key)}`;
    try {
      let alertId: string | null = null;
      if (action === "open") {
        alertId = await openEpisode(
          env.DB,
          {
            episode: key,
            figure: c.figure,
            kind: c.figure,
            message: `${what} degraded: ${show(c.figure, c.obs.recent)} against a trailing baseline of ${show(c.figure, c.obs.baseline)} (alerts at ${show(c.figure, verdict.fireAt)})`,
            details: last,
            last,
          },
          now,
        );
        if (alertId) report.opened.push(key);
      } else if (episode?.alert_id) {
        alertId = await clearEpisode(
          env.DB,
          key,
          episode.alert_id,
          { kind: c.figure, message: `${what} recovered: ${show(c.figure, c.obs.recent)} against a baseline of ${show(c.figure, c.obs.baseline)}`, details: last, last },
          now,
        );
        if (alertId) report.cleared.push(key);
      }
      if (alertId) {
        log(action === "open" ? "alert.degradation_opened" : "alert.degradation_cleared", { episode: key, alertId }, action === "open" ? "warn" : "info");
        await deliverAlert(env, alertId, DEGRADATION_DELIVERY_ATTEMPTS <= 1);
      }
    } catch (err) {
      log("alert.episode_failed", { episode: key, action, error: errorMessage(err) }, "error");
    }
  }
  return report;
}
