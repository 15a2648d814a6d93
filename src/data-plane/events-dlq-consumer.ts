/**
 * The events queue's dead-letter consumer: a message the events consumer failed on
 * max_retries times (D1 unavailable, a bad row) is kept whole in D1 `dead_events`, then applied
 * once more; `applied_at` says whether its effect reached D1 after all. Nothing the platform
 * meant to record (a cost rollup, an alert, an index row) disappears without a trace, and a
 * cost rollup that still could not be written is repaired by the ledger's reconciliation.
 */
import { errorMessage, log } from "../lib/log";
import { markDeadEvent, recordDeadEvent } from "../services/dead-events";
import { applyEventMessage } from "./events-consumer";

export async function consumeEventDeadLetters(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  for (const message of batch.messages) {
    try {
      await recordDeadEvent(env.DB, message.id, message.body, null);
    } catch (err) {
      // D1 itself is down: keep the message in the queue and try again later.
      log("events.dead_letter_unrecorded", { messageId: message.id, error: errorMessage(err) }, "error");
      message.retry({ delaySeconds: Math.min(300, 5 * 2 ** message.attempts) });
      continue;
    }
    let error: string | null = null;
    try {
      await applyEventMessage(env, message.body);
      await markDeadEvent(env.DB, message.id, { appliedAt: Date.now() });
    } catch (err) {
      error = errorMessage(err);
      await markDeadEvent(env.DB, message.id, { error }).catch(() => {});
    }
    log("events.dead_lettered", { messageId: message.id, applied: error === null, error: error ?? undefined }, "error");
    message.ack();
  }
}
