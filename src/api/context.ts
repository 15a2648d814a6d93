import type { OpenAPIHono } from "@hono/zod-openapi";
import type { RateLimitConfig } from "../domain/token-bucket";
import type { Services } from "../services/services";

/** Who is calling. A customer's `rateLimit` is its plan's own (null: the deployment's default). */
export type Principal = { kind: "admin" } | { kind: "customer"; customerId: string; keyId: string; rateLimit: RateLimitConfig | null };

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    principal: Principal;
    services: Services;
  };
}

export type App = OpenAPIHono<AppEnv>;
