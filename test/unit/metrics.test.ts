import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RULES, episodeAction, evaluate, fireThreshold } from "../../src/metrics/anomaly";
import { ENTRIES_PER_MESSAGE, FLUSH_INTERVAL_MS, MAX_PENDING_REQUESTS, TimingAggregator } from "../../src/metrics/api-timings";
import { bucketCount, bucketStart, bucketsBetween, coveredMs, nextBucket, sqlBucketStart } from "../../src/metrics/buckets";
import { findings, presentDriver } from "../../src/metrics/cost-drivers";
import { addCounts, apiFigures, attemptFigures, costFigures, emptyAttemptCounts, emptyCostCounts, emptyRunCounts, percentChange, runFigures, uptimeFigures } from "../../src/metrics/formulas";
import { formatMetrics } from "../../src/metrics/openmetrics";
import {
  EXACT_BELOW_MS,
  RELATIVE_ERROR,
  addToHistogram,
  bucketBounds,
  bucketIndex,
  bucketValue,
  exactQuantile,
  mergeHistograms,
  quantile,
  sqlBucketHigh,
  sqlBucketIndex,
  sqlBucketLow,
  type Histogram,
} from "../../src/metrics/sketch";

const at = (iso: string) => Date.parse(iso);

describe("the duration sketch", () => {
  it("is exact below 128 ms and puts every value in a bucket whose bounds hold it", () => {
    for (let v = 0; v < EXACT_BELOW_MS; v++) expect(bucketValue(bucketIndex(v))).toBe(v);
    for (let v = 0; v < 70_000; v += 7) {
      const { low, high } = bucketBounds(bucketIndex(v));
      expect(low <= v && v <= high, `${v} in [${low}, ${high}]`).toBe(true);
    }
    expect(bucketBounds(bucketIndex(1000))).toEqual({ low: 1000, high: 1007 });
    expect(bucketBounds(bucketIndex(10_000))).toEqual({ low: 9984, high: 10_111 });
    // contiguous buckets: each starts right after the one before
    for (let i = 1; i < 2_000; i++) expect(bucketBounds(i).low).toBe(bucketBounds(i - 1).high + 1);
  });

  it("reports every nearest-rank quantile within 1/128 of the exact value", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 1, maxLength: 200 }), fc.double({ min: 0.01, max: 1, noNaN: true }), (values, q) => {
        const hist: Histogram = {};
        for (const v of values) addToHistogram(hist, v);
        const exact = exactQuantile(values, q)!;
        expect(Math.abs(quantile(hist, q)! - exact)).toBeLessThanOrEqual(exact * RELATIVE_ERROR);
      }),
    );
  });

  it("merges exactly: the sketch of a union is the sum of the sketches", () => {
    const a: Histogram = {};
    const b: Histogram = {};
    const all: Histogram = {};
    [5, 500, 5000].forEach((v) => (addToHistogram(a, v), addToHistogram(all, v)));
    [7, 700, 7000, 5000].forEach((v) => (addToHistogram(b, v), addToHistogram(all, v)));
    expect(mergeHistograms({ ...a }, b)).toEqual(all);
    expect(quantile({}, 0.5)).toBeNull();
    expect(quantile(all, 0.5)).toBe(bucketValue(bucketIndex(700))); // 4th of 7
  });

  it("computes the same buckets in SQL (integer arithmetic, no math functions)", async () => {
    const values = [0, 1, 127, 128, 129, 255, 256, 1000, 4095, 4096, 10_000, 123_456, 86_400_000, 2 ** 40 + 12_345];
    const rows = await env.DB.prepare(
      `SELECT value AS v, ${sqlBucketIndex("value")} AS idx, ${sqlBucketLow(sqlBucketIndex("value"))} AS low, ${sqlBucketHigh(sqlBucketIndex("value"))} AS high FROM json_each(?1)`,
    )
      .bind(JSON.stringify(values))
      .all<{ v: number; idx: number; low: number; high: number }>();
    for (const r of rows.results) expect({ v: r.v, idx: r.idx, low: r.low, high: r.high }).toEqual({ v: r.v, idx: bucketIndex(r.v), ...bucketBounds(bucketIndex(r.v)) });
  });
});

describe("time buckets", () => {
  it("start weeks on Monday and months on the 1st, in UTC, in JS and in SQL alike", async () => {
    expect(bucketStart(at("2025-03-09T23:59:00Z"), "week")).toBe(at("2025-03-03T00:00:00Z")); // a Sunday
    expect(bucketStart(at("2025-03-10T00:00:00Z"), "week")).toBe(at("2025-03-10T00:00:00Z"));
    expect(bucketStart(at("2025-03-31T13:00:00Z"), "month")).toBe(at("2025-03-01T00:00:00Z"));
    expect(nextBucket(at("2025-01-01T00:00:00Z"), "month")).toBe(at("2025-02-01T00:00:00Z"));
    expect(bucketsBetween(at("2025-03-01T00:00:00Z"), at("2025-04-01T00:00:00Z"), "week").length).toBe(6);
    expect(bucketCount(at("2025-03-01T00:00:00Z"), at("2025-04-01T00:00:00Z"), "week")).toBe(6);
    expect(bucketCount(at("2025-01-15T00:00:00Z"), at("2025-03-02T00:00:00Z"), "month")).toBe(3);
    expect(bucketCount(at("2025-03-01T00:00:00Z"), at("2025-03-02T00:00:00Z"), "hour")).toBe(24);
    for (const iso of ["2025-03-09T23:59:00Z", "2025-03-10T00:00:00Z", "2024-02-29T12:00:00Z", "2025-12-31T23:00:00Z"]) {
      for (const bucket of ["hour", "day", "week", "month"] as const) {
        const row = await env.DB.prepare(`SELECT ${sqlBucketStart("?1", bucket)} AS b`).bind(at(iso)).first<{ b: string }>();
        expect(Date.parse(row!.b), `${iso} ${bucket}`).toBe(bucketStart(at(iso), bucket));
      }
    }
  });

  it("cover only the part of a bucket inside the range and before now", () => {
    const day = at("2025-03-03T00:00:00Z");
    expect(coveredMs(day, "day", at("2025-03-03T06:00:00Z"), at("2025-03-10T00:00:00Z"), at("2025-03-03T12:00:00Z"))).toBe(6 * 3_600_000);
    expect(coveredMs(day, "day", day, at("2025-03-10T00:00:00Z"), at("2025-03-02T00:00:00Z"))).toBe(0);
  });
});

describe("the anomaly rules", () => {
  const obs = (recent: number | bigint | null, baseline: number | bigint | null, n = 100) => ({ recent, baseline, recentSamples: n, baselineSamples: n });

  it("fire past both the ratio and the floor, clear back within the clear threshold, and hold in between", () => {
    const rule = RULES.p95_duration; // fire at max(1.5×, +1000 ms); clear at max(1.2×, +250 ms)
    expect(fireThreshold(rule, 1000)).toBe(2000);
    expect(evaluate(rule, obs(2000, 1000)).verdict).toBe("degraded");
    expect(evaluate(rule, obs(1999, 1000)).verdict).toBe("steady");
    expect(evaluate(rule, obs(1250, 1000)).verdict).toBe("recovered");
    expect(evaluate(rule, obs(1251, 1000)).verdict).toBe("steady");
    expect(evaluate(rule, obs(10_000, 4000)).verdict).toBe("degraded"); // 1.5× = 6000 > +1000
    expect(evaluate(rule, obs(5000, 1000, 19)).verdict).toBe("insufficient");
    expect(evaluate(rule, obs(null, 1000)).verdict).toBe("insufficient");
  });

  it("compare money exactly, as bigints", () => {
    const rule = RULES.cost_per_run;
    expect(evaluate(rule, obs(150_000_000_000_000_001n, 100_000_000_000_000_000n)).verdict).toBe("degraded");
    expect(evaluate(rule, obs(149_999_999_999_999_999n, 100_000_000_000_000_000n)).verdict).toBe("steady");
    expect(evaluate(rule, obs(120_000_000_000_000_000n, 100_000_000_000_000_000n)).verdict).toBe("recovered");
  });

  it("failure rate: a rise from 2 % to 12 % is not enough (needs +10 points and 2×); to 22 % is", () => {
    expect(evaluate(RULES.failure_rate, obs(0.12, 0.02)).verdict).toBe("steady");
    expect(evaluate(RULES.failure_rate, obs(0.2 + 1e-9, 0.02)).verdict).toBe("degraded");
    expect(evaluate(RULES.failure_rate, obs(0.11, 0)).verdict).toBe("degraded");
    expect(evaluate(RULES.failure_rate, obs(0.05, 0)).verdict).toBe("recovered");
  });

  it("open an episode once and clear it once", () => {
    expect(episodeAction(false, "degraded")).toBe("open");
    expect(episodeAction(true, "degraded")).toBe("none");
    expect(episodeAction(true, "steady")).toBe("none");
    expect(episodeAction(true, "insufficient")).toBe("none");
    expect(episodeAction(true, "recovered")).toBe("clear");
    expect(episodeAction(false, "recovered")).toBe("none");
  });
});

describe("the formulas", () => {
  it("take ratios after summing, and null where there is nothing to divide", () => {
    expect(runFigures(emptyRunCounts())).toMatchObject({ successRate: null, failureRate: null, durationMs: { avg: null, p50: null, max: null } });
    const a = { ...emptyRunCounts(), runs: 2, succeeded: 1, failed: 1, timed: 2, durationSumMs: 300, durationMax: 200, hist: addToHistogram(addToHistogram({}, 100), 200) };
    const b = { ...emptyRunCounts(), runs: 1, succeeded: 1, timed: 1, durationSumMs: 50, durationMax: 50, hist: addToHistogram({}, 50) };
    const sum = addCounts(addCounts(emptyRunCounts(), a), b);
    expect(runFigures(sum)).toMatchObject({ runs: 3, successRate: 2 / 3, failureRate: 1 / 3, durationMs: { runs: 3, avg: 350 / 3, p50: 100, max: 200 } });
    expect(attemptFigures(emptyAttemptCounts(), 0, null)).toMatchObject({ processingRatePerSecond: null, retryRate: null, utilization: null });
    expect(apiFigures({ requests: 0, responses4xx: 0, responses5xx: 0, sumMs: 0, latencyMax: 0, hist: {} }).latencyMs).toEqual({ avg: null, p50: null, p95: null, p99: null, max: null });
    expect(uptimeFigures(58, 57, 60)).toEqual({ probes: 58, okProbes: 57, expectedProbes: 60, missedProbes: 2, uptime: 0.95 });
  });

  it("keep money exact: cost per run rounds half to even, sums beyond 2^53 are decimal strings", () => {
    const big = 2n ** 53n;
    expect(costFigures({ ...emptyCostCounts(), runs: 2, customers: 1, nanoUsd: 2n * big + 3n })).toMatchObject({ totalNanoUsd: (2n * big + 3n).toString(), costPerRunNanoUsd: (big + 2n).toString() });
    expect(costFigures({ ...emptyCostCounts(), runs: 2, nanoUsd: 5n }).costPerRunNanoUsd).toBe(2);
    expect(costFigures(emptyCostCounts())).toMatchObject({ costPerRunNanoUsd: null, costPerCustomerNanoUsd: null });
    expect(percentChange(0n, 5n)).toBeNull();
    expect(percentChange(3n, 4n)).toBe(33.3);
    expect(percentChange(4n, 3n)).toBe(-25);
  });
});

describe("API timings per isolate", () => {
  it("aggregate per minute, route, method, status class and customer, and flush in bounded messages with fresh ids", () => {
    const t0 = at("2026-01-01T00:00:10Z");
    const agg = new TimingAggregator("iso_x", t0);
    agg.record(t0, "/v1/runs", "POST", 202, "c1", 12.4);
    agg.record(t0 + 1000, "/v1/runs", "POST", 201, "c1", 30);
    agg.record(t0 + 1000, "/v1/runs", "POST", 429, "c1", 1);
    agg.record(t0 + 60_000, "/v1/runs", "POST", 202, "c1", 5);
    expect(agg.due(t0 + 1000)).toBe(false);
    expect(agg.due(t0 + FLUSH_INTERVAL_MS)).toBe(true);
    const [sample, ...rest] = agg.drain(t0 + FLUSH_INTERVAL_MS);
    expect(rest).toEqual([]);
    expect(sample).toMatchObject({ kind: "metrics.api", v: 1, sampleId: "iso_x:1" });
    expect(sample!.entries).toEqual([
      { minute: at("2026-01-01T00:00:00Z"), route: "/v1/runs", method: "POST", statusClass: 2, customerId: "c1", count: 2, sumMs: 42, maxMs: 30, hist: { "12": 1, "30": 1 } },
      { minute: at("2026-01-01T00:00:00Z"), route: "/v1/runs", method: "POST", statusClass: 4, customerId: "c1", count: 1, sumMs: 1, maxMs: 1, hist: { "1": 1 } },
      { minute: at("2026-01-01T00:01:00Z"), route: "/v1/runs", method: "POST", statusClass: 2, customerId: "c1", count: 1, sumMs: 5, maxMs: 5, hist: { "5": 1 } },
    ]);
    expect(agg.size).toBe(0);
    expect(agg.due(t0 + 10 * FLUSH_INTERVAL_MS)).toBe(false);
    for (let i = 0; i < ENTRIES_PER_MESSAGE + 5; i++) agg.record(t0, `/r/${i}`, "GET", 200, "", 1);
    expect(agg.drain(t0).map((s) => [s.sampleId, s.entries.length])).toEqual([["iso_x:2", ENTRIES_PER_MESSAGE], ["iso_x:3", 5]]);
    for (let i = 0; i < MAX_PENDING_REQUESTS; i++) agg.record(t0, "/x", "GET", 200, "", 1);
    expect(agg.due(t0)).toBe(true);
  });
});

describe("the OpenMetrics text", () => {
  it("names counters as each format wants, escapes labels, writes money as exact integers", () => {
    const families = [
      { name: "x_spend_nano_usd", type: "counter" as const, help: 'Spend "this month"\\n', samples: [{ labels: { customer: 'a"b\\c\nd' }, value: 2n ** 60n + 1n }] },
      { name: "x_up", type: "gauge" as const, help: "Up", samples: [{ value: 1 }, { labels: { pool: "p" }, value: 0.25 }] },
    ];
    expect(formatMetrics(families, true)).toBe(
      [
        '# HELP x_spend_nano_usd Spend \\"this month\\"\\\\n',
        "# TYPE x_spend_nano_usd counter",
        'x_spend_nano_usd_total{customer="a\\"b\\\\c\\nd"} 1152921504606846977',
        "# HELP x_up Up",
        "# TYPE x_up gauge",
        "x_up 1",
        'x_up{pool="p"} 0.25',
        "# EOF",
        "",
      ].join("\n"),
    );
    expect(formatMetrics(families, false).split("\n").slice(0, 3)).toEqual([
      '# HELP x_spend_nano_usd_total Spend "this month"\\\\n',
      "# TYPE x_spend_nano_usd_total counter",
      'x_spend_nano_usd_total{customer="a\\"b\\\\c\\nd"} 1152921504606846977',
    ]);
    expect(() => formatMetrics([{ name: "bad-name", type: "gauge", help: "", samples: [] }], true)).toThrow();
    expect(() => formatMetrics([{ name: "x_total", type: "counter", help: "", samples: [] }], true)).toThrow();
  });
});

describe("cost drivers", () => {
  it("rank, share and change, and say what stands out", () => {
    const p = (nanoUsd: bigint, runs: number, aiNanoUsd = 0n) => ({ nanoUsd, runs, aiNanoUsd });
    const totals = { current: p(1_000_000n, 10, 100_000n), previous: p(500_000n, 10, 50_000n) };
    const runTypes = [
      { key: "etl", current: p(800_000n, 5), previous: p(250_000n, 5) },
      { key: "chat", current: p(200_000n, 5), previous: p(250_000n, 5) },
    ];
    expect(presentDriver(runTypes[0]!, totals.current.nanoUsd)).toMatchObject({ sharePercent: 80, change: { nanoUsd: 550_000, percent: 220 }, costPerRunChangePercent: 220 });
    expect(findings({ runType: runTypes, model: [], customer: [{ key: "acme", current: totals.current, previous: totals.previous }] }, totals)).toEqual([
      "Total cost rose 100% against the previous period ($0.000500 → $0.001000).",
      "Run type etl drives 80% of the cost ($0.000800).",
      "Cost per run of run type etl rose 220% ($0.000050 → $0.000160).",
      "Cost per run of run type chat fell 20% ($0.000050 → $0.000040).",
      "Infrastructure is 90% of the cost: steps per run, retries and heartbeats are the levers.",
    ]);
  });
});
