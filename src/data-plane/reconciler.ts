/**
 * The reconciler, run by the cron trigger. Each run's index row carries `due_at`: when the run
 * should have moved on by its own timers (a wake, a retry, a lease, a dispatch pick-up), plus a
 * grace, or, for a failed run, until its dead letter is recorded. A tick reads only the rows
 * past their deadline, by index, so its work is O(due), never O(runs): a healthy sleep is not
 * looked at until it should have woken. Each due run's object repairs itself
 * (RunCoordinator.reconcile): it fires due timers, re-arms a lost alarm, resends an unsent dead
 * letter or cost, and reports its next deadline, which the tick writes back.
 */
import { runStub } from "../../durable-objects/run/rpc";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";

const DEFAULT_RECONCILE_AFTER_MS = 60_000;
const PER_TICK = 200;
const PARALLEL = 20;

export async function reconcileRuns(env: Env, now = Date.now()): Promise<{ checked: number; finished: number; deadLettersResent: number }> {
  const grace = Number(env.RECONCILE_AFTER_MS) || DEFAULT_RECONCILE_AFTER_MS;
  const due = await env.DB.prepare(
    `SELECT r.id, r.status,
       EXISTS (SELECT 1 FROM dlq_entries d WHERE d.run_id = r.id AND d.dead_at >= COALESCE(r.finished_at, 0) - 60000) AS dead_lettered
     FROM runs r WHERE r.due_at <= ?1 ORDER BY r.due_at LIMIT ?2`,
  )
    .bind(now, PER_TICK)
    .all<{ id: string; status: string; dead_lettered: number }>();
  countD1(due);
  let finished = 0;
  let deadLettersResent = 0;
  const next: { id: string; dueAt: number | null }[] = [];
  for (let i = 0; i < due.results.length; i += PARALLEL) {
    await Promise.all(
      due.results.slice(i, i + PARALLEL).map(async ({ id, status, dead_lettered }) => {
        // A failed run whose dead letter is recorded has nothing left to be due for.
        if (status === "failed" && dead_lettered) return void next.push({ id, dueAt: null });
        try {
          // A run the index shows failed (or stuck) may have lost its dead letter on the way.
          const resendDeadLetter = status === "failed" || status === "queued" || status === "running" || status === "waiting";
          const reply = await runStub(env, id).reconcile({ resendDeadLetter });
          if (reply.status === "succeeded" || reply.status === "failed" || reply.status === "cancelled") finished += 1;
          if (reply.status === "failed" && reply.dueAt !== null) deadLettersResent += 1;
          // Not looked at again before a grace period, whatever it says: a run that cannot move on is
          // retried each grace, not each tick.
          next.push({ id, dueAt: reply.status === null || reply.dueAt === null ? null : Math.max(reply.dueAt, now + grace) });
        } catch (err) {
          log("reconcile.failed", { runId: id, error: errorMessage(err) }, "error");
          next.push({ id, dueAt: now + grace });
        }
      }),
    );
  }
  if (next.length > 0) {
    countD1(
      await env.DB.prepare(
        `UPDATE runs SET due_at = (SELECT json_extract(value, '$.dueAt') FROM json_each(?1) WHERE json_extract(value, '$.id') = runs.id)
         WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each(?1))`,
      )
        .bind(JSON.stringify(next))
        .run(),
    );
    log("reconcile.tick", { checked: next.length, finished, deadLettersResent });
  }
  return { checked: next.length, finished, deadLettersResent };
}
