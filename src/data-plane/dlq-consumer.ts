/**
 * Records every dead-lettered job in D1 with its reason and the step's attempt history.
 * The entry id is derived from the dispatch it names, so a redelivered message records nothing new.
 */
import { runStub } from "../../durable-objects/run-coordinator-rpc";
import type { PoolConfig } from "../config/pools";
import { errorMessage, log } from "../lib/log";
import { sha256Hex } from "../lib/ids";
import { acknowledge } from "./acknowledge";
import { JobMessageSchema } from "./messages";

export async function consumeDeadLetters(batch: MessageBatch<unknown>, env: Env, pool: PoolConfig): Promise<void> {
  for (const message of batch.messages) {
    try {
      await recordDeadLetter(message, env, pool);
      acknowledge(message);
    } catch (err) {
      log("dlq.record_failed", { pool: pool.name, messageId: message.id, error: errorMessage(err) }, "error");
      message.retry();
    }
  }
}

async function recordDeadLetter(message: Message<unknown>, env: Env, pool: PoolConfig) {
  const job = JobMessageSchema.safeParse(message.body);
  const now = Date.now();
  let entry: { runId: string; customerId: string | null; runType: string | null; step: string | null; type: string; reason: string; attempts: number; history: unknown[] };
  if (job.success) {
    const run = await runStub(env, job.data.runId).get();
    const step = run?.steps[job.data.stepIndex];
    entry = {
      runId: job.data.runId,
      customerId: run?.customerId ?? null,
      runType: run?.runType ?? null,
      step: step?.name ?? null,
      type: "worker_error",
      reason: "the consumer could not process this dispatch within the queue's max_retries",
      attempts: step?.attempts ?? 0,
      history: [],
    };
  } else {
    entry = { runId: "unknown", customerId: null, runType: null, step: null, type: "permanent", reason: "malformed job message", attempts: 0, history: [] };
  }
  const id = `dlq_${(await sha256Hex(JSON.stringify(message.body))).slice(0, 24)}`;
  const result = await env.DB.prepare(
    `INSERT OR IGNORE INTO dlq_entries (id, run_id, customer_id, run_type, pool, step, failure_type, failure_message, attempts, history, message, dead_at, state)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'open')`,
  )
    .bind(id, entry.runId, entry.customerId, entry.runType, pool.name, entry.step, entry.type, entry.reason, entry.attempts, JSON.stringify(entry.history), JSON.stringify(message.body), now)
    .run();
  if (result.meta.changes > 0) log("dlq.recorded", { runId: entry.runId, step: entry.step ?? undefined, pool: pool.name, dlqId: id, reason: entry.reason }, "warn");
}
