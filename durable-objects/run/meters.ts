/**
 * What a run's operations cost is counted where they happen, and persisted with the rows they
 * change, so an eviction or a crash loses no count:
 *  - an attempt's meter rides on its step row: the queue delivery that started it, the run
 *    object's requests for it (start, heartbeats, report) and the SQLite rows they wrote;
 *  - the run's overhead meter rides on the run row: requests outside any attempt (alarms, a
 *    cancel), the messages it sends (run index updates, dead letters) and the rows those write
 *    in D1, and the delivery of its cost to the ledger and on to D1.
 * Operations whose count lands elsewhere (D1 rows written by the events consumer, the ledger's
 * rows) are estimated from the schema, and labelled estimated.
 */
import { z } from "zod";
import type { InfraMeter } from "../../src/domain/pricing";
import type { InfraQuantities, UsageRecord } from "../../src/domain/cost-records";
import type { ClosedAttempt, RunDefinition } from "../../src/domain/run-machine";
import type { TokenUsage } from "../../src/domain/token-usage";

export const AttemptMeterSchema = z.object({
  lease: z.string(),
  /** Started by a queue delivery (not carried on inline by the previous step's consumer). */
  queued: z.boolean(),
  doRequests: z.number().int().min(0),
  rowsWritten: z.number().int().min(0),
  /** The budget hold placed for the attempt, settled by its cost record. */
  holdId: z.string().optional(),
});
export type AttemptMeter = z.infer<typeof AttemptMeterSchema>;

export const OverheadMeterSchema = z.object({
  doRequests: z.number().int().min(0),
  rowsWritten: z.number().int().min(0),
  queueOperations: z.number().int().min(0),
  /** estimated */
  d1RowsWritten: z.number().int().min(0),
  /** estimated: rows other objects write for the run: its customer's ledger (its cost), its pool's controller (its dispatches) */
  ledgerRowsWritten: z.number().int().min(0),
});
export type OverheadMeter = z.infer<typeof OverheadMeterSchema>;

export const emptyOverhead = (): OverheadMeter => ({ doRequests: 0, rowsWritten: 0, queueOperations: 0, d1RowsWritten: 0, ledgerRowsWritten: 0 });
export const isEmptyOverhead = (m: OverheadMeter) => Object.values(m).every((v) => v === 0);

export function addOverhead(meter: OverheadMeter, add: Partial<OverheadMeter>): OverheadMeter {
  return {
    doRequests: meter.doRequests + (add.doRequests ?? 0),
    rowsWritten: meter.rowsWritten + (add.rowsWritten ?? 0),
    queueOperations: meter.queueOperations + (add.queueOperations ?? 0),
    d1RowsWritten: meter.d1RowsWritten + (add.d1RowsWritten ?? 0),
    ledgerRowsWritten: meter.ledgerRowsWritten + (add.ledgerRowsWritten ?? 0),
  };
}

/**
 * D1 rows one run index message writes (src/data-plane/events-consumer.ts): the `runs` row
 * with its primary key and its indexes, and each attempt row (WITHOUT ROWID: the key is the row)
 * with its started_at index entry.
 * Measured in test/integration/costs.test.ts against real D1.
 */
export const INDEX_ROWS_PER_RUN = 6;
export const INDEX_ROWS_PER_ATTEMPT = 2;
/** D1 rows per cost rollup row: the row and its index entry. */
export const D1_ROWS_PER_ROLLUP_ROW = 2;
/** Ledger rows per delivery: the run's totals, the month's spend, the outbox entry and its deletion, the hold settled. */
export const LEDGER_ROWS_PER_DELIVERY = 5;

/**
 * What one dispatch costs at the pool's controller: two requests (the run's enqueue, the
 * consumer's report that the chain is done) and, estimated, its slot's row written and deleted
 * (a dispatch that waits for a slot also writes and deletes its waiting row; a long chain renews
 * its slot once per POOL_SLOT_LEASE_MS / 3).
 */
export const POOL_REQUESTS_PER_DISPATCH = 2;
export const POOL_ROWS_PER_DISPATCH = 2;

/** A queue message costs three operations: written, read, deleted. */
export const QUEUE_OPERATIONS_PER_MESSAGE = 3;

/** The quantities an attempt's meter stands for; CPU is estimated from the attempt's wall time. */
export function attemptQuantities(meter: AttemptMeter | null, wallMs: number): { infra: InfraQuantities; estimated: InfraMeter[] } {
  const queued = meter?.queued ?? false;
  return {
    infra: {
      worker_requests: queued ? 1 : 0,
      queue_operations: queued ? QUEUE_OPERATIONS_PER_MESSAGE : 0,
      do_requests: meter?.doRequests ?? 0,
      do_rows_written: meter?.rowsWritten ?? 0,
      worker_cpu_ms: Math.max(1, wallMs),
    },
    estimated: ["worker_cpu_ms"],
  };
}

/** The quantities an overhead meter stands for: D1 and ledger rows are estimated (counted elsewhere). */
export function overheadQuantities(meter: OverheadMeter): { infra: InfraQuantities; estimated: InfraMeter[] } {
  return {
    infra: {
      do_requests: meter.doRequests,
      do_rows_written: meter.rowsWritten + meter.ledgerRowsWritten,
      queue_operations: meter.queueOperations,
      d1_rows_written: meter.d1RowsWritten,
    },
    estimated: meter.ledgerRowsWritten > 0 ? ["d1_rows_written", "do_rows_written"] : ["d1_rows_written"],
  };
}

/** The cost record of a closed attempt: what its meter counted, and the tokens it reported. */
export function attemptRecord(def: RunDefinition, closed: ClosedAttempt, meter: AttemptMeter | null, tokens: TokenUsage[]): Omit<UsageRecord, "seq"> {
  return {
    kind: "attempt",
    lease: closed.leaseId,
    step: def.steps[closed.stepIndex]!.name,
    attempt: closed.attempt,
    at: closed.finishedAt,
    ...attemptQuantities(meter, closed.finishedAt - closed.startedAt),
    tokens,
    holdId: meter?.holdId ?? null,
  };
}

/** The cost record of the run's creation: the API request, the object's first request and rows, the index rows, its first dispatch at the pool's controller. */
export function creationRecord(def: RunDefinition, rowsWritten: number, holdId: string | null, dispatches = 0): Omit<UsageRecord, "seq"> {
  return {
    kind: "create",
    step: null,
    attempt: null,
    at: def.createdAt,
    infra: {
      worker_requests: 1,
      do_requests: 1 + POOL_REQUESTS_PER_DISPATCH * dispatches,
      do_rows_written: rowsWritten + POOL_ROWS_PER_DISPATCH * dispatches,
      d1_rows_written: INDEX_ROWS_PER_RUN,
    },
    estimated: dispatches > 0 ? ["d1_rows_written", "do_rows_written"] : ["d1_rows_written"],
    tokens: [],
    holdId,
  };
}
