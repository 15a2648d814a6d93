/**
 * Dead-letter entries and alerts in D1, and the alert webhook. The entry and its alert are
 * written in one batch (one transaction), so an alert exists exactly when its entry does.
 */
import { countD1 } from "../lib/usage";
import { errorMessage, log } from "../lib/log";

export interface DeadLetterEntry {
  id: string;
  runId: string;
  customerId: string | null;
  runType: string | null;
  pool: string;
  step: string | null;
  failureType: string;
  failureMessage: string;
  attempts: number;
  history: unknown[];
  message: unknown;
  deadAt: number;
}

export const alertIdForEntry = (entryId: string) => `alert_${entryId.slice(4)}`;

export async function recordDeadLetter(db: D1Database, entry: DeadLetterEntry): Promise<{ created: boolean; alertId: string }> {
  const alertId = alertIdForEntry(entry.id);
  const results = await db.batch([
    db
      .prepare(
        `INSERT OR IGNORE INTO dlq_entries (id, run_id, customer_id, run_type, pool, step, failure_type, failure_message, attempts, history, message, dead_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'open')`,
      )
      .bind(entry.id, entry.runId, entry.customerId, entry.runType, entry.pool, entry.step, entry.failureType, entry.failureMessage, entry.attempts, JSON.stringify(entry.history), JSON.stringify(entry.message), entry.deadAt),
    db
      .prepare(
        `INSERT OR IGNORE INTO alerts (id, kind, severity, customer_id, run_id, dlq_id, message, details, created_at, delivery_status, delivery_attempts)
         VALUES (?1, 'dlq_entry', 'error', ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0)`,
      )
      .bind(
        alertId,
        entry.customerId,
        entry.runId,
        entry.id,
        `Run ${entry.runId} dead-lettered at step ${entry.step ?? "?"} (${entry.failureType}): ${entry.failureMessage}`.slice(0, 1000),
        JSON.stringify({ pool: entry.pool, runType: entry.runType, step: entry.step, failureType: entry.failureType, attempts: entry.attempts }),
        entry.deadAt,
      ),
    // The run's dead letter is recorded: it is no longer due for the reconciler.
    db.prepare("UPDATE runs SET due_at = NULL WHERE id = ?1 AND status = 'failed' AND due_at IS NOT NULL").bind(entry.runId),
  ]);
  countD1(results);
  return { created: (results[0]?.meta.changes ?? 0) > 0, alertId };
}

/** Records an alert raised elsewhere (budget thresholds); its id makes a second copy harmless. */
export async function recordAlert(
  db: D1Database,
  alert: { id: string; kind: string; severity: string; customerId: string | null; message: string; details: Record<string, unknown>; createdAt: number },
): Promise<void> {
  countD1(
    await db
      .prepare(
        `INSERT OR IGNORE INTO alerts (id, kind, severity, customer_id, run_id, dlq_id, message, details, created_at, delivery_status, delivery_attempts)
         VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6, ?7, 'pending', 0)`,
      )
      .bind(alert.id, alert.kind, alert.severity, alert.customerId, alert.message, JSON.stringify(alert.details), alert.createdAt)
      .run(),
  );
}

/**
 * Posts a pending alert to ALERT_WEBHOOK_URL. "retry" asks the caller to try again later;
 * on the last try a failure is recorded as `failed` and the alert stays listed.
 */
export async function deliverAlert(env: Env, alertId: string, lastTry: boolean): Promise<"done" | "retry"> {
  const alert = await env.DB.prepare("SELECT * FROM alerts WHERE id = ?").bind(alertId).first<Record<string, unknown>>();
  if (!alert || alert.delivery_status === "delivered" || alert.delivery_status === "failed" || alert.delivery_status === "none") return "done";
  const url = env.ALERT_WEBHOOK_URL;
  if (!url) {
    await env.DB.prepare("UPDATE alerts SET delivery_status = 'none' WHERE id = ?").bind(alertId).run();
    return "done";
  }
  let error: string | null = null;
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "runplane-alerts" },
      body: JSON.stringify({
        type: `runplane.alert.${alert.kind}`,
        alert: { ...alert, details: JSON.parse(String(alert.details)), createdAt: new Date(Number(alert.created_at)).toISOString() },
      }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) error = `HTTP ${response.status}`;
  } catch (err) {
    error = errorMessage(err);
  }
  const status = error === null ? "delivered" : lastTry ? "failed" : "pending";
  await env.DB.prepare("UPDATE alerts SET delivery_status = ?, delivery_attempts = delivery_attempts + 1, last_delivery_error = ? WHERE id = ?")
    .bind(status, error, alertId)
    .run();
  if (error !== null) log("alert.delivery_failed", { alertId, status, error }, "warn");
  return status === "pending" ? "retry" : "done";
}
