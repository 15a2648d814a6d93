/**
 * One Durable Object per customer: its spend, as the platform enforces it. Month-to-date spend
 * in real time; a budget with soft thresholds (an alert once per threshold per month) and a hard
 * limit (new runs refused, running runs stopped before their next step); reservations, so that
 * concurrent steps can never overspend; idempotent cost events (an id recorded twice counts
 * once). Recorded events go on to D1 (cost_events) through the events queue, in batches.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { CostEventRowSchema, type EventMessage } from "../src/data-plane/messages";
import { nanoToUsdString } from "../src/domain/money";
import { errorMessage, log } from "../src/lib/log";
import { countUsage } from "../src/lib/usage";
import { insertRows, sqlHelper } from "./sql";

const BudgetSchema = z.object({
  limitNanoUsd: z.string().regex(/^\d+$/).nullable(),
  softThresholds: z.array(z.number().gt(0).lt(1)),
});
export type LedgerBudget = z.infer<typeof BudgetSchema>;

export interface LedgerSummary {
  month: string;
  spendNanoUsd: string;
  reservedNanoUsd: string;
  budget: LedgerBudget;
  state: "no_budget" | "ok" | "soft_limit" | "exhausted";
}

export type LedgerCostEvent = z.infer<typeof CostEventRowSchema>;

const RecordInputSchema = z.object({
  customerId: z.string().min(1),
  /**
   * Set by a run object for the batch of events it sends when a run pauses or ends: the batch
   * is counted once by its id (one row), instead of by each event's id (a row per event).
   */
  batchId: z.string().min(1).max(200).optional(),
  events: z.array(CostEventRowSchema).max(1000),
  releaseReservation: z.string().optional(),
});

const ReserveInputSchema = z.object({ customerId: z.string().min(1), id: z.string().min(1), nanoUsd: z.string().regex(/^\d+$/) });

export interface RecordReply {
  recorded: number;
  spendNanoUsd: string;
  limited: boolean;
  exhausted: boolean;
}

const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7);

export class CustomerLedger extends DurableObject {
  private readonly sql = sqlHelper(this.ctx.storage);
  private schemaReady = false;

  private ensureSchema() {
    if (this.schemaReady) return;
    this.ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY CHECK (id = 1), limit_nano_usd TEXT, soft_thresholds TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS spend (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS recorded (id TEXT PRIMARY KEY, month TEXT NOT NULL, nano_usd TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, nano_usd TEXT NOT NULL, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS alerted (month TEXT NOT NULL, threshold REAL NOT NULL, PRIMARY KEY (month, threshold));`);
    this.schemaReady = true;
  }

  async setBudget(input: z.input<typeof BudgetSchema>): Promise<LedgerSummary> {
    countUsage("do_requests");
    const budget = BudgetSchema.parse(input);
    this.ensureSchema();
    this.sql`INSERT OR REPLACE INTO budget (id, limit_nano_usd, soft_thresholds) VALUES (1, ${budget.limitNanoUsd}, ${JSON.stringify(budget.softThresholds)})`;
    return this.readSummary(Date.now());
  }

  async summary(now = Date.now()): Promise<LedgerSummary> {
    countUsage("do_requests");
    return this.readSummary(now);
  }

  /** May this customer start a new run? Also tells the run whether it must check its budget per step. */
  async admit(now = Date.now()): Promise<{ allowed: boolean; limited: boolean; summary: LedgerSummary }> {
    countUsage("do_requests");
    const summary = this.readSummary(now);
    return { allowed: summary.state !== "exhausted", limited: summary.budget.limitNanoUsd !== null, summary };
  }

  /**
   * Holds `nanoUsd` of the budget for a step about to run (its worst case). Refused when what
   * is spent, plus what is held, plus this would pass the hard limit. Idempotent by id.
   */
  async reserve(input: z.input<typeof ReserveInputSchema>): Promise<{ ok: true } | { ok: false; reason: "budget_exceeded"; message: string }> {
    countUsage("do_requests");
    const { id, nanoUsd } = ReserveInputSchema.parse(input);
    this.ensureSchema();
    if (this.sql`SELECT 1 FROM reservations WHERE id = ${id}`.length > 0) return { ok: true };
    const budget = this.budget();
    if (budget.limitNanoUsd !== null) {
      const limit = BigInt(budget.limitNanoUsd);
      const committed = this.spend(monthOf(Date.now())) + this.reserved();
      if (committed + BigInt(nanoUsd) > limit) {
        return {
          ok: false,
          reason: "budget_exceeded",
          message: `monthly budget of ${nanoToUsdString(limit)} USD would be exceeded: ${nanoToUsdString(committed)} USD spent or held, this step may cost up to ${nanoToUsdString(BigInt(nanoUsd))} USD`,
        };
      }
    }
    this.sql`INSERT INTO reservations (id, nano_usd, created_at) VALUES (${id}, ${nanoUsd}, ${Date.now()})`;
    return { ok: true };
  }

  /** Records cost events (each id once), settles a reservation, raises threshold alerts. */
  async record(input: z.input<typeof RecordInputSchema>): Promise<RecordReply> {
    countUsage("do_requests");
    const { customerId, batchId, events, releaseReservation } = RecordInputSchema.parse(input);
    this.ensureSchema();
    const now = Date.now();
    const fresh: LedgerCostEvent[] = [];
    this.ctx.storage.transactionSync(() => {
      if (batchId !== undefined) {
        const insert = this.ctx.storage.sql.exec("INSERT OR IGNORE INTO batches (id, at) VALUES (?, ?)", batchId, now);
        insert.toArray();
        if (insert.rowsWritten === 0) return; // this batch was counted already
      }
      const known = new Set(
        events.length === 0 || batchId !== undefined
          ? []
          : this.ctx.storage.sql
              .exec<{ id: string }>(`SELECT id FROM recorded WHERE id IN (${events.map(() => "?").join(",")})`, ...events.map((e) => e.id))
              .toArray()
              .map((r) => r.id),
      );
      const byMonth = new Map<string, bigint>();
      for (const event of events) {
        if (known.has(event.id)) continue;
        known.add(event.id);
        fresh.push(event);
        const month = monthOf(event.at);
        byMonth.set(month, (byMonth.get(month) ?? 0n) + BigInt(event.nanoUsd));
      }
      if (batchId === undefined) insertRows(this.ctx.storage, "INSERT INTO recorded (id, month, nano_usd)", fresh.map((e) => [e.id, monthOf(e.at), e.nanoUsd]));
      for (const [month, added] of byMonth) {
        const total = this.spend(month) + added;
        this.sql`INSERT OR REPLACE INTO spend (month, nano_usd) VALUES (${month}, ${total.toString()})`;
      }
      if (releaseReservation) this.sql`DELETE FROM reservations WHERE id = ${releaseReservation}`;
    });
    const summary = this.readSummary(now);
    if (fresh.length > 0) {
      await this.forward({ kind: "cost.events", events: fresh });
      await this.raiseThresholdAlerts(customerId, summary, now);
    }
    return { recorded: fresh.length, spendNanoUsd: summary.spendNanoUsd, limited: summary.budget.limitNanoUsd !== null, exhausted: summary.state === "exhausted" };
  }

  private async raiseThresholdAlerts(customerId: string, summary: LedgerSummary, now: number) {
    const { limitNanoUsd, softThresholds } = summary.budget;
    if (limitNanoUsd === null) return;
    const limit = BigInt(limitNanoUsd);
    const spend = BigInt(summary.spendNanoUsd);
    const crossings = [...softThresholds, 1].filter((t) => spend * 1_000_000n >= limit * BigInt(Math.round(t * 1_000_000)));
    for (const threshold of crossings) {
      const insert = this.ctx.storage.sql.exec("INSERT OR IGNORE INTO alerted (month, threshold) VALUES (?, ?)", summary.month, threshold);
      insert.toArray();
      if (insert.rowsWritten === 0) continue; // alerted already this month
      const kind = threshold >= 1 ? "budget_exhausted" : "budget_soft_limit";
      const id = `alert_budget_${customerId}_${summary.month}_${Math.round(threshold * 100)}`;
      const message =
        threshold >= 1
          ? `Customer ${customerId} reached its monthly budget of ${nanoToUsdString(limit)} USD: new runs are refused`
          : `Customer ${customerId} passed ${Math.round(threshold * 100)}% of its monthly budget (${nanoToUsdString(spend)} of ${nanoToUsdString(limit)} USD)`;
      await this.forward({
        kind: "alert.raise",
        alert: { id, kind, severity: threshold >= 1 ? "error" : "warning", customerId, message, details: { month: summary.month, threshold, spendNanoUsd: spend.toString(), limitNanoUsd }, createdAt: now },
      });
      log(kind, { customerId, threshold, month: summary.month }, "warn");
    }
  }

  private async forward(message: EventMessage) {
    try {
      await (this.env as Env).EVENTS.send(message);
      countUsage("queue_operations");
    } catch (err) {
      // The ledger's own state is already right; D1 history catches up from the next record.
      log("ledger.forward_failed", { kind: message.kind, error: errorMessage(err) }, "error");
      throw err;
    }
  }

  private budget(): LedgerBudget {
    const row = this.sql<{ limit_nano_usd: string | null; soft_thresholds: string }>`SELECT limit_nano_usd, soft_thresholds FROM budget`[0];
    return row ? { limitNanoUsd: row.limit_nano_usd, softThresholds: JSON.parse(row.soft_thresholds) } : { limitNanoUsd: null, softThresholds: [] };
  }

  private spend(month: string): bigint {
    return BigInt(this.sql<{ nano_usd: string }>`SELECT nano_usd FROM spend WHERE month = ${month}`[0]?.nano_usd ?? "0");
  }

  private reserved(): bigint {
    return this.sql<{ nano_usd: string }>`SELECT nano_usd FROM reservations`.reduce((sum, r) => sum + BigInt(r.nano_usd), 0n);
  }

  private readSummary(now: number): LedgerSummary {
    this.ensureSchema();
    const month = monthOf(now);
    const budget = this.budget();
    const spend = this.spend(month);
    return { month, spendNanoUsd: spend.toString(), reservedNanoUsd: this.reserved().toString(), budget, state: budgetState(spend, budget) };
  }
}

export function budgetState(spend: bigint, budget: LedgerBudget): LedgerSummary["state"] {
  if (budget.limitNanoUsd === null) return "no_budget";
  const limit = BigInt(budget.limitNanoUsd);
  if (spend >= limit) return "exhausted";
  // Compare spend/limit with each threshold in integers: spend * 1e6 >= limit * round(t * 1e6).
  const crossed = budget.softThresholds.some((t) => spend * 1_000_000n >= limit * BigInt(Math.round(t * 1_000_000)));
  return crossed ? "soft_limit" : "ok";
}

/** The ledger's RPC surface, as callers see it (typed by hand: see runStub). */
export interface CustomerLedgerApi {
  admit(now?: number): Promise<{ allowed: boolean; limited: boolean; summary: LedgerSummary }>;
  reserve(input: z.input<typeof ReserveInputSchema>): Promise<{ ok: true } | { ok: false; reason: "budget_exceeded"; message: string }>;
  record(input: z.input<typeof RecordInputSchema>): Promise<RecordReply>;
  summary(now?: number): Promise<LedgerSummary>;
  setBudget(input: z.input<typeof BudgetSchema>): Promise<LedgerSummary>;
}

export function ledgerStub(env: Env, customerId: string): CustomerLedgerApi {
  return env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName(customerId)) as unknown as CustomerLedgerApi;
}
