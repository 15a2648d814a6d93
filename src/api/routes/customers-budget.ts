import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, ERRORS, bearer, json, jsonBody } from "../openapi";
import { BudgetBody, CustomerSchema } from "../schemas";

const route = createRoute({
  method: "put",
  path: "/v1/customers/{id}/budget",
  tags: ["customers"],
  summary: "Set a customer's monthly budget (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: z.object({ id: ClientName("id") }), ...jsonBody(BudgetBody) },
  responses: { 200: json(z.object({ customer: CustomerSchema }), "Updated"), 400: ERRORS[400], 401: ERRORS[401], 403: ERRORS[403], 404: ERRORS[404], 503: ERRORS[503] },
});

export function registerSetBudget(app: App) {
  app.openapi(route, async (c) => {
    const customer = await c.get("services").customers.setBudget(c.req.valid("param").id, c.req.valid("json"));
    return c.json({ customer }, 200);
  });
}
