import { and, asc, eq, gt, isNull } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { ledgerStub, type LedgerSummary } from "../../durable-objects/ledger/rpc";
import { monthRange } from "./costs-service";
import { DomainError } from "../domain/errors";
import { cursorKey, nameCursor, pageOf } from "../domain/pagination";
import { CLIENT_NAME_PATTERN } from "../domain/names";
import { apiKeys, customers } from "../db/schema";
import { nanoJson, nanoToUsdString, usdToNano } from "../domain/money";
import { DEFAULT_MAX_RUNS_IN_FLIGHT, DEFAULT_PLAN_WEIGHT, parseStoredPlan, type StoredPlan } from "../domain/plan";
import type { RateLimitConfig } from "../domain/token-bucket";
import { newId, sha256Hex } from "../lib/ids";
import { LruCache } from "../lib/lru";
import { errorMessage, log } from "../lib/log";
import { AuthService } from "./auth-service";
import type { RateLimitService } from "./rate-limit-service";

export interface NewCustomer {
  id?: string;
  name: string;
  plan?: { monthlyFeeUsd?: string | number; pricePerRunUsd?: string | number; rateLimit?: RateLimitConfig; maxRunsInFlight?: number; weight?: number };
  budget?: BudgetInput;
}

export interface BudgetInput {
  monthlyLimitUsd: string | number;
  softThresholds?: number[];
}

type CustomerRow = typeof customers.$inferSelect;

function toNano(value: string | number, field: string): bigint {
  try {
    return usdToNano(value);
  } catch (err) {
    throw new DomainError("validation_failed", `${field}: ${(err as Error).message}`, [{ field, message: (err as Error).message }]);
  }
}

/** Per-isolate cache of each customer's plan limits: a run submission should not cost a D1 read. */
const limitsCache = new LruCache<string, PlanLimits>(10_000);

/** What a run takes from its customer's plan when it is created. */
export interface PlanLimits {
  maxRunsInFlight?: number;
  /** Its share of a busy pool (fair sharing). */
  weight?: number;
}
const LIMITS_TTL_MS = 30_000;

/** By id; a customer id is a client name or a server-made `cus_…`, both CLIENT_NAME_PATTERN. */
const CUSTOMERS_CURSOR = nameCursor(CLIENT_NAME_PATTERN);

export class CustomersService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
    private readonly rateLimit: RateLimitService,
  ) {}

  private ledger(customerId: string) {
    return ledgerStub(this.env, customerId);
  }

  /**
   * The ledger enforces budgets, D1 shows them: the ledger is written first, so D1 never shows a
   * budget the ledger does not enforce. A ledger that does not answer changes nothing: 503.
   */
  private async setLedgerBudget(customerId: string, limitNanoUsd: string | null, softThresholds: number[]) {
    try {
      await this.ledger(customerId).setBudget({ limitNanoUsd, softThresholds });
    } catch (err) {
      log("customers.ledger_budget_failed", { customerId, error: errorMessage(err) }, "warn");
      throw new DomainError("not_ready", `the budget could not be set: customer "${customerId}"'s ledger did not answer; nothing was changed, retry`, [
        { field: "budget", message: "not set: the ledger did not answer" },
      ], { "retry-after": "1" });
    }
  }

  /** After a failed D1 write that followed a ledger write: the ledger is set back to what D1 holds (best effort). */
  private async restoreLedgerFromD1(customerId: string) {
    try {
      const row = await this.db
        .select({ limit: customers.budgetLimitNanoUsd, thresholds: customers.budgetSoftThresholds })
        .from(customers)
        .where(eq(customers.id, customerId))
        .get();
      await this.ledger(customerId).setBudget(row ? { limitNanoUsd: row.limit, softThresholds: JSON.parse(row.thresholds) as number[] } : { limitNanoUsd: null, softThresholds: [] });
    } catch (err) {
      log("customers.ledger_restore_failed", { customerId, error: errorMessage(err) }, "warn");
    }
  }

  async create(input: NewCustomer) {
    const id = input.id ?? newId("cus");
    const plan: StoredPlan = {
      monthlyFeeNanoUsd: toNano(input.plan?.monthlyFeeUsd ?? 0, "plan.monthlyFeeUsd").toString(),
      pricePerRunNanoUsd: toNano(input.plan?.pricePerRunUsd ?? 0, "plan.pricePerRunUsd").toString(),
      ...(input.plan?.rateLimit ? { rateLimit: input.plan.rateLimit } : {}),
      maxRunsInFlight: input.plan?.maxRunsInFlight ?? DEFAULT_MAX_RUNS_IN_FLIGHT,
      weight: input.plan?.weight ?? DEFAULT_PLAN_WEIGHT,
    };
    const budgetLimit = input.budget ? toNano(input.budget.monthlyLimitUsd, "budget.monthlyLimitUsd").toString() : null;
    const thresholds = input.budget?.softThresholds ?? (input.budget ? [0.5, 0.8] : []);
    const now = Date.now();
    const key = await this.mintKey(id, now);
    if (budgetLimit !== null) {
      // A taken id must not have its ledger's budget changed by a create that will fail.
      if (await this.exists(id)) throw new DomainError("conflict", `customer "${id}" already exists`, [{ field: "id", message: "already exists" }]);
      await this.setLedgerBudget(id, budgetLimit, thresholds);
    }
    // One batch is one transaction: the customer and its first key exist together or not at
    // all, and an id that is taken (even by a racing request) inserts no key for it.
    try {
      await this.db.batch([
        this.db.insert(customers).values({
          id,
          name: input.name,
          plan: JSON.stringify(plan),
          budgetLimitNanoUsd: budgetLimit,
          budgetSoftThresholds: JSON.stringify(thresholds),
          createdAt: now,
        }),
        this.db.insert(apiKeys).values(key.row),
      ]);
    } catch (err) {
      // A racing create took the id, or D1 failed: the ledger gets back what D1 holds.
      if (budgetLimit !== null) await this.restoreLedgerFromD1(id);
      if (/UNIQUE|constraint/i.test(String((err as Error)?.message ?? err))) {
        throw new DomainError("conflict", `customer "${id}" already exists`, [{ field: "id", message: "already exists" }]);
      }
      throw err;
    }
    return { customer: await this.get(id), apiKey: key.secret, keyId: key.row.id };
  }

  private async mintKey(customerId: string, now: number) {
    const random = crypto.getRandomValues(new Uint8Array(32));
    const secret = `rp_${btoa(String.fromCharCode(...random)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
    return {
      secret,
      row: { id: newId("key"), customerId, keyHash: await sha256Hex(secret), prefix: secret.slice(0, 10), createdAt: now, revokedAt: null },
    };
  }

  /** The plan's admission limits (absent: the platform's defaults), cached per isolate for 30 s. */
  async limits(id: string): Promise<PlanLimits> {
    const hit = limitsCache.get(id);
    if (hit) return hit;
    const row = await this.db.select({ plan: customers.plan }).from(customers).where(eq(customers.id, id)).get();
    const plan = row ? parseStoredPlan(row.plan) : null;
    const limits: PlanLimits = plan ? { maxRunsInFlight: plan.maxRunsInFlight, weight: plan.weight } : {};
    limitsCache.set(id, limits, LIMITS_TTL_MS);
    return limits;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.db.select({ id: customers.id }).from(customers).where(eq(customers.id, id)).get()) !== undefined;
  }

  async get(id: string) {
    const row = await this.db.select().from(customers).where(eq(customers.id, id)).get();
    if (!row) throw new DomainError("not_found", `customer "${id}" not found`);
    const [summary, keys] = await Promise.all([
      this.ledger(id).summary(),
      this.db.select({ id: apiKeys.id, prefix: apiKeys.prefix, createdAt: apiKeys.createdAt }).from(apiKeys).where(and(eq(apiKeys.customerId, id), isNull(apiKeys.revokedAt))).all(),
    ]);
    return this.present(row, summary, keys);
  }

  async list(limit: number, cursor: string | undefined) {
    const after = cursorKey(CUSTOMERS_CURSOR, cursor);
    const rows = await this.db
      .select()
      .from(customers)
      .where(after ? gt(customers.id, after) : undefined)
      .orderBy(asc(customers.id))
      .limit(limit + 1)
      .all();
    const page = pageOf(rows, limit, (last) => CUSTOMERS_CURSOR.encode(last.id));
    const items = await Promise.all(page.items.map(async (row) => this.present(row, await this.ledger(row.id).summary(), null)));
    return { customers: items, nextCursor: page.nextCursor };
  }

  async setBudget(id: string, input: BudgetInput) {
    const limit = toNano(input.monthlyLimitUsd, "monthlyLimitUsd").toString();
    const thresholds = input.softThresholds ?? [0.5, 0.8];
    if (!(await this.exists(id))) throw new DomainError("not_found", `customer "${id}" not found`);
    await this.setLedgerBudget(id, limit, thresholds);
    try {
      await this.db.update(customers).set({ budgetLimitNanoUsd: limit, budgetSoftThresholds: JSON.stringify(thresholds) }).where(eq(customers.id, id));
    } catch (err) {
      await this.restoreLedgerFromD1(id);
      throw err;
    }
    return this.get(id);
  }

  /**
   * GET /v1/customers/:id/ledger: the ledger as it stands (spend, holds, what is in flight) and
   * a reconciliation with D1 run now for `month` (default this month), which repairs D1 where
   * it is behind and reports what nothing explains.
   */
  async ledgerView(id: string, month?: string) {
    if (!(await this.exists(id))) throw new DomainError("not_found", `customer "${id}" not found`);
    if (month !== undefined) monthRange(month);
    const ledger = this.ledger(id);
    const [view, reconciliation] = await Promise.all([ledger.view(), ledger.reconcile({ customerId: id, month })]);
    const money = (nano: string) => ({ nanoUsd: nanoJson(BigInt(nano)), usd: nanoToUsdString(BigInt(nano)) });
    const limit = view.budget.limitNanoUsd === null ? null : BigInt(view.budget.limitNanoUsd);
    const nanoField = (nano: string) => nanoJson(BigInt(nano));
    return {
      customerId: id,
      month: view.month,
      spend: money(view.spendNanoUsd),
      held: money(view.heldNanoUsd),
      remaining: view.remainingNanoUsd === null ? null : money(view.remainingNanoUsd),
      budget: limit === null ? null : { monthlyLimitNanoUsd: nanoJson(limit), monthlyLimitUsd: nanoToUsdString(limit), softThresholds: view.budget.softThresholds },
      budgetState: view.state,
      holds: view.holds.map((h) => ({ id: h.id, runId: h.runId, ...money(h.nanoUsd), expiresAt: new Date(h.expiresAt).toISOString() })),
      runsInFlight: view.runsInFlight,
      pendingForD1: view.pendingForD1,
      reconciliation: {
        month: reconciliation.month,
        ledgerNanoUsd: nanoField(reconciliation.ledgerNanoUsd),
        d1NanoUsd: nanoField(reconciliation.d1NanoUsd),
        differenceNanoUsd: nanoField(reconciliation.differenceNanoUsd),
        runsCompared: reconciliation.runsCompared,
        repaired: reconciliation.repaired.map((r) => ({ runId: r.runId, ledgerNanoUsd: nanoField(r.ledgerNanoUsd), d1NanoUsd: nanoField(r.d1NanoUsd) })),
        unexplained: reconciliation.unexplained.map((u) => ({ runId: u.runId, ledgerNanoUsd: nanoField(u.ledgerNanoUsd), d1NanoUsd: nanoField(u.d1NanoUsd), reason: u.reason })),
        detailKept: reconciliation.detailKept,
        checkedAt: new Date(reconciliation.checkedAt).toISOString(),
      },
    };
  }

  async createKey(id: string) {
    if (!(await this.exists(id))) throw new DomainError("not_found", `customer "${id}" not found`);
    const key = await this.mintKey(id, Date.now());
    await this.db.insert(apiKeys).values(key.row);
    return { key: { id: key.row.id, prefix: key.row.prefix, createdAt: new Date(key.row.createdAt).toISOString() }, apiKey: key.secret };
  }

  async revokeKey(id: string, keyId: string) {
    const row = await this.db
      .update(apiKeys)
      .set({ revokedAt: Date.now() })
      .where(and(eq(apiKeys.id, keyId), eq(apiKeys.customerId, id), isNull(apiKeys.revokedAt)))
      .returning({ keyHash: apiKeys.keyHash })
      .get();
    if (!row) throw new DomainError("not_found", `key "${keyId}" of customer "${id}" not found`);
    AuthService.forgetKey(row.keyHash);
    // Other isolates may hold the key in their cache for up to 30 s: the customer's limiter,
    // which every request of the key passes, refuses it from now on. If it cannot be told,
    // the cache's 30 s is the bound.
    await this.rateLimit.keyRevoked(id, keyId);
  }

  private present(row: CustomerRow, ledger: LedgerSummary, keys: { id: string; prefix: string; createdAt: number }[] | null) {
    return present(row, ledger, keys, this.rateLimit.limitFor(parseStoredPlan(row.plan).rateLimit));
  }
}

function present(
  row: CustomerRow,
  ledger: LedgerSummary,
  keys: { id: string; prefix: string; createdAt: number }[] | null,
  rateLimit: { limit: RateLimitConfig; source: "plan" | "default" } | null,
) {
  const plan = parseStoredPlan(row.plan);
  const spend = BigInt(ledger.spendNanoUsd);
  const limit = row.budgetLimitNanoUsd === null ? null : BigInt(row.budgetLimitNanoUsd);
  const money = (nano: bigint) => ({ nanoUsd: nanoJson(nano), usd: nanoToUsdString(nano) });
  return {
    id: row.id,
    name: row.name,
    createdAt: new Date(row.createdAt).toISOString(),
    plan: {
      monthlyFeeNanoUsd: nanoJson(BigInt(plan.monthlyFeeNanoUsd ?? "0")),
      monthlyFeeUsd: nanoToUsdString(BigInt(plan.monthlyFeeNanoUsd ?? "0")),
      pricePerRunNanoUsd: nanoJson(BigInt(plan.pricePerRunNanoUsd ?? "0")),
      pricePerRunUsd: nanoToUsdString(BigInt(plan.pricePerRunNanoUsd ?? "0")),
      rateLimit: rateLimit ? { ...rateLimit.limit, source: rateLimit.source } : null,
      maxRunsInFlight: plan.maxRunsInFlight,
      weight: plan.weight,
    },
    budget:
      limit === null
        ? null
        : { monthlyLimitNanoUsd: money(limit).nanoUsd, monthlyLimitUsd: money(limit).usd, softThresholds: JSON.parse(row.budgetSoftThresholds) as number[] },
    spend: {
      month: ledger.month,
      monthToDateNanoUsd: money(spend).nanoUsd,
      monthToDateUsd: money(spend).usd,
      heldNanoUsd: money(BigInt(ledger.heldNanoUsd)).nanoUsd,
      heldUsd: money(BigInt(ledger.heldNanoUsd)).usd,
      remainingNanoUsd: ledger.remainingNanoUsd === null ? null : money(BigInt(ledger.remainingNanoUsd)).nanoUsd,
      remainingUsd: ledger.remainingNanoUsd === null ? null : money(BigInt(ledger.remainingNanoUsd)).usd,
      budgetState: ledger.state,
    },
    ...(keys ? { keys: keys.map((k) => ({ id: k.id, prefix: k.prefix, createdAt: new Date(k.createdAt).toISOString() })) } : {}),
  };
}
