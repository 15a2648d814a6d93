import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, bearer, errors, json, jsonBody } from "../openapi";
import { BudgetBody, CustomerSchema } from "../schemas";

const route = createRoute({
  method: "put",
  path: "/v1/customers/{id}/budget",
  operationId: "setCustomerBudget",
  tags: ["customers"],
  summary: "Set a customer's monthly budget (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: z.object({ id: ClientName("id") }), ...jsonBody(BudgetBody) },
  responses: { 200: json(z.object({ customer: CustomerSchema }), "Updated"), ...errors(400, 401, 403, 404, 413, 415, 429, 503) },
});

export function registerSetBudget(app: App) {
  app.openapi(route, async (c) => {
    const customer = await c.get("services").customers.setBudget(c.req.valid("param").id, c.req.valid("json"));
    return c.json({ customer }, 200);
  });
}
