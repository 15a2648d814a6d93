import { createRoute, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { App, AppEnv } from "../context";
import { ApiError } from "../errors";
import { ClientName, PageQuery, bearer, errors, json, jsonBody } from "../openapi";
import { RunTypeDefinitionSchema } from "../../services/run-types-service";

const RunTypeSchema = z
  .object({
    name: z.string(),
    owner: z.string().nullable().openapi({ description: "null: platform-wide (the admin's, visible to every customer); else the customer that owns it" }),
    pool: z.string(),
    priority: z.string(),
    steps: z.array(z.record(z.string(), z.unknown())).openapi({
      description: "Customer keys see inline credentials (credential-like headers, apiKey/token/secret/password fields) as \"[redacted]\"; {{secrets.NAME}} references as written",
    }),
    retry: z.record(z.string(), z.unknown()).nullable(),
    timeoutMs: z.number().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("RunType");

/** Runs before the validators, so a customer key naming another owner gets 403 whatever else it sends. */
const ownOwnerOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  const principal = c.get("principal");
  const owner = c.req.query("owner");
  if (principal.kind === "customer" && owner !== undefined && owner !== principal.customerId) {
    throw new ApiError("forbidden", "a customer key may create run types only for itself", [{ field: "query.owner", message: "not your customer" }]);
  }
  await next();
};

const put = createRoute({
  method: "put",
  path: "/v1/run-types/{name}",
  operationId: "putRunType",
  tags: ["run types"],
  summary: "Create or replace a run type",
  description:
    "A run type is a named template of steps, pool, priority and retry policy. The admin key writes platform-wide ones (their steps may use the platform's secrets) or, with ?owner=<customer id>, one owned by that customer; a customer key writes its own.",
  security: bearer,
  middleware: ownOwnerOnly,
  request: {
    params: z.object({ name: ClientName("run type name") }),
    query: z.object({ owner: ClientName("owner").optional().openapi({ description: "Admin only: the customer that owns the run type; absent = platform-wide" }) }),
    ...jsonBody(RunTypeDefinitionSchema),
  },
  responses: {
    200: json(z.object({ runType: RunTypeSchema }), "Replaced"),
    201: json(z.object({ runType: RunTypeSchema }), "Created"),
    ...errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
  },
});

const list = createRoute({
  method: "get",
  path: "/v1/run-types",
  operationId: "listRunTypes",
  tags: ["run types"],
  summary: "List run types",
  description: "A customer key sees the platform's and its own.",
  security: bearer,
  request: { query: z.object(PageQuery) },
  responses: { 200: json(z.object({ runTypes: z.array(RunTypeSchema), nextCursor: z.string().nullable() }), "A page of run types"), ...errors(400, 401, 429, 503) },
});

const get = createRoute({
  method: "get",
  path: "/v1/run-types/{name}",
  operationId: "getRunType",
  tags: ["run types"],
  summary: "One run type",
  description: "Another customer's run type is a 404.",
  security: bearer,
  request: { params: z.object({ name: ClientName("run type name") }) },
  responses: { 200: json(z.object({ runType: RunTypeSchema }), "The run type"), ...errors(400, 401, 404, 429, 503) },
});

export function registerRunTypes(app: App) {
  app.openapi(put, async (c) => {
    const { created, runType } = await c.get("services").runTypes.put(c.get("principal"), c.req.valid("param").name, c.req.valid("json"), c.req.valid("query").owner);
    return created ? c.json({ runType }, 201) : c.json({ runType }, 200);
  });
  app.openapi(list, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return c.json(await c.get("services").runTypes.list(c.get("principal"), limit, cursor), 200);
  });
  app.openapi(get, async (c) => c.json({ runType: await c.get("services").runTypes.get(c.get("principal"), c.req.valid("param").name) }, 200));
}
