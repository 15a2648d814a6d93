/**
 * Runplane's components as the capacity model sees them, each with what one step costs it and
 * its published ceiling. The per-step figures are `npm run bench`'s counts at 5 steps per run
 * (docs/benchmarks.md, "Issue 10, second part"); the ceilings are Cloudflare's published limits.
 */
import type { Component } from "./model";

const DO_LIMITS = "developers.cloudflare.com/durable-objects/platform/limits (FAQ): soft limit of 1,000 requests/s per object";
const QUEUE_LIMITS = "developers.cloudflare.com/queues/platform/limits: 5,000 messages/s per queue";
const D1_LIMITS = "developers.cloudflare.com/d1/platform/limits (FAQ): one database runs one query at a time; at 1 ms a query, about 1,000 queries/s";

/** D1 bytes one 5-step run keeps (its index row and 5 attempt rows, with their indexes), measured on the schema's SQLite. */
export const D1_BYTES_PER_RUN = 1_183;
/** D1's maximum database size (Workers Paid). */
export const D1_DATABASE_BYTES = 10e9;

/** The ledger's requests per step by kind (bench, 5 steps per run): one admission and one cost delivery per run. */
export const LEDGER_ADMISSIONS_PER_STEP = 0.2;
export const LEDGER_DELIVERIES_PER_STEP = 0.2;

/**
 * The customer ledger of a customer with `subLedgers` cost sub-ledgers (LEDGER_SUBSHARDS), as two
 * components: the primary keeps admission (its reports from the sub-ledgers, at most 2 a second
 * each per month, do not grow with the step rate and are left out), the sub-ledgers share the
 * cost deliveries. Past 1,000 ÷ (0.2 × the customer's share) steps/s the primary's admission binds.
 */
export function customerLedgerWithSubLedgers(subLedgers: number): Component[] {
  const ledger = COMPONENTS.find((c) => c.name === "customer ledger")!;
  return [
    { ...ledger, name: "customer ledger, primary (admission, holds)", perStep: LEDGER_ADMISSIONS_PER_STEP, measured: "bench: admission per run", shards: 1 },
    { ...ledger, name: "customer ledger, cost sub-ledgers", perStep: LEDGER_DELIVERIES_PER_STEP, measured: "bench: one cost delivery per run", shards: subLedgers },
  ];
}

export const COMPONENTS: Component[] = [
  {
    name: "run objects (one per run)",
    unit: "requests/s",
    perStep: 1.4,
    measured: "bench: 7 of the 10 DO requests per 5-step run (create, start, 5 completes)",
    ceiling: 1_000,
    source: DO_LIMITS,
    shardedBy: "run",
    shards: 1,
  },
  {
    name: "customer ledger",
    unit: "requests/s",
    perStep: LEDGER_ADMISSIONS_PER_STEP + LEDGER_DELIVERIES_PER_STEP,
    measured: "bench: admission and one cost delivery per run",
    ceiling: 1_000,
    source: DO_LIMITS,
    shardedBy: "customer",
    // Without LEDGER_SUBSHARDS (the default) a customer's every request meets its one ledger.
    shards: 1,
    remedy:
      "built: LEDGER_SUBSHARDS gives a hot customer N cost sub-ledgers (durable-objects/ledger/, src/domain/ledger-subshards.ts); its runs' deliveries go to jumpShard(runId, N), the primary keeps admission and holds and takes each sub-ledger's month totals at most twice a second (customerLedgerWithSubLedgers)",
  },
  {
    name: "rate limiter",
    unit: "requests/s",
    perStep: 0.2,
    measured: "bench: one token per API request (one POST per run)",
    ceiling: 1_000,
    source: DO_LIMITS,
    shardedBy: "customer",
    shards: 1,
  },
  {
    name: "pool controller",
    unit: "requests/s",
    perStep: 0.4,
    // At most: done reports are shared by the chains of a consumer batch (the bench measures 0.23), but one that ends alone sends its own.
    measured: "per 5-step run one enqueue (the run's dispatch) and at most one done (its chain's end); bench's DO requests per step with and without scheduling",
    ceiling: 1_000,
    source: DO_LIMITS,
    shardedBy: "pool",
    shards: 1,
  },
  {
    name: "job queue (per pool)",
    unit: "messages/s",
    perStep: 0.2,
    measured: "bench: one dispatch per run (later steps carried on inline)",
    ceiling: 5_000,
    source: QUEUE_LIMITS,
    shardedBy: "pool",
    shards: 1,
  },
  {
    name: "events queue",
    unit: "messages/s",
    perStep: 0.4,
    measured: "bench: the run's final index update and the ledger's cost rollup",
    ceiling: 5_000,
    source: QUEUE_LIMITS,
    shardedBy: "global",
    shards: 1,
  },
  {
    name: "D1 writes",
    unit: "queries/s",
    perStep: 0.22,
    measured: "per 5-step run the API's index insert, plus the events consumer's ~5 statements per batch (runs, attempts, rollups as one json_each upsert each, and the hours' marks) shared by the ~50 runs of a 100-message batch under load: 1.1 statements",
    ceiling: 1_000,
    source: D1_LIMITS,
    shardedBy: "global",
    shards: 1,
  },
];
