/**
 * Cost sub-ledgers for a hot customer, free of storage. A customer configured with N of them
 * (LEDGER_SUBSHARDS) has each new run's cost deliveries counted by sub-ledger
 * `jumpShard(runId, N)` instead of by its primary ledger, so no single object takes every
 * delivery. Each sub-ledger reports its month totals to the primary as SET messages (shard k's
 * total for month M is X at version v): the primary keeps the highest version of each, so a
 * redelivered or reordered report changes nothing, and its month spend is its own plus the sum
 * of those latest totals.
 */
import { z } from "zod";
import { parseJsonVar } from "../lib/json-var";
import { jumpShard } from "./sharding";

/** More than this many sub-ledgers would mostly add reports and reconciliation fan-out. */
export const MAX_LEDGER_SUBSHARDS = 64;

const CustomerIdText = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "must be a customer id");

/** LEDGER_SUBSHARDS: customer id → its number of cost sub-ledgers (1 = none, as if absent). */
export const LedgerSubshardsSchema = z.record(CustomerIdText, z.number().int().min(1).max(MAX_LEDGER_SUBSHARDS));
export type LedgerSubshards = z.infer<typeof LedgerSubshardsSchema>;

/**
 * The deployment's sub-ledger counts from LEDGER_SUBSHARDS (absent or empty: none). An unusable
 * value is an error string, reported like any other misconfiguration.
 */
export function ledgerSubshards(env: { LEDGER_SUBSHARDS?: string }): LedgerSubshards | string {
  return parseJsonVar("LEDGER_SUBSHARDS", env.LEDGER_SUBSHARDS, LedgerSubshardsSchema, {}, `an object mapping customer ids to integers from 1 to ${MAX_LEDGER_SUBSHARDS}, such as {"cus_abc": 8}`);
}

/** Which of its customer's cost sub-ledgers an object or a run's costs are (absent: the primary ledger). */
export const SubLedgerIndexSchema = z.number().int().min(0).max(MAX_LEDGER_SUBSHARDS - 1);

/**
 * The sub-ledger that counts run `runId`'s costs, or null for the primary. Chosen once, when the
 * run is created, and kept with the run: a (run, seq) must always meet the same counter, even if
 * the configuration changes while the run is in flight.
 */
export function subLedgerOf(runId: string, subLedgers: number | undefined): number | null {
  if (subLedgers === undefined || subLedgers <= 1) return null;
  return jumpShard(runId, subLedgers);
}

/** The Durable Object name of customer `customerId`'s sub-ledger `index` (`#` is never part of a customer id). */
export function subLedgerName(customerId: string, index: number): string {
  return `${customerId}#${index}`;
}

/** Sub-ledger `index`'s month-to-date total for `month`, as of its report `version`. */
export const SubTotalSchema = z.object({
  month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/),
  nanoUsd: z.string().regex(/^(0|[1-9]\d{0,30})$/),
  version: z.number().int().min(1),
});
export type SubTotal = z.infer<typeof SubTotalSchema>;

/** A report replaces what the primary holds only when it is newer: SET, not ADD, and never backwards. */
export function isNewerSubTotal(held: { version: number } | undefined, incoming: { version: number }): boolean {
  return held === undefined || incoming.version > held.version;
}

/** A month's spend as the primary sees it: what it counted itself plus each sub-ledger's latest total. */
export function monthSpend(own: bigint, subTotals: Iterable<{ nanoUsd: string }>): bigint {
  let sum = own;
  for (const t of subTotals) sum += BigInt(t.nanoUsd);
  return sum;
}

/** The sub-ledgers the primary asks at reconciliation: those configured now and any that ever reported. */
export function subLedgersToAsk(configured: number | undefined, reported: Iterable<number>): number[] {
  const all = new Set<number>(reported);
  if (configured !== undefined && configured > 1) for (let k = 0; k < configured; k++) all.add(k);
  return [...all].sort((a, b) => a - b);
}
