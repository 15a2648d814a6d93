import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "./context";
import { AuthService } from "../services/auth-service";
import { retryAfterSeconds } from "../domain/token-bucket";
import { ApiError } from "./errors";

/** The token of `Authorization: Bearer <token>`, or null. */
export function bearerToken(header: string | undefined): string | null {
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match ? match[1]! : null;
}

/**
 * Every /v1 route needs `Authorization: Bearer <key>`: the admin key or a customer's `rp_` key.
 * A customer key then passes its customer's rate limit (429 with `Retry-After` past it); the
 * same call to the customer's limiter refuses a key revoked in another isolate.
 */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("authorization");
  if (!header) throw new ApiError("unauthorized", "missing Authorization header: send `Authorization: Bearer <api key>`");
  const token = bearerToken(header);
  if (!token) throw new ApiError("unauthorized", "Authorization header must be `Bearer <api key>`");
  const services = c.get("services");
  const principal = await services.auth.authenticate(token);
  if (!principal) throw new ApiError("unauthorized", "unknown or revoked API key");
  if (principal.kind === "customer") {
    const admission = await services.rateLimit.admit(principal);
    if (admission.outcome === "revoked") {
      await AuthService.forgetToken(token);
      throw new ApiError("unauthorized", "unknown or revoked API key");
    }
    if (admission.outcome === "limited") {
      const seconds = retryAfterSeconds(admission.retryAfterMs);
      const { requestsPerSecond, burst } = admission.limit;
      const limit = `${requestsPerSecond} requests/s sustained, burst ${burst}`;
      throw new ApiError(
        "rate_limited",
        `rate limit of customer "${principal.customerId}" exceeded (${limit}, ${admission.source === "plan" ? "its plan's" : "the default"}); retry after ${seconds} s`,
        [{ field: "rateLimit", message: `${limit}; retry after ${seconds} s` }],
        { "retry-after": String(seconds) },
      );
    }
  }
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
