import { countD1 } from "../lib/usage";

/** Keeps an events message the platform could not apply, whole, with why (D1 `dead_events`). */
export async function recordDeadEvent(db: D1Database, id: string, body: unknown, error: string | null): Promise<void> {
  const kind = typeof body === "object" && body !== null && typeof (body as { kind?: unknown }).kind === "string" ? String((body as { kind: string }).kind).slice(0, 64) : "unknown";
  countD1(
    await db
      .prepare("INSERT INTO dead_events (id, kind, body, received_at, error) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET error = excluded.error")
      .bind(id, kind, JSON.stringify(body ?? null), Date.now(), error)
      .run(),
  );
}

export async function markDeadEvent(db: D1Database, id: string, outcome: { appliedAt: number } | { error: string }): Promise<void> {
  const statement =
    "appliedAt" in outcome
      ? db.prepare("UPDATE dead_events SET applied_at = ?1, error = NULL WHERE id = ?2").bind(outcome.appliedAt, id)
      : db.prepare("UPDATE dead_events SET error = ?1 WHERE id = ?2").bind(outcome.error.slice(0, 2000), id);
  countD1(await statement.run());
}
