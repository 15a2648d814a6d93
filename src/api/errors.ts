/**
 * One error envelope with a closed set of codes, each bound to its HTTP status:
 * {"error": {"code", "message", "requestId", "details"}}. The domain's codes (DomainError) and
 * the transport's own (malformed JSON, a missing key, …) share it; this is the one place that
 * knows a code's status.
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import { CodedError, type DomainError, type DomainErrorCode } from "../domain/errors";

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
} as const satisfies Record<DomainErrorCode, number> & Record<string, number>;
export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error only the HTTP layer raises (or a domain one, for code that has a request at hand). */
export class ApiError extends CodedError<ErrorCode> {
  get status() {
    return ERROR_STATUS[this.code];
  }

  /** A domain error as it is answered: the same code, message, details and headers. */
  static fromDomain(err: DomainError): ApiError {
    return new ApiError(err.code, err.message, err.details, err.headers);
  }
}

export const ErrorEnvelopeSchema = z.object({
  error: z.object({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    requestId: z.string(),
    details: z.array(z.object({ field: z.string(), message: z.string() })),
  }),
}).openapi("ErrorEnvelope");

export function errorBody(c: Context, err: ApiError) {
  return {
    error: { code: err.code, message: err.message, requestId: (c.get("requestId") as string | undefined) ?? "unknown", details: err.details },
  };
}
