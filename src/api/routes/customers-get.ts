import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { requireCustomerAccess } from "../auth";
import { ClientName, bearer, errors, json } from "../openapi";
import { CustomerSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/customers/{id}",
  operationId: "getCustomer",
  tags: ["customers"],
  summary: "A customer with month-to-date spend and budget state",
  description: "The admin key, or the customer's own key; another customer's id is a 404.",
  security: bearer,
  request: { params: z.object({ id: ClientName("id") }) },
  responses: { 200: json(z.object({ customer: CustomerSchema }), "The customer"), ...errors(400, 401, 404, 429, 503) },
});

export function registerGetCustomer(app: App) {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    requireCustomerAccess(c, id);
    return c.json({ customer: await c.get("services").customers.get(id) }, 200);
  });
}
