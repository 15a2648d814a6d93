import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, ERRORS, PageQuery, bearer, json, jsonBody } from "../openapi";
import { RunTypeDefinitionSchema } from "../../services/run-types-service";

const RunTypeSchema = z
  .object({
    name: z.string(),
    pool: z.string(),
    priority: z.string(),
    steps: z.array(z.record(z.string(), z.unknown())),
    retry: z.record(z.string(), z.unknown()).nullable(),
    timeoutMs: z.number().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("RunType");

const put = createRoute({
  method: "put",
  path: "/v1/run-types/{name}",
  tags: ["run types"],
  summary: "Create or replace a run type: a named template of steps, pool, priority, retry policy (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: z.object({ name: ClientName("run type name") }), ...jsonBody(RunTypeDefinitionSchema) },
  responses: {
    200: json(z.object({ runType: RunTypeSchema }), "Replaced"),
    201: json(z.object({ runType: RunTypeSchema }), "Created"),
    400: ERRORS[400],
    401: ERRORS[401],
    403: ERRORS[403],
    422: ERRORS[422],
  },
});

const list = createRoute({
  method: "get",
  path: "/v1/run-types",
  tags: ["run types"],
  summary: "List run types",
  security: bearer,
  request: { query: z.object(PageQuery) },
  responses: { 200: json(z.object({ runTypes: z.array(RunTypeSchema), nextCursor: z.string().nullable() }), "A page of run types"), 400: ERRORS[400], 401: ERRORS[401] },
});

const get = createRoute({
  method: "get",
  path: "/v1/run-types/{name}",
  tags: ["run types"],
  summary: "One run type",
  security: bearer,
  request: { params: z.object({ name: ClientName("run type name") }) },
  responses: { 200: json(z.object({ runType: RunTypeSchema }), "The run type"), 400: ERRORS[400], 401: ERRORS[401], 404: ERRORS[404] },
});

export function registerRunTypes(app: App) {
  app.openapi(put, async (c) => {
    const { created, runType } = await c.get("services").runTypes.put(c.req.valid("param").name, c.req.valid("json"));
    return created ? c.json({ runType }, 201) : c.json({ runType }, 200);
  });
  app.openapi(list, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    return c.json(await c.get("services").runTypes.list(limit, cursor), 200);
  });
  app.openapi(get, async (c) => c.json({ runType: await c.get("services").runTypes.get(c.req.valid("param").name) }, 200));
}
