import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "./context";
import { ApiError } from "./errors";

/** Every /v1 route needs `Authorization: Bearer <key>`: the admin key or a customer's `rp_` key. */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("authorization");
  if (!header) throw new ApiError("unauthorized", "missing Authorization header: send `Authorization: Bearer <api key>`");
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw new ApiError("unauthorized", "Authorization header must be `Bearer <api key>`");
  const principal = await c.get("services").auth.authenticate(match[1]!);
  if (!principal) throw new ApiError("unauthorized", "unknown or revoked API key");
  c.set("principal", principal);
  await next();
};

export function requireAdmin(c: Context<AppEnv>): void {
  if (c.get("principal").kind !== "admin") throw new ApiError("forbidden", "this route needs the admin key");
}

/**
 * Route middleware for admin-only routes (`middleware: adminOnly` in `createRoute`): it runs
 * before the route's validators, so a customer key gets 403 whatever it sends, never a 400.
 */
export const adminOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  requireAdmin(c);
  await next();
};

/** The admin, or the customer itself; another customer's id is a 404, never a 403. */
export function requireCustomerAccess(c: Context<AppEnv>, customerId: string): void {
  const principal = c.get("principal");
  if (principal.kind === "customer" && principal.customerId !== customerId) {
    throw new ApiError("not_found", `customer "${customerId}" not found`);
  }
}
