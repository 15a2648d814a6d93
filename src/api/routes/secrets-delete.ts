import { createRoute } from "@hono/zod-openapi";
import type { App } from "../context";
import { ERRORS, bearer } from "../openapi";
import { SecretNameParam } from "../schemas";

const route = createRoute({
  method: "delete",
  path: "/v1/secrets/{name}",
  tags: ["secrets"],
  summary: "Delete one of your secrets (the admin key: a platform secret); runs that reference it then fail",
  security: bearer,
  request: { params: SecretNameParam },
  responses: { 204: { description: "Deleted" }, 400: ERRORS[400], 401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409] },
});

export function registerDeleteSecret(app: App) {
  app.openapi(route, async (c) => {
    await c.get("services").secrets.delete(c.get("principal"), c.req.valid("param").name);
    return c.body(null, 204);
  });
}
