import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Services } from "../services/services";

export type Principal = { kind: "admin" } | { kind: "customer"; customerId: string; keyId: string };

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    principal: Principal;
    services: Services;
  };
}

export type App = OpenAPIHono<AppEnv>;
