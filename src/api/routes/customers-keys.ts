import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, bearer, errors, json } from "../openapi";

const create = createRoute({
  method: "post",
  path: "/v1/customers/{id}/keys",
  operationId: "createCustomerKey",
  tags: ["customers"],
  summary: "Create another API key for a customer (admin)",
  description: "The key is in the response once, and stored hashed.",
  security: bearer,
  middleware: adminOnly,
  request: { params: z.object({ id: ClientName("id") }) },
  responses: {
    201: json(z.object({ key: z.object({ id: z.string(), prefix: z.string(), createdAt: z.string() }), apiKey: z.string() }), "Created"),
    ...errors(400, 401, 403, 404, 413, 415, 429, 503),
  },
});

const revoke = createRoute({
  method: "delete",
  path: "/v1/customers/{id}/keys/{keyId}",
  operationId: "revokeCustomerKey",
  tags: ["customers"],
  summary: "Revoke a customer's API key (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: z.object({ id: ClientName("id"), keyId: z.string().min(1).max(100) }) },
  responses: { 204: { description: "Revoked" }, ...errors(400, 401, 403, 404, 413, 429, 503) },
});

export function registerCustomerKeys(app: App) {
  app.openapi(create, async (c) => {
    return c.json(await c.get("services").customers.createKey(c.req.valid("param").id), 201);
  });
  app.openapi(revoke, async (c) => {
    const { id, keyId } = c.req.valid("param");
    await c.get("services").customers.revokeKey(id, keyId);
    return c.body(null, 204);
  });
}
