/**
 * Alerts as the API lists them, and the degradation alerts' episodes. Every alert is a row of
 * `alerts`, delivered to ALERT_WEBHOOK_URL through deliverAlert (src/services/dead-letters.ts)
 * until the webhook acknowledges it. A degradation alert is written in the same D1 batch as the
 * episode change that raises it, guarded so that only the batch that opened the episode inserts
 * it (two checks at once raise one alert); its recovery resolves it in the batch that clears the
 * episode and records a resolution notice, delivered the same way. Degradation alerts have no
 * queue message to retry them: the minute cron delivers those still pending.
 */
import { and, desc, eq, isNotNull, isNull, type SQL } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { alerts } from "../db/schema";
import type { Principal } from "../domain/principal";
import { sha256Hex } from "../lib/ids";
import { countD1 } from "../lib/usage";
import { deliverAlert } from "./dead-letters";

/** Webhook deliveries of a degradation alert, counting the first; then it stays recorded as failed. */
export const DEGRADATION_DELIVERY_ATTEMPTS = 5;

export const ALERT_STATES = ["firing", "resolved"] as const;
export type AlertState = (typeof ALERT_STATES)[number];

type AlertRow = typeof alerts.$inferSelect;

function present(a: AlertRow) {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    customerId: a.customerId,
    runId: a.runId,
    dlqId: a.dlqId,
    message: a.message,
    details: JSON.parse(a.details) as unknown,
    createdAt: new Date(a.createdAt).toISOString(),
    episode: a.episode,
    /** degradation alerts: firing until the figure recovers; null for one-off alerts (DLQ entries, budgets) */
    state: a.episode === null || a.severity === "info" ? null : a.resolvedAt === null ? ("firing" as const) : ("resolved" as const),
    resolvedAt: a.resolvedAt === null ? null : new Date(a.resolvedAt).toISOString(),
    delivery: { status: a.deliveryStatus, attempts: a.deliveryAttempts, lastError: a.lastDeliveryError },
  };
}

export class AlertsService {
  constructor(private readonly db: DrizzleD1Database) {}

  /** Newest first. A customer key sees its own alerts only (budget thresholds, its runs' dead letters). */
  async list(principal: Principal, query: { kind?: string; state?: AlertState; limit: number }) {
    const where: (SQL | undefined)[] = [];
    if (principal.kind === "customer") where.push(eq(alerts.customerId, principal.customerId));
    if (query.kind) where.push(eq(alerts.kind, query.kind));
    if (query.state === "firing") where.push(and(isNotNull(alerts.episode), isNull(alerts.resolvedAt), eq(alerts.severity, "warning")));
    if (query.state === "resolved") where.push(and(isNotNull(alerts.episode), isNotNull(alerts.resolvedAt), eq(alerts.severity, "warning")));
    const rows = await this.db.select().from(alerts).where(and(...where)).orderBy(desc(alerts.createdAt), desc(alerts.id)).limit(query.limit).all();
    return rows.map(present);
  }
}

export interface DegradationAlert {
  episode: string;
  figure: string;
  kind: string;
  message: string;
  details: Record<string, unknown>;
  /** the verdict's figures, kept on the episode */
  last: Record<string, unknown>;
}

export const degradationAlertId = async (episode: string, openedAt: number) => `alert_deg_${(await sha256Hex(`${episode}\u0000${openedAt}`)).slice(0, 24)}`;

/**
 * Opens an episode and raises its alert in one batch. Returns the alert's id when this call
 * opened it (the episode was clear or new), null when it was open already.
 */
export async function openEpisode(db: D1Database, alert: DegradationAlert, now: number): Promise<string | null> {
  const id = await degradationAlertId(alert.episode, now);
  const results = await db.batch([
    db
      .prepare(
        `INSERT INTO alert_episodes (key, figure, state, alert_id, opened_at, cleared_at, last, updated_at)
         VALUES (?1, ?2, 'open', ?3, ?4, NULL, ?5, ?4)
         ON CONFLICT (key) DO UPDATE SET state = 'open', alert_id = excluded.alert_id, opened_at = excluded.opened_at,
           cleared_at = NULL, last = excluded.last, updated_at = excluded.updated_at
         WHERE alert_episodes.state = 'clear'`,
      )
      .bind(alert.episode, alert.figure, id, now, JSON.stringify(alert.last)),
    db
      .prepare(
        `INSERT OR IGNORE INTO alerts (id, kind, severity, customer_id, run_id, dlq_id, message, details, created_at, episode, resolved_at, delivery_status, delivery_attempts)
         SELECT ?1, ?2, 'warning', NULL, NULL, NULL, ?3, ?4, ?5, ?6, NULL, 'pending', 0
         WHERE EXISTS (SELECT 1 FROM alert_episodes WHERE key = ?6 AND alert_id = ?1 AND state = 'open')`,
      )
      .bind(id, alert.kind, alert.message.slice(0, 1000), JSON.stringify(alert.details), now, alert.episode),
  ]);
  countD1(results);
  return (results[1]?.meta.changes ?? 0) > 0 ? id : null;
}

/**
 * Clears an open episode: resolves its alert and records a resolution notice, in one batch.
 * Returns the notice's id when this call cleared it.
 */
export async function clearEpisode(db: D1Database, episode: string, alertId: string, notice: { kind: string; message: string; details: Record<string, unknown>; last: Record<string, unknown> }, now: number): Promise<string | null> {
  const noticeId = `${alertId}_resolved`;
  const results = await db.batch([
    db
      .prepare("UPDATE alert_episodes SET state = 'clear', cleared_at = ?1, last = ?2, updated_at = ?1 WHERE key = ?3 AND state = 'open' AND alert_id = ?4")
      .bind(now, JSON.stringify(notice.last), episode, alertId),
    db
      .prepare(
        `INSERT OR IGNORE INTO alerts (id, kind, severity, customer_id, run_id, dlq_id, message, details, created_at, episode, resolved_at, delivery_status, delivery_attempts)
         SELECT ?1, ?2, 'info', NULL, NULL, NULL, ?3, ?4, ?5, ?6, ?5, 'pending', 0
         WHERE EXISTS (SELECT 1 FROM alert_episodes WHERE key = ?6 AND alert_id = ?7 AND state = 'clear' AND cleared_at = ?5)`,
      )
      .bind(noticeId, notice.kind, notice.message.slice(0, 1000), JSON.stringify({ ...notice.details, resolves: alertId }), now, episode, alertId),
    db.prepare("UPDATE alerts SET resolved_at = ?1 WHERE id = ?2 AND resolved_at IS NULL").bind(now, alertId),
  ]);
  countD1(results);
  return (results[1]?.meta.changes ?? 0) > 0 ? noticeId : null;
}

/** Delivers degradation alerts and notices still pending (their first delivery failed or was cut short). */
export async function deliverPendingDegradationAlerts(env: Env, now = Date.now()): Promise<number> {
  const pending = await env.DB.prepare(
    `SELECT id, delivery_attempts FROM alerts
     WHERE created_at >= ?1 AND created_at <= ?2 AND episode IS NOT NULL AND delivery_status = 'pending'
     ORDER BY created_at LIMIT 20`,
  )
    .bind(now - 86_400_000, now)
    .all<{ id: string; delivery_attempts: number }>();
  countD1(pending);
  for (const a of pending.results) await deliverAlert(env, a.id, a.delivery_attempts + 1 >= DEGRADATION_DELIVERY_ATTEMPTS);
  return pending.results.length;
}
