import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildRollup, nanoByMonth, priceRecord, ROW_NANO_CAP, summarizeLines, type CostRecord, type UsageRecord } from "../../src/domain/cost-records";
import { budgetState, compareRunTotals, freshRecords, holdRefusal, remainingBudget, thresholdsReached } from "../../src/domain/ledger";
import { PriceBook, pricePerMillion, type InfraPrice, type ModelPrice } from "../../src/domain/pricing";
import { usageBoundsViolation } from "../../src/domain/token-usage";
import { MAX_ROWS_PER_COMMAND, OVERHEAD_ALLOWANCE_NANO, worstCaseAttempt, worstCaseCreation } from "../../src/domain/worst-case";

const mini: ModelPrice = { model: "gpt-4o-mini", version: "m1", effectiveFrom: 0, input: pricePerMillion("0.15"), output: pricePerMillion("0.60"), cachedInput: pricePerMillion("0.075"), reasoning: null };
const o1: ModelPrice = { model: "o1", version: "m1", effectiveFrom: 0, input: pricePerMillion("15"), output: pricePerMillion("60"), cachedInput: null, reasoning: pricePerMillion("90") };
const infra = (meter: InfraPrice["meter"], usd: string): InfraPrice => ({ meter, version: "cf", effectiveFrom: 0, perMillion: pricePerMillion(usd) });
const book = new PriceBook(
  [mini, o1],
  [infra("worker_requests", "0.30"), infra("queue_operations", "0.40"), infra("do_requests", "0.15"), infra("do_rows_written", "1.00"), infra("worker_cpu_ms", "0.02"), infra("d1_rows_written", "1.00")],
);

const usage = (over: Partial<UsageRecord> = {}): UsageRecord => ({
  seq: 1,
  kind: "attempt",
  step: "s",
  attempt: 1,
  at: Date.parse("2026-12-01T10:20:00Z"),
  infra: { worker_requests: 1, queue_operations: 3, do_requests: 2, do_rows_written: 6, worker_cpu_ms: 40 },
  estimated: ["worker_cpu_ms"],
  tokens: [{ model: "gpt-4o-mini", inputTokens: 1234, cachedTokens: 890, outputTokens: 567 }],
  holdId: null,
  ...over,
});

const priced = (u: UsageRecord): CostRecord => {
  const result = priceRecord(book, u);
  if (!result.ok) throw new Error(`unpriced ${result.unpriced}`);
  return result.record;
};

describe("cost records", () => {
  it("price tokens and counted infrastructure line by line, exactly, at the record's instant", () => {
    const record = priced(usage());
    // 1234 × 0.15 + 890 × 0.075 + 567 × 0.60 per million tokens; 300 + 1200 + 300 + 6000 + 800 nano-USD of infrastructure
    // (a request, three queue operations, two DO requests, six rows, 40 ms of CPU at $0.02 per million ms).
    expect(record.aiNanoUsd).toBe(185_100n + 66_750n + 340_200n);
    expect(record.nanoUsd - record.aiNanoUsd).toBe(300n + 1_200n + 300n + 6_000n + 800n);
    expect(record.lines.find((l) => l.meter === "worker_cpu_ms")?.estimated).toBe(true);
  });

  it("are never priced at zero: a model without a price makes the record wait", () => {
    expect(priceRecord(book, usage({ tokens: [{ model: "nobody", inputTokens: 1, outputTokens: 1 }] }))).toEqual({ ok: false, unpriced: ["nobody"] });
  });

  it("add up per month, by the instant each was incurred", () => {
    const months = nanoByMonth([
      { at: Date.parse("2026-11-30T23:59:59Z"), nanoUsd: 5n },
      { at: Date.parse("2026-12-01T00:00:00Z"), nanoUsd: 7n },
      { at: Date.parse("2026-12-31T12:00:00Z"), nanoUsd: 1n },
    ]);
    expect(Object.fromEntries(months)).toEqual({ "2026-11": 5n, "2026-12": 8n });
  });
});

describe("rollups (what D1 keeps of a run)", () => {
  it("keep a run per UTC hour and model, infrastructure under model '', and add up to the records exactly", () => {
    const a = priced(usage({ seq: 1 }));
    const b = priced(usage({ seq: 2, at: Date.parse("2026-12-01T11:05:00Z"), tokens: [{ model: "o1", inputTokens: 10, outputTokens: 5, reasoningTokens: 7 }] }));
    const c = priced(usage({ seq: 3, kind: "overhead", step: null, attempt: null, tokens: [], infra: { do_requests: 1, d1_rows_written: 4 }, estimated: ["d1_rows_written"] }));
    const rows = buildRollup([c, a, b]);
    expect(rows.map((r) => [new Date(r.hour).toISOString(), r.model, r.attempts])).toEqual([
      ["2026-12-01T10:00:00.000Z", "", 1],
      ["2026-12-01T10:00:00.000Z", "gpt-4o-mini", 1],
      ["2026-12-01T11:00:00.000Z", "", 1],
      ["2026-12-01T11:00:00.000Z", "o1", 1],
    ]);
    expect(rows.reduce((s, r) => s + r.nanoUsd, 0n)).toBe(a.nanoUsd + b.nanoUsd + c.nanoUsd);
    expect(rows.find((r) => r.model === "o1")).toMatchObject({ inputTokens: 10n, outputTokens: 5n, reasoningTokens: 7n, infraNanoUsd: 0n });
    expect(rows.filter((r) => r.model === "").every((r) => r.aiNanoUsd === 0n)).toBe(true);
  });

  it("only ever grow as records are added: every earlier row is kept or replaced by a larger one (D1 upserts by version)", () => {
    const record = fc.record({
      hourOffset: fc.integer({ min: 0, max: 3 }),
      model: fc.constantFrom("gpt-4o-mini", "o1", null),
      input: fc.integer({ min: 0, max: 10_000_000 }),
      rows: fc.integer({ min: 0, max: 40 }),
    });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 25 }), (specs) => {
        const records = specs.map((s, i) =>
          priced(usage({ seq: i + 1, at: Date.parse("2026-12-01T00:00:00Z") + s.hourOffset * 3_600_000, infra: { do_rows_written: s.rows }, tokens: s.model ? [{ model: s.model, inputTokens: s.input, outputTokens: 0 }] : [] })),
        );
        for (let n = 1; n < records.length; n++) {
          const before = buildRollup(records.slice(0, n));
          const after = new Map(buildRollup(records.slice(0, n + 1)).map((r) => [`${r.hour}|${r.model}|${r.part}`, r]));
          for (const row of before) {
            const later = after.get(`${row.hour}|${row.model}|${row.part}`);
            if (!later || later.nanoUsd < row.nanoUsd) return false;
          }
          const total = [...after.values()].reduce((s, r) => s + r.nanoUsd, 0n);
          if (total !== records.slice(0, n + 1).reduce((s, r) => s + r.nanoUsd, 0n)) return false;
        }
        return true;
      }),
    );
  });

  it("split a row in parts before it would pass 2^62 nano-USD, so every stored amount stays a 64-bit integer", () => {
    const huge = (seq: number): CostRecord => ({ ...priced(usage({ seq, tokens: [] })), lines: [{ meter: "input_tokens", model: "m", quantity: 1n, perMillion: 0n, nanoUsd: ROW_NANO_CAP / 2n + 1n, priceVersion: "v", estimated: false }], nanoUsd: ROW_NANO_CAP / 2n + 1n, aiNanoUsd: ROW_NANO_CAP / 2n + 1n });
    const rows = buildRollup([huge(1), huge(2), huge(3)]);
    expect(rows.map((r) => [r.model, r.part])).toEqual([["m", 0], ["m", 1], ["m", 2]]);
    expect(rows.every((r) => r.nanoUsd <= ROW_NANO_CAP)).toBe(true);
  });

  it("sum exactly over any grouping (pure)", () => {
    const line = fc.record({ meter: fc.constantFrom("input_tokens", "output_tokens", "worker_requests", "do_requests"), nanoUsd: fc.bigInt({ min: 0n, max: 2n ** 62n / 64n }) });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 60 }), (lines) => {
        const all = summarizeLines(lines.map((l) => ({ ...l, model: null, quantity: 1n, estimated: false })));
        return all.aiNanoUsd + all.infraNanoUsd === all.totalNanoUsd && all.lines.reduce((s, l) => s + l.nanoUsd, 0n) === all.totalNanoUsd;
      }),
    );
  });
});

describe("ledger rules", () => {
  const budget = { limitNanoUsd: 1_000n, softThresholds: [0.5, 0.8] };
  it("count each record of a run once, whatever order or duplicates arrive in", () => {
    expect(freshRecords([{ seq: 3 }, { seq: 4 }, { seq: 4 }, { seq: 2 }, { seq: 5 }], 3).map((r) => r.seq)).toEqual([4, 5]);
  });

  it("admit a hold only while spend + holds + it stay within the limit", () => {
    expect(holdRefusal(budget, 500n, 300n, 200n)).toBeNull();
    expect(holdRefusal({ limitNanoUsd: 1_000_000_000n, softThresholds: [] }, 500_000_000n, 300_000_000n, 200_000_001n)).toBe(
      "monthly budget of 1.000000 USD would be exceeded: 0.500000 USD spent and 0.300000 USD held, and this step may cost up to 0.200000 USD",
    );
    expect(holdRefusal({ limitNanoUsd: null, softThresholds: [] }, 10n ** 20n, 0n, 10n ** 20n)).toBeNull();
    expect(remainingBudget(budget, 500n, 300n)).toBe(200n);
    expect(remainingBudget(budget, 900n, 300n)).toBe(0n);
  });

  it("state and thresholds in integers", () => {
    expect(budgetState(499n, budget)).toBe("ok");
    expect(budgetState(500n, budget)).toBe("soft_limit");
    expect(budgetState(1_000n, budget)).toBe("exhausted");
    expect(thresholdsReached(800n, budget)).toEqual([0.5, 0.8]);
    expect(thresholdsReached(1_000n, budget)).toEqual([0.5, 0.8, 1]);
  });

  it("compare per-run totals: D1 behind is repairable, money the ledger never counted is not", () => {
    const result = compareRunTotals(new Map([["a", 10n], ["b", 5n], ["c", 0n]]), new Map([["a", 10n], ["b", 3n], ["z", 9n]]));
    expect(result.behind.map((d) => [d.runId, d.ledgerNanoUsd, d.d1NanoUsd])).toEqual([["b", 5n, 3n]]);
    expect(result.unknown.map((d) => [d.runId, d.d1NanoUsd])).toEqual([["z", 9n]]);
  });
});

describe("worst cases held against a hard budget", () => {
  it("price the model's tokens at the dearer of output and reasoning, and the attempt's infrastructure for its whole timeout", () => {
    const none = worstCaseAttempt(book, 0, { tokens: [], timeoutMs: 1_000, leaseMs: 30_000 });
    const withO1 = worstCaseAttempt(book, 0, { tokens: [{ model: "o1", promptTokens: 1_000, outputTokens: 1_000 }], timeoutMs: 1_000, leaseMs: 30_000 });
    if (!none.ok || !withO1.ok) throw new Error("unpriced");
    expect(withO1.nanoUsd - none.nanoUsd).toBe(15_000_000n + 90_000_000n); // 1000 × $15/M input, 1000 × $90/M (reasoning > output)
    expect(none.nanoUsd).toBeGreaterThan(OVERHEAD_ALLOWANCE_NANO);
    expect(worstCaseAttempt(book, 0, { tokens: [{ model: "nobody", promptTokens: 1, outputTokens: 1 }], timeoutMs: 1, leaseMs: 1 })).toEqual({ ok: false, unpriced: ["nobody"] });
    expect(worstCaseCreation(book, 0)).toBe(300n + 2n * 150n + BigInt(MAX_ROWS_PER_COMMAND + 8) * 1_000n + 3n * 400n + 10n * 1_000n);
  });

  it("cover what an attempt is billed for, as long as it stays within its timeout and token bounds", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 900_000 }),
        fc.integer({ min: 0, max: 1_000 }),
        fc.integer({ min: 0, max: 1_000 }),
        fc.integer({ min: 0, max: 2_000 }),
        (timeoutMs, prompt, maxOut, spentMs) => {
          const leaseMs = 30_000;
          const wallMs = Math.min(spentMs * 450, timeoutMs);
          const heartbeats = Math.floor(wallMs / (leaseMs / 3));
          const actual = priced(
            usage({
              infra: { worker_requests: 1, queue_operations: 3, do_requests: 2 + heartbeats, do_rows_written: 2 * MAX_ROWS_PER_COMMAND + heartbeats, worker_cpu_ms: wallMs },
              tokens: [{ model: "gpt-4o-mini", inputTokens: prompt, outputTokens: maxOut }],
            }),
          );
          const worst = worstCaseAttempt(book, 0, { tokens: [{ model: "gpt-4o-mini", promptTokens: prompt, outputTokens: maxOut }], timeoutMs, leaseMs });
          return worst.ok && actual.nanoUsd <= worst.nanoUsd;
        },
      ),
    );
  });
});

describe("usage bounds", () => {
  it("name the field and the bound", () => {
    expect(usageBoundsViolation([{ model: "gpt-4o", inputTokens: 0, outputTokens: 1e15 }])).toMatch(/usage\[0\]\.outputTokens: at most 10,000,000 tokens/);
    expect(usageBoundsViolation(Array.from({ length: 17 }, () => ({ model: "m", inputTokens: 1, outputTokens: 1 })))).toMatch(/at most 16 usage entries/);
    expect(usageBoundsViolation([{ model: "m", inputTokens: 10_000_000, outputTokens: 0 }])).toBeNull();
  });
});
