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

const errorResponse = (description: string) => json(ErrorEnvelopeSchema, description);

export const ERRORS = {
  400: errorResponse("Malformed JSON or invalid fields; `details` names each one"),
  401: errorResponse("Missing or unknown API key"),
  403: errorResponse("The key may not do this"),
  404: errorResponse("Not found (or another customer's)"),
  409: errorResponse("Conflicts with the resource's state"),
  413: errorResponse("Body larger than 1 MiB"),
  422: errorResponse("Well-formed but refers to something that does not exist"),
  429: errorResponse("The customer's request rate limit or its cap on runs in flight is reached; `Retry-After` says when to try again"),
  503: errorResponse("A part of the platform did not answer; nothing was changed, retry after `Retry-After`"),
} as const;

export const bearer = [{ bearerAuth: [] }];

/** `?limit=` and `?cursor=` on every list. */
export const PageQuery = {
  limit: z.coerce.number().int().min(1).max(500).default(50).openapi({ description: "Page size (max 500)" }),
  cursor: z.string().max(500).optional().openapi({ description: "nextCursor from the previous page" }),
};

export const ClientName = (what: string) =>
  z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, `${what} must match ^[a-z0-9][a-z0-9_-]{0,63}$`);
