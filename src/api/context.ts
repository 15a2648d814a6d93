import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Principal } from "../domain/principal";
import type { Services } from "../services/services";

export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    principal: Principal;
    services: Services;
  };
}

export type App = OpenAPIHono<AppEnv>;
