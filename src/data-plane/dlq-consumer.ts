/**
 * The dead-letter consumer. Two kinds of message reach a pool's dead-letter queue:
 *  - a run object's dead letter, when a step's failure ended its run (permanent, or out of
 *    attempts): it carries the failure and the step's attempt history;
 *  - a job message the queue itself dead-lettered after max_retries deliveries whose consumer
 *    failed (crashed, or could not reach the run object): the run object is told, and fails
 *    the step as a worker_error unless the dispatch is no longer current.
 * Each becomes one D1 entry and one alert (ids derived from run, step and dispatch, so a
 * redelivery records nothing new), and the alert is posted to ALERT_WEBHOOK_URL when set.
 */
import { runStub, type DeadLetterReply } from "../../durable-objects/run/rpc";
import type { PoolConfig } from "../config/pools";
import { errorMessage, log } from "../lib/log";
import { sha256Hex } from "../lib/ids";
import { deliverAlert, recordDeadLetter, type DeadLetterEntry } from "../services/dead-letters";
import { acknowledge } from "./acknowledge";
import { DeadLetterMessageSchema, JobMessageSchema, deadLetterKey } from "./messages";

/** Webhook deliveries per alert, counting the first; then the alert stays recorded as failed. */
export const ALERT_DELIVERY_ATTEMPTS = 5;

export async function consumeDeadLetters(batch: MessageBatch<unknown>, env: Env, pool: PoolConfig): Promise<void> {
  for (const message of batch.messages) {
    try {
      const entry = await entryFor(message, env, pool);
      if (entry) {
        const recorded = await recordDeadLetter(env.DB, entry);
        if (recorded.created) log("dlq.recorded", { runId: entry.runId, step: entry.step ?? undefined, pool: pool.name, dlqId: entry.id, failureType: entry.failureType }, "warn");
        const delivered = await deliverAlert(env, recorded.alertId, message.attempts >= ALERT_DELIVERY_ATTEMPTS);
        if (delivered === "retry") {
          // The webhook is down: deliver again later; the entry and alert are already recorded.
          message.retry({ delaySeconds: Math.min(60, 2 ** message.attempts) });
          continue;
        }
      }
      acknowledge(message);
    } catch (err) {
      log("dlq.record_failed", { pool: pool.name, messageId: message.id, error: errorMessage(err) }, "error");
      message.retry({ delaySeconds: Math.min(60, 2 ** message.attempts) });
    }
  }
}

async function entryFor(message: Message<unknown>, env: Env, pool: PoolConfig): Promise<DeadLetterEntry | null> {
  const now = Date.now();
  const dead = DeadLetterMessageSchema.safeParse(message.body);
  if (dead.success) {
    const d = dead.data;
    return {
      id: await entryId(deadLetterKey(d.runId, d.stepIndex, d.dispatch)),
      runId: d.runId,
      customerId: d.customerId,
      runType: d.runType,
      pool: d.pool,
      step: d.step,
      failureType: d.failure.type,
      failureMessage: d.failure.message,
      attempts: d.attempts,
      history: d.history,
      message: message.body,
      deadAt: d.deadAt,
    };
  }
  const job = JobMessageSchema.safeParse(message.body);
  if (job.success) {
    const j = job.data;
    const id = await entryId(deadLetterKey(j.runId, j.stepIndex, j.dispatch));
    // On a redelivery (webhook retry) the run object has already failed the step.
    const existing = await env.DB.prepare("SELECT id FROM dlq_entries WHERE id = ?").bind(id).first();
    if (existing) return { id, runId: j.runId, customerId: null, runType: null, pool: pool.name, step: null, failureType: "worker_error", failureMessage: "", attempts: 0, history: [], message: message.body, deadAt: now };
    const reason = `the queue dead-lettered this step's dispatch after ${message.attempts} failed deliveries to the consumer`;
    let reply: DeadLetterReply;
    try {
      reply = await runStub(env, j.runId).deadLetterDispatch({ stepIndex: j.stepIndex, dispatch: j.dispatch, reason });
    } catch (err) {
      // The run object itself is failing (which is likely why the consumer could not process
      // the job): record the entry from what the message says, for an operator to look into.
      return { id, runId: j.runId, customerId: null, runType: null, pool: pool.name, step: null, failureType: "worker_error", failureMessage: `${reason}; the run object could not be read: ${errorMessage(err)}`, attempts: 0, history: [], message: message.body, deadAt: now };
    }
    if (!reply.ok) {
      // A superseded or finished dispatch: the run went on without it.
      log("dlq.stale_dispatch", { runId: j.runId, stepIndex: j.stepIndex, pool: pool.name, reason: reply.reason });
      return null;
    }
    const d = reply.deadLetter;
    return { id, runId: d.runId, customerId: d.customerId, runType: d.runType, pool: d.pool, step: d.step, failureType: d.failure.type, failureMessage: d.failure.message, attempts: d.attempts, history: d.history, message: message.body, deadAt: d.deadAt };
  }
  // Not a message of ours at all: keep it for an operator, as a permanent failure.
  return {
    id: await entryId(`malformed:${JSON.stringify(message.body)}`),
    runId: "unknown",
    customerId: null,
    runType: null,
    pool: pool.name,
    step: null,
    failureType: "permanent",
    failureMessage: "malformed job message",
    attempts: 0,
    history: [],
    message: message.body,
    deadAt: now,
  };
}

const entryId = async (key: string) => `dlq_${(await sha256Hex(key)).slice(0, 24)}`;
