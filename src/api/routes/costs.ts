import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, bearer, errors, json } from "../openapi";
import { COST_BUCKETS, COST_GROUPS } from "../../services/costs-service";

const ExactInt = z.union([z.number().int(), z.string()]).openapi({ description: "Exact integer: a JSON number while ≤ 2^53, else a decimal string" });

const Figures = z.object({
  runs: z.number().int(),
  totalNanoUsd: ExactInt,
  aiNanoUsd: ExactInt,
  infraNanoUsd: ExactInt,
  costPerRunNanoUsd: ExactInt.openapi({ description: "total / runs, rounded half-to-even" }),
  totalUsd: z.string(),
  aiUsd: z.string(),
  infraUsd: z.string(),
  costPerRunUsd: z.string(),
  inputTokens: ExactInt.openapi({ description: "Uncached input tokens" }),
  outputTokens: ExactInt.openapi({ description: "Generated tokens, reasoning included" }),
  cachedTokens: ExactInt,
  reasoningTokens: ExactInt,
});

const report = createRoute({
  method: "get",
  path: "/v1/costs",
  operationId: "getCostReport",
  tags: ["costs"],
  summary: "Cost over [from, to), grouped and bucketed",
  description:
    "Grouped by customer, project, run type, model or pool and/or bucketed in time. A customer key sees its own costs only; naming another customer is a 404.",
  security: bearer,
  request: {
    query: z.object({
      from: z.iso.datetime({ offset: true }).optional().openapi({ description: "Default: the start of the month of `to` (UTC)" }),
      to: z.iso.datetime({ offset: true }).optional().openapi({ description: "Exclusive; default now" }),
      groupBy: z.enum(COST_GROUPS).optional(),
      bucket: z.enum(COST_BUCKETS).optional().openapi({ description: "UTC buckets; weeks start on Monday" }),
      customerId: ClientName("customerId").optional().openapi({ description: "Admin: one customer only" }),
    }),
  },
  responses: {
    200: json(
      z
        .object({
          from: z.string(),
          to: z.string(),
          groupBy: z.enum(COST_GROUPS).nullable(),
          bucket: z.enum(COST_BUCKETS).nullable(),
          rows: z.array(
            Figures.extend({
              key: z.string().openapi({ description: "The group: a customer, project, run type ('(inline)' for runs without one), model ('(infra)' for infrastructure) or pool; 'all' without groupBy" }),
              customerId: z.string().optional().openapi({ description: "With groupBy=project: the project's customer" }),
              bucket: z.string().optional().openapi({ description: "Start of the bucket, ISO-8601 UTC" }),
            }),
          ),
          totals: Figures,
          totalNanoUsd: ExactInt,
          totalUsd: z.string(),
        })
        .openapi("CostReport"),
      "The report",
    ),
    ...errors(400, 401, 404, 429, 503),
  },
});

const profitability = createRoute({
  method: "get",
  path: "/v1/customers/{id}/profitability",
  operationId: "getCustomerProfitability",
  tags: ["costs"],
  summary: "A customer's revenue, cost and margin for a month (admin)",
  description: "Revenue, direct cost, allocated fixed cost and margin. Admin only: it is the operator's business.",
  security: bearer,
  middleware: adminOnly,
  request: {
    params: z.object({ id: ClientName("id") }),
    query: z.object({ month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, "month must be YYYY-MM").optional().openapi({ description: "Default: this month (UTC)", example: "2026-11" }) }),
  },
  responses: {
    200: json(
      z
        .object({
          customerId: z.string(),
          month: z.string(),
          from: z.string(),
          to: z.string(),
          complete: z.boolean().openapi({ description: "false while the month runs: month-to-date figures" }),
          runs: z.number().int(),
          revenueNanoUsd: ExactInt,
          revenueUsd: z.string(),
          revenue: z.object({ monthlyFeeNanoUsd: ExactInt, pricePerRunNanoUsd: ExactInt, runFeesNanoUsd: ExactInt }),
          directCostNanoUsd: ExactInt,
          directCostUsd: z.string(),
          directCost: z.object({ aiNanoUsd: ExactInt, infraNanoUsd: ExactInt }),
          allocatedFixedCostNanoUsd: ExactInt,
          allocatedFixedCostUsd: z.string(),
          allocation: z
            .object({ method: z.enum(["even", "weighted"]), fixedMonthlyCostNanoUsd: ExactInt, sharedAmong: z.number().int() })
            .openapi({ description: "How the fixed cost was split" }),
          marginNanoUsd: ExactInt.openapi({ description: "revenue − direct cost − allocated fixed cost; may be negative" }),
          marginUsd: z.string(),
        })
        .openapi("Profitability"),
      "The month's figures",
    ),
    ...errors(400, 401, 403, 404, 429, 503),
  },
});

export function registerCosts(app: App) {
  app.openapi(report, async (c) => c.json(await c.get("services").costs.report(c.get("principal"), c.req.valid("query")), 200));
  app.openapi(profitability, async (c) => c.json(await c.get("services").costs.profitability(c.req.valid("param").id, c.req.valid("query").month), 200));
}
