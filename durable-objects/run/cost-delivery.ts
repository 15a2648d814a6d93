/**
 * Delivers the run's cost journal to the customer's ledger (or to the run's cost sub-ledger, for
 * a customer with LEDGER_SUBSHARDS): the records not yet acknowledged,
 * with the run's whole rollup for D1. One delivery at a time; until the ledger acknowledges,
 * the alarm tries again with backoff, also after the run has ended. A delivery's own cost (the
 * ledger request, its rows, the message to D1 and the rows it writes) is billed in it, as
 * overhead.
 */
import type { PriceBook } from "../../src/domain/pricing";
import type { RunState } from "../../src/domain/run-machine";
import { isTerminalRun } from "../../src/domain/run-status";
import type { TokenUsage } from "../../src/domain/token-usage";
import { errorMessage, log } from "../../src/lib/log";
import { costLedgerStub, type RecordReply } from "../ledger/rpc";
import type { CostJournal } from "./cost-journal";
import { D1_ROWS_PER_ROLLUP_ROW, LEDGER_ROWS_PER_DELIVERY, overheadQuantities, QUEUE_OPERATIONS_PER_MESSAGE } from "./meters";
import { runHoldId, startingHoldId } from "./rpc";

/** A run carried on inline for long delivers its costs this often, not only when it pauses. */
const COST_FLUSH_MS = 10_000;
/** Backoff for a delivery the ledger did not acknowledge. */
const COST_RETRY_MS = [1_000, 5_000, 15_000, 60_000, 300_000];

export interface CostDeliveryHost {
  env: Env;
  storage: DurableObjectStorage;
  journal: CostJournal;
  /** Prices covering these models, or null when they cannot be had now. */
  priceBook(models: readonly string[]): Promise<PriceBook | null>;
  /** Re-arms the one alarm once `dueAt` has moved. */
  armAlarm(state: RunState): Promise<void>;
  waitUntil(promise: Promise<unknown>): void;
}

export class CostDelivery {
  /** When undelivered costs are next due (one of the alarm's deadlines); null: nothing due. */
  dueAt: number | null = null;
  private failures = 0;
  private delivering: Promise<RecordReply | null> | null = null;

  constructor(private readonly host: CostDeliveryHost) {}

  /** Woken with costs the ledger has not acknowledged (a crash, an eviction): they are due now. */
  woke(): void {
    if (this.host.journal.undelivered) this.dueAt = Date.now();
  }

  /** An attempt closed or the run ended: its costs get a timer, whatever else delivers them first. */
  closed(now: number): void {
    if (this.dueAt === null) this.dueAt = now + COST_FLUSH_MS;
  }

  isDue(now: number): boolean {
    return this.dueAt !== null && this.dueAt <= now;
  }

  /** Delivers in the background: the command's reply does not wait for the ledger. */
  soon(state: RunState): void {
    this.host.waitUntil(this.deliver(state));
  }

  deliver(state: RunState, options: { rollupEvenIfNothingNew?: boolean } = {}): Promise<RecordReply | null> {
    const previous = this.delivering ?? Promise.resolve(null);
    const next = previous.catch(() => null).then(() => this.deliverNow(state, options));
    this.delivering = next;
    return next.finally(() => {
      if (this.delivering === next) this.delivering = null;
    });
  }

  /** Tokens reported on a lease whose attempt had already closed, billed once. */
  async recordLateUsage(state: RunState, leaseId: string, tokens: TokenUsage[], book: PriceBook | null): Promise<void> {
    const { journal, storage } = this.host;
    const step = state.steps.find((s) => s.history.some((h) => h.leaseId === leaseId));
    const attempt = step?.history.find((h) => h.leaseId === leaseId);
    if (!step || !attempt || journal.hasTokensFor(leaseId)) return;
    journal.addOverhead({ doRequests: 1, rowsWritten: 2 });
    storage.transactionSync(() => {
      journal.append(
        { kind: "late", lease: leaseId, step: state.def.steps[step.index]!.name, attempt: attempt.attempt, at: Date.now(), infra: {}, estimated: [], tokens, holdId: null },
        book,
      );
      journal.persistState();
    });
    log("costs.late_usage", { runId: state.def.id, step: state.def.steps[step.index]!.name, attempt: attempt.attempt, pool: state.def.pool, leaseId });
    // The alarm is the fallback (a crash before the delivery below): due later, so it does not race the delivery and bill a second one.
    if (this.dueAt === null) this.dueAt = Date.now() + COST_RETRY_MS[0]!;
    await this.host.armAlarm(state);
    this.soon(state);
  }

  private async deliverNow(state: RunState, options: { rollupEvenIfNothingNew?: boolean }): Promise<RecordReply | null> {
    const { journal, storage } = this.host;
    const book = await this.host.priceBook(journal.unpricedModels());
    if (!book) return this.failed(state, "prices are unavailable");
    const pending = journal.undelivered;
    if (!pending && !options.rollupEvenIfNothingNew) {
      this.dueAt = null;
      return null;
    }
    const attribution = { runId: state.def.id, customerId: state.def.customerId, projectId: state.def.projectId, runType: state.def.runType, pool: state.def.pool };
    storage.transactionSync(() => {
      if (pending) {
        const rollupRows = Math.max(1, journal.rollup(attribution).rows.length);
        journal.addOverhead({ doRequests: 1, ledgerRowsWritten: LEDGER_ROWS_PER_DELIVERY, queueOperations: QUEUE_OPERATIONS_PER_MESSAGE, d1RowsWritten: D1_ROWS_PER_ROLLUP_ROW * rollupRows, rowsWritten: 2 });
        journal.billOverhead(Date.now(), book, overheadQuantities);
      }
      journal.persistState();
    });
    const { records, blockedBy } = journal.deliverable(book);
    if (blockedBy.length > 0) log("costs.unpriced_model", { runId: state.def.id, pool: state.def.pool, models: blockedBy }, "error");
    const upTo = records.length > 0 ? records[records.length - 1]!.seq : journal.lastSentSeq;
    const final = isTerminalRun(state.status) && blockedBy.length === 0;
    try {
      const subLedger = state.def.subLedger;
      const reply = await costLedgerStub(this.host.env, state.def.customerId, subLedger).record({
        customerId: state.def.customerId,
        runId: state.def.id,
        records: records.map((r) => ({ seq: r.seq, at: r.at, nanoUsd: r.nanoUsd.toString(), holdId: r.holdId })),
        rollup: journal.rollup(attribution, upTo),
        final,
        // The run's allowance for its life outside steps goes with its last delivery, and so does
        // its starting hold if no attempt took it over (the run ended before its first step).
        releaseHolds: final && state.def.budgetLimited ? [runHoldId(state.def.id), startingHoldId(state.def.id)] : [],
        ...(subLedger === undefined ? {} : { subLedger }),
      });
      journal.markSent(upTo);
      this.failures = 0;
      if (blockedBy.length > 0) return this.failed(state, `no price for model ${blockedBy.join(", ")}`, reply);
      this.dueAt = journal.undelivered ? Date.now() + COST_FLUSH_MS : null;
      await this.host.armAlarm(state);
      return reply;
    } catch (err) {
      return this.failed(state, errorMessage(err));
    }
  }

  private async failed(state: RunState, reason: string, reply: RecordReply | null = null): Promise<RecordReply | null> {
    const delay = COST_RETRY_MS[Math.min(this.failures, COST_RETRY_MS.length - 1)]!;
    this.failures += 1;
    log("costs.delivery_failed", { runId: state.def.id, pool: state.def.pool, pending: this.host.journal.recordsPending, retryInMs: delay, error: reason }, "warn");
    this.dueAt = Date.now() + delay;
    await this.host.armAlarm(state);
    return reply;
  }
}
