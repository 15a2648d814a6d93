import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer, json } from "../openapi";
import { CostFigures, ExactInt, metricsEnvelope, metricsQuery } from "../metrics-schemas";

const GROUPS = ["customer", "project", "runType", "pool", "model"] as const;

const route = createRoute({
  method: "get",
  path: "/v1/metrics/costs",
  operationId: "getCostMetrics",
  tags: ["metrics"],
  summary: "Cost per run and per customer, cost trends, AI tokens and cost by model and customer (a customer key: its own)",
  security: bearer,
  request: { query: metricsQuery(GROUPS) },
  responses: {
    200: json(metricsEnvelope("CostMetrics", CostFigures, GROUPS, {
      trend: z
        .object({ bucket: z.string(), first: z.object({ bucket: z.string(), nanoUsd: ExactInt }), last: z.object({ bucket: z.string(), nanoUsd: ExactInt }), changeNanoUsd: ExactInt, changePercent: z.number().nullable() })
        .nullable()
        .openapi({ description: "The range's first and last bucket with cost, and the change between them" }),
    }), "The figures per bucket (and group), and their totals"),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerCostMetrics(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").metrics.costs(c.get("principal"), c.req.valid("query")), 200));
}
