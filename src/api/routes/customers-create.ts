import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ClientName, bearer, errors, json, jsonBody } from "../openapi";
import { adminOnly } from "../auth";
import { BudgetBody, CustomerSchema, UsdAmount } from "../schemas";
import { MaxRunsInFlightSchema, PlanWeightSchema, RateLimitSchema } from "../../domain/plan";

const CreateCustomerBody = z
  .object({
    id: ClientName("id").optional().openapi({ description: "Chosen id; a server-made one when absent", example: "acme" }),
    name: z.string().min(1).max(200).openapi({ example: "Acme Corp" }),
    plan: z
      .object({
        monthlyFeeUsd: UsdAmount.optional(),
        pricePerRunUsd: UsdAmount.optional(),
        rateLimit: RateLimitSchema.optional().openapi({
          description: "The customer's API request rate limit (token bucket); default RATE_LIMIT_RPS / RATE_LIMIT_BURST (100/s, burst 200)",
          example: { requestsPerSecond: 100, burst: 200 },
        }),
        maxRunsInFlight: MaxRunsInFlightSchema.optional().openapi({ description: "Runs the customer may have unfinished at once (default 1000)", example: 1000 }),
        weight: PlanWeightSchema.optional().openapi({
          description: "The customer's share of a busy pool relative to other customers' (default 1): with weight 2 it gets twice the capacity of a weight-1 customer while both have work waiting",
          example: 1,
        }),
      })
      .strict()
      .optional(),
    budget: BudgetBody.optional(),
  })
  .strict();

const route = createRoute({
  method: "post",
  path: "/v1/customers",
  operationId: "createCustomer",
  tags: ["customers"],
  summary: "Create a customer and its first API key (admin)",
  security: bearer,
  middleware: adminOnly,
  request: jsonBody(CreateCustomerBody),
  responses: {
    201: json(z.object({ customer: CustomerSchema, apiKey: z.string().openapi({ description: "Shown once; stored hashed" }), keyId: z.string() }), "Created"),
    ...errors(400, 401, 403, 409, 413, 415, 429, 503),
  },
});

export function registerCreateCustomer(app: App) {
  app.openapi(route, async (c) => {
    const result = await c.get("services").customers.create(c.req.valid("json"));
    return c.json(result, 201);
  });
}
