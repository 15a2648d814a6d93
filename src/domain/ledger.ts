/**
 * The customer ledger's rules, free of storage: budget state, soft-threshold crossings, whether
 * a hold fits, which cost records are new, and how the ledger's per-run totals compare with
 * D1's. The CustomerLedger Durable Object persists and applies what these decide.
 */
import { nanoToUsdString } from "./money";

/** Runs a customer may have in flight at once unless its plan says otherwise. */
export const DEFAULT_MAX_RUNS_IN_FLIGHT = 1_000;

export interface Budget {
  /** Hard monthly limit in nano-USD; null = no budget. */
  limitNanoUsd: bigint | null;
  /** Fractions of the limit that raise a soft alert once a month, e.g. [0.5, 0.8]. */
  softThresholds: number[];
}

export type BudgetState = "no_budget" | "ok" | "soft_limit" | "exhausted";

/** spend ≥ threshold × limit, in integers: spend × 1e6 ≥ limit × round(threshold × 1e6). */
const reached = (spend: bigint, limit: bigint, threshold: number) => spend * 1_000_000n >= limit * BigInt(Math.round(threshold * 1_000_000));

export function budgetState(spend: bigint, budget: Budget): BudgetState {
  if (budget.limitNanoUsd === null) return "no_budget";
  if (spend >= budget.limitNanoUsd) return "exhausted";
  return budget.softThresholds.some((t) => reached(spend, budget.limitNanoUsd!, t)) ? "soft_limit" : "ok";
}

/** Every threshold spend has reached, the hard limit as 1; the ledger alerts each once a month. */
export function thresholdsReached(spend: bigint, budget: Budget): number[] {
  if (budget.limitNanoUsd === null) return [];
  return [...budget.softThresholds, 1].filter((t) => reached(spend, budget.limitNanoUsd!, t));
}

/** What a customer may still spend: the limit less spend and holds (never negative); null without a budget. */
export function remainingBudget(budget: Budget, spend: bigint, held: bigint): bigint | null {
  if (budget.limitNanoUsd === null) return null;
  const left = budget.limitNanoUsd - spend - held;
  return left > 0n ? left : 0n;
}

/**
 * A hold of `amount` fits when spend + every active hold + it stays within the limit. Without a
 * budget everything fits. Returns why not, in words a customer can act on, or null.
 */
export function holdRefusal(budget: Budget, spend: bigint, held: bigint, amount: bigint, what = "this step"): string | null {
  if (budget.limitNanoUsd === null) return null;
  if (spend + held + amount <= budget.limitNanoUsd) return null;
  return `monthly budget of ${nanoToUsdString(budget.limitNanoUsd)} USD would be exceeded: ${nanoToUsdString(spend)} USD spent and ${nanoToUsdString(held)} USD held, and ${what} may cost up to ${nanoToUsdString(amount)} USD`;
}

/** Records a run sends are numbered; the ledger has counted every seq up to `countedSeq`. */
export function freshRecords<T extends { seq: number }>(records: readonly T[], countedSeq: number): T[] {
  const seen = new Set<number>();
  return records.filter((r) => {
    if (r.seq <= countedSeq || seen.has(r.seq)) return false;
    seen.add(r.seq);
    return true;
  });
}

export interface RunTotalDifference {
  runId: string;
  ledgerNanoUsd: bigint;
  d1NanoUsd: bigint;
}

export interface RunTotalsComparison {
  /** The ledger counted it; D1 lacks it or holds another amount: D1 is behind, the ledger resends. */
  behind: RunTotalDifference[];
  /** D1 holds money for a run the ledger never counted: nothing explains it. */
  unknown: RunTotalDifference[];
}

/** Per-run month totals, ledger against D1. */
export function compareRunTotals(ledger: ReadonlyMap<string, bigint>, d1: ReadonlyMap<string, bigint>): RunTotalsComparison {
  const behind: RunTotalDifference[] = [];
  const unknown: RunTotalDifference[] = [];
  for (const [runId, amount] of ledger) {
    const stored = d1.get(runId) ?? 0n;
    if (stored !== amount) behind.push({ runId, ledgerNanoUsd: amount, d1NanoUsd: stored });
  }
  for (const [runId, stored] of d1) {
    if (!ledger.has(runId) && stored !== 0n) unknown.push({ runId, ledgerNanoUsd: 0n, d1NanoUsd: stored });
  }
  const byRun = (a: RunTotalDifference, b: RunTotalDifference) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0);
  return { behind: behind.sort(byRun), unknown: unknown.sort(byRun) };
}
