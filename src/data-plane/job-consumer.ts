/**
 * The consumer pool: each message names one step dispatch. The run object hands out a lease
 * on a new attempt, the executor runs, the result is reported back, the message is acked.
 * After a checkpoint the run object may hand back the run's next step at once, and the
 * consumer carries on with it (up to INLINE_STEP_LIMIT) instead of sending the run to the
 * back of the queue once per step.
 */
import { runStub, type ReportResult, type StepAssignment } from "../../durable-objects/run/rpc";
import type { PoolConfig } from "../config/pools";
import { errorMessage, log } from "../lib/log";
import { executeAssignment } from "./execute-step";
import { acknowledge } from "./acknowledge";
import { JobMessageSchema } from "./messages";
import { countUsage } from "../lib/usage";

export async function consumeJobs(batch: MessageBatch<unknown>, env: Env, pool: PoolConfig): Promise<void> {
  const inlineLimit = Math.max(0, Number(env.INLINE_STEP_LIMIT ?? 0) || 0);
  await Promise.all(batch.messages.map((message) => handleJob(message, env, pool, inlineLimit)));
}

async function handleJob(message: Message<unknown>, env: Env, pool: PoolConfig, inlineLimit: number): Promise<void> {
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
  try {
    const start = await run.startStep({ stepIndex: job.stepIndex, dispatch: job.dispatch });
    if (!start.ok) {
      // A duplicate delivery, a superseded dispatch or a finished run: nothing to do.
      log("job.skipped", { runId: job.runId, stepIndex: job.stepIndex, pool: pool.name, reason: start.reason, deliveryAttempt: message.attempts });
      acknowledge(message);
      return;
    }
    let assignment: StepAssignment | null = start.assignment;
    let carried = 0;
    while (assignment) {
      const fields = { runId: assignment.runId, step: assignment.step.name, attempt: assignment.attempt, pool: pool.name };
      // The run object logs the attempt's outcome (step.succeeded / step.failed) when it records it.
      const result = await executeAssignment(assignment, env, run);
      const report: ReportResult = result.ok
        ? await run.completeStep({ leaseId: assignment.leaseId, output: result.output, usage: result.usage, continueInline: carried < inlineLimit })
        : await run.failStep({ leaseId: assignment.leaseId, failure: result.failure });
      if (!report.ok) {
        log("step.result_rejected", { ...fields, reason: report.reason }, "warn");
        break;
      }
      assignment = report.next;
      carried += 1;
    }
    acknowledge(message);
  } catch (err) {
    // The run object was unreachable or threw: the queue delivers again, and after
    // max_retries the message is dead-lettered.
    log("job.error", { runId: job.runId, stepIndex: job.stepIndex, pool: pool.name, deliveryAttempt: message.attempts, error: errorMessage(err) }, "error");
    message.retry();
  }
}
