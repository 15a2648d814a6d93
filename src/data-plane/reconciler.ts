/**
 * The reconciler, run by the cron trigger. Whatever a crash may have dropped is found from the
 * D1 index and repaired by the run object itself (RunCoordinator.reconcile):
 *  - an unfinished run whose index row has not moved for a while is asked for its state: it
 *    sends unsent dead letters, fires due timers, re-arms a lost alarm and refreshes its row;
 *  - a run that failed on a step but has no dead-letter entry sends its dead letter again.
 * Bounded per tick; the least recently checked runs go first.
 */
import { runStub } from "../../durable-objects/run/rpc";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";

const DEFAULT_RECONCILE_AFTER_MS = 60_000;
const PER_TICK = 200;

export async function reconcileRuns(env: Env, now = Date.now()): Promise<{ checked: number; finished: number; deadLettersResent: number }> {
  const stale = now - (Number(env.RECONCILE_AFTER_MS) || DEFAULT_RECONCILE_AFTER_MS);
  const [unfinished, missingDeadLetters] = await env.DB.batch<{ id: string }>([
    env.DB.prepare(
      `SELECT id FROM runs WHERE status IN ('queued', 'running', 'waiting') AND updated_at < ?1 AND COALESCE(checked_at, 0) < ?1
       ORDER BY COALESCE(checked_at, 0) LIMIT ?2`,
    ).bind(stale, PER_TICK),
    env.DB.prepare(
      `SELECT r.id FROM runs r WHERE r.status = 'failed' AND r.failure_type NOT IN ('cancelled', 'budget_exceeded')
         AND r.updated_at < ?1 AND COALESCE(r.checked_at, 0) < ?1
         AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.run_id = r.id AND d.dead_at >= r.finished_at - 60000)
       LIMIT ?2`,
    ).bind(stale, PER_TICK),
  ]);
  countD1([unfinished!, missingDeadLetters!]);
  let finished = 0;
  const poke = async (id: string, resendDeadLetter: boolean) => {
    try {
      const { status } = await runStub(env, id).reconcile({ resendDeadLetter });
      if (status === "succeeded" || status === "failed" || status === "cancelled") finished += 1;
    } catch (err) {
      log("reconcile.failed", { runId: id, error: errorMessage(err) }, "error");
    }
  };
  // An unfinished run in the index whose object is already failed lost messages on the way,
  // likely its dead letter too: ask it to resend that as well (a duplicate is harmless).
  for (const { id } of unfinished!.results) await poke(id, true);
  for (const { id } of missingDeadLetters!.results) await poke(id, true);
  const checked = [...unfinished!.results, ...missingDeadLetters!.results].map((r) => r.id);
  if (checked.length > 0) {
    countD1(await env.DB.prepare(`UPDATE runs SET checked_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))`).bind(now, JSON.stringify(checked)).run());
    log("reconcile.tick", { checked: checked.length, finished, deadLettersResent: missingDeadLetters!.results.length });
  }
  return { checked: checked.length, finished, deadLettersResent: missingDeadLetters!.results.length };
}
