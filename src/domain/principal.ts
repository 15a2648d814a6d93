import type { RateLimitConfig } from "./token-bucket";

/**
 * Who is calling: the admin key, or a customer's key. A customer's `rateLimit` is its plan's own
 * (null: the deployment's default). Made by the auth service from a key it found, never parsed
 * from a request, so a plain type.
 */
export type Principal = { kind: "admin" } | { kind: "customer"; customerId: string; keyId: string; rateLimit: RateLimitConfig | null };

export type CustomerPrincipal = Extract<Principal, { kind: "customer" }>;
