/** Small helpers so each route file states only its own schemas. */
import { z } from "@hono/zod-openapi";
import { ErrorEnvelopeSchema } from "./errors";

export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

/** An error response: the one envelope, with what this status means here. */
export const errorResponse = (description: string) => json(ErrorEnvelopeSchema, description);

const RETRY_AFTER = {
  "Retry-After": { schema: { type: "integer" as const, minimum: 0 }, description: "Seconds to wait before trying again" },
};

/**
 * Each status an operation can answer with the error envelope. Every /v1 operation can answer
 * 401 (no or a bad key), 429 (a customer key past its rate limit: checked before anything
 * else, admin-only routes included) and 503 (a deployment that refuses to serve); every POST,
 * PUT and DELETE also 413, and every POST and PUT 415 (both checked before the body is read),
 * whatever the operation's own schemas say.
 * test/integration/openapi-statuses.test.ts holds each route to that.
 */
export const ERRORS = {
  400: errorResponse("Malformed JSON, or invalid fields, path or query parameters (`validation_failed`): `details` names each one"),
  401: errorResponse("Missing, malformed, unknown or revoked API key (`unauthorized`)"),
  402: errorResponse("The customer's monthly budget is spent, or starting the run (its creation and its first step's worst case) would not fit in what is left (`budget_exhausted`)"),
  403: errorResponse("The key may not do this (`forbidden`): an admin-only route, or another customer named"),
  404: errorResponse("Not found, or another customer's (`not_found`)"),
  409: errorResponse("Conflicts with the resource's current state (`conflict`, `idempotency_key_reused`)"),
  413: errorResponse("Request body larger than 1 MiB (`payload_too_large`), refused before it is read"),
  415: errorResponse("A request body whose Content-Type is not application/json (`unsupported_media_type`)"),
  422: errorResponse("Well-formed, but names something that does not exist or cannot be used: a customer, run type, pool, secret or unpriced model (`unprocessable`)"),
  429: {
    ...errorResponse("The customer's request rate limit, or its cap on runs in flight, is reached (`rate_limited`); `Retry-After` says when to try again"),
    headers: RETRY_AFTER,
  },
  503: {
    ...errorResponse(
      "The deployment refuses to serve (`misconfigured`, e.g. the development admin key in production), or a part of the platform did not answer (`not_ready`: nothing was changed; retry after `Retry-After`)",
    ),
    headers: RETRY_AFTER,
  },
} as const;

export type DocumentedStatus = keyof typeof ERRORS;

/** The error responses for these statuses, as a route's `responses` spread them. */
export function errors<S extends DocumentedStatus>(...statuses: S[]): Pick<typeof ERRORS, S> {
  return Object.fromEntries(statuses.map((status) => [status, ERRORS[status]])) as Pick<typeof ERRORS, S>;
}

export const bearer = [{ bearerAuth: [] }];
/** Routes that need no key say so (`security: []`), rather than saying nothing. */
export const publicRoute: { [name: string]: string[] }[] = [];

/** `?limit=` and `?cursor=` on every list. */
export const PageQuery = {
  limit: z.coerce.number().int().min(1).max(500).default(50).openapi({ description: "Page size (max 500)" }),
  cursor: z.string().max(500).optional().openapi({ description: "nextCursor from the previous page" }),
};

export const ClientName = (what: string) =>
  z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, `${what} must match ^[a-z0-9][a-z0-9_-]{0,63}$`);
