import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, PageQuery, bearer, json } from "../openapi";
import { SecretSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/secrets",
  tags: ["secrets"],
  summary: "Your secrets' names and times, never their values (the admin key: the platform's, Worker secrets SECRET_<NAME> included)",
  security: bearer,
  request: { query: z.object(PageQuery) },
  responses: { 200: json(z.object({ secrets: z.array(SecretSchema), nextCursor: z.string().nullable() }), "A page of secrets, by name"), 400: ERRORS[400], 401: ERRORS[401] },
});

export function registerListSecrets(app: App) {
  app.openapi(route, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return c.json(await c.get("services").secrets.list(c.get("principal"), limit, cursor), 200);
  });
}
