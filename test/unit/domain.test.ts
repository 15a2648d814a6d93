import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { resolveReferences, UnresolvedReferenceError } from "../../src/domain/input-references";
import { divideHalfEven, nanoJson, nanoToUsdString, usdToNano } from "../../src/domain/money";
import { retryDelayMs } from "../../src/domain/retry-policy";
import { stepListIssues } from "../../src/domain/step-spec";
import { classifyHttpStatus, parseRetryAfter } from "../../src/steps/http";

describe("retry backoff", () => {
  const policy = { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 };
  it("grows exponentially, caps at maxDelayMs, and jitters within [half, full]", () => {
    expect(retryDelayMs(policy, 1, () => 0)).toBe(50);
    expect(retryDelayMs(policy, 1, () => 1)).toBe(100);
    expect(retryDelayMs(policy, 3, () => 1)).toBe(400);
    expect(retryDelayMs(policy, 10, () => 1)).toBe(1000);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempt, r) => {
        const d = retryDelayMs(policy, attempt, () => r);
        const capped = Math.min(1000, 100 * 2 ** (attempt - 1));
        return d >= capped / 2 - 1 && d <= capped;
      }),
    );
  });
  it("takes Retry-After when it is longer", () => {
    expect(retryDelayMs(policy, 1, () => 0, 7000)).toBe(7000);
    expect(retryDelayMs(policy, 1, () => 0, 10)).toBe(50);
  });
});

describe("input references", () => {
  const scope = { input: { user: { id: 7 }, name: "Ada" }, steps: { fetch: { output: { items: ["x", "y"] } } } };
  it("replaces whole-string references by the value and interpolates embedded ones", () => {
    expect(resolveReferences({ id: "{{input.user.id}}", item: "{{steps.fetch.output.items.1}}", text: "hi {{input.name}}!", n: 3 }, scope)).toEqual({
      id: 7,
      item: "y",
      text: "hi Ada!",
      n: 3,
    });
  });
  it("refuses a reference that does not resolve", () => {
    expect(() => resolveReferences("{{steps.missing.output}}", scope)).toThrow(UnresolvedReferenceError);
  });
  it("flags duplicate names and references to later steps", () => {
    expect(stepListIssues([{ name: "a", config: { x: "{{steps.b.output}}" } }, { name: "b", config: {} }, { name: "b", config: {} }])).toHaveLength(2);
  });
});

describe("money", () => {
  it("converts decimal USD to nano-USD exactly", () => {
    expect(usdToNano("0.1")).toBe(100_000_000n);
    expect(usdToNano(0.1)).toBe(100_000_000n);
    expect(usdToNano("12.000000001")).toBe(12_000_000_001n);
    expect(usdToNano(1e-9)).toBe(1n);
    expect(() => usdToNano("1.0000000001")).toThrow();
    expect(() => usdToNano("-1")).toThrow();
    expect(() => usdToNano("abc")).toThrow();
  });
  it("rounds half to even and formats for display", () => {
    expect(divideHalfEven(5n, 2n)).toBe(2n);
    expect(divideHalfEven(7n, 2n)).toBe(4n);
    expect(nanoToUsdString(4_512_300n)).toBe("0.004512");
    expect(nanoToUsdString(12_000_000_000n)).toBe("12.000000");
    expect(nanoJson(2n ** 53n + 1n)).toBe("9007199254740993");
    expect(nanoJson(5n)).toBe(5);
  });
});

describe("http outcome classification", () => {
  it("maps statuses to transient or permanent and reads Retry-After", () => {
    expect(classifyHttpStatus(200, null)).toBeNull();
    expect(classifyHttpStatus(500, null)).toMatchObject({ ok: false, failure: { type: "transient" } });
    expect(classifyHttpStatus(404, null)).toMatchObject({ ok: false, failure: { type: "permanent" } });
    expect(classifyHttpStatus(429, "3")).toMatchObject({ ok: false, failure: { type: "transient", retryAfterMs: 3000 } });
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
  });
});
