import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ClientName, ERRORS, bearer, json } from "../openapi";
import { ExactInt } from "../metrics-schemas";

const Money = z.object({ nanoUsd: ExactInt, usd: z.string() });

const Driver = z
  .object({
    key: z.string(),
    current: Money.extend({ runs: z.number().int(), costPerRun: Money.nullable() }),
    previous: Money.extend({ runs: z.number().int(), costPerRun: Money.nullable() }),
    sharePercent: z.number().nullable().openapi({ description: "Of the period's total cost" }),
    change: Money.extend({ percent: z.number().nullable() }),
    costPerRunChangePercent: z.number().nullable(),
  })
  .openapi("CostDriver");

const Period = z.object({ nanoUsd: ExactInt, usd: z.string(), aiNanoUsd: ExactInt, runs: z.number().int() });

const route = createRoute({
  method: "get",
  path: "/v1/insights/cost-drivers",
  operationId: "getCostDrivers",
  tags: ["metrics"],
  summary: "The run types, models and customers that drive cost over [from, to), how each moved against the previous period of the same length, and findings (a customer key: its own cost)",
  security: bearer,
  request: {
    query: z.object({
      from: z.iso.datetime({ offset: true }).optional().openapi({ description: "Default: 7 days before `to`" }),
      to: z.iso.datetime({ offset: true }).optional().openapi({ description: "Exclusive; default now" }),
      limit: z.coerce.number().int().min(1).max(100).default(10).openapi({ description: "Drivers listed per dimension" }),
      customerId: ClientName("customerId").optional(),
    }),
  },
  responses: {
    200: json(
      z
        .object({
          from: z.string(),
          to: z.string(),
          previous: z.object({ from: z.string(), to: z.string() }),
          totals: z.object({ current: Period, previous: Period, change: Money.extend({ percent: z.number().nullable() }) }),
          drivers: z.object({ runTypes: z.array(Driver), models: z.array(Driver), customers: z.array(Driver) }),
          findings: z.array(z.string()).openapi({ description: "What stands out: the largest drivers, notable moves, where the levers are" }),
        })
        .openapi("CostDrivers"),
      "The drivers",
    ),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerCostDrivers(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").insights.costDrivers(c.get("principal"), c.req.valid("query")), 200));
}
