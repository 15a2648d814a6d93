import { exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { createRunplaneClient, RunplaneError, RunWaitTimeoutError, type RunplaneClientOptions } from "../../clients/typescript/src/index";
import { costNano } from "../../src/domain/pricing";
import { ADMIN } from "../helpers";

// The typed client (clients/typescript) driving the platform end to end in workerd: every
// request goes through openapi-fetch to the Worker's own fetch handler, real bindings behind it.

/** The Worker in this runtime, as the client's transport; `seen` records each answer's status. */
function worker(seen: number[] = []): RunplaneClientOptions["fetch"] {
  return async (request) => {
    const response = await exports.default.fetch(request);
    seen.push(response.status);
    return response;
  };
}

const client = (apiKey: string, options: Partial<RunplaneClientOptions> = {}) =>
  createRunplaneClient({ baseUrl: "https://runplane.test", apiKey, fetch: worker(), ...options });

const admin = client(ADMIN);

async function newCustomerKey(name: string, plan?: { rateLimit: { requestsPerSecond: number; burst: number } }) {
  const { apiKey, customer } = await admin.POST("/v1/customers", { body: { id: `${name}-${crypto.randomUUID().slice(0, 8)}`, name, ...(plan ? { plan } : {}) } });
  return { apiKey, customerId: customer.id };
}

// gpt-4o-mini in the seeded price table: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
const usage = { model: "gpt-4o-mini", inputTokens: 1234, outputTokens: 567, cachedTokens: 890 };
const expectedAiNanoUsd = costNano(1234n, 150_000_000n) + costNano(890n, 75_000_000n) + costNano(567n, 600_000_000n);

describe("the TypeScript client against the platform", () => {
  it("creates a run, waits for it to end, and reads its cost", async () => {
    const { apiKey } = await newCustomerKey("client-run");
    const runplane = client(apiKey);
    const { run } = await runplane.POST("/v1/runs", {
      body: { projectId: "client", steps: [{ name: "think", type: "synthetic", config: { durationMs: 20, usage } }] },
    });
    expect(run.status).toBe("queued");

    const done = await runplane.waitForRun(run.id, { intervalMs: 50, timeoutMs: 15_000 });
    expect(done.status).toBe("succeeded");
    expect(done.steps.map((s) => [s.name, s.status])).toEqual([["think", "succeeded"]]);

    // Tokens are priced as the step's result is recorded; the rest settles with the ledger.
    const cost = await vi.waitUntil(async () => {
      const c = await runplane.GET("/v1/runs/{id}/cost", { params: { path: { id: run.id } } });
      return c.settled ? c : false;
    }, { timeout: 10_000, interval: 50 });
    expect(BigInt(cost.aiNanoUsd)).toBe(expectedAiNanoUsd);
    expect(BigInt(cost.totalNanoUsd)).toBe(BigInt(cost.aiNanoUsd) + BigInt(cost.infraNanoUsd));
    expect(cost.lines.filter((l) => l.meter.endsWith("_tokens")).map((l) => l.meter).sort()).toEqual(["cached_input_tokens", "input_tokens", "output_tokens"]);
  });

  it("waitForRun gives up with RunWaitTimeoutError on a run that does not end in time", async () => {
    const { apiKey } = await newCustomerKey("client-wait");
    const runplane = client(apiKey);
    const { run } = await runplane.POST("/v1/runs", { body: { projectId: "client", steps: [{ name: "nap", type: "sleep", config: { durationMs: 60_000 } }] } });
    const waiting = runplane.waitForRun(run.id, { intervalMs: 50, timeoutMs: 300 });
    await expect(waiting).rejects.toBeInstanceOf(RunWaitTimeoutError);
    await expect(waiting).rejects.toMatchObject({ runId: run.id });
    await runplane.POST("/v1/runs/{id}/cancel", { params: { path: { id: run.id } } });
  });

  it("iterates a paged list across pages (nextCursor), and the run's events (their `after` cursor)", async () => {
    const { apiKey } = await newCustomerKey("client-pages");
    const runplane = client(apiKey);
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { run } = await runplane.POST("/v1/runs", { body: { projectId: "paged", steps: [{ name: "s", type: "synthetic", config: {} }] } });
      created.push(run.id);
    }
    const query = { projectId: "paged", limit: 2 };
    const listed = await vi.waitUntil(async () => {
      const ids: string[] = [];
      for await (const summary of runplane.items("/v1/runs", { params: { query } })) ids.push(summary.id);
      return ids.length === created.length ? ids : false;
    }, { timeout: 5000, interval: 100 });
    expect([...listed].sort()).toEqual([...created].sort());
    const pageSizes: number[] = [];
    for await (const page of runplane.pages("/v1/runs", { params: { query } })) pageSizes.push(page.runs.length);
    expect(pageSizes).toEqual([2, 2, 1]);

    const id = created[0]!;
    await runplane.waitForRun(id, { intervalMs: 50 });
    const { events } = await runplane.GET("/v1/runs/{id}/events", { params: { path: { id } } });
    expect(events.length).toBeGreaterThan(2);
    const paged = [];
    for await (const event of runplane.items("/v1/runs/{id}/events", { params: { path: { id }, query: { limit: 1 } } })) paged.push(event);
    expect(paged).toEqual(events);
  });

  it("throws RunplaneError carrying the envelope: status, code, message, details, request id", async () => {
    const { apiKey } = await newCustomerKey("client-errors");
    const runplane = client(apiKey);
    const missing = await runplane.GET("/v1/runs/{id}", { params: { path: { id: "run_doesnotexist" } } }).catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(RunplaneError);
    expect(missing).toMatchObject({ status: 404, code: "not_found", message: 'run "run_doesnotexist" not found', details: [] });
    expect((missing as RunplaneError).requestId).toMatch(/^req_/);

    const invalid = await runplane.POST("/v1/runs", { body: { projectId: "Not Valid", runType: "hello" } }).catch((err: unknown) => err);
    expect(invalid).toMatchObject({ status: 400, code: "validation_failed" });
    expect((invalid as RunplaneError).details.map((d) => d.field)).toContain("projectId");

    const adminOnly = await runplane.GET("/v1/dlq").catch((err: unknown) => err);
    expect(adminOnly).toMatchObject({ status: 403, code: "forbidden" });

    // The raw openapi-fetch client does not throw: the envelope comes back typed as `error`.
    const raw = await runplane.api.GET("/v1/runs/{id}", { params: { path: { id: "run_doesnotexist" } } });
    expect(raw.response.status).toBe(404);
    expect(raw.error?.error.code).toBe("not_found");
  });

  it("retries a 429 after its Retry-After, and gives up when retries are off or the wait is too long", async () => {
    // One request a second, burst 1: the customer's limiter (a Durable Object) answers the second at once with 429.
    const { apiKey } = await newCustomerKey("client-429", { rateLimit: { requestsPerSecond: 1, burst: 1 } });
    const seen: number[] = [];
    const runplane = client(apiKey, { fetch: worker(seen) });
    await runplane.GET("/v1/runs");

    const started = Date.now();
    await runplane.GET("/v1/runs");
    const waited = Date.now() - started;
    expect(seen).toEqual([200, 429, 200]);
    // Retry-After: 1 (whole seconds): the client waited it out before sending again.
    expect(waited).toBeGreaterThanOrEqual(1000);

    const noRetries = client(apiKey, { fetch: worker(seen), retry: { maxRetries: 0 } });
    const refused = await noRetries.GET("/v1/runs").catch((err: unknown) => err);
    expect(refused).toMatchObject({ status: 429, code: "rate_limited", retryAfterMs: 1000 });

    const impatient = client(apiKey, { fetch: worker(seen), retry: { maxDelayMs: 500 } });
    const before = seen.length;
    const tooLong = await impatient.GET("/v1/runs").catch((err: unknown) => err);
    expect(tooLong).toMatchObject({ status: 429, code: "rate_limited" });
    expect(seen.slice(before)).toEqual([429]);
  });

  it("retries a POST whose body was already sent once", async () => {
    const { apiKey } = await newCustomerKey("client-429-post", { rateLimit: { requestsPerSecond: 1, burst: 1 } });
    const seen: number[] = [];
    const runplane = client(apiKey, { fetch: worker(seen) });
    await runplane.GET("/v1/runs");
    const { run } = await runplane.POST("/v1/runs", { body: { projectId: "retried", steps: [{ name: "s", type: "synthetic", config: { output: { ok: true } } }] } });
    expect(seen).toEqual([200, 429, 202]);
    expect(run.projectId).toBe("retried");
  });
});

// Compile-time checks (tsc --noEmit covers test/): the generated types refuse what the API would.
async function typeChecks() {
  // @ts-expect-error a path the API does not have
  await admin.GET("/v1/nope");
  // @ts-expect-error POST /v1/runs needs a body
  await admin.POST("/v1/runs");
  // @ts-expect-error priority is high | normal | low
  await admin.POST("/v1/runs", { body: { projectId: "p", runType: "hello", priority: "urgent" } });
  // @ts-expect-error a run is not a list
  admin.items("/v1/runs/{id}", { params: { path: { id: "x" } } });
  const discarded: undefined = await admin.DELETE("/v1/dlq/{id}", { params: { path: { id: "x" } } });
  return discarded;
}
void typeChecks;
