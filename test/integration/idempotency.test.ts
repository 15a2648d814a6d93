import { describe, expect, it } from "vitest";
import { api, createRun, d1Count, newCustomer, synthetic } from "../helpers";

describe("idempotency keys", () => {
  it("the same key again returns the same run with 200, never a second run", async () => {
    const customer = await newCustomer();
    const body = { idempotencyKey: "order-1", steps: [synthetic("one")] };
    const first = await createRun(customer.key, body);
    const second = await createRun(customer.key, body);
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    expect(second.body.run.id).toBe(first.body.run.id);
    expect(await d1Count("runs", "customer_id = ?", customer.id)).toBe(1);
  });

  it("20 concurrent creates with one key make one run", async () => {
    const customer = await newCustomer();
    const body = { idempotencyKey: "burst", steps: [synthetic("one", { durationMs: 10 })] };
    const results = await Promise.all(Array.from({ length: 20 }, () => createRun(customer.key, body)));
    const ids = new Set(results.map((r) => r.body.run.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.status === 202)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(19);
    expect(await d1Count("runs", "customer_id = ?", customer.id)).toBe(1);
  });

  it("keys are per customer: two customers with one key get two runs", async () => {
    const a = await newCustomer();
    const b = await newCustomer();
    const body = { idempotencyKey: "shared", steps: [synthetic("one")] };
    const ra = await createRun(a.key, body);
    const rb = await createRun(b.key, body);
    expect(ra.status).toBe(202);
    expect(rb.status).toBe(202);
    expect(ra.body.run.id).not.toBe(rb.body.run.id);
  });

  it("the same key with a different request is a 409, and the first run is untouched", async () => {
    const customer = await newCustomer();
    const first = await createRun(customer.key, { idempotencyKey: "k", steps: [synthetic("one")] });
    const other = await createRun(customer.key, { idempotencyKey: "k", steps: [synthetic("two")] });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("idempotency_key_reused");
    const run = await api("GET", `/v1/runs/${first.body.run.id}`, { key: customer.key });
    expect(run.body.run.steps.map((s: any) => s.name)).toEqual(["one"]);
  });
});
