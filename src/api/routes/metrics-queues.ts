import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer, json } from "../openapi";
import { QueueFigures, metricsEnvelope, metricsQuery, Percentiles } from "../metrics-schemas";

const GROUPS = ["pool"] as const;

const route = createRoute({
  method: "get",
  path: "/v1/metrics/queues",
  operationId: "getQueueMetrics",
  tags: ["metrics"],
  summary: "Queue depth, job processing rate, retry rate, dead letters (depth and DLQ size sampled each minute: admin only)",
  security: bearer,
  request: { query: metricsQuery(GROUPS) },
  responses: {
    200: json(metricsEnvelope("QueueMetrics", QueueFigures, GROUPS, { dlqOpenByPool: z.record(z.string(), z.number()).optional(), notes: z.record(z.string(), z.string()) }), "The figures per bucket (and group), and their totals"),
    400: ERRORS[400],
    401: ERRORS[401],
    404: ERRORS[404],
    429: ERRORS[429],
    503: ERRORS[503],
  },
});

export function registerQueueMetrics(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").metrics.queues(c.get("principal"), c.req.valid("query")), 200));
}
