import { createRoute } from "@hono/zod-openapi";
import type { App } from "../context";
import { bearer, errors } from "../openapi";
import { SecretNameParam } from "../schemas";

const route = createRoute({
  method: "delete",
  path: "/v1/secrets/{name}",
  operationId: "deleteSecret",
  tags: ["secrets"],
  summary: "Delete a secret",
  description: "One of your secrets (the admin key: a platform secret); steps that reference it then fail. A Worker secret cannot be deleted here (409).",
  security: bearer,
  request: { params: SecretNameParam },
  responses: { 204: { description: "Deleted" }, ...errors(400, 401, 404, 409, 413, 429, 503) },
});

export function registerDeleteSecret(app: App) {
  app.openapi(route, async (c) => {
    await c.get("services").secrets.delete(c.get("principal"), c.req.valid("param").name);
    return c.body(null, 204);
  });
}
