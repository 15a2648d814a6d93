/**
 * Degradation alerts: an injected degradation (slower runs, a backlog) raises exactly one alert,
 * recorded and posted to the webhook (mocked: it is outside the platform); checking again while
 * it lasts raises nothing more; recovery clears it and sends a resolution notice; a webhook that
 * is down gets the alert later from the cron.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { deliverPendingDegradationAlerts } from "../../src/services/alerts-service";
import { checkAnomalies } from "../../src/services/anomaly-check";
import { refreshRollups } from "../../src/services/rollups";
import { api } from "../helpers";

const WEBHOOK = "http://127.0.0.1:9/alerts";
let posts: any[] = [];
let webhookStatus = 204;

beforeEach(() => {
  posts = [];
  webhookStatus = 204;
  const realFetch = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url === WEBHOOK) {
      posts.push(JSON.parse(String(init?.body)));
      return new Response(null, { status: webhookStatus });
    }
    return realFetch(input, init);
  });
});
afterEach(() => vi.restoreAllMocks());

const MIN = 60_000;
const HOUR = 3_600_000;

async function insertRuns(runType: string, createdFrom: number, count: number, durationMs: number) {
  const statement = env.DB.prepare(
    `INSERT INTO runs (id, customer_id, project_id, run_type, pool, priority, status, created_at, started_at, finished_at, duration_ms, updated_at)
     VALUES (?1, 'deg-customer', 'p', ?2, 'standard', 'normal', 'succeeded', ?3, ?3, ?4, ?5, ?3)`,
  );
  await env.DB.batch(Array.from({ length: count }, (_, i) => {
    const at = createdFrom + i * 1000;
    return statement.bind(`${runType}-${createdFrom}-${i}`, runType, at, at + durationMs, durationMs);
  }));
}

const refresh = (now: number, hours: number[]) => refreshRollups(env, now, { hours: hours.map((hour) => ({ source: "runs" as const, hour })) });
const alertsOf = async (kind: string) => (await api("GET", `/v1/alerts?kind=${kind}&limit=500`)).body.alerts as any[];

describe("p95 duration of a run type against its trailing baseline", () => {
  const NOW = Date.parse("2025-06-10T12:30:00Z"); // recent: 11:00 → now; baseline: the 24 hours before 11:00

  it("raises one alert, recorded and sent, however often it is checked, and clears it when the figure recovers", async () => {
    await insertRuns("slow", Date.parse("2025-06-09T12:00:00Z"), 30, 1000);
    await insertRuns("slow", Date.parse("2025-06-10T11:10:00Z"), 30, 5000);
    await refresh(NOW, [Date.parse("2025-06-09T12:00:00Z"), Date.parse("2025-06-10T11:00:00Z")]);

    // Two checks at once (two crons overlapping): one alert.
    const [first, second] = await Promise.all([checkAnomalies(env, NOW), checkAnomalies(env, NOW)]);
    expect([...first.opened, ...second.opened]).toEqual(["p95_duration:runType:slow"]);
    const fired = await alertsOf("p95_duration");
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({
      kind: "p95_duration",
      severity: "warning",
      episode: "p95_duration:runType:slow",
      state: "firing",
      resolvedAt: null,
      delivery: { status: "delivered", attempts: 1 },
      // 5000 ms → [4992, 5055] → 5023.5; 1000 ms → [1000, 1007] → 1003.5; fires at max(1.5 × 1003.5, 1003.5 + 1000)
      details: { figure: "p95_duration", runType: "slow", recent: 5023.5, baseline: 1003.5, fireAt: 2003.5, recentSamples: 30, baselineSamples: 30 },
    });
    expect(fired[0].message).toBe("p95 run duration of run type slow degraded: 5024 ms against a trailing baseline of 1004 ms (alerts at 2004 ms)");
    expect(posts).toHaveLength(1);
    expect(posts[0]).toMatchObject({ type: "runplane.alert.p95_duration", alert: { id: fired[0].id, episode: "p95_duration:runType:slow" } });

    // Still degraded a minute later: nothing new.
    expect((await checkAnomalies(env, NOW + MIN)).opened).toEqual([]);
    expect(await alertsOf("p95_duration")).toHaveLength(1);
    expect(posts).toHaveLength(1);
    expect((await api("GET", "/v1/alerts?state=firing")).body.alerts.map((a: any) => a.id)).toEqual([fired[0].id]);

    // Three hours on, runs are fast again; the baseline now holds the slow hour.
    const LATER = Date.parse("2025-06-10T15:30:00Z");
    await insertRuns("slow", Date.parse("2025-06-10T14:10:00Z"), 30, 1000);
    await refresh(LATER, [Date.parse("2025-06-10T14:00:00Z")]);
    const recovered = await checkAnomalies(env, LATER);
    expect(recovered.cleared).toEqual(["p95_duration:runType:slow"]);
    const after = await alertsOf("p95_duration");
    expect(after).toHaveLength(2);
    const [notice, original] = after;
    expect(original).toMatchObject({ id: fired[0].id, state: "resolved", resolvedAt: new Date(LATER).toISOString() });
    expect(notice).toMatchObject({ severity: "info", state: null, episode: "p95_duration:runType:slow", details: { resolves: fired[0].id, recent: 1003.5, baseline: 5023.5 } });
    expect(notice.message).toBe("p95 run duration of run type slow recovered: 1004 ms against a baseline of 5024 ms");
    expect(posts.map((p) => p.alert.id)).toEqual([fired[0].id, notice.id]);
    expect((await api("GET", "/v1/alerts?state=firing")).body.alerts).toEqual([]);
    expect((await api("GET", "/v1/alerts?state=resolved")).body.alerts.map((a: any) => a.id)).toEqual([fired[0].id]);
    // Checked again: nothing more.
    expect(await checkAnomalies(env, LATER + MIN)).toMatchObject({ opened: [], cleared: [] });
    expect(posts).toHaveLength(2);
  });

  it("decides nothing on too few runs", async () => {
    await insertRuns("rare", Date.parse("2025-06-09T12:00:00Z"), 5, 1000);
    await insertRuns("rare", Date.parse("2025-06-10T11:10:00Z"), 5, 50_000);
    await refresh(NOW, [Date.parse("2025-06-09T12:00:00Z"), Date.parse("2025-06-10T11:00:00Z")]);
    expect((await checkAnomalies(env, NOW)).opened).not.toContain("p95_duration:runType:rare");
  });
});

describe("backlog of a pool", () => {
  it("fires past 3× its baseline (and 100 above it); a webhook that is down gets the alert from the cron later", async () => {
    const NOW = Date.parse("2025-07-01T12:00:00Z");
    const sample = (minute: number, depth: number) =>
      env.DB.prepare(
        `INSERT INTO pool_samples (minute, pool, source, depth, queued, running, waiting, in_flight, processed, concurrency, desired_concurrency, utilization, dlq_open, sampled_at)
         VALUES (?1, 'standard', 'cron', ?2, ?2, 0, 0, 0, NULL, 10, NULL, 0, 0, ?1)`,
      ).bind(minute, depth);
    const baseline = Array.from({ length: 120 }, (_, i) => sample(NOW - 3 * HOUR - i * MIN, 5));
    const recent = Array.from({ length: 10 }, (_, i) => sample(NOW - i * MIN, 400));
    await env.DB.batch([...baseline, ...recent]);
    webhookStatus = 503;
    const report = await checkAnomalies(env, NOW);
    expect(report.opened).toEqual(["backlog:pool:standard"]);
    const [alert] = await alertsOf("backlog");
    expect(alert).toMatchObject({ details: { pool: "standard", recent: 400, baseline: 5, fireAt: 105 }, delivery: { status: "pending", attempts: 1, lastError: "HTTP 503" } });
    webhookStatus = 204;
    expect(await deliverPendingDegradationAlerts(env, NOW + MIN)).toBe(1);
    expect((await alertsOf("backlog"))[0].delivery).toMatchObject({ status: "delivered", attempts: 2 });
    expect(posts.map((p) => p.alert.id)).toEqual([alert.id, alert.id]);
    expect(await deliverPendingDegradationAlerts(env, NOW + 2 * MIN)).toBe(0);
  });
});
