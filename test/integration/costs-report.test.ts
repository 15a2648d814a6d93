import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { rollupToWire, type RunRollup } from "../../src/data-plane/messages";
import { buildRollup, type CostRecord } from "../../src/domain/cost-records";
import { isTokenMeter } from "../../src/domain/pricing";
import { CostsService, writeRollups } from "../../src/services/costs-service";
import { api } from "../helpers";

// Costs are written straight into D1 here, through the same rollup builder and writer the
// platform uses: these tests are about the reports over them, not about how runs produce them.
interface Row {
  customer: string;
  project: string;
  run: string;
  runType?: string | null;
  pool?: string;
  step?: string | null;
  meter: string;
  model?: string | null;
  quantity: number;
  nano: bigint | number;
  at: string | number;
}

/** Each row becomes one priced cost record of its run; each run's records become its rollup. */
async function insertEvents(rows: Row[]) {
  const byRun = new Map<string, Row[]>();
  for (const r of rows) byRun.set(r.run, [...(byRun.get(r.run) ?? []), r]);
  const rollups: RunRollup[] = [...byRun.entries()].map(([run, list]) => {
    const records: CostRecord[] = list.map((r, i) => {
      const nano = BigInt(r.nano);
      const token = isTokenMeter(r.meter);
      return {
        seq: i + 1, kind: "attempt", step: r.step ?? "s", attempt: 1, at: typeof r.at === "string" ? Date.parse(r.at) : r.at,
        infra: {}, estimated: [], tokens: [], holdId: null, nanoUsd: nano, aiNanoUsd: token ? nano : 0n,
        lines: [{ meter: r.meter as CostRecord["lines"][number]["meter"], model: r.model ?? null, quantity: BigInt(r.quantity), perMillion: 0n, nanoUsd: nano, priceVersion: "test", estimated: false }],
      };
    });
    const first = list[0]!;
    return { runId: run, customerId: first.customer, projectId: first.project, runType: first.runType ?? null, pool: first.pool ?? "standard", version: records.length, rows: buildRollup(records).map(rollupToWire) };
  });
  await writeRollups(env.DB, rollups);
}

async function insertRun(id: string, customer: string, createdAt: string) {
  const at = Date.parse(createdAt);
  await env.DB.prepare(
    "INSERT INTO runs (id, customer_id, project_id, run_type, pool, priority, status, created_at, updated_at) VALUES (?1, ?2, 'p', NULL, 'standard', 'normal', 'succeeded', ?3, ?3)",
  )
    .bind(id, customer, at)
    .run();
}

async function createCustomer(id: string, plan?: { monthlyFeeUsd: string; pricePerRunUsd: string }) {
  const res = await api("POST", "/v1/customers", { body: { id, name: id, plan } });
  expect(res.status).toBe(201);
  return res.body.apiKey as string;
}

const MARCH = "from=2025-03-01T00:00:00Z&to=2025-04-01T00:00:00Z";
const row = (body: any, key: string, extra: (r: any) => boolean = () => true) => body.rows.find((r: any) => r.key === key && extra(r));

let keyA = "";
let keyB = "";
beforeAll(async () => {
  keyA = await createCustomer("acme", { monthlyFeeUsd: "10", pricePerRunUsd: "0.5" });
  keyB = await createCustomer("bolt", { monthlyFeeUsd: "20", pricePerRunUsd: "0" });
  await insertEvents([
    // acme, run a1: a project "p1" run of type "summarize" on gpt-4o-mini, Monday 3 March
    { customer: "acme", project: "p1", run: "a1", runType: "summarize", meter: "input_tokens", model: "gpt-4o-mini", quantity: 1000, nano: 150_000, at: "2025-03-03T10:15:00Z" },
    { customer: "acme", project: "p1", run: "a1", runType: "summarize", meter: "output_tokens", model: "gpt-4o-mini", quantity: 200, nano: 120_000, at: "2025-03-03T10:15:00Z" },
    { customer: "acme", project: "p1", run: "a1", runType: "summarize", meter: "cached_input_tokens", model: "gpt-4o-mini", quantity: 500, nano: 37_500, at: "2025-03-03T10:15:00Z" },
    { customer: "acme", project: "p1", run: "a1", runType: "summarize", step: null, meter: "worker_requests", quantity: 3, nano: 900, at: "2025-03-03T11:30:00Z" },
    // acme, run a2: inline steps in project "p2", Sunday 9 March, late
    { customer: "acme", project: "p2", run: "a2", meter: "do_requests", quantity: 10, nano: 1_500, at: "2025-03-09T23:00:00Z" },
    { customer: "acme", project: "p2", run: "a2", meter: "input_tokens", model: "gpt-4o", quantity: 100, nano: 250_000, at: "2025-03-09T23:00:00Z" },
    // bolt, run b1: its own project also called "p1", on a "gpu" pool, Monday 10 March
    { customer: "bolt", project: "p1", run: "b1", runType: "summarize", pool: "gpu", meter: "output_tokens", model: "gpt-4o", quantity: 1_000, nano: 10_000_000, at: "2025-03-10T00:30:00Z" },
    { customer: "bolt", project: "p1", run: "b1", runType: "summarize", pool: "gpu", meter: "reasoning_tokens", model: "gpt-4o", quantity: 50, nano: 500_000, at: "2025-03-10T00:30:00Z" },
    // bolt, run b2: April, outside the March window
    { customer: "bolt", project: "p1", run: "b2", meter: "worker_requests", quantity: 1, nano: 300, at: "2025-04-01T00:00:00Z" },
  ]);
  await insertRun("a1", "acme", "2025-03-03T10:00:00Z");
  await insertRun("a2", "acme", "2025-03-09T22:59:00Z");
  await insertRun("b1", "bolt", "2025-03-10T00:29:00Z");
  await insertRun("b2", "bolt", "2025-03-31T23:59:59Z");
  await insertRun("b3", "bolt", "2025-04-01T00:00:00Z"); // April
});

describe("GET /v1/costs", () => {
  it("groups by customer: exact sums, AI and infrastructure apart, cost per run, tokens", async () => {
    const res = await api("GET", `/v1/costs?${MARCH}&groupBy=customer`);
    expect(res.status).toBe(200);
    expect(res.body.rows).toEqual([
      {
        key: "acme",
        runs: 2,
        totalNanoUsd: 559_900,
        aiNanoUsd: 557_500,
        infraNanoUsd: 2_400,
        costPerRunNanoUsd: 279_950,
        totalUsd: "0.000560",
        aiUsd: "0.000558",
        infraUsd: "0.000002",
        costPerRunUsd: "0.000280",
        inputTokens: 1_100,
        outputTokens: 200,
        cachedTokens: 500,
        reasoningTokens: 0,
      },
      expect.objectContaining({ key: "bolt", runs: 1, totalNanoUsd: 10_500_000, aiNanoUsd: 10_500_000, infraNanoUsd: 0, outputTokens: 1_050, reasoningTokens: 50 }),
    ]);
    expect(res.body.totalNanoUsd).toBe(11_059_900);
    expect(res.body.totalUsd).toBe("0.011060");
    expect(res.body.totals).toMatchObject({ runs: 3, totalNanoUsd: 11_059_900, costPerRunNanoUsd: 3_686_633 }); // 11059900 / 3 = 3686633.33
    expect(res.body).toMatchObject({ from: "2025-03-01T00:00:00.000Z", to: "2025-04-01T00:00:00.000Z", groupBy: "customer", bucket: null });
  });

  it("groups by project (kept apart per customer), model, run type and pool", async () => {
    const byProject = (await api("GET", `/v1/costs?${MARCH}&groupBy=project`)).body;
    expect(byProject.rows.map((r: any) => [r.key, r.customerId, r.totalNanoUsd])).toEqual([
      ["p1", "acme", 308_400],
      ["p1", "bolt", 10_500_000],
      ["p2", "acme", 251_500],
    ]);
    const byModel = (await api("GET", `/v1/costs?${MARCH}&groupBy=model`)).body;
    expect(byModel.rows.map((r: any) => [r.key, r.runs, r.totalNanoUsd])).toEqual([
      ["(infra)", 2, 2_400],
      ["gpt-4o", 2, 10_750_000],
      ["gpt-4o-mini", 1, 307_500],
    ]);
    const byRunType = (await api("GET", `/v1/costs?${MARCH}&groupBy=runType`)).body;
    expect(byRunType.rows.map((r: any) => [r.key, r.runs, r.totalNanoUsd])).toEqual([
      ["(inline)", 1, 251_500],
      ["summarize", 2, 10_808_400],
    ]);
    const byPool = (await api("GET", `/v1/costs?${MARCH}&groupBy=pool`)).body;
    expect(byPool.rows.map((r: any) => [r.key, r.totalNanoUsd])).toEqual([
      ["gpu", 10_500_000],
      ["standard", 559_900],
    ]);
  });

  it("buckets by hour, day, week (from Monday) and month, in UTC", async () => {
    const buckets = async (bucket: string, groupBy = "") =>
      (await api("GET", `/v1/costs?${MARCH}&bucket=${bucket}${groupBy}`)).body.rows.map((r: any) => [r.bucket, r.key, r.totalNanoUsd]);
    expect(await buckets("hour")).toEqual([
      ["2025-03-03T10:00:00.000Z", "all", 307_500],
      ["2025-03-03T11:00:00.000Z", "all", 900],
      ["2025-03-09T23:00:00.000Z", "all", 251_500],
      ["2025-03-10T00:00:00.000Z", "all", 10_500_000],
    ]);
    expect(await buckets("day")).toEqual([
      ["2025-03-03T00:00:00.000Z", "all", 308_400],
      ["2025-03-09T00:00:00.000Z", "all", 251_500],
      ["2025-03-10T00:00:00.000Z", "all", 10_500_000],
    ]);
    // Sunday 9 March belongs to the week of Monday 3 March.
    expect(await buckets("week", "&groupBy=customer")).toEqual([
      ["2025-03-03T00:00:00.000Z", "acme", 559_900],
      ["2025-03-10T00:00:00.000Z", "bolt", 10_500_000],
    ]);
    expect(await buckets("month")).toEqual([["2025-03-01T00:00:00.000Z", "all", 11_059_900]]);
    const withApril = (await api("GET", "/v1/costs?from=2025-03-01T00:00:00Z&to=2025-05-01T00:00:00Z&bucket=month")).body;
    expect(withApril.rows.map((r: any) => [r.bucket, r.totalNanoUsd])).toEqual([
      ["2025-03-01T00:00:00.000Z", 11_059_900],
      ["2025-04-01T00:00:00.000Z", 300],
    ]);
  });

  it("shows a customer key only its own costs; another customer's id is a 404", async () => {
    const own = await api("GET", `/v1/costs?${MARCH}&groupBy=customer`, { key: keyA });
    expect(own.status).toBe(200);
    expect(own.body.rows.map((r: any) => r.key)).toEqual(["acme"]);
    expect(own.body.totalNanoUsd).toBe(559_900);
    const byModel = await api("GET", `/v1/costs?${MARCH}&groupBy=model`, { key: keyB });
    expect(byModel.body.rows.map((r: any) => r.key)).toEqual(["gpt-4o"]);
    expect((await api("GET", `/v1/costs?${MARCH}&customerId=acme`, { key: keyA })).status).toBe(200);
    expect((await api("GET", `/v1/costs?${MARCH}&customerId=bolt`, { key: keyA })).status).toBe(404);
    const adminFiltered = await api("GET", `/v1/costs?${MARCH}&customerId=bolt`);
    expect(adminFiltered.body.totalNanoUsd).toBe(10_500_000);
  });

  it("keeps sums beyond 2^53 exact, as decimal strings; cost per run rounds half to even", async () => {
    const big = 2n ** 53n; // 9007199254740992, a few million USD in nano-USD
    await insertEvents([
      { customer: "whale", project: "p", run: "w1", meter: "output_tokens", model: "gpt-4o", quantity: 1, nano: big + 1n, at: "2024-01-02T00:00:00Z" },
      { customer: "whale", project: "p", run: "w2", meter: "output_tokens", model: "gpt-4o", quantity: 1, nano: big + 2n, at: "2024-01-03T00:00:00Z" },
      { customer: "tiny", project: "p", run: "t1", meter: "worker_requests", quantity: 1, nano: 2, at: "2024-01-04T00:00:00Z" },
      { customer: "tiny", project: "p", run: "t2", meter: "worker_requests", quantity: 1, nano: 3, at: "2024-01-04T00:00:00Z" },
    ]);
    const res = (await api("GET", "/v1/costs?from=2024-01-01T00:00:00Z&to=2024-02-01T00:00:00Z&groupBy=customer")).body;
    const whale = row(res, "whale");
    expect(whale.totalNanoUsd).toBe((2n * big + 3n).toString());
    expect(whale.costPerRunNanoUsd).toBe((big + 2n).toString()); // (2^54 + 3) / 2 = 2^53 + 1.5 → 2^53 + 2 (even)
    expect(row(res, "tiny").costPerRunNanoUsd).toBe(2); // 5 / 2 = 2.5 → 2
    expect(res.totalNanoUsd).toBe((2n * big + 8n).toString());
    expect(res.totalUsd).toBe("18014398.509482");
  });

  it("answers bad queries with a 400 naming the field", async () => {
    const bad = async (query: string, field: string) => {
      const res = await api("GET", `/v1/costs?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.details.map((d: any) => d.field), query).toContain(field);
    };
    await bad("groupBy=color", "query.groupBy");
    await bad("bucket=minute", "query.bucket");
    await bad("from=yesterday", "query.from");
    await bad("from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z", "query.from");
    await bad("from=2000-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&bucket=hour", "query.bucket");
    await bad("customerId=Not%20Valid", "query.customerId");
  });

  it("writes rollups idempotently: a repeated or older one changes nothing, a newer one replaces; amounts exact", async () => {
    const at = Date.parse("2023-05-05T00:10:00Z");
    const rollup = (version: number, nano: bigint): RunRollup => ({
      runId: "rec-1", customerId: "rec", projectId: "p", runType: null, pool: "standard", version,
      rows: buildRollup([{ seq: version, kind: "attempt", step: "s", attempt: 1, at, infra: {}, estimated: [], tokens: [], holdId: null, nanoUsd: nano, aiNanoUsd: 0n,
        lines: [{ meter: "worker_requests", model: null, quantity: 1n, perMillion: 0n, nanoUsd: nano, priceVersion: "v", estimated: false }] }]).map(rollupToWire),
    });
    const total = async () => (await api("GET", "/v1/costs?from=2023-05-01T00:00:00Z&to=2023-06-01T00:00:00Z")).body.totalNanoUsd;
    await writeRollups(env.DB, [rollup(2, 2n ** 60n + 7n)]);
    expect(await total()).toBe((2n ** 60n + 7n).toString());
    await writeRollups(env.DB, [rollup(2, 2n ** 60n + 7n), rollup(1, 5n)]); // a redelivery, then an older rollup
    expect(await total()).toBe((2n ** 60n + 7n).toString());
    await writeRollups(env.DB, [rollup(3, 2n ** 61n)]);
    expect(await total()).toBe((2n ** 61n).toString());
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM cost_rollups WHERE run_id = 'rec-1'").first<{ n: number }>())?.n).toBe(1);
  });

  it("serves every report query from an index, never a scan of the table", async () => {
    const plans: string[] = [];
    const explain = async (sql: string, ...binds: unknown[]) => {
      const rows = (await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`).bind(...binds).all<{ detail: string }>()).results;
      plans.push(rows.map((r) => r.detail).join(" | "));
    };
    await explain("SELECT SUM(nano_usd) FROM cost_rollups WHERE hour >= ?1 AND hour < ?2", 0, 1);
    await explain("SELECT SUM(nano_usd) FROM cost_rollups WHERE hour >= ?1 AND hour < ?2 AND customer_id = ?3", 0, 1, "acme");
    await explain("SELECT customer_id, SUM(nano_usd) FROM cost_rollups WHERE hour >= ?1 AND hour < ?2 GROUP BY customer_id", 0, 1);
    await explain("SELECT run_id, SUM(nano_usd) FROM cost_rollups WHERE customer_id = ?1 AND hour >= ?2 AND hour < ?3 GROUP BY run_id", "acme", 0, 1);
    for (const plan of plans) {
      expect(plan).toMatch(/SEARCH cost_rollups USING (PRIMARY KEY|INDEX cost_rollups_customer_hour|COVERING INDEX cost_rollups_customer_hour)/);
      expect(plan).not.toMatch(/SCAN cost_rollups(?! USING)/);
    }
  });
});

describe("sums over any grouping equal the total (property, over D1)", () => {
  const WINDOW_FROM = Date.parse("2031-01-01T00:00:00Z");
  const WINDOW_MS = 40 * 86_400_000;
  const event = fc.record({
    customer: fc.constantFrom("pa", "pb", "pc"),
    project: fc.constantFrom("x", "y"),
    run: fc.constantFrom("r1", "r2", "r3", "r4", "r5"),
    runType: fc.constantFrom(null, "rt"),
    pool: fc.constantFrom("standard", "gpu"),
    meterModel: fc.constantFrom(["input_tokens", "gpt-4o"], ["output_tokens", "gpt-4o-mini"], ["cached_input_tokens", "gpt-4o"], ["worker_requests", null], ["d1_rows_read", null]),
    quantity: fc.integer({ min: 0, max: 1_000_000 }),
    nano: fc.bigInt({ min: 0n, max: 2n ** 52n }),
    offset: fc.integer({ min: 0, max: WINDOW_MS - 1 }),
  });

  it("for every groupBy and bucket", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(event, { maxLength: 40 }), fc.constantFrom(undefined, "hour", "day", "week", "month"), async (events, bucket) => {
        await env.DB.prepare("DELETE FROM cost_rollups WHERE hour >= ?1").bind(WINDOW_FROM).run();
        // A run belongs to one customer, project, type and pool: derive them from the run.
        const owner = new Map<string, (typeof events)[number]>();
        const rows: Row[] = events.map((e) => {
          const o = owner.get(e.run) ?? (owner.set(e.run, e), e);
          return { customer: o.customer, project: o.project, run: e.run, runType: o.runType, pool: o.pool, meter: e.meterModel[0]!, model: e.meterModel[1], quantity: e.quantity, nano: e.nano, at: WINDOW_FROM + e.offset };
        });
        if (rows.length) await insertEvents(rows);
        const expected = rows.reduce((s, r) => s + BigInt(r.nano), 0n);
        const window = `from=${new Date(WINDOW_FROM).toISOString()}&to=${new Date(WINDOW_FROM + WINDOW_MS).toISOString()}${bucket ? `&bucket=${bucket}` : ""}`;
        for (const groupBy of ["", "customer", "project", "runType", "model", "pool"]) {
          const res = await api("GET", `/v1/costs?${window}${groupBy ? `&groupBy=${groupBy}` : ""}`);
          if (res.status !== 200) return false;
          const sum = (field: string) => res.body.rows.reduce((s: bigint, r: any) => s + BigInt(r[field]), 0n);
          if (BigInt(res.body.totalNanoUsd) !== expected || sum("totalNanoUsd") !== expected) return false;
          if (sum("aiNanoUsd") + sum("infraNanoUsd") !== expected || sum("aiNanoUsd") !== BigInt(res.body.totals.aiNanoUsd)) return false;
          if (sum("inputTokens") !== BigInt(res.body.totals.inputTokens)) return false;
          if (res.body.totals.runs !== owner.size) return false;
        }
        return true;
      }),
      { numRuns: 12 },
    );
  });
});

describe("GET /v1/customers/:id/profitability", () => {
  it("revenue, direct cost, an even share of the fixed cost, and the margin", async () => {
    const res = await api("GET", "/v1/customers/acme/profitability?month=2025-03");
    expect(res.status).toBe(200);
    // acme: 2 runs in March; fee $10 + 2 × $0.50; direct $0.0005599; half of the $100 fixed cost
    // (acme and bolt had runs in March).
    expect(res.body).toEqual({
      customerId: "acme",
      month: "2025-03",
      from: "2025-03-01T00:00:00.000Z",
      to: "2025-04-01T00:00:00.000Z",
      complete: true,
      runs: 2,
      revenueNanoUsd: 11_000_000_000,
      revenueUsd: "11.000000",
      revenue: { monthlyFeeNanoUsd: 10_000_000_000, pricePerRunNanoUsd: 500_000_000, runFeesNanoUsd: 1_000_000_000 },
      directCostNanoUsd: 559_900,
      directCostUsd: "0.000560",
      directCost: { aiNanoUsd: 557_500, infraNanoUsd: 2_400 },
      allocatedFixedCostNanoUsd: 50_000_000_000,
      allocatedFixedCostUsd: "50.000000",
      allocation: { method: "even", fixedMonthlyCostNanoUsd: 100_000_000_000, sharedAmong: 2 },
      marginNanoUsd: 11_000_000_000 - 559_900 - 50_000_000_000,
      marginUsd: "-39.000560",
    });
    const bolt = (await api("GET", "/v1/customers/bolt/profitability?month=2025-03")).body;
    expect(bolt).toMatchObject({ runs: 2, revenueNanoUsd: 20_000_000_000, directCostNanoUsd: 10_500_000, allocatedFixedCostNanoUsd: 50_000_000_000 });
    const april = (await api("GET", "/v1/customers/acme/profitability?month=2025-04")).body;
    expect(april).toMatchObject({ runs: 0, revenueNanoUsd: 10_000_000_000, directCostNanoUsd: 0, allocatedFixedCostNanoUsd: 0 });
  });

  it("weighted: shares in proportion to direct cost that sum exactly to the fixed cost", async () => {
    const weighted = new CostsService({ ...env, FIXED_MONTHLY_COST_USD: "100", FIXED_COST_ALLOCATION: "weighted" } as unknown as Env);
    const acme = await weighted.profitability("acme", "2025-03");
    const bolt = await weighted.profitability("bolt", "2025-03");
    // 100e9 × 559900 / 11059900 = 5062432752.55… and 100e9 × 10500000 / 11059900 = 94937567247.44…
    expect(acme.allocatedFixedCostNanoUsd).toBe(5_062_432_753);
    expect(bolt.allocatedFixedCostNanoUsd).toBe(94_937_567_247);
    expect(BigInt(acme.allocatedFixedCostNanoUsd) + BigInt(bolt.allocatedFixedCostNanoUsd)).toBe(100_000_000_000n);
    expect(acme.allocation).toEqual({ method: "weighted", fixedMonthlyCostNanoUsd: 100_000_000_000, sharedAmong: 2 });
    expect(bolt.allocation).toEqual({ method: "weighted", fixedMonthlyCostNanoUsd: 100_000_000_000, sharedAmong: 2 });
    const misconfigured = new CostsService({ ...env, FIXED_COST_ALLOCATION: "random" } as unknown as Env);
    await expect(misconfigured.profitability("acme", "2025-03")).rejects.toMatchObject({ code: "misconfigured" });
  });

  it("admin only: a customer key gets 403 for its own and any other id; unknown ids are 404; bad months are 400s", async () => {
    // Margin and allocated fixed cost are the operator's business, not the customer's.
    for (const path of ["acme/profitability?month=2025-03", "bolt/profitability?month=2025-03", "acme/profitability?month=2025-13", "nobody/profitability"]) {
      const res = await api("GET", `/v1/customers/${path}`, { key: keyA });
      expect(res.status, path).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
      expect(JSON.stringify(res.body)).not.toMatch(/margin|allocat/i);
    }
    expect((await api("GET", "/v1/customers/nobody/profitability?month=2025-03")).status).toBe(404);
    const badMonth = await api("GET", "/v1/customers/acme/profitability?month=2025-13");
    expect(badMonth.status).toBe(400);
    expect(badMonth.body.error.details[0].field).toBe("query.month");
    const current = await api("GET", "/v1/customers/acme/profitability");
    expect(current.status).toBe(200);
    expect(current.body.month).toBe(new Date().toISOString().slice(0, 7));
    expect(current.body.complete).toBe(false);
  });
});
