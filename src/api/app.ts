import { OpenAPIHono } from "@hono/zod-openapi";
import { swaggerUI } from "@hono/swagger-ui";
import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import { buildServices } from "../services/services";
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
import { registerPools } from "./routes/pools";

export const MAX_BODY_BYTES = 1024 * 1024;

export function createApp() {
  const app = new OpenAPIHono<AppEnv>({
    // Every schema failure becomes a 400 that names the fields, rooted at where they came from.
    defaultHook: (result) => {
      if (!result.success) throw validationFailed(result.error, result.target === "json" ? undefined : result.target);
    },
  });

  app.use("*", async (c, next) => {
    const incoming = c.req.header("x-request-id");
    c.set("requestId", incoming && /^[\w.-]{1,100}$/.test(incoming) ? incoming : newId("req"));
    c.set("services", buildServices(c.env, (work) => c.executionCtx.waitUntil(work)));
    await next();
    c.header("x-request-id", c.get("requestId"));
  });

  app.use("/v1/*", async (c, next) => {
    const problem = c.get("services").auth.misconfiguration();
    if (problem) throw new ApiError("misconfigured", problem);
    await next();
  });
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
  registerPools(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", { type: "http", scheme: "bearer" });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "Runplane API", version: "1.0.0", description: "Runs, costs and operations for multi-step jobs on Cloudflare Workers." },
  });
  app.get("/docs", swaggerUI({ url: "/openapi.json" }));

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
