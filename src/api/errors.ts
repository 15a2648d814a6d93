/**
 * One error envelope with a closed set of codes, each bound to its HTTP status:
 * {"error": {"code", "message", "requestId", "details"}}.
 */
import type { Context } from "hono";
import { z } from "zod";

export const ERROR_STATUS = {
  invalid_json: 400,
  validation_failed: 400,
  unauthorized: 401,
  budget_exhausted: 402,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  idempotency_key_reused: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  rate_limited: 429,
  internal_error: 500,
  not_ready: 503,
  misconfigured: 503,
} as const;
export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorDetail {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetail[] = [],
    /** Response headers that go with the error, e.g. `Retry-After` on a 429 or 503. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
  get status() {
    return ERROR_STATUS[this.code];
  }
}

export const ErrorEnvelopeSchema = z.object({
  error: z.object({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    requestId: z.string(),
    details: z.array(z.object({ field: z.string(), message: z.string() })),
  }),
});

export function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join(".") || "(root)";
}

/** A zod failure as a 400 that names every bad field. `prefix` roots the paths (body, query). */
export function validationError(error: z.ZodError, prefix?: string): ApiError {
  const details = error.issues.map((issue) => ({
    field: fieldPath(prefix ? [prefix, ...issue.path] : issue.path),
    message: issue.message,
  }));
  const summary = details.slice(0, 3).map((d) => `${d.field}: ${d.message}`).join("; ");
  return new ApiError("validation_failed", `Invalid request: ${summary}${details.length > 3 ? "; …" : ""}`, details);
}

export function errorBody(c: Context, err: ApiError) {
  return {
    error: { code: err.code, message: err.message, requestId: (c.get("requestId") as string | undefined) ?? "unknown", details: err.details },
  };
}
