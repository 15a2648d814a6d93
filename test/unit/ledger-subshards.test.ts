import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isNewerSubTotal, ledgerSubshards, monthSpend, subLedgerName, subLedgerOf, subLedgersToAsk, type SubTotal } from "../../src/domain/ledger-subshards";
import { jumpShard } from "../../src/domain/sharding";

describe("LEDGER_SUBSHARDS", () => {
  it("is none when absent or empty: every customer keeps its one ledger", () => {
    expect(ledgerSubshards({})).toEqual({});
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: "  " })).toEqual({});
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: '{"cus_abc": 8, "acme": 1}' })).toEqual({ cus_abc: 8, acme: 1 });
  });

  it("names what is wrong with an unusable value", () => {
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: "cus_abc=8" })).toMatch(/not JSON/);
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: '{"cus_abc": 0}' })).toMatch(/"cus_abc".*1 to 64/);
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: '{"cus_abc": 65}' })).toMatch(/"cus_abc"/);
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: '{"cus_abc": 2.5}' })).toMatch(/"cus_abc"/);
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: '{"Not A Customer": 4}' })).toMatch(/customer id/);
    expect(ledgerSubshards({ LEDGER_SUBSHARDS: "[8]" })).toMatch(/LEDGER_SUBSHARDS/);
  });
});

describe("a run's sub-ledger", () => {
  it("is the primary (null) without sub-ledgers or with one, else jumpShard(runId, N)", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.integer({ min: 2, max: 64 }), (runId, n) => {
        expect(subLedgerOf(runId, undefined)).toBeNull();
        expect(subLedgerOf(runId, 1)).toBeNull();
        expect(subLedgerOf(runId, n)).toBe(jumpShard(runId, n));
      }),
    );
  });

  it("spreads 8,000 runs over 8 sub-ledgers within ±10% of the mean", () => {
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 8_000; i++) counts[subLedgerOf(`run_${i.toString(36)}`, 8)!] += 1;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(100);
  });

  it("is named after its customer with a # no customer id contains", () => {
    expect(subLedgerName("cus_abc", 3)).toBe("cus_abc#3");
  });
});

describe("merging sub-ledger totals (SET by version)", () => {
  /** The primary's merge: per (sub-ledger, month), the report of highest version wins. */
  const apply = (reports: readonly (SubTotal & { subLedger: number })[]) => {
    const held = new Map<string, SubTotal>();
    for (const r of reports) {
      const key = `${r.subLedger}:${r.month}`;
      if (isNewerSubTotal(held.get(key), r)) held.set(key, r);
    }
    return held;
  };

  it("takes a newer version, ignores the same or an older one", () => {
    expect(isNewerSubTotal(undefined, { version: 1 })).toBe(true);
    expect(isNewerSubTotal({ version: 3 }, { version: 4 })).toBe(true);
    expect(isNewerSubTotal({ version: 3 }, { version: 3 })).toBe(false);
    expect(isNewerSubTotal({ version: 3 }, { version: 2 })).toBe(false);
  });

  it("gives the same month spend whatever the order of the reports and however often each comes", () => {
    // Each sub-ledger's totals grow with its version, as a sub-ledger's counting does.
    const history = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.bigInt({ min: 0n, max: 10n ** 15n })), { minLength: 1, maxLength: 40 });
    fc.assert(
      fc.property(history, fc.integer({ min: 0, max: 2 ** 31 }), (steps, seed) => {
        const totals = new Map<number, bigint>();
        const reports: (SubTotal & { subLedger: number })[] = [];
        steps.forEach(([subLedger, added], i) => {
          const total = (totals.get(subLedger) ?? 0n) + added;
          totals.set(subLedger, total);
          reports.push({ subLedger, month: "2026-11", nanoUsd: total.toString(), version: i + 1 });
        });
        const expected = [...totals.values()].reduce((a, b) => a + b, 0n);
        // Shuffled, with every report delivered twice.
        let s = seed;
        const shuffled = [...reports, ...reports].map((r) => ({ r, k: (s = (s * 1103515245 + 12345) % 2 ** 31) })).sort((a, b) => a.k - b.k).map((x) => x.r);
        expect(monthSpend(0n, apply(reports).values())).toBe(expected);
        expect(monthSpend(0n, apply(shuffled).values())).toBe(expected);
        expect(monthSpend(7n, apply(shuffled).values())).toBe(expected + 7n);
      }),
    );
  });

  it("sums beyond 2^53 exactly", () => {
    expect(monthSpend(9_007_199_254_740_993n, [{ nanoUsd: "9007199254740993" }, { nanoUsd: "1" }])).toBe(18_014_398_509_481_987n);
  });
});

describe("the sub-ledgers a reconciliation asks", () => {
  it("are those configured and those that ever reported, once each, in order", () => {
    expect(subLedgersToAsk(undefined, [])).toEqual([]);
    expect(subLedgersToAsk(1, [])).toEqual([]);
    expect(subLedgersToAsk(3, [])).toEqual([0, 1, 2]);
    // Lowered from 8 to 3: sub-ledgers 5 and 7 still hold runs created before.
    expect(subLedgersToAsk(3, [1, 7, 5, 1])).toEqual([0, 1, 2, 5, 7]);
  });
});
