/**
 * Cost sub-ledgers (LEDGER_SUBSHARDS, set for "hot-*" customers in vitest.workerd.ts), against
 * real D1, Durable Objects and Queues: each run's costs are counted by sub-ledger
 * jumpShard(runId, N), which writes its rollups to D1 and reports its month totals to the
 * customer's primary ledger (SET by version, one report per flush); the primary's spend, its
 * budget, its alerts and its reconciliation with D1 stay exact.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CustomerLedger } from "../../durable-objects/ledger/customer-ledger";
import { ledgerStub, subLedgerStub } from "../../durable-objects/ledger/rpc";
import { jumpShard } from "../../src/domain/sharding";
import { monthOf } from "../../src/domain/cost-records";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

afterEach(() => vi.restoreAllMocks());

const mini = (inputTokens: number, outputTokens: number) => ({ model: "gpt-4o-mini", inputTokens, outputTokens });

async function configuredCustomer(id: string, budget?: { monthlyLimitUsd: string; softThresholds: number[] }) {
  const res = await api("POST", "/v1/customers", { body: { id, name: `Hot ${id}`, ...(budget ? { budget } : {}) } });
  expect(res.status).toBe(201);
  return { id, key: res.body.apiKey as string };
}

/** The run's cost once every record is counted by its ledger. */
async function settledCost(key: string, runId: string) {
  return vi.waitUntil(async () => {
    const res = await api("GET", `/v1/runs/${runId}/cost`, { key });
    return res.status === 200 && res.body.settled ? res.body : false;
  }, { timeout: 10_000, interval: 50 });
}

/** Every sub-ledger has reported to the primary and handed its rollups on; the primary has too. */
async function settled(customerId: string, subLedgers: number) {
  await vi.waitUntil(async () => {
    const views = await Promise.all(Array.from({ length: subLedgers }, (_, k) => subLedgerStub(env, customerId, k).view()));
    const primary = await ledgerStub(env, customerId).view();
    return views.every((v) => v.pendingForPrimary === 0 && v.pendingForD1 === 0) && primary.pendingForD1 === 0;
  }, { timeout: 10_000, interval: 100 });
}

async function d1Sum(customerId: string): Promise<bigint> {
  const row = await env.DB.prepare("SELECT CAST(SUM(nano_usd) AS TEXT) AS n FROM cost_rollups WHERE customer_id = ?").bind(customerId).first<{ n: string | null }>();
  return BigInt(row?.n ?? "0");
}

const spendOf = async (customerId: string) => BigInt((await ledgerStub(env, customerId).summary()).spendNanoUsd);

function rollupFor(customerId: string, runId: string, nanoUsd: string, at: number, version: number) {
  return {
    runId, customerId, projectId: "p", runType: null, pool: "standard", version,
    rows: [{ hour: at - (at % 3_600_000), model: "gpt-4o-mini", part: 0, inputTokens: "0", cachedInputTokens: "0", outputTokens: "0", reasoningTokens: "0",
      aiNanoUsd: nanoUsd, infraNanoUsd: "0", nanoUsd, attempts: 1, lines: [], priceVersions: ["defaults-2026-11"] }],
  };
}

describe("a customer with cost sub-ledgers", () => {
  it("spreads many runs' costs over its sub-ledgers; the primary's month total is their exact sum, equal to D1's, with far fewer requests", async () => {
    const customer = await configuredCustomer("hot-spread");
    const recordCalls = vi.spyOn(CustomerLedger.prototype, "record");
    const reportCalls = vi.spyOn(CustomerLedger.prototype, "applySubTotals");
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) => createRun(customer.key, { steps: [synthetic("a", { usage: mini(1_000 + i, 100) }), synthetic("b", { usage: mini(500, 50 + i) })] })),
    );
    expect(created.every((r) => r.status === 202)).toBe(true);
    const runIds: string[] = created.map((r) => r.body.run.id);
    await Promise.all(runIds.map((id) => waitForRun(customer.key, id, isFinished, 20_000)));
    const costs = await Promise.all(runIds.map((id) => settledCost(customer.key, id)));
    await settled(customer.id, 4);

    // Each run's costs went to sub-ledger jumpShard(runId, 4), and only there.
    const expectedBySubLedger = [0n, 0n, 0n, 0n];
    runIds.forEach((id, i) => (expectedBySubLedger[jumpShard(id, 4)]! += BigInt(costs[i].totalNanoUsd)));
    const bySubLedger = await Promise.all([0, 1, 2, 3].map(async (k) => BigInt((await subLedgerStub(env, customer.id, k).summary()).spendNanoUsd)));
    expect(bySubLedger).toEqual(expectedBySubLedger);
    expect(bySubLedger.filter((n) => n > 0n).length).toBeGreaterThanOrEqual(3);

    const total = costs.reduce((sum, c) => sum + BigInt(c.totalNanoUsd), 0n);
    expect(await spendOf(customer.id)).toBe(total);
    const primary = await ledgerStub(env, customer.id).view();
    expect(primary.subLedgers.map((s) => s.subLedger).sort()).toEqual(expectedBySubLedger.flatMap((n, k) => (n > 0n ? [k] : [])));
    expect(primary.runsInFlight).toBe(0);
    // The API's view of the customer is the primary's.
    expect(BigInt((await api("GET", `/v1/customers/${customer.id}`)).body.customer.spend.monthToDateNanoUsd)).toBe(total);

    // D1's rollups were written by the sub-ledgers, once: the reconciliation finds nothing to repair.
    await vi.waitUntil(async () => (await d1Sum(customer.id)) === total, { timeout: 8000, interval: 50 });
    const reconciliation = (await api("GET", `/v1/customers/${customer.id}/ledger`)).body.ledger.reconciliation;
    expect(reconciliation).toMatchObject({ differenceNanoUsd: 0, repaired: [], unexplained: [], runsCompared: 40 });
    expect(BigInt(reconciliation.ledgerNanoUsd)).toBe(total);
    expect(BigInt(reconciliation.d1NanoUsd)).toBe(total);

    // The primary saw one report per sub-ledger flush, not one request per delivery.
    const deliveries = recordCalls.mock.calls.filter(([input]) => input.customerId === customer.id).length;
    const reports = reportCalls.mock.calls.filter(([input]) => input.customerId === customer.id).length;
    const sent = (await Promise.all([0, 1, 2, 3].map((k) => subLedgerStub(env, customer.id, k).view()))).reduce((n, v) => n + v.reportsSent, 0);
    expect(reports).toBe(sent);
    expect(deliveries).toBeGreaterThanOrEqual(40);
    console.info(JSON.stringify({ event: "test.ledger_subshards_ratio", deliveries, reportsToPrimary: reports, ratio: reports / deliveries }));
    expect(reports).toBeLessThan(deliveries);

    // A report redelivered, or an older one arriving after a newer one, changes nothing.
    const latest = primary.subLedgers.find((s) => s.month === monthOf(Date.now()))!;
    const again = { customerId: customer.id, subLedger: latest.subLedger, totals: [{ month: latest.month, nanoUsd: latest.nanoUsd, version: latest.version }] };
    expect((await ledgerStub(env, customer.id).applySubTotals(again)).applied).toBe(0);
    const older = { ...again, totals: [{ month: latest.month, nanoUsd: "1", version: latest.version - 1 }] };
    expect((await ledgerStub(env, customer.id).applySubTotals(older)).applied).toBe(0);
    expect(await spendOf(customer.id)).toBe(total);
    expect((await api("GET", `/v1/customers/${customer.id}/ledger`)).body.ledger.reconciliation).toMatchObject({ differenceNanoUsd: 0, unexplained: [] });
  }, 60_000);

  it("counts a delivery sent twice once, and the primary takes SET totals by version, whatever their order", async () => {
    const customer = await configuredCustomer("hot-direct");
    const at = Date.now();
    const month = monthOf(at);
    const runA = "run_direct_a";
    const runB = "run_direct_b";
    const sub = (runId: string) => subLedgerStub(env, customer.id, jumpShard(runId, 4));
    const deliver = (runId: string, records: { seq: number; nanoUsd: string }[], version: number) =>
      sub(runId).record({
        customerId: customer.id, runId, subLedger: jumpShard(runId, 4),
        records: records.map((r) => ({ ...r, at, holdId: null })),
        rollup: rollupFor(customer.id, runId, records.reduce((s, r) => s + BigInt(r.nanoUsd), 0n).toString(), at, version),
      });
    expect((await deliver(runA, [{ seq: 1, nanoUsd: "1000000007" }], 1)).counted).toBe(1);
    // Redelivered (the run saw no acknowledgement): counted once.
    expect((await deliver(runA, [{ seq: 1, nanoUsd: "1000000007" }], 1)).counted).toBe(0);
    expect((await deliver(runB, [{ seq: 1, nanoUsd: "20" }, { seq: 2, nanoUsd: "3" }], 1)).counted).toBe(2);
    await settled(customer.id, 4);
    expect(await spendOf(customer.id)).toBe(1_000_000_030n);

    // The primary holds each sub-ledger's latest total; an older or repeated report is ignored.
    const ledger = ledgerStub(env, customer.id);
    const k = jumpShard(runA, 4);
    const held = (await ledger.view()).subLedgers.find((s) => s.subLedger === k && s.month === month)!;
    expect((await ledger.applySubTotals({ customerId: customer.id, subLedger: k, totals: [{ month, nanoUsd: "5", version: Math.max(1, held.version - 1) }] })).applied).toBe(0);
    expect((await ledger.applySubTotals({ customerId: customer.id, subLedger: k, totals: [{ month, nanoUsd: held.nanoUsd, version: held.version }] })).applied).toBe(0);
    expect(await spendOf(customer.id)).toBe(1_000_000_030n);

    // Out of order on an unused sub-ledger index: v3 then v2 then v3 again leaves v3's total.
    const spare = [0, 1, 2, 3].find((i) => i !== jumpShard(runA, 4) && i !== jumpShard(runB, 4))!;
    const other = "2020-01";
    for (const [nanoUsd, version, applied] of [["300", 3, 1], ["200", 2, 0], ["300", 3, 0], ["400", 4, 1]] as const) {
      expect((await ledger.applySubTotals({ customerId: customer.id, subLedger: spare, totals: [{ month: other, nanoUsd, version }] })).applied).toBe(applied);
    }
    expect((await ledger.view()).subLedgers.find((s) => s.subLedger === spare && s.month === other)).toMatchObject({ nanoUsd: "400", version: 4 });
    expect(await spendOf(customer.id)).toBe(1_000_000_030n);

    // D1 holds both runs once; the reconciliation of this month agrees.
    await vi.waitUntil(async () => (await d1Sum(customer.id)) === 1_000_000_030n, { timeout: 8000, interval: 50 });
    const report = await ledger.reconcile({ customerId: customer.id, month });
    expect(report).toMatchObject({ ledgerNanoUsd: "1000000030", d1NanoUsd: "1000000030", differenceNanoUsd: "0", repaired: [], unexplained: [], runsCompared: 2 });
  });

  it("refuses a delivery naming a sub-ledger other than the object it reaches, and a bad report", async () => {
    const customer = "hot-direct";
    const at = Date.now();
    const stub = subLedgerStub(env, customer, 0);
    // Make sure sub-ledger 0 knows who it is.
    await stub.record({ customerId: customer, runId: "run_refuse_0", subLedger: 0, records: [], rollup: rollupFor(customer, "run_refuse_0", "0", at, 1) });
    const outcome = await stub.record({ customerId: customer, runId: "run_refuse_1", subLedger: 1, records: [], rollup: rollupFor(customer, "run_refuse_1", "0", at, 1) }).then(
      () => "accepted",
      (err: unknown) => String(err),
    );
    expect(outcome).toContain("Invalid request: subLedger: this object is sub-ledger 0 of hot-direct, not 1 of hot-direct");
    const bad = await ledgerStub(env, customer).applySubTotals({ customerId: customer, subLedger: 0, totals: [{ month: "2026-13", nanoUsd: "-1", version: 0 }] }).then(
      () => "accepted",
      (err: unknown) => String(err),
    );
    expect(bad).toMatch(/Invalid request: totals\.0\.month: .*totals\.0\.nanoUsd: .*totals\.0\.version/);
  });

  it("batches: a burst of 400 deliveries reaches the primary as a handful of reports, one total per month each", async () => {
    const customer = "hot-direct";
    const at = Date.now();
    const before = await spendOf(customer);
    const reportCalls = vi.spyOn(CustomerLedger.prototype, "applySubTotals");
    const runIds = Array.from({ length: 100 }, (_, i) => `run_burst_${i}`);
    // 100 runs, 4 deliveries each (seq 1..4), every run's deliveries in order, the runs in parallel.
    await Promise.all(
      runIds.map(async (runId) => {
        const k = jumpShard(runId, 4);
        for (let seq = 1; seq <= 4; seq++) {
          await subLedgerStub(env, customer, k).record({
            customerId: customer, runId, subLedger: k,
            records: [{ seq, at, nanoUsd: "1000", holdId: null }],
            rollup: rollupFor(customer, runId, String(seq * 1000), at, seq),
          });
        }
      }),
    );
    await settled(customer, 4);
    expect(await spendOf(customer)).toBe(before + 400n * 1000n);
    const reports = reportCalls.mock.calls.filter(([input]) => input.customerId === customer);
    console.info(JSON.stringify({ event: "test.ledger_subshards_burst", deliveries: 400, reportsToPrimary: reports.length, ratio: reports.length / 400 }));
    // Each sub-ledger reports at most once per flush (500 ms) whatever arrived meanwhile: a few flushes each at most.
    expect(reports.length).toBeLessThanOrEqual(4 * 3);
    for (const [input] of reports) expect(input.totals!.length).toBe(1);
  });

  it("admits against the summed spend, settles holds through the sub-ledgers' reports, and alerts a threshold once", async () => {
    const customer = await configuredCustomer("hot-budget", { monthlyLimitUsd: "0.5", softThresholds: [0.5] });
    // Each run costs about $0.15 (1M input tokens at $0.15/M) plus its infrastructure.
    const usage = mini(1_000_000, 0);
    const runs = [];
    for (let i = 0; i < 4; i++) {
      const created = await createRun(customer.key, { steps: [synthetic("big", { usage }, { timeoutMs: 5_000 })] });
      if (created.status !== 202) {
        runs.push({ status: created.status });
        continue;
      }
      const run = await waitForRun(customer.key, created.body.run.id, isFinished, 20_000);
      runs.push({ id: run.id, status: run.status, failure: run.failure?.type });
      await settled(customer.id, 3);
    }
    // Three fit under $0.50; the fourth is refused at the door: its start (creation, allowance and
    // its first step's worst case) would pass the limit, so it is never admitted to fail.
    expect(runs.slice(0, 3).map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(runs[3]).toEqual({ status: 402 });

    const ledger = ledgerStub(env, customer.id);
    const view = await ledger.view();
    expect(BigInt(view.spendNanoUsd)).toBeGreaterThan(450_000_000n);
    expect(BigInt(view.spendNanoUsd)).toBeLessThanOrEqual(500_000_000n);
    // All of it counted by the sub-ledgers; every hold let go and every run out of flight by their reports.
    expect(view.subLedgers.reduce((s, t) => s + BigInt(t.nanoUsd), 0n)).toBe(BigInt(view.spendNanoUsd));
    expect(view.heldNanoUsd).toBe("0");
    expect(view.runsInFlight).toBe(0);

    // The budget lowered below the summed spend: new runs are refused.
    expect((await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "0.3", softThresholds: [0.5] } })).status).toBe(200);
    expect((await createRun(customer.key, { steps: [synthetic("x")] })).status).toBe(402);
    expect((await ledger.admit({})).allowed).toBe(false);

    // 50% was passed once ($0.25): one soft alert, whatever number of reports crossed it.
    const alerts = await vi.waitUntil(async () => {
      const list = (await api("GET", "/v1/alerts?kind=budget_soft_limit")).body.alerts.filter((a: any) => a.customerId === customer.id);
      return list.length ? list : false;
    }, { timeout: 5000 });
    expect(alerts).toHaveLength(1);
    await vi.waitUntil(async () => (await d1Sum(customer.id)) === BigInt(view.spendNanoUsd), { timeout: 8000, interval: 50 });
    expect((await ledger.reconcile({ customerId: customer.id })).unexplained).toEqual([]);
  }, 90_000);
});

describe("a customer without sub-ledgers", () => {
  it("keeps its one ledger: its runs' costs are counted there, and it has no sub-ledger totals", async () => {
    const customer = await newCustomer("plain");
    const reportCalls = vi.spyOn(CustomerLedger.prototype, "applySubTotals");
    const created = await createRun(customer.key, { steps: [synthetic("a", { usage: mini(5_000, 500) })] });
    await waitForRun(customer.key, created.body.run.id, isFinished);
    const cost = await settledCost(customer.key, created.body.run.id);
    const view = await ledgerStub(env, customer.id).view();
    expect(view.subLedgers).toEqual([]);
    expect(BigInt(view.spendNanoUsd)).toBe(BigInt(cost.totalNanoUsd));
    expect(reportCalls.mock.calls.filter(([input]) => input.customerId === customer.id)).toHaveLength(0);
  });
});
