import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { ClientName, bearer, errors, json, jsonBody } from "../openapi";
import { REQUIRED_POLICY_FIELDS, ScalingPolicyFields } from "../../domain/scaling-policy";

const PolicySchema = ScalingPolicyFields.openapi("PoolPolicy", {
  description: "A pool's scaling policy and scheduling (README \"Pools and scaling\" describes every knob and its default)",
});

const Decision = z
  .object({
    id: z.string(),
    shard: z.number().int(),
    at: z.string(),
    from: z.number().int(),
    to: z.number().int(),
    reason: z.string(),
    depth: z.number().int(),
    inFlight: z.number().int(),
    utilization: z.number().nullable(),
    processingRate: z.number(),
  })
  .openapi("PoolDecision");

const PoolSchema = z
  .object({
    name: z.string(),
    description: z.string(),
    queue: z.string(),
    deadLetterQueue: z.string(),
    shards: z.number().int(),
    depth: z.number().int().openapi({ description: "Dispatches waiting for admission (the pool's queue depth)" }),
    depthByPriority: z.object({ high: z.number().int(), normal: z.number().int(), low: z.number().int() }),
    inFlight: z.number().int().openapi({ description: "Chains admitted and not yet done (never more than desiredConcurrency)" }),
    desiredConcurrency: z.number().int(),
    utilization: z.number().nullable().openapi({ description: "Busy slot-time ÷ provisioned slot-time over the last ~30 s; null when nothing was provisioned" }),
    processingRate: z.number().openapi({ description: "Steps done per second over the last ~30 s" }),
    waitingCustomers: z.number().int(),
    oldestWaitingMs: z.number(),
    policy: PolicySchema,
    recentDecisions: z.array(Decision),
    consumer: z.object({ worker: z.string(), messagesPerInvocation: z.number().int(), pushedMaxConcurrency: z.number().int().nullable() }),
    nextTimerAt: z.string().nullable().openapi({ description: "The controller's alarm; null: none (an idle pool runs no timer)" }),
  })
  .openapi("Pool");

const Name = z.object({ name: ClientName("pool name") });

// The seven knobs API.md names are required; the rest keep the pool's defaults when left out.
const required = Object.fromEntries(REQUIRED_POLICY_FIELDS.map((k) => [k, true])) as { [K in (typeof REQUIRED_POLICY_FIELDS)[number]]: true };
const PolicyBody = ScalingPolicyFields.partial().required(required).strict().openapi("PoolPolicyInput");

const list = createRoute({
  method: "get",
  path: "/v1/pools",
  operationId: "listPools",
  tags: ["pools"],
  summary: "Every pool: depth, in-flight chains, desired concurrency, utilization, processing rate, policy and recent scaling decisions (admin)",
  security: bearer,
  middleware: adminOnly,
  // It takes no parameters: one it does not know is a mistake worth naming.
  request: { query: z.object({}).strict() },
  responses: { 200: json(z.object({ pools: z.array(PoolSchema) }), "The pools"), ...errors(400, 401, 403, 429, 503) },
});

const get = createRoute({
  method: "get",
  path: "/v1/pools/{name}",
  operationId: "getPool",
  tags: ["pools"],
  summary: "One pool (admin)",
  security: bearer,
  middleware: adminOnly,
  request: { params: Name },
  responses: { 200: json(z.object({ pool: PoolSchema }), "The pool"), ...errors(400, 401, 403, 404, 429, 503) },
});

const series = createRoute({
  method: "get",
  path: "/v1/pools/{name}/series",
  operationId: "getPoolSeries",
  tags: ["pools"],
  summary: "Depth, in-flight chains and desired concurrency over time, with the scaling decisions in the range (admin)",
  description:
    "From the controller's samples (every POOL_SAMPLE_MS while the pool is active; an idle pool writes none). Each point is a bucket (`bucketMs`, at least the sample period, wider for long ranges so there are at most 1,000 points) holding the highest depth, in-flight and desired values sampled in it. Default range: the last hour; at most 31 days.",
  security: bearer,
  middleware: adminOnly,
  request: {
    params: Name,
    query: z.object({
      from: z.iso.datetime({ offset: true }).optional().openapi({ description: "Start (inclusive); default: an hour before `to`" }),
      to: z.iso.datetime({ offset: true }).optional().openapi({ description: "End (exclusive); default: now" }),
    }),
  },
  responses: {
    200: json(
      z.object({
        pool: z.string(),
        from: z.string(),
        to: z.string(),
        bucketMs: z.number().int(),
        points: z.array(z.object({ at: z.string(), depth: z.number(), inFlight: z.number(), desired: z.number(), utilization: z.number().nullable(), processingRate: z.number() })),
        decisions: z.array(Decision),
      }),
      "The series",
    ),
    ...errors(400, 401, 403, 404, 429, 503),
  },
});

const putPolicy = createRoute({
  method: "put",
  path: "/v1/pools/{name}/policy",
  operationId: "putPoolPolicy",
  tags: ["pools"],
  summary: "Replace a pool's scaling policy (admin); takes effect at once, on every controller shard",
  description:
    "Requires scaleUpThreshold, scaleDownThreshold, targetDepth, cooldownUpMs, cooldownDownMs, minConcurrency and maxConcurrency; activationThreshold, tolerance, stabilizationWindowMs, utilizationLow, utilizationHigh, agingMs and scheduling are optional and take the pool's defaults when left out. The `policy` of a GET is a valid body.",
  security: bearer,
  middleware: adminOnly,
  request: { params: Name, ...jsonBody(PolicyBody) },
  responses: { 200: json(z.object({ pool: PoolSchema }), "The pool under its new policy"), ...errors(400, 401, 403, 404, 413, 415, 429, 503) },
});

export function registerPools(app: App) {
  app.openapi(list, async (c) => c.json(await c.get("services").pools.list(), 200));
  app.openapi(get, async (c) => c.json({ pool: await c.get("services").pools.get(c.req.valid("param").name) }, 200));
  app.openapi(series, async (c) => c.json(await c.get("services").pools.series(c.req.valid("param").name, c.req.valid("query")), 200));
  app.openapi(putPolicy, async (c) => c.json({ pool: await c.get("services").pools.setPolicy(c.req.valid("param").name, c.req.valid("json")) }, 200));
}
