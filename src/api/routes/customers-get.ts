import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { requireCustomerAccess } from "../auth";
import { ClientName, ERRORS, bearer, json } from "../openapi";
import { CustomerSchema } from "../schemas";

const route = createRoute({
  method: "get",
  path: "/v1/customers/{id}",
  tags: ["customers"],
  summary: "A customer with month-to-date spend and budget state (admin, or the customer itself)",
  security: bearer,
  request: { params: z.object({ id: ClientName("id") }) },
  responses: { 200: json(z.object({ customer: CustomerSchema }), "The customer"), 400: ERRORS[400], 401: ERRORS[401], 404: ERRORS[404] },
});

export function registerGetCustomer(app: App) {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    requireCustomerAccess(c, id);
    return c.json({ customer: await c.get("services").customers.get(id) }, 200);
  });
}
