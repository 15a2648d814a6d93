/**
 * The Worker: `fetch` serves the control plane (API, OpenAPI, docs), `queue` feeds the
 * consumer pool, the dead-letter consumers and the analytics writer, and `scheduled` (each
 * minute) runs the reconcilers, the retention sweep and the metrics (samples, rollups, alerts).
 */
import { createApp } from "./api/app";
import { EVENTS_DEAD_LETTER_QUEUE, EVENTS_QUEUE, poolForDeadLetterQueue, poolForJobQueue } from "./config/pools";
import { consumeDeadLetters } from "./data-plane/dlq-consumer";
import { consumeEvents } from "./data-plane/events-consumer";
import { consumeEventDeadLetters } from "./data-plane/events-dlq-consumer";
import { consumeJobs } from "./data-plane/job-consumer";
import { reconcileLedgers } from "./data-plane/ledger-reconciler";
import { metricsTick } from "./data-plane/metrics-tick";
import { reconcileRuns } from "./data-plane/reconciler";
import { sweepRetention } from "./data-plane/retention-sweep";
import { configureLogging, log } from "./lib/log";
import { countUsage } from "./lib/usage";
import { noteWorkerHostname } from "./steps/safe-fetch";
import "./steps/custom";

export { RunCoordinator } from "../durable-objects/run/run-coordinator";
export { CustomerLedger } from "../durable-objects/ledger/customer-ledger";
export { RateLimiter } from "../durable-objects/rate-limiter/rate-limiter";
export { PoolController } from "../durable-objects/pool/pool-controller";

const app = createApp();

export default {
  fetch(request, env, ctx) {
    configureLogging(env.LOG_LEVEL);
    countUsage("worker_requests");
    // Steps may not call the Worker back: the hostnames it is called on join the refused names.
    noteWorkerHostname(new URL(request.url).hostname);
    return app.fetch(request, env, ctx);
  },

  async queue(batch, env, _ctx) {
    configureLogging(env.LOG_LEVEL);
    countUsage("worker_requests");
    countUsage("queue_operations", batch.messages.length);
    const jobPool = poolForJobQueue(batch.queue);
    if (jobPool) return consumeJobs(batch, env, jobPool);
    const deadLetterPool = poolForDeadLetterQueue(batch.queue);
    if (deadLetterPool) return consumeDeadLetters(batch, env, deadLetterPool);
    if (batch.queue === EVENTS_QUEUE) return consumeEvents(batch, env);
    if (batch.queue === EVENTS_DEAD_LETTER_QUEUE) return consumeEventDeadLetters(batch, env);
    log("queue.unknown", { queue: batch.queue, messages: batch.messages.length }, "error");
    batch.retryAll();
  },

  async scheduled(_controller, env, ctx) {
    configureLogging(env.LOG_LEVEL);
    countUsage("worker_requests");
    ctx.waitUntil(reconcileRuns(env));
    ctx.waitUntil(reconcileLedgers(env));
    ctx.waitUntil(sweepRetention(env));
    // The probe goes through the Worker's own router, as a client's request would.
    ctx.waitUntil(metricsTick(env, (request) => Promise.resolve(app.fetch(request, env, ctx))));
  },
} satisfies ExportedHandler<Env>;
