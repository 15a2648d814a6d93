import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { ClientName, bearer, errors, json, jsonBody } from "../openapi";
import { RunEnvelope } from "../schemas";
import { MAX_STEPS_PER_RUN, PrioritySchema, StepSpecSchema } from "../../domain/step-spec";
import { refineSteps } from "../../services/step-validation";
import { refineJsonDepth } from "../json-limits";

export const CreateRunBody = z
  .object({
    projectId: ClientName("projectId").openapi({ example: "default" }),
    customerId: ClientName("customerId").optional().openapi({ description: "Required with the admin key; a customer key may give only its own" }),
    runType: ClientName("runType").optional(),
    steps: z.array(StepSpecSchema).min(1).max(MAX_STEPS_PER_RUN).superRefine(refineSteps).optional().openapi({ description: "Inline steps, instead of a runType" }),
    input: z.unknown().superRefine(refineJsonDepth).optional(),
    priority: PrioritySchema.optional(),
    pool: ClientName("pool").optional(),
    idempotencyKey: z.string().min(1).max(200).optional().openapi({ description: "The same key again returns the same run, never a second one" }),
    metadata: z.record(z.string(), z.unknown()).superRefine(refineJsonDepth).optional(),
  })
  .strict()
  .openapi("CreateRun");

const route = createRoute({
  method: "post",
  path: "/v1/runs",
  operationId: "createRun",
  tags: ["runs"],
  summary: "Submit a run",
  description:
    "Of a registered run type, or with inline steps. The same idempotencyKey again answers 200 with the run it made, never a second run. Refused with 402 once the customer's monthly budget is spent, and with 429 past its cap on runs in flight.",
  security: bearer,
  request: jsonBody(CreateRunBody),
  responses: {
    202: json(RunEnvelope, "Accepted: the run is queued"),
    200: json(RunEnvelope, "The run this idempotency key already created"),
    ...errors(400, 401, 402, 403, 409, 413, 415, 422, 429, 503),
  },
});

export function registerCreateRun(app: App) {
  app.openapi(route, async (c) => {
    const { created, run } = await c.get("services").runs.create(c.get("principal"), c.req.valid("json"));
    return created ? c.json({ run }, 202) : c.json({ run }, 200);
  });
}
