/**
 * The metrics' share of the minute cron, in order:
 *  1. samples: each pool's state (src/services/pool-sampler.ts) and a probe of the control plane
 *     (GET /health/ready through the Worker's own router, as a client would reach it), sent to
 *     the events queue in one batch: 1 message per pool and 1 probe per minute;
 *  2. this isolate's API timings, if it holds any;
 *  3. the hourly rollups of the hours marked dirty, and the current hour;
 *  4. the degradation check against the trailing baseline, which raises and clears alerts;
 *  5. degradation alerts whose webhook delivery is still pending.
 * A step that fails is logged and the next ones still run.
 */
import { PROBE_HEADER } from "../metrics/api-timings";
import { minuteOf } from "../metrics/buckets";
import { errorMessage, log } from "../lib/log";
import { countUsage } from "../lib/usage";
import { deliverPendingDegradationAlerts } from "../services/alerts-service";
import { checkAnomalies } from "../services/anomaly-check";
import { flushApiTimings } from "../services/api-timings";
import { samplePools } from "../services/pool-sampler";
import { refreshRollups } from "../services/rollups";
import type { EventMessage, UptimeProbe } from "./messages";

/** The request the probe sends, with the admin key so that the answer names a failing check. */
export const PROBE_PATH = "/health/ready";

export async function probeControlPlane(env: Env, fetcher: (request: Request) => Promise<Response>, now = Date.now()): Promise<UptimeProbe> {
  const started = Date.now();
  let status = 0;
  let failed: string[] = [];
  try {
    const response = await fetcher(
      new Request(`https://runplane.internal${PROBE_PATH}`, { headers: { authorization: `Bearer ${env.ADMIN_API_KEY ?? ""}`, [PROBE_HEADER]: "1" } }),
    );
    status = response.status;
    const body = (await response.json().catch(() => null)) as { checks?: Record<string, { ok: boolean }> } | null;
    failed = Object.entries(body?.checks ?? {})
      .filter(([, c]) => !c.ok)
      .map(([name]) => name);
    if (status !== 200 && failed.length === 0) failed = [`http_${status}`];
  } catch (err) {
    failed = ["unreachable"];
    log("metrics.probe_failed", { error: errorMessage(err) }, "warn");
  }
  return { minute: minuteOf(now), ok: status === 200, status, latencyMs: Math.max(0, Date.now() - started), failed, probedAt: now };
}

async function step<T>(name: string, work: () => Promise<T>): Promise<T | null> {
  try {
    return await work();
  } catch (err) {
    log("metrics.tick_failed", { step: name, error: errorMessage(err) }, "error");
    return null;
  }
}

export async function metricsTick(env: Env, fetcher: (request: Request) => Promise<Response>, now = Date.now()) {
  await step("samples", async () => {
    const [pools, probe] = await Promise.all([samplePools(env, now), probeControlPlane(env, fetcher, now)]);
    const messages: EventMessage[] = [...pools.map((sample) => ({ kind: "metrics.pool" as const, v: 1 as const, sample })), { kind: "metrics.probe", v: 1, probe }];
    await env.EVENTS.sendBatch(messages.map((body) => ({ body })));
    countUsage("queue_operations", messages.length);
  });
  await step("api_timings", () => flushApiTimings(env, now));
  const rollups = await step("rollups", () => refreshRollups(env, now));
  const anomalies = await step("anomalies", () => checkAnomalies(env, now));
  await step("alert_delivery", () => deliverPendingDegradationAlerts(env, now));
  if (rollups && (rollups.failed > 0 || rollups.rowsWritten > 0 || (anomalies && (anomalies.opened.length > 0 || anomalies.cleared.length > 0)))) {
    log("metrics.tick", { rollups, opened: anomalies?.opened, cleared: anomalies?.cleared }, rollups.failed > 0 ? "warn" : "debug");
  }
}
