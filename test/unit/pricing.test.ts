import fc from "fast-check";
import { summarizeLines } from "../../src/domain/cost-records";
import { describe, expect, it } from "vitest";
import { allocateExactly, allocateFixedCost } from "../../src/domain/allocation";
import { nanoToExactUsdString, usdToNano } from "../../src/domain/money";
import {
  costNano,
  DEFAULT_INFRA_USD_PER_MILLION,
  INFRA_METER_NAMES,
  PriceBook,
  priceInForce,
  pricePerMillion,
  priceTokens,
  UnknownModelError,
  type InfraPrice,
  type ModelPrice,
} from "../../src/domain/pricing";
import { modelsNamedBySteps } from "../../src/domain/step-models";

const miniPrice: ModelPrice = {
  model: "gpt-4o-mini",
  version: "defaults-2026-11",
  effectiveFrom: 0,
  input: pricePerMillion("0.15"),
  output: pricePerMillion("0.60"),
  cachedInput: pricePerMillion("0.075"),
  reasoning: null,
};

describe("token cost", () => {
  it("is exact to the nano-USD, each token class at its own price (cached input at the cached price)", () => {
    const lines = priceTokens({ model: "gpt-4o-mini", inputTokens: 1234, cachedTokens: 1000, outputTokens: 567 }, miniPrice);
    expect(lines.map((l) => [l.meter, l.quantity, l.nanoUsd])).toEqual([
      ["input_tokens", 1234n, 185_100n], // 1234 × $0.15 / 1M = $0.0001851
      ["cached_input_tokens", 1000n, 75_000n], // 1000 × $0.075 / 1M
      ["output_tokens", 567n, 340_200n], // 567 × $0.60 / 1M
    ]);
    expect(summarizeLines(lines)).toMatchObject({ totalNanoUsd: 600_300n, aiNanoUsd: 600_300n, infraNanoUsd: 0n });
    expect(lines.every((l) => l.priceVersion === "defaults-2026-11" && !l.estimated)).toBe(true);
  });

  it("bills cached input at the input price and reasoning at the output price when they have none", () => {
    const plain = { ...miniPrice, cachedInput: null };
    const [cached] = priceTokens({ model: "gpt-4o-mini", inputTokens: 0, cachedTokens: 1_000_000, outputTokens: 0 }, plain);
    expect(cached).toMatchObject({ meter: "cached_input_tokens", perMillion: 150_000_000n, nanoUsd: 150_000_000n });
    const [reasoning] = priceTokens({ model: "gpt-4o-mini", inputTokens: 0, outputTokens: 0, reasoningTokens: 10 }, miniPrice);
    expect(reasoning).toMatchObject({ meter: "reasoning_tokens", nanoUsd: 6_000n });
    const [priced] = priceTokens({ model: "m", inputTokens: 0, outputTokens: 0, reasoningTokens: 10 }, { ...miniPrice, reasoning: pricePerMillion("2") });
    expect(priced!.nanoUsd).toBe(20_000n);
  });

  it("rounds each event once, half to even", () => {
    expect(costNano(1n, 2_500_000n)).toBe(2n); // 2.5 → 2
    expect(costNano(1n, 3_500_000n)).toBe(4n); // 3.5 → 4
    expect(costNano(3n, 500_000n)).toBe(2n); // 1.5 → 2
    expect(costNano(5n, 500_000n)).toBe(2n); // 2.5 → 2
    expect(costNano(1n, 1_500_001n)).toBe(2n); // 1.500001 → 2
    expect(costNano(1n, 2_499_999n)).toBe(2n); // 2.499999 → 2
    expect(costNano(7n, 1_000n)).toBe(0n); // 0.007 → 0
  });

  it("refuses a model without a price", () => {
    expect(() => priceTokens({ model: "nope", inputTokens: 1, outputTokens: 1 }, undefined)).toThrow(UnknownModelError);
  });

  it("converts prices exactly and shows them exactly", () => {
    expect(pricePerMillion("1.5625")).toBe(1_562_500_000n);
    expect(pricePerMillion(0.075)).toBe(75_000_000n);
    expect(nanoToExactUsdString(150_000_000n)).toBe("0.15");
    expect(nanoToExactUsdString(1_562_500_000n)).toBe("1.5625");
    expect(nanoToExactUsdString(1n)).toBe("0.000000001");
    expect(nanoToExactUsdString(10_000_000_000n)).toBe("10.00");
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 10n ** 24n - 1n }), (nano) => usdToNano(nanoToExactUsdString(nano)) === nano));
    expect(["0.30", "1.00", "0.001", "1.5625"].map((usd) => nanoToExactUsdString(pricePerMillion(usd)))).toEqual(["0.30", "1.00", "0.001", "1.5625"]);
  });
});

describe("price versions", () => {
  const v = (version: string, effectiveFrom: number) => ({ version, effectiveFrom });
  it("the version in force is the latest not after the instant; a tie goes to the later version id", () => {
    const versions = [v("a", 0), v("c", 200), v("b", 100)];
    expect(priceInForce(versions, -1)).toBeUndefined();
    expect(priceInForce(versions, 0)?.version).toBe("a");
    expect(priceInForce(versions, 150)?.version).toBe("b");
    expect(priceInForce(versions, 200)?.version).toBe("c");
    expect(priceInForce([v("v-1700000000000-aa", 5), v("v-1700000000001-00", 5)], 5)?.version).toBe("v-1700000000001-00");
    expect(priceInForce([v("defaults-2026-11", 0), v("v-1700000000000-aa", 0)], 10)?.version).toBe("v-1700000000000-aa");
  });

  it("a price book answers per model and per meter, each on its own history", () => {
    const gpt4o: ModelPrice = { ...miniPrice, model: "gpt-4o", input: 2_500_000_000n, output: 10_000_000_000n, cachedInput: 1_250_000_000n };
    const cheaper: ModelPrice = { ...miniPrice, version: "v-2", effectiveFrom: 1_000, input: 100_000_000n };
    const infra: InfraPrice[] = [
      { meter: "worker_requests", version: "cf", effectiveFrom: 0, perMillion: 300_000_000n },
      { meter: "worker_requests", version: "v-2", effectiveFrom: 2_000, perMillion: 250_000_000n },
      { meter: "d1_rows_read", version: "cf", effectiveFrom: 0, perMillion: 1_000_000n },
    ];
    const book = new PriceBook([miniPrice, gpt4o, cheaper], infra);
    expect(book.modelPrice("gpt-4o-mini", 999)?.input).toBe(150_000_000n);
    expect(book.modelPrice("gpt-4o-mini", 1_000)?.input).toBe(100_000_000n);
    expect(book.modelPrice("gpt-4o", 5_000)?.version).toBe("defaults-2026-11");
    expect(book.modelsInForce(1_500).map((p) => [p.model, p.version])).toEqual([
      ["gpt-4o", "defaults-2026-11"],
      ["gpt-4o-mini", "v-2"],
    ]);
    expect(book.infraInForce(2_000).map((p) => [p.meter, p.perMillion])).toEqual([
      ["worker_requests", 250_000_000n],
      ["d1_rows_read", 1_000_000n],
    ]);
    expect(book.unknownModels(["gpt-4o", "claude-x", "claude-x"], 0)).toEqual(["claude-x"]);
    expect(book.priceUsage({ model: "gpt-4o", inputTokens: 1_000, outputTokens: 100 }, 0).map((l) => l.nanoUsd)).toEqual([2_500_000n, 1_000_000n]);
    expect(() => book.priceUsage({ model: "claude-x", inputTokens: 1, outputTokens: 1 }, 0)).toThrow(UnknownModelError);
    expect(book.priceInfra("worker_requests", 3, 2_500)).toMatchObject({ nanoUsd: 750n, priceVersion: "v-2", model: null });
    expect(book.priceInfra("do_requests", 3, 2_500)).toBeNull(); // no price: nothing to charge
    expect(book.priceInfra("worker_requests", 0, 2_500)).toBeNull();
  });

  it("every default infrastructure meter has a price", () => {
    expect(Object.keys(DEFAULT_INFRA_USD_PER_MILLION).sort()).toEqual([...INFRA_METER_NAMES].sort());
  });
});

describe("fixed cost allocation", () => {
  it("splits evenly with the leftover nano-USD to the first keys, summing exactly", () => {
    const shares = allocateExactly(100n, [{ key: "c", weight: 1n }, { key: "a", weight: 1n }, { key: "b", weight: 1n }]);
    expect(Object.fromEntries(shares)).toEqual({ a: 34n, b: 33n, c: 33n });
  });

  it("splits by weight with largest remainders", () => {
    // 10 × 1/6 = 1.67, 10 × 2/6 = 3.33, 10 × 3/6 = 5: floors 1+3+5 = 9, the 1 left goes to the largest remainder (a).
    expect(Object.fromEntries(allocateExactly(10n, [{ key: "a", weight: 1n }, { key: "b", weight: 2n }, { key: "c", weight: 3n }]))).toEqual({ a: 2n, b: 3n, c: 5n });
    expect(allocateExactly(10n, [{ key: "a", weight: 0n }]).size).toBe(0);
    expect(allocateExactly(5n, [{ key: "a", weight: 0n }, { key: "b", weight: 7n }]).get("a")).toBe(0n);
    expect(() => allocateExactly(5n, [{ key: "a", weight: 1n }, { key: "a", weight: 1n }])).toThrow();
  });

  it("always sums exactly to the amount, each share within one nano-USD of its exact proportion", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 20n }),
        fc.uniqueArray(fc.record({ key: fc.string({ minLength: 1, maxLength: 4 }), weight: fc.bigInt({ min: 0n, max: 10n ** 15n }) }), { selector: (s) => s.key, minLength: 1, maxLength: 30 }),
        (amount, shares) => {
          const result = allocateExactly(amount, shares);
          const totalWeight = shares.reduce((s, x) => s + x.weight, 0n);
          if (totalWeight === 0n) return result.size === 0;
          let sum = 0n;
          for (const s of shares) {
            const share = result.get(s.key)!;
            sum += share;
            const diff = share * totalWeight - amount * s.weight; // share − exact, scaled by the total weight
            if (diff <= -totalWeight || diff >= totalWeight) return false;
          }
          return sum === amount;
        },
      ),
    );
  });

  it("even: customers with runs share; weighted: by direct cost, falling back to even when nobody has cost", () => {
    const month = [
      { customerId: "a", runs: 3, directCostNanoUsd: 300n },
      { customerId: "b", runs: 1, directCostNanoUsd: 100n },
      { customerId: "idle", runs: 0, directCostNanoUsd: 0n },
    ];
    expect(Object.fromEntries(allocateFixedCost(1_000n, "even", month))).toEqual({ a: 500n, b: 500n });
    expect(Object.fromEntries(allocateFixedCost(1_000n, "weighted", month))).toEqual({ a: 750n, b: 250n });
    const free = month.map((c) => ({ ...c, directCostNanoUsd: 0n }));
    expect(Object.fromEntries(allocateFixedCost(1_001n, "weighted", free))).toEqual({ a: 501n, b: 500n });
    expect(allocateFixedCost(1_000n, "even", [month[2]!]).size).toBe(0);
  });
});

describe("models named by steps", () => {
  it("lists llm models and synthetic usage models with the field naming each", () => {
    expect(
      modelsNamedBySteps([
        { type: "llm", config: { model: "gpt-4o", messages: [] } },
        { type: "http", config: { url: "https://x" } },
        { type: "synthetic", config: { usage: { model: "claude-sonnet-4", inputTokens: 1, outputTokens: 1 } } },
        { type: "synthetic" },
      ]),
    ).toEqual([
      { model: "gpt-4o", field: "steps.0.config.model" },
      { model: "claude-sonnet-4", field: "steps.2.config.usage.model" },
    ]);
  });
});
