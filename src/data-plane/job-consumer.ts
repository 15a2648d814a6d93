/**
 * The consumer pool: each message names one step dispatch. The run object hands out a lease
 * on a new attempt, the executor runs, the result is reported back, the message is acked.
 * After a checkpoint the run object may hand back the run's next step at once, and the
 * consumer carries on with it (up to INLINE_STEP_LIMIT) instead of sending the run to the
 * back of the queue once per step.
 *
 * A message the pool's controller admitted (it names its `shard`) holds one of the pool's slots
 * for its whole chain: the consumer renews the slot on a long chain (every POOL_SLOT_LEASE_MS / 3)
 * and reports it done when the chain ends however it ends (acked, refused, paused), with the time
 * it held the slot. A message retried for a platform fault keeps its slot until it is delivered
 * again and done, or until the slot's lease ends.
 */
import { runStub, type ReportResult, type StepAssignment } from "../../durable-objects/run/rpc";
import { DEFAULT_SLOT_LEASE_MS, poolControllerStub, slotKey } from "../../durable-objects/pool/rpc";
import type { PoolConfig } from "../config/pools";
import { errorMessage, log } from "../lib/log";
import { executeAssignment } from "./execute-step";
import { acknowledge } from "./acknowledge";
import { JobMessageSchema } from "./messages";
import { countUsage } from "../lib/usage";
import { SlotReports } from "./slot-reports";
import { truncateText } from "../lib/text";
import type { StepResult } from "../steps/step-type";

export async function consumeJobs(batch: MessageBatch<unknown>, env: Env, pool: PoolConfig): Promise<void> {
  const inlineLimit = Math.max(0, Number(env.INLINE_STEP_LIMIT ?? 0) || 0);
  const reports = new SlotReports(env, pool.name);
  await Promise.all(batch.messages.map((message) => handleJob(message, env, pool, inlineLimit, reports)));
}

async function handleJob(message: Message<unknown>, env: Env, pool: PoolConfig, inlineLimit: number, reports: SlotReports): Promise<void> {
  const parsed = JobMessageSchema.safeParse(message.body);
  if (!parsed.success) {
    // No retry can fix a malformed message: straight to the dead-letter queue, with the reason.
    log("job.malformed", { pool: pool.name, messageId: message.id, issues: parsed.error.issues.map((i) => i.message) }, "error");
    await pool.deadLetters(env).send({ malformed: true, body: message.body, issues: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) });
    countUsage("queue_operations");
    acknowledge(message);
    return;
  }
  const job = parsed.data;
  const run = runStub(env, job.runId);
  const slot = job.shard === undefined ? null : { stub: poolControllerStub(env, pool.name, job.shard), where: { pool: pool.name, shard: job.shard, key: slotKey(job.runId, job.stepIndex, job.dispatch) } };
  const heldSince = Date.now();
  const slotLeaseMs = Number(env.POOL_SLOT_LEASE_MS) || DEFAULT_SLOT_LEASE_MS;
  const renewal = slot
    ? setInterval(() => {
        slot.stub.renew(slot.where).catch((err) => log("pool.renew_failed", { runId: job.runId, pool: pool.name, error: errorMessage(err) }, "warn"));
      }, Math.max(1_000, Math.floor(slotLeaseMs / 3)))
    : null;
  let carried = 0;
  let steps = 0;
  let retried = false;
  try {
    const start = await run.startStep({ stepIndex: job.stepIndex, dispatch: job.dispatch });
    if (!start.ok) {
      // A duplicate delivery, a superseded dispatch or a finished run: nothing to do.
      log("job.skipped", { runId: job.runId, stepIndex: job.stepIndex, pool: pool.name, reason: start.reason, deliveryAttempt: message.attempts });
      acknowledge(message);
      return;
    }
    let assignment: StepAssignment | null = start.assignment;
    while (assignment) {
      const fields = { runId: assignment.runId, step: assignment.step.name, attempt: assignment.attempt, pool: pool.name };
      // The run object logs the attempt's outcome (step.succeeded / step.failed) when it records it.
      const result = boundResult(await executeAssignment(assignment, env, run));
      steps += 1;
      const lease: string = assignment.leaseId;
      const continueInline = carried < inlineLimit;
      // A report is idempotent (its lease guards it): a blip of the run object is ridden out here,
      // so the attempt's result is not lost to a lease expiry.
      const report: ReportResult = await withRetries((): Promise<ReportResult> =>
        result.ok ? run.completeStep({ leaseId: lease, output: result.output, usage: result.usage, continueInline }) : run.failStep({ leaseId: lease, failure: result.failure }),
      );
      if (!report.ok) {
        log("step.result_rejected", { ...fields, reason: report.reason }, "warn");
        break;
      }
      assignment = report.next;
      carried += 1;
    }
    acknowledge(message);
  } catch (err) {
    // The run object was unreachable or threw: a platform fault, not the step's. The queue
    // delivers again after a growing delay (the step's own attempts are not used), and only
    // after max_retries is the message dead-lettered. Its slot stays held meanwhile (or until
    // the slot's lease ends).
    const delaySeconds = platformRetryDelaySeconds(message.attempts);
    log("job.error", { runId: job.runId, stepIndex: job.stepIndex, pool: pool.name, deliveryAttempt: message.attempts, retryInSeconds: delaySeconds, error: errorMessage(err) }, "error");
    message.retry({ delaySeconds });
    retried = true;
  } finally {
    if (renewal) clearInterval(renewal);
    // The chain is over (the message is acked): its slot goes back to the pool, with the other
    // chains of this batch that end meanwhile. Best effort: an unreported slot comes back when its
    // lease ends.
    if (slot && !retried) {
      await reports
        .done(slot.where.shard, { key: slot.where.key, busyMs: Date.now() - heldSince, steps })
        .catch((err) => log("pool.done_failed", { runId: job.runId, pool: pool.name, error: errorMessage(err) }, "warn"));
    }
  }
}

/** 1 s, 2 s, 4 s … up to 5 minutes between deliveries of a message its consumer could not handle. */
export const platformRetryDelaySeconds = (deliveryAttempt: number) => Math.min(300, 2 ** Math.max(0, deliveryAttempt - 1));

const REPORT_RETRY_MS = [200, 1_000, 3_000];

async function withRetries<T>(call: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (err) {
      if (i >= REPORT_RETRY_MS.length) throw err;
      await new Promise((resolve) => setTimeout(resolve, REPORT_RETRY_MS[i]));
    }
  }
}

/** Largest output a step may hand back (JSON), and longest failure message, as the run object keeps them. */
export const MAX_OUTPUT_BYTES = 256 * 1024;
export const MAX_FAILURE_CHARS = 4_000;

/** A result the run object can keep: an oversized output fails the attempt, a long message is cut with a marker. */
function boundResult(result: StepResult): StepResult {
  if (!result.ok) return { ok: false, failure: { ...result.failure, message: truncateText(result.failure.message, MAX_FAILURE_CHARS) } };
  const bytes = new TextEncoder().encode(JSON.stringify(result.output ?? null)).length;
  if (bytes > MAX_OUTPUT_BYTES) return { ok: false, failure: { type: "permanent", message: `the step's output is ${bytes} bytes, more than the ${MAX_OUTPUT_BYTES} a step may return` } };
  return result;
}
