import { createRoute } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer, json } from "../openapi";
import { RunFigures, metricsEnvelope, metricsQuery, Percentiles } from "../metrics-schemas";

const GROUPS = ["customer", "project", "runType", "pool"] as const;

const route = createRoute({
  method: "get",
  path: "/v1/metrics/runs",
  operationId: "getRunMetrics",
  tags: ["metrics"],
  summary: "Run volume, success rate, failure rate by failure type, average/p50/p95 duration, by the hour runs were created (a customer key: its own runs)",
  security: bearer,
  request: { query: metricsQuery(GROUPS) },
  responses: {
    200: json(metricsEnvelope("RunMetrics", RunFigures, GROUPS, { percentiles: Percentiles }), "The figures per bucket (and group), and their totals"),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerRunMetrics(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").metrics.runs(c.get("principal"), c.req.valid("query")), 200));
}
