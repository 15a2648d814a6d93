import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, PageQuery, bearer, errors, json, jsonBody } from "../openapi";
import { FAILURE_TYPES } from "../../domain/run-status";
import { DLQ_ENTRY_ID } from "../../services/dlq-service";

const Filter = {
  pool: ClientName("pool").optional(),
  customerId: ClientName("customerId").optional(),
  runType: ClientName("runType").optional(),
  failureType: z.enum(FAILURE_TYPES).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
};

const Entry = z
  .object({
    id: z.string(),
    runId: z.string(),
    customerId: z.string().nullable(),
    runType: z.string().nullable(),
    pool: z.string(),
    step: z.string().nullable(),
    failure: z.object({ type: z.string(), message: z.string() }),
    attempts: z.number().int(),
    history: z.array(z.record(z.string(), z.unknown())),
    deadAt: z.string(),
    state: z.string(),
  })
  .openapi("DlqEntry");

const EntryId = z.object({ id: z.string().regex(DLQ_ENTRY_ID, "not a dead-letter entry id") });

const list = createRoute({
  method: "get",
  path: "/v1/dlq",
  operationId: "listDeadLetters",
  tags: ["dead-letter queue"],
  summary: "Dead-lettered runs with their reason and attempt history, newest first (admin)",
  security: bearer,
  middleware: adminOnly,
  request: {
    query: z.object({
      ...Filter,
      state: z.enum(["open", "retried", "discarded"]).default("open"),
      limit: PageQuery.limit,
      cursor: PageQuery.cursor,
    }),
  },
  responses: { 200: json(z.object({ entries: z.array(Entry), nextCursor: z.string().nullable() }), "A page of entries"), ...errors(400, 401, 403, 429, 503) },
});

const inspect = createRoute({
  method: "get",
  path: "/v1/dlq/{id}",
  operationId: "getDeadLetter",
  tags: ["dead-letter queue"],
  summary: "One entry, with the dead-lettered message as received (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: EntryId },
  responses: { 200: json(z.object({ entry: Entry.extend({ message: z.unknown() }) }), "The entry"), ...errors(400, 401, 403, 404, 429, 503) },
});

const retryOne = createRoute({
  method: "post",
  path: "/v1/dlq/{id}/retry",
  operationId: "retryDeadLetter",
  tags: ["dead-letter queue"],
  summary: "Retry an entry (admin)",
  description: "Its run resumes from the failed step with a fresh set of attempts; 402 while its customer's budget is spent.",
  security: bearer,
  middleware: adminOnly,
  request: { params: EntryId },
  responses: { 202: json(z.object({ entry: Entry, runStatus: z.string() }), "The run resumed"), ...errors(400, 401, 402, 403, 404, 409, 413, 415, 429, 503) },
});

const retryMany = createRoute({
  method: "post",
  path: "/v1/dlq/retry",
  operationId: "retryDeadLetters",
  tags: ["dead-letter queue"],
  summary: "Retry every open entry matching a filter (admin)",
  security: bearer,
  middleware: adminOnly,
  request: jsonBody(z.object({ filter: z.object(Filter).strict().default({}) }).strict()),
  responses: {
    200: json(z.object({ retried: z.number().int(), matched: z.number().int(), skipped: z.array(z.object({ id: z.string(), reason: z.string() })) }), "How many were retried"),
    ...errors(400, 401, 403, 413, 415, 429, 503),
  },
});

const discard = createRoute({
  method: "delete",
  path: "/v1/dlq/{id}",
  operationId: "discardDeadLetter",
  tags: ["dead-letter queue"],
  summary: "Discard an entry after investigation (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: EntryId },
  responses: { 204: { description: "Discarded" }, ...errors(400, 401, 403, 404, 409, 413, 429, 503) },
});

export function registerDlq(app: App) {
  app.openapi(list, async (c) => {
    const { limit, cursor, ...filter } = c.req.valid("query");
    return c.json(await c.get("services").dlq.list(filter, limit, cursor), 200);
  });
  app.openapi(inspect, async (c) => c.json({ entry: await c.get("services").dlq.get(c.req.valid("param").id) }, 200));
  app.openapi(retryOne, async (c) => c.json(await c.get("services").dlq.retry(c.req.valid("param").id), 202));
  app.openapi(retryMany, async (c) => c.json(await c.get("services").dlq.retryMatching(c.req.valid("json").filter), 200));
  app.openapi(discard, async (c) => {
    await c.get("services").dlq.discard(c.req.valid("param").id);
    return c.body(null, 204);
  });
}
