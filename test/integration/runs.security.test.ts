/**
 * What one tenant can do to the platform and to others through runs and their satellites:
 * hold too many runs open at once, read a run's whole history in one response, read the
 * operator's margins, or race a budget change. Real D1, Durable Objects and Queues.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CustomerLedger } from "../../durable-objects/ledger/customer-ledger";
import { ADMIN, api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

afterEach(() => vi.restoreAllMocks());

const rand = () => Math.random().toString(36).slice(2, 8);
const nap = (name: string, durationMs = 60_000) => ({ name, type: "sleep", config: { durationMs } });

const customerWithPlan = (prefix: string, plan: Record<string, unknown>) => newCustomer(prefix, plan);

describe("the cap on runs in flight (plan.maxRunsInFlight)", () => {
  it("a third run past a cap of 2 is a 429 with Retry-After; a finished run frees its place; other tenants are not held back", async () => {
    const capped = await customerWithPlan("capped", { maxRunsInFlight: 2 });
    expect(capped.customer.plan.maxRunsInFlight).toBe(2);
    const first = await createRun(capped.key, { steps: [nap("a")] });
    const second = await createRun(capped.key, { steps: [nap("b")] });
    expect([first.status, second.status]).toEqual([202, 202]);

    const third = await createRun(capped.key, { steps: [nap("c")] });
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe("rate_limited");
    expect(third.body.error.message).toMatch(/cannot start another run/);
    expect(Number(third.headers.get("retry-after"))).toBeGreaterThan(0);
    // Nothing of the refused run exists.
    const listed = await api("GET", "/v1/runs?limit=50", { key: capped.key });
    expect(listed.body.runs).toHaveLength(2);

    // Another tenant (default cap 1000) is not affected by this one's cap.
    const other = await newCustomer("uncapped");
    expect((await createRun(other.key, { steps: [nap("x")] })).status).toBe(202);

    // Cancelling one run ends it: its place is free again.
    expect((await api("POST", `/v1/runs/${first.body.run.id}/cancel`, { key: capped.key })).status).toBe(200);
    await vi.waitUntil(async () => (await createRun(capped.key, { steps: [synthetic("quick")] })).status === 202, { timeout: 5000, interval: 100 });
  });

  it("an idempotent resubmission of a run already admitted is not counted again", async () => {
    const capped = await customerWithPlan("resubmit", { maxRunsInFlight: 1 });
    const body = { idempotencyKey: `once-${rand()}`, steps: [nap("a")] };
    const first = await createRun(capped.key, body);
    expect(first.status).toBe(202);
    const again = await createRun(capped.key, body);
    expect(again.status).toBe(200);
    expect(again.body.run.id).toBe(first.body.run.id);
  });

  it("a cap outside 1 … 1,000,000 is refused at creation, naming the field", async () => {
    for (const maxRunsInFlight of [0, -1, 1.5, 2_000_000, "10"]) {
      const res = await api("POST", "/v1/customers", { body: { id: `bad-${rand()}`, name: "bad", plan: { maxRunsInFlight } } });
      expect(res.status).toBe(400);
      expect(JSON.stringify(res.body.error.details)).toContain("maxRunsInFlight");
    }
  });
});

describe("a run's events are read a page at a time", () => {
  it("pages of `limit` follow each other by `after` = nextCursor, without gaps or repeats; the last page says null", async () => {
    const customer = await newCustomer("pages");
    const created = await createRun(customer.key, { steps: Array.from({ length: 6 }, (_, i) => synthetic(`s${i}`)) });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    const all = (await api("GET", `/v1/runs/${run.id}/events?limit=1000`, { key: customer.key })).body;
    expect(all.nextCursor).toBeNull();
    expect(all.events.length).toBeGreaterThan(10);

    const seen: number[] = [];
    let after = 0;
    for (let page = 0; page < 100; page++) {
      const res = await api("GET", `/v1/runs/${run.id}/events?limit=4&after=${after}`, { key: customer.key });
      expect(res.status).toBe(200);
      expect(res.body.events.length).toBeLessThanOrEqual(4);
      seen.push(...res.body.events.map((e: any) => e.seq));
      if (res.body.nextCursor === null) break;
      after = res.body.nextCursor;
    }
    expect(seen).toEqual(all.events.map((e: any) => e.seq));
  });

  it("a bad page is a 400 naming `after` or `limit`; another tenant's run is a 404", async () => {
    const customer = await newCustomer("badpage");
    const created = await createRun(customer.key, { steps: [synthetic("one")] });
    const id = created.body.run.id;
    for (const query of ["after=-1", "after=abc", "limit=0", "limit=1001", "limit=2.5", "after=99999999999999999999"]) {
      const res = await api("GET", `/v1/runs/${id}/events?${query}`, { key: customer.key });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(JSON.stringify(res.body.error.details)).toContain(query.split("=")[0]!);
    }
    const stranger = await newCustomer("stranger");
    expect((await api("GET", `/v1/runs/${id}/events`, { key: stranger.key })).status).toBe(404);
  });
});

describe("profitability is the operator's business", () => {
  it("a customer key is refused even for its own id; the admin gets the allocation basis", async () => {
    const customer = await newCustomer("margins");
    const own = await api("GET", `/v1/customers/${customer.id}/profitability`, { key: customer.key });
    expect(own.status).toBe(403);
    expect(own.body.error.code).toBe("forbidden");
    const admin = await api("GET", `/v1/customers/${customer.id}/profitability`, { key: ADMIN });
    expect(admin.status).toBe(200);
    expect(admin.body.allocation).toMatchObject({ method: expect.any(String) });
  });
});

describe("a budget is enforced before it is shown", () => {
  it("a ledger that does not answer changes nothing: 503 with Retry-After, and D1 keeps the old budget", async () => {
    const customer = await newCustomer("budget");
    expect((await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "10" } })).status).toBe(200);
    vi.spyOn(CustomerLedger.prototype, "setBudget").mockRejectedValue(new Error("ledger unavailable (test)"));
    const res = await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "99" } });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe("not_ready");
    expect(res.headers.get("retry-after")).toBe("1");
    vi.restoreAllMocks();
    const row = await env.DB.prepare("SELECT budget_limit_nano_usd AS limitNano FROM customers WHERE id = ?").bind(customer.id).first<{ limitNano: string }>();
    expect(row?.limitNano).toBe("10000000000");
    const shown = await api("GET", `/v1/customers/${customer.id}`);
    expect(shown.body.customer.budget.monthlyLimitUsd).toBe("10.000000");
  });
});
