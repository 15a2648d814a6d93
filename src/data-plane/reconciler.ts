/**
 * The reconciler, run by the cron trigger: every unfinished run whose index row has not moved
 * for a while is asked for its state (RunCoordinator.reconcile), which sends what a crash may
 * have dropped — an unsent dead letter, a due timer, a lost alarm — and refreshes its index
 * row. Bounded per tick; the least recently checked runs go first.
 */
import { runStub } from "../../durable-objects/run-coordinator-rpc";
import { errorMessage, log } from "../lib/log";
import { countD1 } from "../lib/usage";

export const RECONCILE_AFTER_MS = 60_000;
const PER_TICK = 200;

export async function reconcileRuns(env: Env, now = Date.now()): Promise<{ checked: number; finished: number }> {
  const stale = now - RECONCILE_AFTER_MS;
  const rows = await env.DB.prepare(
    `SELECT id FROM runs WHERE status IN ('queued', 'running', 'waiting') AND updated_at < ?1 AND COALESCE(checked_at, 0) < ?1
     ORDER BY COALESCE(checked_at, 0) LIMIT ?2`,
  )
    .bind(stale, PER_TICK)
    .all<{ id: string }>();
  countD1(rows);
  let finished = 0;
  for (const { id } of rows.results) {
    try {
      const { status } = await runStub(env, id).reconcile();
      if (status === "succeeded" || status === "failed" || status === "cancelled") finished += 1;
    } catch (err) {
      log("reconcile.failed", { runId: id, error: errorMessage(err) }, "error");
    }
  }
  if (rows.results.length > 0) {
    countD1(
      await env.DB.prepare(`UPDATE runs SET checked_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))`)
        .bind(now, JSON.stringify(rows.results.map((r) => r.id)))
        .run(),
    );
    log("reconcile.tick", { checked: rows.results.length, finished });
  }
  return { checked: rows.results.length, finished };
}
