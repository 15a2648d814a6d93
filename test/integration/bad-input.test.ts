/**
 * Bad input, every kind the contract names: each gets its documented status and error code in
 * the envelope {"error": {code, message, requestId, details}} with an `x-request-id` header,
 * and none of them writes anything (D1 row counts and, where the run id is predictable, the
 * run object itself). No response in this file may be a 500 or carry a stack trace.
 */
import { exports } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../../src/api/app";
import { MAX_JSON_DEPTH } from "../../src/api/json-limits";
import { runIdForIdempotencyKey } from "../../src/lib/ids";
import { ADMIN, api, d1Count, newCustomer, synthetic } from "../helpers";

type Res = Awaited<ReturnType<typeof api>>;

const TABLES = ["runs", "customers", "api_keys", "run_types"] as const;
const STACK_TRACE = /\n\s+at\s|\bat\s+\S+\s+\(?[^\s()]+:\d+:\d+\)?|\.ts:\d+:\d+|\.js:\d+:\d+/;

/** Every response this file sees, for the suite-wide "never a 500, never a stack" check. */
const seen: { what: string; status: number; text: string }[] = [];

function record(what: string, status: number, body: unknown) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  seen.push({ what, status, text });
  // Fail at the call site too, so the failing case is named.
  expect(status, `${what} answered ${status}: ${text.slice(0, 500)}`).toBeLessThan(500);
  expect(text, `${what} leaked a stack trace`).not.toMatch(STACK_TRACE);
}

/** `api` from the helpers, plus the suite-wide checks. */
async function call(method: string, path: string, options: Parameters<typeof api>[2] = {}): Promise<Res> {
  const res = await api(method, path, options);
  record(`${method} ${path}`, res.status, res.body);
  return res;
}

/** A request the helper cannot express (no content type, streamed body, odd headers). */
async function rawCall(method: string, path: string, init: RequestInit): Promise<Res> {
  const response = await exports.default.fetch(new Request(`https://runplane.test${path}`, { method, ...init }));
  const text = await response.text();
  let body: any;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { text };
  }
  record(`${method} ${path} (raw)`, response.status, text);
  return { status: response.status, headers: response.headers, body };
}

/** The documented envelope, status and code; `fields` must each be named in `details`. */
function expectError(res: Res, status: number, code: string, fields: string[] = []) {
  const context = JSON.stringify(res.body);
  expect(res.status, context).toBe(status);
  const requestId = res.headers.get("x-request-id");
  expect(requestId, "x-request-id header").toBeTruthy();
  expect(Object.keys(res.body ?? {}), context).toEqual(["error"]);
  const error = res.body.error;
  expect(Object.keys(error).sort(), context).toEqual(["code", "details", "message", "requestId"]);
  expect(error.code, context).toBe(code);
  expect(typeof error.message).toBe("string");
  expect(error.message.length).toBeGreaterThan(0);
  expect(error.requestId).toBe(requestId);
  expect(Array.isArray(error.details), context).toBe(true);
  for (const detail of error.details) {
    expect(typeof detail.field).toBe("string");
    expect(typeof detail.message).toBe("string");
  }
  const named = error.details.map((d: { field: string }) => d.field);
  for (const field of fields) expect(named, `details should name ${field}: ${context}`).toContain(field);
  return error as { code: string; message: string; requestId: string; details: { field: string; message: string }[] };
}

async function counts() {
  const out: Record<string, number> = {};
  for (const table of TABLES) out[table] = await d1Count(table);
  return out;
}

/** Runs `fn` and checks that no row appeared in (or vanished from) runs, customers, api_keys, run_types. */
async function writesNothing<T>(fn: () => Promise<T>): Promise<T> {
  const before = await counts();
  const result = await fn();
  expect(await counts()).toEqual(before);
  return result;
}

/** The run object an idempotency key would name has never been created. */
async function expectNoRun(customerId: string, idempotencyKey: string) {
  const runId = await runIdForIdempotencyKey(customerId, idempotencyKey);
  expect(await d1Count("runs", "id = ?", runId)).toBe(0);
  expectError(await call("GET", `/v1/runs/${runId}`), 404, "not_found");
}

let idem = 0;
const freshKey = () => `bad-input-${++idem}-${Math.random().toString(36).slice(2, 8)}`;

const goodSteps = () => [synthetic("a", { durationMs: 1 })];

let alice: { id: string; key: string };
let bob: { id: string; key: string };

beforeAll(async () => {
  alice = await newCustomer("alice");
  bob = await newCustomer("bob");
});

afterAll(() => {
  // The suite-wide rule, over every response seen here.
  expect(seen.length).toBeGreaterThan(0);
  const bad = seen.filter((r) => r.status >= 500 || STACK_TRACE.test(r.text));
  expect(bad.map((r) => `${r.what} → ${r.status}`)).toEqual([]);
});

describe("control: a good request through the same helpers is accepted", () => {
  it("creates a run with a customer key (so the rejections below are about the input)", async () => {
    const key = freshKey();
    const before = await d1Count("runs");
    const res = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "proj", steps: goodSteps(), idempotencyKey: key } });
    expect(res.status).toBe(202);
    expect(res.body.run.id).toBe(await runIdForIdempotencyKey(alice.id, key));
    expect(await d1Count("runs")).toBe(before + 1);
    // expectNoRun is honest: it fails for a run that does exist.
    const exists = await call("GET", `/v1/runs/${res.body.run.id}`);
    expect(exists.status).toBe(200);
  });
});

describe("malformed JSON", () => {
  const bodies = ["{", "{\"projectId\": \"p\",}", "not json", "{'projectId': 'p'}", "", "[1, 2", "{\"a\":1}garbage"];

  it("POST /v1/runs answers 400 invalid_json naming (body), and writes nothing", async () => {
    await writesNothing(async () => {
      for (const raw of bodies) expectError(await call("POST", "/v1/runs", { key: alice.key, raw }), 400, "invalid_json", ["(body)"]);
    });
  });

  it("POST /v1/customers answers 400 invalid_json, and writes nothing", async () => {
    await writesNothing(async () => {
      for (const raw of bodies) expectError(await call("POST", "/v1/customers", { raw }), 400, "invalid_json", ["(body)"]);
    });
  });

  it("PUT /v1/run-types/:name and PUT /v1/customers/:id/budget answer 400 invalid_json", async () => {
    await writesNothing(async () => {
      expectError(await call("PUT", "/v1/run-types/never-made", { raw: "{steps: [" }), 400, "invalid_json");
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { raw: "{\"monthlyLimitUsd\": }" }), 400, "invalid_json");
    });
    expectError(await call("GET", "/v1/run-types/never-made"), 404, "not_found");
  });

  it("JSON that is not an object (null, array, string, number) is a 400 validation_failed on the root", async () => {
    await writesNothing(async () => {
      for (const raw of ["null", "[]", "\"runs\"", "42", "true"]) {
        expectError(await call("POST", "/v1/runs", { key: alice.key, raw }), 400, "validation_failed", ["(root)"]);
        expectError(await call("POST", "/v1/customers", { raw }), 400, "validation_failed", ["(root)"]);
      }
    });
  });
});

describe("content type", () => {
  it("a non-JSON content type is 415 unsupported_media_type", async () => {
    await writesNothing(async () => {
      const body = JSON.stringify({ projectId: "p", steps: goodSteps() });
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
        expectError(await call("POST", "/v1/runs", { key: alice.key, raw: body, headers: { "content-type": type } }), 415, "unsupported_media_type");
      }
    });
  });

  it("a JSON body sent with no content type at all is 415 unsupported_media_type as well, not a 400 validation_failed", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      const body = new TextEncoder().encode(JSON.stringify({ projectId: "p", steps: goodSteps(), idempotencyKey: key }));
      const res = await rawCall("POST", "/v1/runs", { headers: { authorization: `Bearer ${alice.key}` }, body });
      expectError(res, 415, "unsupported_media_type");
    });
    await expectNoRun(alice.id, key);
  });
});

describe("wrong types name each bad field", () => {
  it("projectId a number, priority \"urgent\", steps not an array: one 400 naming all three", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      const err = expectError(
        await call("POST", "/v1/runs", { key: alice.key, body: { projectId: 42, priority: "urgent", steps: "a,b", idempotencyKey: key } }),
        400,
        "validation_failed",
        ["projectId", "priority", "steps"],
      );
      expect(err.details).toHaveLength(3);
    });
    await expectNoRun(alice.id, key);
  });

  it("each wrong type alone is a 400 naming that field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ projectId: 42, steps: goodSteps() }, "projectId"],
      [{ projectId: "p", priority: "urgent", steps: goodSteps() }, "priority"],
      [{ projectId: "p", steps: { a: synthetic("a") } }, "steps"],
      [{ projectId: "p", steps: [synthetic("a", { durationMs: "10" })] }, "steps.0.config.durationMs"],
      [{ projectId: "p", steps: [synthetic("a"), synthetic("b", { durationMs: -1 })] }, "steps.1.config.durationMs"],
      [{ projectId: "p", steps: [synthetic("a", { failRate: 2 })] }, "steps.0.config.failRate"],
      [{ projectId: "p", steps: [synthetic("a", { nope: true })] }, "steps.0.config"],
      [{ projectId: "p", steps: [{ name: "a", type: "synthetic", config: null }] }, "steps.0.config"],
      [{ projectId: "p", steps: [{ name: "a", type: "sleep", config: { durationMs: "1s" } }] }, "steps.0.config.durationMs"],
      [{ projectId: "p", steps: [{ name: "a", type: "http", config: { url: "not a url" } }] }, "steps.0.config.url"],
      [{ projectId: "p", steps: [{ name: "a", type: "http", config: { url: "ftp://example.com/x" } }] }, "steps.0.config.url"],
      [{ projectId: "p", steps: [synthetic("a", {}, { retry: { maxAttempts: 0, initialDelayMs: 1, maxDelayMs: 1, backoffFactor: 2 } })] }, "steps.0.retry.maxAttempts"],
      [{ projectId: "p", steps: [synthetic("a", {}, { retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 1, backoffFactor: 2 } })] }, "steps.0.retry.maxDelayMs"],
      [{ projectId: "p", steps: [synthetic("a", {}, { timeoutMs: 0 })] }, "steps.0.timeoutMs"],
      [{ projectId: "p", steps: [] }, "steps"],
      [{ projectId: "p", steps: Array.from({ length: 101 }, (_, i) => synthetic(`s${i}`)) }, "steps"],
      [{ projectId: "p", steps: goodSteps(), metadata: ["not", "a", "record"] }, "metadata"],
      [{ projectId: "p", steps: goodSteps(), idempotencyKey: "" }, "idempotencyKey"],
      [{ projectId: "p", steps: goodSteps(), idempotencyKey: 7 }, "idempotencyKey"],
      [{ projectId: "p", steps: goodSteps(), unknownField: 1 }, "(root)"],
    ];
    await writesNothing(async () => {
      for (const [body, field] of cases) {
        const err = expectError(await call("POST", "/v1/runs", { key: alice.key, body }), 400, "validation_failed", [field]);
        expect(err.details.length, JSON.stringify(err)).toBeGreaterThan(0);
      }
    });
  });

  it("a bad top-level field and a bad step config in one body: both are named", async () => {
    await writesNothing(async () => {
      expectError(
        await call("POST", "/v1/runs", { key: alice.key, body: { projectId: 42, steps: [synthetic("a", { durationMs: "10" })] } }),
        400,
        "validation_failed",
        ["projectId", "steps.0.config.durationMs"],
      );
    });
  });

  it("an unknown step type is a 400 naming steps.N.type", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      const err = expectError(
        await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: [synthetic("a"), { name: "b", type: "teleport", config: {} }], idempotencyKey: key } }),
        400,
        "validation_failed",
        ["steps.1.type"],
      );
      expect(err.details.map((d) => d.field)).not.toContain("steps.0.type");
    });
    await expectNoRun(alice.id, key);
  });

  it("customer create: wrong types and bad amounts name their fields", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/customers", { body: { id: 7, name: 8 } }), 400, "validation_failed", ["id", "name"]);
      expectError(await call("POST", "/v1/customers", { body: {} }), 400, "validation_failed", ["name"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "" } }), 400, "validation_failed", ["name"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", plan: { monthlyFeeUsd: "ten" } } }), 400, "validation_failed", ["plan.monthlyFeeUsd"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", plan: { pricePerRunUsd: "0.0000000001" } } }), 400, "validation_failed", ["plan.pricePerRunUsd"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", budget: { monthlyLimitUsd: -5 } } }), 400, "validation_failed", ["budget.monthlyLimitUsd"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", budget: { monthlyLimitUsd: "-5" } } }), 400, "validation_failed", ["budget.monthlyLimitUsd"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", budget: { monthlyLimitUsd: "1e20" } } }), 400, "validation_failed", ["budget.monthlyLimitUsd"]);
      expectError(await call("POST", "/v1/customers", { body: { name: "x", budget: { monthlyLimitUsd: 10, softThresholds: [1.5] } } }), 400, "validation_failed", ["budget.softThresholds.0"]);
    });
  });

  it("budget update: bad amounts are 400 and change nothing", async () => {
    const before = (await call("GET", `/v1/customers/${alice.id}`)).body.customer;
    await writesNothing(async () => {
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { body: { monthlyLimitUsd: "lots" } }), 400, "validation_failed", ["monthlyLimitUsd"]);
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { body: {} }), 400, "validation_failed", ["monthlyLimitUsd"]);
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { body: { monthlyLimitUsd: 5, softThresholds: [0] } }), 400, "validation_failed", ["softThresholds.0"]);
    });
    expect((await call("GET", `/v1/customers/${alice.id}`)).body.customer.budget).toEqual(before.budget);
  });

  it("run type definitions: wrong types and unknown step types are 400, an unknown pool is 422; nothing stored", async () => {
    await writesNothing(async () => {
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: "x" } }), 400, "validation_failed", ["steps"]);
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: [{ name: "a", type: "teleport" }] } }), 400, "validation_failed", ["steps.0.type"]);
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: [synthetic("a", { durationMs: "1" })] } }), 400, "validation_failed", ["steps.0.config.durationMs"]);
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: goodSteps(), priority: "urgent", timeoutMs: -1 } }), 400, "validation_failed", ["priority", "timeoutMs"]);
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: goodSteps(), pool: "Big Pool" } }), 400, "validation_failed", ["pool"]);
      expectError(await call("PUT", "/v1/run-types/rt-bad", { body: { steps: goodSteps(), pool: "gpu" } }), 422, "unprocessable", ["pool"]);
      expectError(await call("PUT", "/v1/run-types/Bad%20Name", { body: { steps: goodSteps() } }), 400, "validation_failed", ["param.name"]);
    });
    expectError(await call("GET", "/v1/run-types/rt-bad"), 404, "not_found");
  });
});

describe("names must match ^[a-z0-9][a-z0-9_-]{0,63}$", () => {
  const badNames = ["Bad Name", "UPPER", "-leading-dash", "_leading", "has.dot", "a".repeat(65), "", "ünï", "a/b"];

  it("projectId, step names, pool and runType that break the pattern are 400 naming the field", async () => {
    await writesNothing(async () => {
      for (const name of badNames) {
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: name, steps: goodSteps() } }), 400, "validation_failed", ["projectId"]);
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: [synthetic(name)] } }), 400, "validation_failed", ["steps.0.name"]);
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: goodSteps(), pool: name } }), 400, "validation_failed", ["pool"]);
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", runType: name } }), 400, "validation_failed", ["runType"]);
      }
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: [synthetic("ok"), synthetic("NotOk")] } }), 400, "validation_failed", ["steps.1.name"]);
    });
  });

  it("the longest legal name (64 characters) is accepted: the 65-character rejection above is the pattern, not a typo", async () => {
    const res = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "a".repeat(64), steps: [synthetic("b".repeat(64))] } });
    expect(res.status).toBe(202);
  });

  it("customer ids that break the pattern are 400, in the body and in the path", async () => {
    await writesNothing(async () => {
      for (const name of badNames.filter((n) => n !== "" && n !== "a/b")) {
        expectError(await call("POST", "/v1/customers", { body: { id: name, name: "X" } }), 400, "validation_failed", ["id"]);
        expectError(await call("GET", `/v1/customers/${encodeURIComponent(name)}`), 400, "validation_failed", ["param.id"]);
      }
      expectError(await call("POST", "/v1/customers", { body: { id: "", name: "X" } }), 400, "validation_failed", ["id"]);
      expectError(await call("POST", "/v1/runs", { body: { projectId: "p", customerId: "Not Valid", steps: goodSteps() } }), 400, "validation_failed", ["customerId"]);
    });
  });
});

describe("runType, steps, pool and customer", () => {
  it("both runType and steps, or neither, is a 400", async () => {
    const put = await call("PUT", "/v1/run-types/bad-input-rt", { body: { steps: goodSteps() } });
    expect([200, 201]).toContain(put.status);
    const k1 = freshKey();
    const k2 = freshKey();
    await writesNothing(async () => {
      expectError(
        await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", runType: "bad-input-rt", steps: goodSteps(), idempotencyKey: k1 } }),
        400,
        "validation_failed",
        ["steps"],
      );
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", idempotencyKey: k2 } }), 400, "validation_failed", ["runType"]);
    });
    await expectNoRun(alice.id, k1);
    await expectNoRun(alice.id, k2);
    // The run type itself is fine: alone it is accepted.
    expect((await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", runType: "bad-input-rt" } })).status).toBe(202);
  });

  it("an unknown runType is 422 unprocessable naming runType", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", runType: "no-such-type", idempotencyKey: key } }), 422, "unprocessable", ["runType"]);
    });
    await expectNoRun(alice.id, key);
  });

  it("an unknown pool is 422 unprocessable naming pool", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: goodSteps(), pool: "gpu", idempotencyKey: key } }), 422, "unprocessable", ["pool"]);
      // Also when it would override a run type's pool.
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", runType: "bad-input-rt", pool: "gpu" } }), 422, "unprocessable", ["pool"]);
    });
    await expectNoRun(alice.id, key);
  });

  it("the admin key without customerId is 400 naming customerId", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { body: { projectId: "p", steps: goodSteps() } }), 400, "validation_failed", ["customerId"]);
    });
  });

  it("the admin key with an unknown customerId is 422 naming customerId", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      expectError(
        await call("POST", "/v1/runs", { body: { projectId: "p", customerId: "no-such-customer", steps: goodSteps(), idempotencyKey: key } }),
        422,
        "unprocessable",
        ["customerId"],
      );
    });
    await expectNoRun("no-such-customer", key);
  });

  it("a customer key giving another customer's id is 403 forbidden, for that customer and for itself nothing is made", async () => {
    const key = freshKey();
    await writesNothing(async () => {
      expectError(
        await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", customerId: bob.id, steps: goodSteps(), idempotencyKey: key } }),
        403,
        "forbidden",
        ["customerId"],
      );
    });
    await expectNoRun(bob.id, key);
    await expectNoRun(alice.id, key);
    // Its own id is allowed.
    expect((await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", customerId: alice.id, steps: goodSteps() } })).status).toBe(202);
  });
});

describe("step references", () => {
  it("a reference to a later, unknown or its own step is a 400 naming the step's config", async () => {
    const cases: [unknown[], string][] = [
      [[synthetic("first", { output: "{{steps.later.output}}" }), synthetic("later")], "steps.0.config"],
      [[synthetic("first"), synthetic("second", { output: { nested: ["x {{steps.ghost.output}} y"] } })], "steps.1.config"],
      [[synthetic("self", { output: "{{steps.self.output}}" })], "steps.0.config"],
    ];
    await writesNothing(async () => {
      for (const [steps, field] of cases) {
        const key = freshKey();
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps, idempotencyKey: key } }), 400, "validation_failed", [field]);
        await expectNoRun(alice.id, key);
      }
      expectError(
        await call("PUT", "/v1/run-types/rt-forward-ref", { body: { steps: [synthetic("a", { output: "{{steps.b.output}}" }), synthetic("b")] } }),
        400,
        "validation_failed",
        ["steps.0.config"],
      );
    });
  });

  it("two steps with one name is a 400 naming the second", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: [synthetic("a"), synthetic("a")] } }), 400, "validation_failed", ["steps.1.name"]);
    });
  });

  it("a reference to an earlier step is accepted (the check is about order)", async () => {
    const res = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: [synthetic("first"), synthetic("then", { output: "{{steps.first.output}}" })] } });
    expect(res.status).toBe(202);
  });
});

describe("body size", () => {
  const oversized = "x".repeat(MAX_BODY_BYTES + 1); // not JSON: a 413 proves nothing parsed it

  it("a body above 1 MiB is 413 payload_too_large before it is parsed, on every write route", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: alice.key, raw: oversized }), 413, "payload_too_large");
      expectError(await call("POST", "/v1/customers", { raw: oversized }), 413, "payload_too_large");
      expectError(await call("PUT", "/v1/run-types/too-big", { raw: oversized }), 413, "payload_too_large");
      // Valid JSON just over the limit, too.
      const json = JSON.stringify({ projectId: "p", steps: goodSteps(), input: "" });
      const padded = json.replace('"input":""', `"input":"${"y".repeat(MAX_BODY_BYTES + 1 - json.length)}"`);
      expect(padded.length).toBe(MAX_BODY_BYTES + 1);
      expectError(await call("POST", "/v1/runs", { key: alice.key, raw: padded }), 413, "payload_too_large");
    });
  });

  it("a declared Content-Length above 1 MiB and a streamed body without one are both 413", async () => {
    await writesNothing(async () => {
      const headers = { authorization: `Bearer ${alice.key}`, "content-type": "application/json" };
      const declared = await rawCall("POST", "/v1/runs", { headers: { ...headers, "content-length": String(oversized.length) }, body: oversized });
      expectError(declared, 413, "payload_too_large");
      const chunk = new TextEncoder().encode("z".repeat(64 * 1024));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent > MAX_BODY_BYTES + chunk.length) return controller.close();
          sent += chunk.length;
          controller.enqueue(chunk);
        },
      });
      expectError(await rawCall("POST", "/v1/runs", { headers, body: stream }), 413, "payload_too_large");
    });
  });

  it("exactly 1 MiB is not too large: it gets as far as the parser (invalid_json)", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: alice.key, raw: "x".repeat(MAX_BODY_BYTES) }), 400, "invalid_json");
    });
  });

  it("JSON nested too deeply to walk (input, metadata, step config) is a 400 naming the field, not a crash", async () => {
    const depth = 100_000;
    const deep = `${"[".repeat(depth)}${"]".repeat(depth)}`;
    const step = `{"name":"a","type":"synthetic"}`;
    for (const [field, raw] of [
      ["input", (key: string) => `{"projectId":"p","steps":[${step}],"idempotencyKey":"${key}","input":${deep}}`],
      ["metadata", (key: string) => `{"projectId":"p","steps":[${step}],"idempotencyKey":"${key}","metadata":{"x":${deep}}}`],
      ["steps.0.config", (key: string) => `{"projectId":"p","steps":[{"name":"a","type":"synthetic","config":{"output":${deep}}}],"idempotencyKey":"${key}"}`],
    ] as const) {
      const key = freshKey();
      expect(raw(key).length).toBeLessThan(MAX_BODY_BYTES);
      await writesNothing(async () => {
        expectError(await call("POST", "/v1/runs", { key: alice.key, raw: raw(key) }), 400, "validation_failed", [field]);
      });
      await expectNoRun(alice.id, key);
    }
    await writesNothing(async () => {
      const raw = `{"steps":[{"name":"a","type":"synthetic","config":{"output":${deep}}}]}`;
      expectError(await call("PUT", "/v1/run-types/too-deep", { raw }), 400, "validation_failed", ["steps.0.config"]);
    });
  });

  it(`the depth limit is a limit: ${MAX_JSON_DEPTH} levels are accepted, one more is not`, async () => {
    const nest = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
    const ok = await call("POST", "/v1/runs", { key: alice.key, raw: `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"input":${nest(MAX_JSON_DEPTH)}}` });
    expect(ok.status).toBe(202);
    await writesNothing(async () => {
      const raw = `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"input":${nest(MAX_JSON_DEPTH + 1)}}`;
      expectError(await call("POST", "/v1/runs", { key: alice.key, raw }), 400, "validation_failed", ["input"]);
    });
  });
});

describe("odd but well-formed values", () => {
  it("lone surrogates, NUL characters, extreme numbers and a ~900 KB input are taken or refused, never a 500", async () => {
    const bodies = [
      `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"input":"\\ud800 lone"}`,
      `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"metadata":{"nul\\u0000key":"v\\u0000"}}`,
      `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"input":{"big":1e308,"small":-1e-308,"negzero":-0}}`,
      `{"projectId":"p","steps":[{"name":"a","type":"synthetic","config":{"durationMs":1e400}}]}`,
      `{"projectId":"p","steps":[{"name":"a","type":"synthetic"}],"idempotencyKey":"\\ud83d"}`,
      JSON.stringify({ projectId: "p", steps: goodSteps(), input: "i".repeat(900 * 1024) }),
    ];
    for (const raw of bodies) {
      const res = await call("POST", "/v1/runs", { key: alice.key, raw });
      expect([202, 400], JSON.stringify(res.body).slice(0, 300)).toContain(res.status);
      if (res.status === 400) expectError(res, 400, "validation_failed");
    }
  });
});

describe("authentication", () => {
  const runBody = () => ({ projectId: "p", steps: goodSteps() });

  it("a missing Authorization header is 401 unauthorized, also on routes that would 404", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs", { key: null, body: runBody() }), 401, "unauthorized");
      expectError(await call("POST", "/v1/customers", { key: null, body: { name: "Nobody" } }), 401, "unauthorized");
      expectError(await call("GET", "/v1/runs", { key: null }), 401, "unauthorized");
      expectError(await call("GET", "/v1/runs/run_doesnotexist", { key: null }), 401, "unauthorized");
      expectError(await call("GET", "/v1/customers", { key: null }), 401, "unauthorized");
      expectError(await call("PUT", "/v1/run-types/anon", { key: null, body: { steps: goodSteps() } }), 401, "unauthorized");
    });
  });

  it("a wrong, malformed or non-Bearer key is 401 unauthorized", async () => {
    await writesNothing(async () => {
      for (const key of ["wrong", `${ADMIN}x`, ADMIN.slice(0, -1), "rp_notarealkeyatall0000000000000000000000000", `rp_${"a".repeat(300)}`, alice.key.slice(0, -1)]) {
        expectError(await call("POST", "/v1/runs", { key, body: runBody() }), 401, "unauthorized");
      }
      for (const authorization of [`Basic ${btoa("admin:pw")}`, "Bearer", "Bearer ", `Bearer ${ADMIN} extra`, ADMIN, `Token ${ADMIN}`]) {
        expectError(await call("POST", "/v1/runs", { key: null, body: runBody(), headers: { authorization } }), 401, "unauthorized");
      }
    });
  });

  it("a revoked key is 401 at once; revoking again or another customer's key is 404; other keys keep working", async () => {
    const carol = await newCustomer("carol");
    const made = await call("POST", `/v1/customers/${carol.id}/keys`);
    expect(made.status).toBe(201);
    const { apiKey, key } = made.body;
    // The new key works (and is now in the key cache).
    expect((await call("GET", `/v1/customers/${carol.id}`, { key: apiKey })).status).toBe(200);

    // Someone else's key id under this customer, and an unknown key id: 404, nothing revoked.
    await writesNothing(async () => {
      expectError(await call("DELETE", `/v1/customers/${alice.id}/keys/${key.id}`), 404, "not_found");
      expectError(await call("DELETE", `/v1/customers/${carol.id}/keys/key_doesnotexist`), 404, "not_found");
    });
    expect((await call("GET", `/v1/customers/${carol.id}`, { key: apiKey })).status).toBe(200);

    const revoked = await call("DELETE", `/v1/customers/${carol.id}/keys/${key.id}`);
    expect(revoked.status).toBe(204);
    await writesNothing(async () => {
      expectError(await call("GET", `/v1/customers/${carol.id}`, { key: apiKey }), 401, "unauthorized");
      expectError(await call("POST", "/v1/runs", { key: apiKey, body: runBody() }), 401, "unauthorized");
      expectError(await call("DELETE", `/v1/customers/${carol.id}/keys/${key.id}`), 404, "not_found");
    });
    // The customer's first key is untouched.
    expect((await call("GET", `/v1/customers/${carol.id}`, { key: carol.key })).status).toBe(200);
  });
});

describe("admin-only routes answer a customer key with 403", () => {
  it("POST /v1/customers, PUT /v1/run-types/x for another owner, GET /v1/customers and key and budget routes", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/customers", { key: alice.key, body: { id: "by-a-customer", name: "Nope" } }), 403, "forbidden");
      // A customer key writes only its own run types (test/integration/run-types.security.test.ts).
      expectError(await call("PUT", `/v1/run-types/x?owner=${bob.id}`, { key: alice.key, body: { steps: goodSteps() } }), 403, "forbidden", ["query.owner"]);
      expectError(await call("GET", "/v1/customers", { key: alice.key }), 403, "forbidden");
      expectError(await call("POST", `/v1/customers/${alice.id}/keys`, { key: alice.key }), 403, "forbidden");
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { key: alice.key, body: { monthlyLimitUsd: "1000" } }), 403, "forbidden");
      expectError(await call("DELETE", `/v1/customers/${alice.id}/keys/key_whatever`, { key: alice.key }), 403, "forbidden");
    });
    expectError(await call("GET", "/v1/customers/by-a-customer"), 404, "not_found");
    expectError(await call("GET", "/v1/run-types/x"), 404, "not_found");
  });

  it("also when the customer key's request is malformed: 403 comes before validation", async () => {
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/customers", { key: alice.key, raw: "{" }), 403, "forbidden");
      expectError(await call("POST", "/v1/customers", { key: alice.key, body: { id: "Bad Name" } }), 403, "forbidden");
      expectError(await call("PUT", `/v1/run-types/Bad%20Name?owner=${bob.id}`, { key: alice.key, body: { steps: "x" } }), 403, "forbidden");
      expectError(await call("GET", "/v1/customers?limit=0", { key: alice.key }), 403, "forbidden");
      expectError(await call("PUT", `/v1/customers/${alice.id}/budget`, { key: alice.key, body: {} }), 403, "forbidden");
    });
  });
});

describe("another tenant's data is a 404, never a 403", () => {
  let aliceRunId: string;

  beforeAll(async () => {
    // A run that stays unfinished: a long durable sleep.
    const res = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "tenant", steps: [{ name: "nap", type: "sleep", config: { durationMs: 600_000 } }] } });
    expect(res.status).toBe(202);
    aliceRunId = res.body.run.id;
  });

  it("GET /v1/runs/:id, /events, /cancel and /resume with another customer's key are 404 not_found", async () => {
    await writesNothing(async () => {
      for (const [method, suffix] of [["GET", ""], ["GET", "/events"], ["POST", "/cancel"], ["POST", "/resume"]] as const) {
        const err = expectError(await call(method, `/v1/runs/${aliceRunId}${suffix}`, { key: bob.key }), 404, "not_found");
        expect(err.message).not.toContain(alice.id);
      }
    });
    // The 404 is about who asks: the owner sees the run, and it was not cancelled.
    const own = await call("GET", `/v1/runs/${aliceRunId}`, { key: alice.key });
    expect(own.status).toBe(200);
    expect(own.body.run.status).not.toBe("cancelled");
    expect((await call("GET", `/v1/runs/${aliceRunId}/events`, { key: alice.key })).status).toBe(200);
    // The other customer's 404 looks exactly like a run that does not exist.
    const ghost = await call("GET", `/v1/runs/run_${"0".repeat(24)}`, { key: bob.key });
    expectError(ghost, 404, "not_found");
  });

  it("another customer's run does not show in its list, and asking for that customer's runs is 403", async () => {
    const list = await call("GET", "/v1/runs?limit=500", { key: bob.key });
    expect(list.status).toBe(200);
    expect(list.body.runs.every((r: any) => r.customerId === bob.id)).toBe(true);
    expectError(await call("GET", `/v1/runs?customerId=${alice.id}`, { key: bob.key }), 403, "forbidden", ["query.customerId"]);
  });

  it("GET /v1/customers/:otherId with a customer key is 404, the same as an unknown id", async () => {
    const other = expectError(await call("GET", `/v1/customers/${alice.id}`, { key: bob.key }), 404, "not_found");
    const unknown = expectError(await call("GET", "/v1/customers/no-such-customer", { key: bob.key }), 404, "not_found");
    expect(other.message.replace(alice.id, "X")).toBe(unknown.message.replace("no-such-customer", "X"));
    expect((await call("GET", `/v1/customers/${bob.id}`, { key: bob.key })).status).toBe(200);
  });

  it("cancelling the owner's run works afterwards, and a second cancel is 409 conflict", async () => {
    expect((await call("POST", `/v1/runs/${aliceRunId}/cancel`, { key: alice.key })).status).toBe(200);
    await writesNothing(async () => {
      expectError(await call("POST", `/v1/runs/${aliceRunId}/cancel`, { key: alice.key }), 409, "conflict");
      expectError(await call("POST", `/v1/runs/${aliceRunId}/resume`, { key: alice.key }), 409, "conflict");
    });
  });
});

describe("unknown things are 404 not_found", () => {
  it("GET /v1/runs/run_doesnotexist and other ids that name no run", async () => {
    for (const id of ["run_doesnotexist", `run_${"z".repeat(24)}`, "not-a-run-id", "%E0%A4%A", "run_..%2F..%2Fetc"]) {
      expectError(await call("GET", `/v1/runs/${id}`), 404, "not_found");
      expectError(await call("GET", `/v1/runs/${id}/events`), 404, "not_found");
    }
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/runs/run_doesnotexist/cancel"), 404, "not_found");
      expectError(await call("POST", "/v1/runs/run_doesnotexist/resume"), 404, "not_found");
    });
  });

  it("an unknown route is a 404 envelope, in and out of /v1", async () => {
    expectError(await call("GET", "/v1/nope"), 404, "not_found");
    expectError(await call("POST", "/v1/runs/x/y/z", { body: {} }), 404, "not_found");
    expectError(await call("GET", "/nope", { key: null }), 404, "not_found");
    expectError(await call("DELETE", "/v1/runs"), 404, "not_found");
  });

  it("unknown customers and run types", async () => {
    await writesNothing(async () => {
      expectError(await call("GET", "/v1/customers/no-such-customer"), 404, "not_found");
      expectError(await call("POST", "/v1/customers/no-such-customer/keys"), 404, "not_found");
      expectError(await call("PUT", "/v1/customers/no-such-customer/budget", { body: { monthlyLimitUsd: "10" } }), 404, "not_found");
      expectError(await call("GET", "/v1/run-types/no-such-type"), 404, "not_found");
    });
  });
});

describe("bad query parameters are 400 naming query.<param>", () => {
  it("GET /v1/runs", async () => {
    const cases: [string, string][] = [
      ["limit=0", "query.limit"],
      ["limit=501", "query.limit"],
      ["limit=-1", "query.limit"],
      ["limit=abc", "query.limit"],
      ["limit=1.5", "query.limit"],
      ["limit=1&limit=2", "query.limit"],
      ["status=bogus", "query.status"],
      ["status=QUEUED", "query.status"],
      ["cursor=garbage", "query.cursor"],
      [`cursor=${btoa("[1e999,\"x\"]")}`, "query.cursor"],
      [`cursor=${btoa("{\"a\":1}")}`, "query.cursor"],
      [`cursor=${"a".repeat(501)}`, "query.cursor"],
      ["from=yesterday", "query.from"],
      ["to=2024-13-45T00:00:00Z", "query.to"],
      ["projectId=Bad%20Name", "query.projectId"],
      ["runType=UPPER", "query.runType"],
    ];
    for (const [query, field] of cases) {
      const res = await call("GET", `/v1/runs?${query}`, { key: alice.key });
      expect({ query, status: res.status }).toEqual({ query, status: 400 });
      expectError(res, 400, "validation_failed", [field]);
    }
    // The limits themselves are legal.
    for (const query of ["limit=1", "limit=500", "status=queued"]) expect((await call("GET", `/v1/runs?${query}`, { key: alice.key })).status).toBe(200);
  });

  it("GET /v1/customers and GET /v1/run-types", async () => {
    for (const path of ["/v1/customers", "/v1/run-types"]) {
      expectError(await call("GET", `${path}?limit=0`), 400, "validation_failed", ["query.limit"]);
      expectError(await call("GET", `${path}?limit=501`), 400, "validation_failed", ["query.limit"]);
      expectError(await call("GET", `${path}?limit=many`), 400, "validation_failed", ["query.limit"]);
    }
  });
});

describe("conflicts are 409", () => {
  it("a duplicate customer id is 409 conflict and adds no customer and no api key", async () => {
    const dave = await newCustomer("dave");
    const keysBefore = await d1Count("api_keys", "customer_id = ?", dave.id);
    expect(keysBefore).toBe(1);
    await writesNothing(async () => {
      expectError(await call("POST", "/v1/customers", { body: { id: dave.id, name: "Dave again" } }), 409, "conflict", ["id"]);
      expectError(await call("POST", "/v1/customers", { body: { id: dave.id, name: "Dave with budget", budget: { monthlyLimitUsd: "1" } } }), 409, "conflict", ["id"]);
    });
    expect(await d1Count("api_keys", "customer_id = ?", dave.id)).toBe(1);
    const after = await call("GET", `/v1/customers/${dave.id}`);
    expect(after.body.customer.name).toBe(`Customer ${dave.id}`);
    expect(after.body.customer.budget).toBeNull();
  });

  it("a reused idempotency key with a different body is 409 idempotency_key_reused; the first run is untouched", async () => {
    const key = freshKey();
    const first = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: goodSteps(), input: { n: 1 }, idempotencyKey: key } });
    expect(first.status).toBe(202);
    await writesNothing(async () => {
      for (const changed of [
        { projectId: "p", steps: goodSteps(), input: { n: 2 }, idempotencyKey: key },
        { projectId: "other", steps: goodSteps(), input: { n: 1 }, idempotencyKey: key },
        { projectId: "p", steps: goodSteps(), input: { n: 1 }, priority: "high", idempotencyKey: key },
      ]) {
        expectError(await call("POST", "/v1/runs", { key: alice.key, body: changed }), 409, "idempotency_key_reused", ["idempotencyKey"]);
      }
      // The same body again is the same run (200), not a second one.
      const again = await call("POST", "/v1/runs", { key: alice.key, body: { projectId: "p", steps: goodSteps(), input: { n: 1 }, idempotencyKey: key } });
      expect(again.status).toBe(200);
      expect(again.body.run.id).toBe(first.body.run.id);
    });
    const run = await call("GET", `/v1/runs/${first.body.run.id}`, { key: alice.key });
    expect(run.body.run.input).toEqual({ n: 1 });
    expect(run.body.run.projectId).toBe("p");
  });
});

describe("request ids", () => {
  it("every error carries x-request-id equal to error.requestId; a sane incoming id is echoed, an unsafe one replaced", async () => {
    const echoed = await call("GET", "/v1/runs/run_doesnotexist", { headers: { "x-request-id": "trace-123.abc" } });
    expect(expectError(echoed, 404, "not_found").requestId).toBe("trace-123.abc");
    const replaced = await call("GET", "/v1/runs/run_doesnotexist", { headers: { "x-request-id": "bad id <script>" } });
    expect(expectError(replaced, 404, "not_found").requestId).not.toContain("<script>");
    const a = expectError(await call("GET", "/v1/nope"), 404, "not_found");
    const b = expectError(await call("GET", "/v1/nope"), 404, "not_found");
    expect(a.requestId).not.toBe(b.requestId);
  });
});
