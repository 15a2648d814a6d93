import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer, json } from "../openapi";
import { ApiFigures, metricsEnvelope, metricsQuery, Percentiles } from "../metrics-schemas";

const GROUPS = ["route", "customer"] as const;

const route = createRoute({
  method: "get",
  path: "/v1/metrics/api",
  operationId: "getApiMetrics",
  tags: ["metrics"],
  summary: "API response times per route (avg, p50, p95, p99, max) and error rates (a customer key: its own requests)",
  security: bearer,
  request: { query: metricsQuery(GROUPS) },
  responses: {
    200: json(metricsEnvelope("ApiMetrics", ApiFigures, GROUPS, { percentiles: Percentiles, notes: z.record(z.string(), z.string()) }), "The figures per bucket (and group), and their totals"),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerApiMetrics(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").metrics.api(c.get("principal"), c.req.valid("query")), 200));
}
