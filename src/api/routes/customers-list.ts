import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { PageQuery, bearer, errors, json } from "../openapi";
import { CustomerSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/customers",
  operationId: "listCustomers",
  tags: ["customers"],
  summary: "List customers (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { query: z.object(PageQuery) },
  responses: {
    200: json(z.object({ customers: z.array(CustomerSchema), nextCursor: z.string().nullable() }), "A page of customers"),
    ...errors(400, 401, 403, 429, 503),
  },
});

export function registerListCustomers(app: App) {
  app.openapi(route, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return c.json(await c.get("services").customers.list(limit, cursor), 200);
  });
}
