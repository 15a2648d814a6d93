import { and, desc, eq, gte, lte, sql, type SQL } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { runStub } from "../../durable-objects/run/rpc";
import { DomainError } from "../domain/errors";
import { cursorKey, pageOf, timeAndIdCursor } from "../domain/pagination";
import { resumeAdmitted } from "./admission";
import { dlqEntries } from "../db/schema";

export interface DlqFilter {
  pool?: string;
  customerId?: string;
  runType?: string;
  failureType?: string;
  from?: string;
  to?: string;
  state?: "open" | "retried" | "discarded";
}

type EntryRow = typeof dlqEntries.$inferSelect;

/** A dead-letter entry's id (made by the DLQ consumer: `dlq_` and 24 hex digits). */
export const DLQ_ENTRY_ID = /^dlq_[0-9a-z]{1,64}$/;

/** Newest first by (deadAt, id), as `deadAt:id`. */
const DLQ_CURSOR = timeAndIdCursor(DLQ_ENTRY_ID, "colon");

function present(row: EntryRow) {
  return {
    id: row.id,
    runId: row.runId,
    customerId: row.customerId,
    runType: row.runType,
    pool: row.pool,
    step: row.step,
    failure: { type: row.failureType, message: row.failureMessage },
    attempts: row.attempts,
    history: (JSON.parse(row.history) as { startedAt: number; finishedAt: number | null }[]).map((h) => ({
      ...h,
      startedAt: new Date(h.startedAt).toISOString(),
      finishedAt: h.finishedAt === null ? null : new Date(h.finishedAt).toISOString(),
    })),
    deadAt: new Date(row.deadAt).toISOString(),
    state: row.state,
  };
}

export class DlqService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
  ) {}

  private conditions(filter: DlqFilter): SQL | undefined {
    const c: (SQL | undefined)[] = [eq(dlqEntries.state, filter.state ?? "open")];
    if (filter.pool) c.push(eq(dlqEntries.pool, filter.pool));
    if (filter.customerId) c.push(eq(dlqEntries.customerId, filter.customerId));
    if (filter.runType) c.push(eq(dlqEntries.runType, filter.runType));
    if (filter.failureType) c.push(eq(dlqEntries.failureType, filter.failureType));
    if (filter.from) c.push(gte(dlqEntries.deadAt, Date.parse(filter.from)));
    if (filter.to) c.push(lte(dlqEntries.deadAt, Date.parse(filter.to)));
    return and(...c);
  }

  async list(filter: DlqFilter, limit: number, cursor?: string) {
    const after = cursorKey(DLQ_CURSOR, cursor);
    const where = after ? and(this.conditions(filter), sql`(${dlqEntries.deadAt}, ${dlqEntries.id}) < (${after.at}, ${after.id})`) : this.conditions(filter);
    const rows = await this.db.select().from(dlqEntries).where(where).orderBy(desc(dlqEntries.deadAt), desc(dlqEntries.id)).limit(limit + 1).all();
    const page = pageOf(rows, limit, (last) => DLQ_CURSOR.encode({ at: last.deadAt, id: last.id }));
    return { entries: page.items.map(present), nextCursor: page.nextCursor };
  }

  async get(id: string) {
    const row = await this.db.select().from(dlqEntries).where(eq(dlqEntries.id, id)).get();
    if (!row) throw new DomainError("not_found", `dead-letter entry "${id}" not found`);
    return { ...present(row), message: JSON.parse(row.message) as unknown };
  }

  /**
   * Retries one open entry: its run resumes from the failed step with a fresh set of
   * attempts, keeping every earlier step's output. The entry is marked retried only once the
   * run has resumed, so a failed retry can be tried again.
   */
  async retry(id: string) {
    const row = await this.db.select().from(dlqEntries).where(eq(dlqEntries.id, id)).get();
    if (!row) throw new DomainError("not_found", `dead-letter entry "${id}" not found`);
    if (row.state !== "open") throw new DomainError("conflict", `dead-letter entry "${id}" is ${row.state}, not open`);
    const customerId = row.customerId ?? (await runStub(this.env, row.runId).get())?.customerId;
    if (customerId) await resumeAdmitted(this.env, customerId, row.runId);
    const reply = await runStub(this.env, row.runId).resume();
    if (!reply.ok) {
      throw new DomainError("conflict", `run "${row.runId}" is ${reply.run?.status ?? "unknown"}; only a failed run can be retried`);
    }
    await this.db.update(dlqEntries).set({ state: "retried" }).where(and(eq(dlqEntries.id, id), eq(dlqEntries.state, "open")));
    return { entry: { ...present(row), state: "retried" }, runStatus: reply.run.status };
  }

  /** Retries every open entry matching the filter; an entry whose run cannot resume is skipped. */
  async retryMatching(filter: DlqFilter) {
    const rows = await this.db.select({ id: dlqEntries.id }).from(dlqEntries).where(this.conditions({ ...filter, state: "open" })).limit(1000).all();
    let retried = 0;
    const skipped: { id: string; reason: string }[] = [];
    for (const { id } of rows) {
      try {
        await this.retry(id);
        retried += 1;
      } catch (err) {
        skipped.push({ id, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    return { retried, skipped, matched: rows.length };
  }

  async discard(id: string) {
    const result = await this.db.update(dlqEntries).set({ state: "discarded" }).where(and(eq(dlqEntries.id, id), eq(dlqEntries.state, "open"))).returning({ id: dlqEntries.id }).get();
    if (!result) {
      const exists = await this.db.select({ state: dlqEntries.state }).from(dlqEntries).where(eq(dlqEntries.id, id)).get();
      if (!exists) throw new DomainError("not_found", `dead-letter entry "${id}" not found`);
      throw new DomainError("conflict", `dead-letter entry "${id}" is ${exists.state}, not open`);
    }
  }
}
