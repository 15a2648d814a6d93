import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { PageQuery, bearer, errors, json } from "../openapi";
import { SecretSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/secrets",
  operationId: "listSecrets",
  tags: ["secrets"],
  summary: "List secrets: names and times, never values",
  description: "Your own secrets; the admin key: the platform's, Worker secrets SECRET_<NAME> included.",
  security: bearer,
  request: { query: z.object(PageQuery) },
  responses: { 200: json(z.object({ secrets: z.array(SecretSchema), nextCursor: z.string().nullable() }), "A page of secrets, by name"), ...errors(400, 401, 429, 503) },
});

export function registerListSecrets(app: App) {
  app.openapi(route, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return c.json(await c.get("services").secrets.list(c.get("principal"), limit, cursor), 200);
  });
}
