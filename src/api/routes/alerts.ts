import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, PageQuery, bearer, json } from "../openapi";
import { ALERT_STATES } from "../../services/alerts-service";

const Alert = z
  .object({
    id: z.string(),
    kind: z.string().openapi({ description: "dlq_entry, budget_soft_limit, budget_exhausted, ledger_mismatch, or a degradation: p95_duration, failure_rate, cost_per_run, backlog" }),
    severity: z.string().openapi({ description: "error, warning; info for a degradation's resolution notice" }),
    customerId: z.string().nullable(),
    runId: z.string().nullable(),
    dlqId: z.string().nullable(),
    message: z.string(),
    details: z.unknown(),
    createdAt: z.string(),
    episode: z.string().nullable().openapi({ description: "Degradation alerts: the figure's episode, e.g. p95_duration:runType:hello" }),
    state: z.enum(ALERT_STATES).nullable().openapi({ description: "Degradation alerts: firing until the figure recovers, then resolved" }),
    resolvedAt: z.string().nullable(),
    delivery: z.object({ status: z.string(), attempts: z.number().int(), lastError: z.string().nullable() }),
  })
  .openapi("Alert");

const route = createRoute({
  method: "get",
  path: "/v1/alerts",
  operationId: "listAlerts",
  tags: ["alerts"],
  summary: "Alerts, newest first: dead-lettered runs, budget thresholds, ledger mismatches, and degradations against the trailing baseline (a customer key: its own)",
  security: bearer,
  request: {
    query: z.object({
      kind: z.string().regex(/^[a-z0-9_.]{1,64}$/, "kind must match ^[a-z0-9_.]{1,64}$").optional(),
      state: z.enum(ALERT_STATES).optional().openapi({ description: "Degradation alerts only: firing or resolved" }),
      limit: PageQuery.limit,
    }),
  },
  responses: { 200: json(z.object({ alerts: z.array(Alert) }), "Alerts"), 400: ERRORS[400], 401: ERRORS[401], 429: ERRORS[429], 503: ERRORS[503] },
});

export function registerAlerts(app: App) {
  app.openapi(route, async (c) => c.json({ alerts: await c.get("services").alerts.list(c.get("principal"), c.req.valid("query")) }, 200));
}
