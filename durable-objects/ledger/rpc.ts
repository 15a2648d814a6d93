/** The customer ledger's RPC contract: zod schemas for what callers send, types for what they get. */
import { z } from "zod";
import { RunRollupSchema, IntegerText } from "../../src/data-plane/messages";
import type { BudgetState } from "../../src/domain/ledger";
import { MaxRunsInFlightSchema } from "../../src/domain/plan";
import { SubLedgerIndexSchema, SubTotalSchema, subLedgerName } from "../../src/domain/ledger-subshards";

export const BudgetInputSchema = z.object({
  limitNanoUsd: z.string().regex(/^\d+$/).nullable(),
  softThresholds: z.array(z.number().gt(0).lt(1)).max(20),
});

export const ReserveInputSchema = z.object({
  holdId: z.string().min(1).max(200),
  runId: z.string().min(1).max(100),
  nanoUsd: IntegerText,
  /** ms since the epoch: the hold lapses on its own then (the step's longest run plus a margin). */
  expiresAt: z.number().int(),
  /** A hold this one takes over, in the same transaction: its amount counts toward this one's fit, and it is gone. */
  replaces: z.string().min(1).max(200).optional(),
});

export const AdmitInputSchema = z.object({
  /** The run about to start (or resume): tracked while the customer has no budget, so a budget set later reaches it. */
  runId: z.string().min(1).max(100).optional(),
  /**
   * Under a hard budget, held before the run may start, all or none: its creation (settled by its
   * creation record) and an allowance for its life outside steps (released by its last delivery).
   */
  holds: z.array(ReserveInputSchema).max(4).optional(),
  /** The customer's plan's cap on runs in flight (default DEFAULT_MAX_RUNS_IN_FLIGHT). */
  maxRunsInFlight: MaxRunsInFlightSchema.optional(),
});

export const ReleaseInputSchema = z.object({
  holdIds: z.array(z.string().min(1).max(200)).max(10).optional(),
  /** A run that was admitted again (an idempotent replay) but had already ended: not in flight. */
  endedRunId: z.string().min(1).max(100).optional(),
});

/** A priced cost record as the ledger counts it: its run sequence number, instant and amount. */
export const LedgerRecordSchema = z.object({
  seq: z.number().int().min(1),
  at: z.number().int(),
  nanoUsd: IntegerText,
  holdId: z.string().max(200).nullable(),
});

export const RecordInputSchema = z.object({
  customerId: z.string().min(1),
  runId: z.string().min(1).max(100),
  records: z.array(LedgerRecordSchema).max(1000),
  /** The run's whole cost as of its latest record, for D1. */
  rollup: RunRollupSchema,
  /** The run has ended: it is no longer in flight. */
  final: z.boolean().default(false),
  /** Holds let go with this delivery that no record settles (the run's allowance, at its end). */
  releaseHolds: z.array(z.string().min(1).max(200)).max(10).default([]),
  /** Sent to sub-ledger k of the customer (the run's, chosen at its creation); absent: to the primary. */
  subLedger: SubLedgerIndexSchema.optional(),
});

/**
 * A sub-ledger's report to its primary: its latest month totals (SET, by version), the holds its
 * records settled and the runs that ended, all applied in one transaction.
 */
export const SubTotalsInputSchema = z.object({
  customerId: z.string().min(1),
  subLedger: SubLedgerIndexSchema,
  totals: z.array(SubTotalSchema).max(24),
  releaseHolds: z.array(z.string().min(1).max(200)).max(5000).default([]),
  endedRuns: z.array(z.string().min(1).max(100)).max(5000).default([]),
});

/** The primary asks a sub-ledger, at reconciliation, for its month: its total and a page of its runs. */
export const SubLedgerMonthInputSchema = z.object({
  month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/),
  /** Runs after this id (paging); "" from the start. */
  afterRunId: z.string().max(100).default(""),
});

export const ReconcileInputSchema = z.object({
  customerId: z.string().min(1),
  month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/).optional(),
});

export interface LedgerSummary {
  month: string;
  spendNanoUsd: string;
  /** Held for steps running now: their worst case until each is settled. */
  heldNanoUsd: string;
  /** limit − spend − held, at least 0; null without a budget. */
  remainingNanoUsd: string | null;
  budget: z.infer<typeof BudgetInputSchema>;
  state: BudgetState;
}

export interface SubLedgerMonth {
  /** The sub-ledger's current total for the month, at its report version (0: nothing counted yet). */
  total: { month: string; nanoUsd: string; version: number };
  /** On the first page: the sum of every run's total for the month, read with `total` (they must agree). */
  runsNanoUsd: string | null;
  /** A page of its runs' totals for the month, by run id. */
  runs: { runId: string; nanoUsd: string }[];
  /** More runs follow this page. */
  more: boolean;
}

export interface SubTotalsReply {
  /** Totals that replaced an older one (a redelivered or superseded report applies none). */
  applied: number;
  /** The customer's budget is spent, as the primary sees it now. */
  exhausted: boolean;
}

export interface SubLedgerView {
  subLedger: number;
  month: string;
  nanoUsd: string;
  version: number;
  /** When the primary last took a newer total for it (ms since the epoch). */
  updatedAt: number;
}

export interface RecordReply {
  /** Records counted now (0 when every one was counted before). */
  counted: number;
  spendNanoUsd: string;
  limited: boolean;
  exhausted: boolean;
}

export interface AdmitReply {
  allowed: boolean;
  limited: boolean;
  /** Why the run is refused, when it is. */
  refusal: string | null;
  /** What refused it: the budget (402) or the cap on runs in flight (429). */
  reason: "budget" | "too_many_runs" | null;
  /** The holds this call placed (a hold of the same id already in place is not placed again). */
  placed: string[];
  summary: LedgerSummary;
}

export type ReserveReply = { ok: true } | { ok: false; reason: "budget_exceeded"; message: string };

export interface HoldView {
  id: string;
  runId: string;
  nanoUsd: string;
  expiresAt: number;
}

export interface LedgerView extends LedgerSummary {
  holds: HoldView[];
  /** Runs admitted and not yet finished (what the cap on runs in flight counts). */
  runsInFlight: number;
  /** Messages for D1 (cost rollups, alerts) not yet handed to the events queue. */
  pendingForD1: number;
  /** The latest month totals reported by this customer's cost sub-ledgers (none without LEDGER_SUBSHARDS). */
  subLedgers: SubLedgerView[];
  /** On a sub-ledger: reports not yet acknowledged by the primary (month totals, holds and ended runs). */
  pendingForPrimary: number;
  /** On a sub-ledger: reports the primary acknowledged (its requests to the primary, however many deliveries each covers). */
  reportsSent: number;
}

export interface ReconciliationReport {
  month: string;
  /** The ledger's month-to-date spend. */
  ledgerNanoUsd: string;
  /** Σ of the customer's cost rollups in D1 for the month. */
  d1NanoUsd: string;
  differenceNanoUsd: string;
  runsCompared: number;
  /** Runs whose D1 rollup was missing or behind: their rollup was sent again. */
  repaired: { runId: string; ledgerNanoUsd: string; d1NanoUsd: string }[];
  /** Differences nothing explains (reported, and alerted). */
  unexplained: { runId: string | null; ledgerNanoUsd: string; d1NanoUsd: string; reason: string }[];
  /** Per-run detail is kept this long; older months are compared by totals only. */
  detailKept: boolean;
  checkedAt: number;
}

/** The ledger's RPC surface, as callers see it. */
export interface CustomerLedgerApi {
  admit(input?: z.input<typeof AdmitInputSchema>): Promise<AdmitReply>;
  reserve(input: z.input<typeof ReserveInputSchema>): Promise<ReserveReply>;
  release(input: z.input<typeof ReleaseInputSchema>): Promise<void>;
  record(input: z.input<typeof RecordInputSchema>): Promise<RecordReply>;
  summary(): Promise<LedgerSummary>;
  view(): Promise<LedgerView>;
  setBudget(input: z.input<typeof BudgetInputSchema>): Promise<LedgerSummary & { runsLimited: number }>;
  reconcile(input: z.input<typeof ReconcileInputSchema>): Promise<ReconciliationReport>;
  /** On the primary: a sub-ledger's report. */
  applySubTotals(input: z.input<typeof SubTotalsInputSchema>): Promise<SubTotalsReply>;
  /** On a sub-ledger: its month, for the primary's reconciliation. */
  subLedgerMonth(input: z.input<typeof SubLedgerMonthInputSchema>): Promise<SubLedgerMonth>;
}

/** The stub of customer `customerId`'s ledger (typed by hand, as runStub is). */
export function ledgerStub(env: Env, customerId: string): CustomerLedgerApi {
  return env.CUSTOMER_LEDGER.get(env.CUSTOMER_LEDGER.idFromName(customerId)) as unknown as CustomerLedgerApi;
}

/** The stub of customer `customerId`'s cost sub-ledger `index`. */
export function subLedgerStub(env: Env, customerId: string, index: number): CustomerLedgerApi {
  return ledgerStub(env, subLedgerName(customerId, index));
}

/** Where a run's cost deliveries go: its sub-ledger when it has one, else the primary. */
export function costLedgerStub(env: Env, customerId: string, subLedger: number | undefined): CustomerLedgerApi {
  return subLedger === undefined ? ledgerStub(env, customerId) : subLedgerStub(env, customerId, subLedger);
}
