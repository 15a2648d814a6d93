import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ApiError, ERROR_STATUS } from "../../src/api/errors";
import { DOMAIN_ERROR_CODES, DomainError, fieldPath, summarizeDetails, validationFailed, zodIssueDetails } from "../../src/domain/errors";

const Body = z.object({ name: z.string(), steps: z.array(z.object({ type: z.string() })), n: z.number().int() }).strict();

function failure(value: unknown): z.ZodError {
  const parsed = Body.safeParse(value);
  if (parsed.success) throw new Error("expected a failure");
  return parsed.error;
}

describe("zod issues as details", () => {
  it("names each field by its dotted path, (root) for the value itself", () => {
    expect(zodIssueDetails(failure({ name: 1, steps: [{ type: 2 }], n: 1 }))).toEqual([
      { field: "name", message: expect.any(String) },
      { field: "steps.0.type", message: expect.any(String) },
    ]);
    expect(zodIssueDetails(failure("x"))).toEqual([{ field: "(root)", message: expect.any(String) }]);
    expect(fieldPath([])).toBe("(root)");
    expect(fieldPath(["steps", 0, "config"])).toBe("steps.0.config");
  });

  it("roots the paths at a prefix (query, param, steps)", () => {
    expect(zodIssueDetails(failure({ name: "a", steps: [], n: 1.5 }), "query")).toEqual([{ field: "query.n", message: expect.any(String) }]);
    expect(zodIssueDetails(failure("x"), "query")).toEqual([{ field: "query", message: expect.any(String) }]);
  });

  it("keeps each issue's own message", () => {
    const error = failure({ name: "a", steps: [], n: 1, extra: true });
    expect(zodIssueDetails(error).map((d) => d.message)).toEqual(error.issues.map((i) => i.message));
  });

  it("validationFailed: a validation_failed whose message sums up the first three fields", () => {
    const few = validationFailed(failure({ name: 1, steps: [], n: 1 }), "body");
    expect(few).toBeInstanceOf(DomainError);
    expect(few.code).toBe("validation_failed");
    expect(few.message).toBe(`Invalid request: body.name: ${few.details[0]!.message}`);
    const many = validationFailed(failure({}));
    expect(many.details.map((d) => d.field)).toEqual(["name", "steps", "n"]);
    expect(validationFailed(failure({ extra: 1 })).message.endsWith("; …")).toBe(true);
    expect(summarizeDetails([1, 2, 3, 4].map((i) => ({ field: `f${i}`, message: `m${i}` })))).toBe("f1: m1; f2: m2; f3: m3");
  });
});

describe("domain errors at the HTTP edge", () => {
  it("every domain code has its status, and the edge keeps message, details and headers", () => {
    for (const code of DOMAIN_ERROR_CODES) expect(ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
    const err = ApiError.fromDomain(new DomainError("rate_limited", "slow down", [{ field: "rateLimit", message: "x" }], { "retry-after": "5" }));
    expect({ code: err.code, status: err.status, message: err.message, details: err.details, headers: err.headers }).toEqual({
      code: "rate_limited",
      status: 429,
      message: "slow down",
      details: [{ field: "rateLimit", message: "x" }],
      headers: { "retry-after": "5" },
    });
  });
});
