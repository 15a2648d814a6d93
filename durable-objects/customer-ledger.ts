/**
 * One Durable Object per customer: the customer's budget as the platform enforces it.
 * It starts small (budget settings and a month-to-date spend counter); the costs work
 * adds cost events, reservations and alerts on top of the same object.
 */
import { DurableObject } from "cloudflare:workers";
import { z } from "zod";
import { countUsage } from "../src/lib/usage";
import { sqlHelper } from "./sql";

const BudgetSchema = z.object({
  limitNanoUsd: z.string().regex(/^\d+$/).nullable(),
  softThresholds: z.array(z.number().gt(0).lt(1)),
});
export type LedgerBudget = z.infer<typeof BudgetSchema>;

export interface LedgerSummary {
  month: string;
  spendNanoUsd: string;
  budget: LedgerBudget;
  state: "no_budget" | "ok" | "soft_limit" | "exhausted";
}

export class CustomerLedger extends DurableObject {
  private readonly sql = sqlHelper(this.ctx.storage);

  private ensureSchema() {
    this.sql`CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY CHECK (id = 1), limit_nano_usd TEXT, soft_thresholds TEXT NOT NULL)`;
    this.sql`CREATE TABLE IF NOT EXISTS spend (month TEXT PRIMARY KEY, nano_usd TEXT NOT NULL)`;
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

  private readSummary(now: number): LedgerSummary {
    this.ensureSchema();
    const month = new Date(now).toISOString().slice(0, 7);
    const row = this.sql<{ limit_nano_usd: string | null; soft_thresholds: string }>`SELECT limit_nano_usd, soft_thresholds FROM budget`[0];
    const budget: LedgerBudget = row
      ? { limitNanoUsd: row.limit_nano_usd, softThresholds: JSON.parse(row.soft_thresholds) }
      : { limitNanoUsd: null, softThresholds: [] };
    const spend = BigInt(this.sql<{ nano_usd: string }>`SELECT nano_usd FROM spend WHERE month = ${month}`[0]?.nano_usd ?? "0");
    return { month, spendNanoUsd: spend.toString(), budget, state: budgetState(spend, budget) };
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
