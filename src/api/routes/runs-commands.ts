import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { bearer, errors, json } from "../openapi";
import { RunEnvelope } from "../schemas";
import { RunIdParams } from "./runs-get";

export const DEFAULT_EVENTS_PAGE = 500;
export const MAX_EVENTS_PAGE = 1000;

const cancel = createRoute({
  method: "post",
  path: "/v1/runs/{id}/cancel",
  operationId: "cancelRun",
  tags: ["runs"],
  summary: "Cancel a run: it stops before its next step",
  security: bearer,
  request: { params: RunIdParams },
  responses: { 200: json(RunEnvelope, "Cancelled"), ...errors(400, 401, 404, 409, 413, 415, 429, 503) },
});

const resume = createRoute({
  method: "post",
  path: "/v1/runs/{id}/resume",
  operationId: "resumeRun",
  tags: ["runs"],
  summary: "Resume a failed run from its first step that did not succeed",
  security: bearer,
  request: { params: RunIdParams },
  responses: { 202: json(RunEnvelope, "Resumed"), ...errors(400, 401, 402, 404, 409, 413, 415, 429, 503) },
});

const events = createRoute({
  method: "get",
  path: "/v1/runs/{id}/events",
  operationId: "listRunEvents",
  tags: ["runs"],
  summary: "The run's state-transition log (its timeline), a page at a time",
  security: bearer,
  request: {
    params: RunIdParams,
    query: z.object({
      after: z.coerce
        .number()
        .int()
        .min(0)
        .max(Number.MAX_SAFE_INTEGER)
        .default(0)
        .openapi({ description: "Events with a sequence number above this (nextCursor of the previous page); default 0: from the start" }),
      limit: z.coerce.number().int().min(1).max(MAX_EVENTS_PAGE).default(DEFAULT_EVENTS_PAGE).openapi({ description: `Page size (default ${DEFAULT_EVENTS_PAGE}, max ${MAX_EVENTS_PAGE})` }),
    }),
  },
  responses: {
    200: json(
      z.object({
        events: z.array(
          z.object({ seq: z.number(), at: z.string(), type: z.string(), step: z.string().nullable(), attempt: z.number().nullable(), data: z.record(z.string(), z.unknown()).nullable() }),
        ),
        nextCursor: z.number().int().nullable().openapi({ description: "Pass as `after` for the next page; null: this is the last page" }),
      }),
      "Events, oldest first",
    ),
    ...errors(400, 401, 404, 429, 503),
  },
});

const cost = createRoute({
  method: "get",
  path: "/v1/runs/{id}/cost",
  operationId: "getRunCost",
  tags: ["runs"],
  summary: "The run's cost by meter: tokens by model, infrastructure operations (exact nano-USD)",
  security: bearer,
  request: { params: RunIdParams },
  responses: {
    200: json(
      z.object({
        runId: z.string(),
        totalNanoUsd: z.union([z.number(), z.string()]),
        aiNanoUsd: z.union([z.number(), z.string()]),
        infraNanoUsd: z.union([z.number(), z.string()]),
        totalUsd: z.string(),
        settled: z.boolean().openapi({ description: "Every cost record of the run is priced and counted in the customer's ledger" }),
        pendingRecords: z.number().int().openapi({ description: "Cost records the customer's ledger has not yet acknowledged" }),
        lines: z.array(z.object({ meter: z.string(), model: z.string().nullable(), quantity: z.union([z.number(), z.string()]), nanoUsd: z.union([z.number(), z.string()]), estimated: z.boolean() })),
      }),
      "Cost breakdown",
    ),
    ...errors(400, 401, 404, 429, 503),
  },
});

export function registerRunCommands(app: App) {
  app.openapi(cost, async (c) => c.json(await c.get("services").runs.cost(c.get("principal"), c.req.valid("param").id), 200));
  app.openapi(cancel, async (c) => c.json({ run: await c.get("services").runs.cancel(c.get("principal"), c.req.valid("param").id) }, 200));
  app.openapi(resume, async (c) => c.json({ run: await c.get("services").runs.resume(c.get("principal"), c.req.valid("param").id) }, 202));
  app.openapi(events, async (c) => c.json(await c.get("services").runs.events(c.get("principal"), c.req.valid("param").id, c.req.valid("query")), 200));
}
