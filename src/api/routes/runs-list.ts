import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ClientName, PageQuery, bearer, errors, json } from "../openapi";
import { RUN_STATUSES } from "../../domain/run-status";
import { RunSummarySchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/runs",
  operationId: "listRuns",
  tags: ["runs"],
  summary: "List runs, newest first",
  security: bearer,
  request: {
    query: z.object({
      status: z.enum(RUN_STATUSES).optional(),
      projectId: ClientName("projectId").optional(),
      runType: ClientName("runType").optional(),
      customerId: ClientName("customerId").optional().openapi({ description: "Admin only" }),
      from: z.iso.datetime({ offset: true }).optional(),
      to: z.iso.datetime({ offset: true }).optional(),
      ...PageQuery,
    }),
  },
  responses: {
    200: json(z.object({ runs: z.array(RunSummarySchema), nextCursor: z.string().nullable() }), "A page of runs"),
    ...errors(400, 401, 403, 429, 503),
  },
});

export function registerListRuns(app: App) {
  app.openapi(route, async (c) => c.json(await c.get("services").runs.list(c.get("principal"), c.req.valid("query")), 200));
}
