import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { bearer, errors, json } from "../openapi";
import { RunEnvelope } from "../schemas";

export const RunIdParams = z.object({ id: z.string().min(1).max(100).openapi({ example: "run_0123456789abcdefghjkmnpq" }) });

const route = createRoute({
  method: "get",
  path: "/v1/runs/{id}",
  operationId: "getRun",
  tags: ["runs"],
  summary: "A run with its steps, outputs, failure and cost",
  security: bearer,
  request: { params: RunIdParams },
  responses: { 200: json(RunEnvelope, "The run"), ...errors(400, 401, 404, 429, 503) },
});

export function registerGetRun(app: App) {
  app.openapi(route, async (c) => c.json({ run: await c.get("services").runs.get(c.get("principal"), c.req.valid("param").id) }, 200));
}
