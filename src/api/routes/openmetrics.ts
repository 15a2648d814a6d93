import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ERRORS, bearer } from "../openapi";
import { OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, wantsOpenMetrics } from "../../metrics/openmetrics";

const route = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "getOpenMetrics",
  tags: ["metrics"],
  summary:
    "Current gauges and counters for a Prometheus scrape (admin): OpenMetrics 1.0 when the scraper asks for application/openmetrics-text, else the Prometheus text format 0.0.4",
  security: bearer,
  middleware: adminOnly,
  responses: {
    200: {
      content: { "application/openmetrics-text": { schema: z.string() }, "text/plain": { schema: z.string() } },
      description: "Runs by status, steps, retries, DLQ size, queue depth, in flight, desired concurrency, spend (nano-USD), API requests, uptime",
    },
    401: ERRORS[401],
    403: ERRORS[403],
  },
});

export function registerOpenMetrics(app: App) {
  app.openapi(route, async (c) => {
    const openMetrics = wantsOpenMetrics(c.req.header("accept"));
    const text = await c.get("services").openMetrics.render(openMetrics);
    return c.body(text, 200, { "content-type": openMetrics ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_CONTENT_TYPE });
  });
}
