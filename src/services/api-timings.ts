/**
 * This isolate's API response times (src/metrics/api-timings.ts), sent to the events queue in
 * aggregate at most every FLUSH_INTERVAL_MS (or when MAX_PENDING_REQUESTS are held), never per
 * request. An unflushed interval is lost if the isolate is evicted: timings are not money. A
 * failed send keeps its samples (same ids, so a send that did land is not counted twice) for the
 * next flush, up to MAX_UNSENT of them.
 */
import { TimingAggregator, type TimingSample } from "../metrics/api-timings";
import { newId } from "../lib/ids";
import { errorMessage, log } from "../lib/log";
import { countUsage } from "../lib/usage";

const MAX_UNSENT = 50;

let aggregator: TimingAggregator | null = null;
let unsent: TimingSample[] = [];

// Random ids cannot be made at module scope in a Worker: the aggregator starts on first use.
const current = () => (aggregator ??= new TimingAggregator(newId("iso"), Date.now()));

export function recordApiTiming(at: number, route: string, method: string, status: number, customerId: string, ms: number): void {
  current().record(at, route, method, status, customerId, ms);
}

export const apiTimingsDue = (now = Date.now()) => current().due(now);

/** Sends what this isolate holds; returns the number of messages sent. */
export async function flushApiTimings(env: Env, now = Date.now()): Promise<number> {
  const samples = [...unsent, ...current().drain(now)];
  unsent = [];
  if (samples.length === 0) return 0;
  try {
    for (let i = 0; i < samples.length; i += 100) await env.EVENTS.sendBatch(samples.slice(i, i + 100).map((body) => ({ body })));
    countUsage("queue_operations", samples.length);
    return samples.length;
  } catch (err) {
    unsent = samples.slice(-MAX_UNSENT);
    log("metrics.api_flush_failed", { samples: samples.length, kept: unsent.length, error: errorMessage(err) }, "warn");
    return 0;
  }
}
