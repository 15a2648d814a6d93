/**
 * Errors the domain and the services raise, free of any transport: a code from a closed set,
 * a message, the fields at fault and, where it matters, headers to pass on (`Retry-After`).
 * Only src/api/errors.ts knows which HTTP status each code is.
 */
import type { z } from "zod";

export const DOMAIN_ERROR_CODES = [
  "validation_failed",
  "budget_exhausted",
  "forbidden",
  "not_found",
  "conflict",
  "idempotency_key_reused",
  "unprocessable",
  "rate_limited",
  "not_ready",
  "misconfigured",
] as const;
export type DomainErrorCode = (typeof DOMAIN_ERROR_CODES)[number];

export interface ErrorDetail {
  field: string;
  message: string;
}

/** An error with a code from a closed set `C`, the fields at fault and the headers to answer it with. */
export abstract class CodedError<C extends string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    readonly details: ErrorDetail[] = [],
    /** Headers that go with the error wherever it is answered, e.g. `retry-after` on rate_limited or not_ready. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** What the domain and the services raise. */
export class DomainError extends CodedError<DomainErrorCode> {}

/** A field's path as clients see it: "steps.0.config.url"; the empty path is "(root)". */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join(".") || "(root)";
}

/** Zod issues as `details`, one a field. `prefix` roots the paths (body, query, steps). */
export function zodIssueDetails(error: z.ZodError, prefix?: string): ErrorDetail[] {
  return error.issues.map((issue) => ({
    field: fieldPath(prefix ? [prefix, ...issue.path] : issue.path),
    message: issue.message,
  }));
}

/** The first three details in one line: "field: message; field: message". */
export function summarizeDetails(details: readonly ErrorDetail[]): string {
  return details
    .slice(0, 3)
    .map((d) => `${d.field}: ${d.message}`)
    .join("; ");
}

/** A zod failure as a validation_failed that names every bad field. */
export function validationFailed(error: z.ZodError, prefix?: string): DomainError {
  const details = zodIssueDetails(error, prefix);
  return new DomainError("validation_failed", `Invalid request: ${summarizeDetails(details)}${details.length > 3 ? "; …" : ""}`, details);
}

/**
 * `input` parsed by `schema`, or a validation_failed naming every bad field. For RPC boundaries:
 * a ZodError crosses a Durable Object's RPC as the bare word "ZodError", this keeps its message.
 */
export function parseOrRefuse<S extends z.ZodType>(schema: S, input: unknown, prefix?: string): z.output<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw validationFailed(parsed.error, prefix);
  return parsed.data;
}
