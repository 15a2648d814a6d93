import { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { matchedRoutes } from "hono/route";
import { buildServices } from "../services/services";
import { apiTimingsDue, flushApiTimings, recordApiTiming } from "../services/api-timings";
import { PROBE_HEADER } from "../metrics/api-timings";
import { errorMessage, log } from "../lib/log";
import { newId } from "../lib/ids";
import { authenticate } from "./auth";
import type { AppEnv } from "./context";
import { ApiError, errorBody } from "./errors";
import { DomainError, validationFailed } from "../domain/errors";
import { registerCreateCustomer } from "./routes/customers-create";
import { registerGetCustomer } from "./routes/customers-get";
import { registerListCustomers } from "./routes/customers-list";
import { registerSetBudget } from "./routes/customers-budget";
import { registerCustomerKeys } from "./routes/customers-keys";
import { registerCustomerLedger } from "./routes/customers-ledger";
import { registerHealth } from "./routes/health";
import { registerRunTypes } from "./routes/run-types";
import { registerCreateRun } from "./routes/runs-create";
import { registerGetRun } from "./routes/runs-get";
import { registerListRuns } from "./routes/runs-list";
import { registerRunCommands } from "./routes/runs-commands";
import { registerDlq } from "./routes/dlq";
import { registerPricing } from "./routes/pricing";
import { registerCosts } from "./routes/costs";
import { registerPutSecret } from "./routes/secrets-put";
import { registerDeleteSecret } from "./routes/secrets-delete";
import { registerListSecrets } from "./routes/secrets-list";
import { registerAlerts } from "./routes/alerts";
import { registerCostDrivers } from "./routes/insights-cost-drivers";
import { registerApiMetrics } from "./routes/metrics-api";
import { registerCostMetrics } from "./routes/metrics-costs";
import { registerQueueMetrics } from "./routes/metrics-queues";
import { registerReliabilityMetrics } from "./routes/metrics-reliability";
import { registerRunMetrics } from "./routes/metrics-runs";
import { registerWorkerMetrics } from "./routes/metrics-workers";
import { registerOpenMetrics } from "./routes/openmetrics";
import { registerPools } from "./routes/pools";

export const MAX_BODY_BYTES = 1024 * 1024;

export function createApp() {
  const app = new OpenAPIHono<AppEnv>({
    // Every schema failure becomes a 400 that names the fields, rooted at where they came from.
    defaultHook: (result) => {
      if (!result.success) throw validationFailed(result.error, result.target === "json" ? undefined : result.target);
    },
  });

  // Response times per route (the route's pattern, e.g. "/v1/runs/:id"), aggregated in memory
  // and flushed through the events queue at most every few seconds: nothing per request.
  app.use("*", async (c, next) => {
    const started = Date.now();
    await next();
    if (c.req.header(PROBE_HEADER) === "1") return;
    const route = matchedRoutes(c).filter((r) => r.method !== "ALL").at(-1)?.path ?? "(unmatched)";
    const principal = c.get("principal") as AppEnv["Variables"]["principal"] | undefined;
    const now = Date.now();
    recordApiTiming(now, route, c.req.method, c.res.status, principal?.kind === "customer" ? principal.customerId : "", now - started);
    if (apiTimingsDue(now)) {
      const flush = flushApiTimings(c.env, now);
      try {
        c.executionCtx.waitUntil(flush);
      } catch {
        // No execution context (app.request in a script): the flush runs unawaited.
      }
    }
  });

  app.use("*", async (c, next) => {
    const incoming = c.req.header("x-request-id");
    c.set("requestId", incoming && /^[\w.-]{1,100}$/.test(incoming) ? incoming : newId("req"));
    c.set("services", buildServices(c.env, (work) => c.executionCtx.waitUntil(work)));
    await next();
    c.header("x-request-id", c.get("requestId"));
  });

  // GET /metrics (the Prometheus scrape) takes the admin key like /v1.
  const misconfigured: MiddlewareHandler<AppEnv> = async (c, next) => {
    const problem = c.get("services").auth.misconfiguration();
    if (problem) throw new ApiError("misconfigured", problem);
    await next();
  };
  app.use("/v1/*", misconfigured);
  app.use("/metrics", misconfigured);
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError("payload_too_large", `request body is larger than ${MAX_BODY_BYTES} bytes (1 MiB)`);
      },
    }),
  );
  app.use("/v1/*", async (c, next) => {
    const method = c.req.method;
    if ((method === "POST" || method === "PUT") && c.req.header("content-length") !== "0") {
      const type = c.req.header("content-type");
      if (type !== undefined && !/^application\/json\b/i.test(type)) {
        throw new ApiError("unsupported_media_type", `Content-Type must be application/json, not "${type}"`);
      }
    }
    await next();
  });
  app.use("/v1/*", authenticate);
  app.use("/metrics", authenticate);

  registerHealth(app);
  registerCreateCustomer(app);
  registerListCustomers(app);
  registerGetCustomer(app);
  registerSetBudget(app);
  registerCustomerKeys(app);
  registerCustomerLedger(app);
  registerRunTypes(app);
  registerCreateRun(app);
  registerListRuns(app);
  registerGetRun(app);
  registerRunCommands(app);
  registerDlq(app);
  registerPricing(app);
  registerCosts(app);
  registerPutSecret(app);
  registerListSecrets(app);
  registerDeleteSecret(app);
  registerAlerts(app);
  registerRunMetrics(app);
  registerCostMetrics(app);
  registerQueueMetrics(app);
  registerWorkerMetrics(app);
  registerApiMetrics(app);
  registerReliabilityMetrics(app);
  registerCostDrivers(app);
  registerOpenMetrics(app);
  registerPools(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", { type: "http", scheme: "bearer" });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "Runplane API", version: "1.0.0", description: "Runs, costs and operations for multi-step jobs on Cloudflare Workers." },
    // Where `npm start` serves it (scripts/start.mjs, PORT defaults to 8787); a deployment has its own.
    servers: [{ url: "http://127.0.0.1:8787", description: "Local: npm start (wrangler dev --local)" }],
  });
  // /docs/ (Swagger UI) and /dashboard/ are the Worker's static assets (wrangler.toml [assets]);
  // /docs without its slash is answered here too, for a deployment that routes it to the Worker.
  app.get("/docs", (c) => c.redirect("/docs/", 308));
  app.get("/dashboard", (c) => c.redirect("/dashboard/", 308));

  app.notFound((c) => c.json(errorBody(c, new ApiError("not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`)), 404));

  app.onError((err, c) => {
    let apiError: ApiError;
    if (err instanceof ApiError) apiError = err;
    else if (err instanceof DomainError) apiError = ApiError.fromDomain(err);
    else if (err instanceof HTTPException && err.status === 400 && /JSON/i.test(err.message)) {
      apiError = new ApiError("invalid_json", "request body is not valid JSON", [{ field: "(body)", message: err.message }]);
    } else if (err instanceof HTTPException && err.status === 415) {
      // The body validator's media-type gate: a body sent without a JSON Content-Type.
      apiError = new ApiError("unsupported_media_type", "a request body needs `Content-Type: application/json`");
    } else if (err instanceof HTTPException && err.status < 500) {
      apiError = new ApiError(err.status === 413 ? "payload_too_large" : err.status === 401 ? "unauthorized" : "validation_failed", err.message || "bad request");
    } else {
      log("api.unhandled_error", { requestId: c.get("requestId"), path: c.req.path, error: errorMessage(err) }, "error");
      apiError = new ApiError("internal_error", "internal error; quote the request id when reporting it");
    }
    c.header("x-request-id", c.get("requestId") ?? "unknown");
    for (const [name, value] of Object.entries(apiError.headers)) c.header(name, value);
    return c.json(errorBody(c, apiError), apiError.status);
  });

  return app;
}
