import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ledgerStub } from "../../durable-objects/ledger/rpc";
import { INDEX_ROWS_PER_ATTEMPT, INDEX_ROWS_PER_RUN } from "../../durable-objects/run/meters";
import { costNano } from "../../src/domain/pricing";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const realFetch = globalThis.fetch;
afterEach(() => vi.restoreAllMocks());

/** A fake OpenAI-compatible endpoint: the model vendor is outside the platform. */
function fakeLlm(usage = { prompt_tokens: 100, completion_tokens: 200 }) {
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url === "http://127.0.0.1:9/alerts") return new Response(null, { status: 204 });
    if (url.startsWith("https://llm.example/")) {
      await new Promise((r) => setTimeout(r, 20));
      return Response.json({ id: "x", model: "gpt-4o-mini-2024", choices: [{ message: { role: "assistant", content: "hi" }, finish_reason: "stop" }], usage });
    }
    return realFetch(input, init);
  });
}

const llmStep = (name = "ask", maxTokens = 1000) => ({
  name,
  type: "llm",
  // A short timeout keeps the step's worst case (it pays for heartbeats until the timeout) small.
  timeoutMs: 10_000,
  config: { model: "gpt-4o-mini", baseUrl: "https://llm.example/v1", maxTokens, messages: [{ role: "user", content: "Say hi" }] },
});

async function costOf(key: string, runId: string, until: (c: any) => boolean) {
  return vi.waitUntil(async () => {
    const res = await api("GET", `/v1/runs/${runId}/cost`, { key });
    return res.status === 200 && until(res.body) ? res.body : false;
  }, { timeout: 8000, interval: 50 });
}

const tokenLines = (cost: any) => cost.lines.filter((l: any) => l.meter.endsWith("_tokens"));
// gpt-4o-mini in the seeded price table: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
const MINI = { input: 150_000_000n, cached: 75_000_000n, output: 600_000_000n };

describe("cost per run", () => {
  it("a run with known token usage costs exactly tokens × price, cached tokens at the cached price", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [synthetic("think", { usage: { model: "gpt-4o-mini", inputTokens: 1234, outputTokens: 567, cachedTokens: 890 } })],
    });
    expect(created.status).toBe(202);
    await waitForRun(customer.key, created.body.run.id, isFinished);
    const cost = await costOf(customer.key, created.body.run.id, (c) => tokenLines(c).length === 3 && c.lines.some((l: any) => l.meter === "do_requests"));
    const expectedAi = costNano(1234n, MINI.input) + costNano(890n, MINI.cached) + costNano(567n, MINI.output);
    expect(BigInt(cost.aiNanoUsd)).toBe(expectedAi);
    expect(tokenLines(cost).map((l: any) => [l.meter, l.model, l.quantity])).toEqual([
      ["cached_input_tokens", "gpt-4o-mini", 890],
      ["input_tokens", "gpt-4o-mini", 1234],
      ["output_tokens", "gpt-4o-mini", 567],
    ]);
    // Infrastructure the run caused, counted: requests, rows, queue operations, estimated CPU.
    const meters = cost.lines.filter((l: any) => !l.meter.endsWith("_tokens")).map((l: any) => l.meter);
    expect(meters).toEqual(expect.arrayContaining(["worker_requests", "queue_operations", "do_requests", "do_rows_written", "worker_cpu_ms"]));
    expect(cost.lines.find((l: any) => l.meter === "worker_cpu_ms").estimated).toBe(true);
    expect(BigInt(cost.totalNanoUsd)).toBe(BigInt(cost.aiNanoUsd) + BigInt(cost.infraNanoUsd));
    const run = (await api("GET", `/v1/runs/${created.body.run.id}`, { key: customer.key })).body.run;
    expect(run.cost.totalNanoUsd).toBe(cost.totalNanoUsd);
  });

  it("an unknown model is refused at run creation, never priced at zero", async () => {
    const customer = await newCustomer();
    const res = await createRun(customer.key, { steps: [synthetic("x", { usage: { model: "no-such-model", inputTokens: 1, outputTokens: 1 } })] });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body.error)).toContain("no-such-model");
  });

  it("a cost record sent twice (same run, same seq) is counted once, in the ledger and in D1", async () => {
    const customer = await newCustomer();
    const runId = `run_dup_${customer.id}`;
    const at = Date.now();
    const rollup = {
      runId, customerId: customer.id, projectId: "p", runType: null, pool: "standard", version: 1,
      rows: [{ hour: at - (at % 3_600_000), model: "gpt-4o-mini", part: 0, inputTokens: "1000", cachedInputTokens: "0", outputTokens: "0", reasoningTokens: "0",
        aiNanoUsd: "150000", infraNanoUsd: "0", nanoUsd: "150000", attempts: 1, lines: [{ meter: "input_tokens", model: "gpt-4o-mini", quantity: "1000", nanoUsd: "150000", estimated: false }], priceVersions: ["defaults-2026-11"] }],
    };
    const record = { seq: 1, at, nanoUsd: "150000", holdId: null };
    const ledger = ledgerStub(env, customer.id);
    expect((await ledger.record({ customerId: customer.id, runId, records: [record], rollup })).counted).toBe(1);
    expect((await ledger.record({ customerId: customer.id, runId, records: [record, record], rollup })).counted).toBe(0);
    expect((await ledger.summary()).spendNanoUsd).toBe("150000");
    await vi.waitUntil(async () => (await env.DB.prepare("SELECT SUM(nano_usd) AS n FROM cost_rollups WHERE run_id = ?").bind(runId).first<{ n: number }>())?.n === 150000, { timeout: 5000 });
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM cost_rollups WHERE run_id = ?").bind(runId).first<{ n: number }>();
    expect(rows?.n).toBe(1);
  });

  it("a price change applies to new events only", async () => {
    const customer = await newCustomer();
    const usage = { model: "gpt-4o-mini", inputTokens: 1_000_000, outputTokens: 0 };
    const first = await createRun(customer.key, { steps: [synthetic("a", { usage })] });
    await waitForRun(customer.key, first.body.run.id, isFinished);
    const before = await costOf(customer.key, first.body.run.id, (c) => tokenLines(c).length === 1);
    expect(BigInt(before.aiNanoUsd)).toBe(MINI.input);

    const put = await api("PUT", "/v1/pricing", { body: { models: [{ model: "gpt-4o-mini", inputUsdPerMTok: "0.30", outputUsdPerMTok: "1.20", cachedInputUsdPerMTok: "0.15" }] } });
    expect(put.status).toBe(200);
    try {
      const second = await createRun(customer.key, { steps: [synthetic("a", { usage })] });
      await waitForRun(customer.key, second.body.run.id, isFinished);
      const after = await costOf(customer.key, second.body.run.id, (c) => tokenLines(c).length === 1);
      expect(BigInt(after.aiNanoUsd)).toBe(300_000_000n);
      const again = (await api("GET", `/v1/runs/${first.body.run.id}/cost`, { key: customer.key })).body;
      expect(BigInt(again.aiNanoUsd)).toBe(MINI.input);
    } finally {
      await api("PUT", "/v1/pricing", { body: { models: [{ model: "gpt-4o-mini", inputUsdPerMTok: "0.15", outputUsdPerMTok: "0.60", cachedInputUsdPerMTok: "0.075" }] } });
    }
  });
});

describe("budgets", () => {
  async function budgetedCustomer(limitUsd: string, softThresholds = [0.5]) {
    const id = `budget-${Math.random().toString(36).slice(2, 8)}`;
    const res = await api("POST", "/v1/customers", { body: { id, name: "Budgeted", budget: { monthlyLimitUsd: limitUsd, softThresholds } } });
    expect(res.status).toBe(201);
    return { id, key: res.body.apiKey as string };
  }

  it("50 concurrent llm runs against a hard budget: only what the budget can start is admitted, every admitted run succeeds, spend never passes it; the soft alert fires once", async () => {
    fakeLlm();
    // Starting a run holds its creation, its allowance and its first step's worst case (≈ $0.00043:
    // 250 output tokens at $0.60/M and the infrastructure of its timeout and lease); it costs
    // ≈ $0.000185 (100 × $0.15/M + 200 × $0.60/M and its infrastructure). So $0.002 can start
    // about four at once: the rest of a burst is refused at the door (402), not admitted and then
    // failed at its first step with its creation already paid for.
    const customer = await budgetedCustomer("0.002");
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => createRun(customer.key, { idempotencyKey: `race-${i}`, steps: [llmStep("ask", 250)] })));
    const accepted = results.filter((r) => r.status === 202).map((r) => r.body.run.id as string);
    const refused = results.filter((r) => r.status === 402);
    expect(accepted.length + refused.length).toBe(50);
    expect(accepted.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.body.error.message).toContain("starting this run may cost up to");
    const runs = await Promise.all(accepted.map((id) => waitForRun(customer.key, id, isFinished, 20_000)));
    expect(runs.map((r) => r.status)).toEqual(accepted.map(() => "succeeded"));

    // One at a time until the budget cannot start another: each admitted run still succeeds.
    for (let i = 0; i < 40; i++) {
      const next = await createRun(customer.key, { idempotencyKey: `after-${i}`, steps: [llmStep("ask", 250)] });
      if (next.status === 402) break;
      expect(next.status).toBe(202);
      expect((await waitForRun(customer.key, next.body.run.id, isFinished, 20_000)).status).toBe("succeeded");
    }
    const summary = await ledgerStub(env, customer.id).summary();
    console.info(JSON.stringify({ event: "test.budget_burst", admitted: accepted.length, refused: refused.length, spendNanoUsd: summary.spendNanoUsd }));
    expect(BigInt(summary.spendNanoUsd)).toBeLessThanOrEqual(2_000_000n);
    // Refused only once what is left cannot start a run (≈ $0.0005).
    expect(BigInt(summary.spendNanoUsd)).toBeGreaterThan(1_200_000n);
    await vi.waitUntil(async () => (await ledgerStub(env, customer.id).summary()).heldNanoUsd === "0", { timeout: 5000 });
    const alerts = await vi.waitUntil(async () => {
      const list = (await api("GET", "/v1/alerts?kind=budget_soft_limit")).body.alerts.filter((a: any) => a.customerId === customer.id);
      return list.length ? list : false;
    }, { timeout: 5000 });
    expect(alerts).toHaveLength(1);
  }, 90_000);

  it("a step whose worst case does not fit never starts; a spent budget refuses new runs and resumes with 402", async () => {
    const customer = await budgetedCustomer("0.2", []);
    // Each usage step costs $0.15 (1M input tokens at $0.15/M): the first fits, the second cannot.
    const usage = { model: "gpt-4o-mini", inputTokens: 1_000_000, outputTokens: 0 };
    const created = await createRun(customer.key, {
      steps: [synthetic("big", { usage }, { timeoutMs: 5_000 }), synthetic("next", { usage }, { timeoutMs: 5_000 }), synthetic("last")],
    });
    expect(created.status).toBe(202);
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure).toMatchObject({ type: "budget_exceeded", step: "next" });
    expect(run.failure.message).toContain("would be exceeded");
    expect(run.steps.map((s: any) => [s.name, s.status, s.attempts])).toEqual([
      ["big", "succeeded", 1],
      ["next", "skipped", 0],
      ["last", "skipped", 0],
    ]);
    // Nothing is left held once the run has ended.
    await vi.waitUntil(async () => (await api("GET", `/v1/customers/${customer.id}`)).body.customer.spend.heldNanoUsd === 0, { timeout: 5000 });
    const view = (await api("GET", `/v1/customers/${customer.id}`)).body.customer.spend;
    expect(BigInt(view.monthToDateNanoUsd)).toBeGreaterThan(150_000_000n);
    expect(BigInt(view.remainingNanoUsd)).toBe(200_000_000n - BigInt(view.monthToDateNanoUsd));
    // A budget lowered below what is spent: new runs and resumes are refused with 402.
    expect((await api("PUT", `/v1/customers/${customer.id}/budget`, { body: { monthlyLimitUsd: "0.1", softThresholds: [] } })).status).toBe(200);
    const again = await createRun(customer.key, { steps: [synthetic("x")] });
    expect(again.status).toBe(402);
    expect(again.body.error.code).toBe("budget_exhausted");
    const resumed = await api("POST", `/v1/runs/${run.id}/resume`, { key: customer.key });
    expect(resumed.status).toBe(402);
    expect(resumed.body.error.code).toBe("budget_exhausted");
    // A failed-by-budget run is not a dead letter.
    expect((await api("GET", `/v1/dlq?customerId=${customer.id}`)).body.entries).toHaveLength(0);
  });
});

describe("the D1 rows a run is billed for are the rows D1 writes", () => {
  it("an attempt row costs INDEX_ROWS_PER_ATTEMPT rows written (WITHOUT ROWID: the key is the row), a new run row INDEX_ROWS_PER_RUN", async () => {
    const id = `run_rows_${Math.random().toString(36).slice(2, 10)}`;
    const run = await env.DB.prepare(
      `INSERT INTO runs (id, customer_id, project_id, run_type, pool, priority, status, created_at, version, updated_at, due_at)
       VALUES (?1, 'rows-customer', 'proj', NULL, 'standard', 'normal', 'running', ?2, 1, ?2, ?2)`,
    ).bind(id, Date.now()).run();
    expect(run.meta.rows_written).toBe(INDEX_ROWS_PER_RUN);
    const attempt = await env.DB.prepare(
      `INSERT INTO step_attempts (run_id, step_index, attempt, step, step_type, customer_id, project_id, run_type, pool, status, started_at)
       VALUES (?1, 0, 1, 'a', 'synthetic', 'rows-customer', 'proj', NULL, 'standard', 'running', ?2)`,
    ).bind(id, Date.now()).run();
    expect(attempt.meta.rows_written).toBe(INDEX_ROWS_PER_ATTEMPT);
  });
});
