import { z } from "@hono/zod-openapi";
import { FAILURE_TYPES, RUN_STATUSES, STEP_STATUSES } from "../domain/run-status";
import { RunIdentitySchema } from "../domain/run-identity";

const Money = z.union([z.number().int(), z.string()]);

/** What every view of a run starts with: who, where, and how far. */
const RunHeadlineSchema = RunIdentitySchema.extend({
  status: z.enum(RUN_STATUSES),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  durationMs: z.number().nullable(),
});

export const RunSummarySchema = RunHeadlineSchema.extend({
  failure: z.object({ type: z.enum(FAILURE_TYPES), step: z.string().nullable() }).optional(),
}).openapi("RunSummary");

export const RunSchema = RunHeadlineSchema
  .extend({
    input: z.unknown(),
    metadata: z.record(z.string(), z.unknown()),
    steps: z.array(
      z.object({
        name: z.string(),
        type: z.string(),
        status: z.enum(STEP_STATUSES),
        attempts: z.number().int(),
        output: z.unknown().optional(),
        error: z.object({ type: z.enum(FAILURE_TYPES), message: z.string() }).optional(),
        startedAt: z.string().nullable(),
        finishedAt: z.string().nullable(),
      }),
    ),
    failure: z.object({ type: z.enum(FAILURE_TYPES), message: z.string(), step: z.string().nullable() }).optional(),
    cost: z.object({
      totalNanoUsd: Money,
      aiNanoUsd: Money,
      infraNanoUsd: Money,
      totalUsd: z.string(),
      settled: z.boolean().openapi({ description: "Every cost record of the run is priced and counted in the customer's ledger" }),
    }),
  })
  .openapi("Run");

export const RunEnvelope = z.object({ run: RunSchema });

export const CustomerSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string(),
    plan: z.object({
      monthlyFeeNanoUsd: Money,
      monthlyFeeUsd: z.string(),
      pricePerRunNanoUsd: Money,
      pricePerRunUsd: z.string(),
      rateLimit: z
        .object({ requestsPerSecond: z.number(), burst: z.number().int(), source: z.enum(["plan", "default"]) })
        .nullable()
        .openapi({ description: "The API request rate limit in force: the plan's own, or the deployment's default; null: none" }),
      maxRunsInFlight: z.number().int().openapi({ description: "Runs the customer may have unfinished at once" }),
      weight: z.number().openapi({ description: "Its share of a busy pool relative to other customers' (fair sharing)" }),
    }),
    budget: z.object({ monthlyLimitNanoUsd: Money, monthlyLimitUsd: z.string(), softThresholds: z.array(z.number()) }).nullable(),
    spend: z.object({
      month: z.string(),
      monthToDateNanoUsd: Money,
      monthToDateUsd: z.string(),
      heldNanoUsd: Money.openapi({ description: "Held for steps running now (their worst case), until each one's cost is counted" }),
      heldUsd: z.string(),
      remainingNanoUsd: Money.nullable().openapi({ description: "Budget left: limit − spend − held, at least 0; null without a budget" }),
      remainingUsd: z.string().nullable(),
      budgetState: z.enum(["no_budget", "ok", "soft_limit", "exhausted"]),
    }),
    keys: z.array(z.object({ id: z.string(), prefix: z.string(), createdAt: z.string() })).optional(),
  })
  .openapi("Customer");

export const UsdAmount = z
  .union([z.string(), z.number().nonnegative()])
  .openapi({ description: "USD as a decimal string or number, at most 9 decimals; converted exactly", example: "25.00" });

export const BudgetBody = z
  .object({
    monthlyLimitUsd: UsdAmount,
    softThresholds: z.array(z.number().gt(0).lt(1)).max(10).optional().openapi({ example: [0.5, 0.8] }),
  })
  .strict();

const MoneyPair = { nanoUsd: Money, usd: z.string() };

export const LedgerSchema = z
  .object({
    customerId: z.string(),
    month: z.string(),
    spend: z.object(MoneyPair),
    held: z.object(MoneyPair),
    remaining: z.object(MoneyPair).nullable(),
    budget: z.object({ monthlyLimitNanoUsd: Money, monthlyLimitUsd: z.string(), softThresholds: z.array(z.number()) }).nullable(),
    budgetState: z.enum(["no_budget", "ok", "soft_limit", "exhausted"]),
    holds: z.array(z.object({ id: z.string(), runId: z.string(), nanoUsd: Money, usd: z.string(), expiresAt: z.string() })),
    runsInFlight: z.number().int().openapi({ description: "Runs admitted while the customer had no budget and not yet finished" }),
    pendingForD1: z.number().int().openapi({ description: "Cost rollups and alerts the ledger has not yet handed to the events queue" }),
    reconciliation: z
      .object({
        month: z.string(),
        ledgerNanoUsd: Money,
        d1NanoUsd: Money,
        differenceNanoUsd: Money,
        runsCompared: z.number().int(),
        repaired: z.array(z.object({ runId: z.string(), ledgerNanoUsd: Money, d1NanoUsd: Money })),
        unexplained: z.array(z.object({ runId: z.string().nullable(), ledgerNanoUsd: Money, d1NanoUsd: Money, reason: z.string() })),
        detailKept: z.boolean(),
        checkedAt: z.string(),
      })
      .openapi({ description: "The ledger against D1's cost rollups, compared now; runs D1 lacks were sent again" }),
  })
  .openapi("Ledger");

/** A secret as the API shows it: never its value. */
export const SecretSchema = z
  .object({
    name: z.string(),
    source: z.enum(["stored", "worker"]).openapi({ description: "stored: PUT /v1/secrets; worker: the Worker secret SECRET_<NAME> (platform only)" }),
    createdAt: z.string().nullable(),
    updatedAt: z.string().nullable(),
  })
  .openapi("Secret");

/** `:name` of /v1/secrets/{name}. */
export const SecretNameParam = z.object({
  name: z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, "secret name must match ^[A-Z][A-Z0-9_]{0,63}$").openapi({ example: "ACME_TOKEN" }),
});
