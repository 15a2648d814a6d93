/**
 * What one step attempt cost, counted where it happened: the tokens its executor reported, and
 * the billable operations it caused — the queue delivery that started it (a Worker invocation
 * and three queue operations: write, read, delete), the requests the run object served for it,
 * the SQLite rows those requests wrote, and CPU time estimated from the attempt's wall time
 * (labelled estimated: the runtime reports no CPU figure per request).
 */
import type { LedgerCostEvent } from "./customer-ledger";
import { toCostEvents, type CostAttribution, type CostEvent } from "../src/domain/cost-events";
import type { PriceBook, PricedQuantity, TokenUsage } from "../src/domain/pricing";

export interface AttemptMeter {
  /** Started by a queue delivery (not carried on inline by the previous step's consumer). */
  queued: boolean;
  doRequests: number;
  rowsWritten: number;
}

/** Per-attempt counters, kept in memory while the run object is awake (best effort on eviction). */
export class AttemptMeters {
  private readonly meters = new Map<string, AttemptMeter>();

  start(leaseId: string, queued: boolean) {
    this.meters.set(leaseId, { queued, doRequests: queued ? 1 : 0, rowsWritten: 0 });
  }

  add(leaseId: string, counts: { doRequests?: number; rowsWritten?: number }) {
    const meter = this.meters.get(leaseId) ?? { queued: false, doRequests: 0, rowsWritten: 0 };
    meter.doRequests += counts.doRequests ?? 0;
    meter.rowsWritten += counts.rowsWritten ?? 0;
    this.meters.set(leaseId, meter);
  }

  take(leaseId: string): AttemptMeter {
    const meter = this.meters.get(leaseId) ?? { queued: false, doRequests: 0, rowsWritten: 0 };
    this.meters.delete(leaseId);
    return meter;
  }
}

/** Prices an attempt's usage. Token usage for a model with no price is returned apart, never priced as zero. */
export function attemptCosts(
  book: PriceBook,
  attribution: CostAttribution,
  meter: AttemptMeter,
  usage: readonly TokenUsage[] | undefined,
  wallMs: number,
  at: number,
): { events: CostEvent[]; unpriced: string[] } {
  const lines: (PricedQuantity | null)[] = [];
  const unpriced: string[] = [];
  for (const u of usage ?? []) {
    if (book.modelPrice(u.model, at)) lines.push(...book.priceUsage(u, at));
    else unpriced.push(u.model);
  }
  lines.push(
    book.priceInfra("worker_requests", meter.queued ? 1 : 0, at),
    book.priceInfra("queue_operations", meter.queued ? 3 : 0, at),
    book.priceInfra("do_requests", meter.doRequests, at),
    book.priceInfra("do_rows_written", meter.rowsWritten, at),
    book.priceInfra("worker_cpu_ms", Math.max(1, wallMs), at, true),
  );
  return { events: toCostEvents(attribution, lines, at), unpriced };
}

/** Run-level costs of creating the run: the API request, the create request, its rows. */
export function creationCosts(book: PriceBook, attribution: CostAttribution, rowsWritten: number, at: number): CostEvent[] {
  return toCostEvents(
    attribution,
    [book.priceInfra("worker_requests", 1, at), book.priceInfra("do_requests", 1, at), book.priceInfra("do_rows_written", rowsWritten, at)],
    at,
    "create",
  );
}

/** Cost events as the ledger's RPC takes them (bigints as decimal strings). */
export function forLedger(events: readonly CostEvent[]): LedgerCostEvent[] {
  return events.map((e) => ({
    id: e.id,
    customerId: e.customerId,
    projectId: e.projectId,
    runId: e.runId,
    runType: e.runType,
    pool: e.pool,
    step: e.step,
    attempt: e.attempt,
    meter: e.meter,
    model: e.model,
    quantity: e.quantity.toString(),
    perMillion: e.perMillion.toString(),
    nanoUsd: e.nanoUsd.toString(),
    priceVersion: e.priceVersion,
    estimated: e.estimated,
    at: e.at,
  }));
}
