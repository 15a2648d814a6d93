import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer, json } from "../openapi";
import { WorkerFigures, metricsEnvelope, metricsQuery, Percentiles } from "../metrics-schemas";

const GROUPS = ["customer", "project", "runType", "pool"] as const;

const route = createRoute({
  method: "get",
  path: "/v1/metrics/workers",
  operationId: "getWorkerMetrics",
  tags: ["metrics"],
  summary: "Worker utilization (busy time over capacity) and worker error rate",
  security: bearer,
  request: { query: metricsQuery(GROUPS) },
  responses: {
    200: json(metricsEnvelope("WorkerMetrics", WorkerFigures, GROUPS, { notes: z.record(z.string(), z.string()) }), "The figures per bucket (and group), and their totals"),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerWorkerMetrics(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").metrics.workers(c.get("principal"), c.req.valid("query")), 200));
}
