import { z } from "@hono/zod-openapi";
import { FAILURE_TYPES, PRIORITIES, RUN_STATUSES, STEP_STATUSES } from "../domain/run-status";

const Money = z.union([z.number().int(), z.string()]);

export const RunSchema = z
  .object({
    id: z.string(),
    customerId: z.string(),
    projectId: z.string(),
    runType: z.string().nullable(),
    pool: z.string(),
    priority: z.enum(PRIORITIES),
    status: z.enum(RUN_STATUSES),
    input: z.unknown(),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    durationMs: z.number().nullable(),
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
    cost: z.object({ totalNanoUsd: Money, aiNanoUsd: Money, infraNanoUsd: Money, totalUsd: z.string() }),
  })
  .openapi("Run");

export const RunEnvelope = z.object({ run: RunSchema });

export const CustomerSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string(),
    plan: z.object({ monthlyFeeNanoUsd: Money, monthlyFeeUsd: z.string(), pricePerRunNanoUsd: Money, pricePerRunUsd: z.string() }),
    budget: z.object({ monthlyLimitNanoUsd: Money, monthlyLimitUsd: z.string(), softThresholds: z.array(z.number()) }).nullable(),
    spend: z.object({ month: z.string(), monthToDateNanoUsd: Money, monthToDateUsd: z.string(), budgetState: z.string() }),
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
