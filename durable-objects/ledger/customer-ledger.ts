/**
 * One Durable Object per customer: its spend, as the platform enforces it. Month-to-date spend
 * in real time; a budget with soft thresholds (an alert once per threshold per month) and a hard
 * limit (new runs refused, no step started whose worst case would pass it); holds, so that
 * concurrent steps can never overspend, each lapsing on its own; cost records counted once per
 * (run, seq). What it counts goes on to D1 through an outbox written in the same transaction,
 * and a reconciliation compares its totals with D1's and repairs D1. The rules live in
 * src/domain/ledger.ts; this class persists and applies them.
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { runStub } from "../run/rpc";
import type { EventMessage, RunRollup } from "../../src/data-plane/messages";
import { parseOrRefuse } from "../../src/domain/errors";
import { monthOf, nanoByMonth } from "../../src/domain/cost-records";
import { DEFAULT_MAX_RUNS_IN_FLIGHT, budgetState, compareRunTotals, freshRecords, holdRefusal, remainingBudget, thresholdsReached, type Budget } from "../../src/domain/ledger";
import { nanoToUsdString } from "../../src/domain/money";
import { errorMessage, log } from "../../src/lib/log";
import { countD1, countUsage } from "../../src/lib/usage";
import { sqlHelper } from "../sql";
import { ensureLedgerSchema } from "./schema";
import {
  AdmitInputSchema,
  BudgetInputSchema,
  RecordInputSchema,
  ReconcileInputSchema,
  ReleaseInputSchema,
  ReserveInputSchema,
  type AdmitReply,
  type CustomerLedgerApi,
  type LedgerSummary,
  type LedgerView,
  type RecordReply,
  type ReconciliationReport,
  type ReserveReply,
} from "./rpc";

const DAY_MS = 86_400_000;
/** Per-run totals are kept this long (two full months), for reconciliation and deduplication. */
export const DETAIL_KEPT_MS = 62 * DAY_MS;
const FORWARD_RETRY_MS = [1_000, 5_000, 15_000, 60_000, 300_000];
/** A queue message must stay below 128 KB, a sendBatch below 256 KB. */
const MESSAGE_BYTES = 100_000;
const BATCH_BYTES = 200_000;
const ROLLUP_ROWS_PER_OUTBOX_ROW = 200;
/** Run objects told of a new budget per pass, and at once. */
const SWEEP_PAGE = 200;
const SWEEP_PARALLEL = 20;

export class CustomerLedger extends DurableObject implements CustomerLedgerApi {
  private readonly sql = sqlHelper(this.ctx.storage);
  private schemaReady = false;
  private forwarding: Promise<void> | null = null;
  private forwardAgain = false;
  private forwardFailures = 0;

  private ensureSchema() {
    if (this.schemaReady) return;
    ensureLedgerSchema(this.ctx.storage);
    this.schemaReady = true;
  }

  // ---- commands -------------------------------------------------------------------------

  async setBudget(input: z.input<typeof BudgetInputSchema>): Promise<LedgerSummary & { runsLimited: number }> {
    countUsage("do_requests");
    const budget = parseOrRefuse(BudgetInputSchema, input);
    this.ensureSchema();
    this.sql`INSERT OR REPLACE INTO budget (id, limit_nano_usd, soft_thresholds) VALUES (1, ${budget.limitNanoUsd}, ${JSON.stringify(budget.softThresholds)})`;
    // Runs already in flight were admitted without a limit: tell each that it now has one, so
    // its next step is held against the budget. What this pass cannot reach, the alarm retries.
    const runsLimited = budget.limitNanoUsd === null ? 0 : await this.limitRunsInFlight();
    return { ...this.readSummary(Date.now()), runsLimited };
  }

  async summary(): Promise<LedgerSummary> {
    countUsage("do_requests");
    return this.readSummary(Date.now());
  }

  async view(): Promise<LedgerView> {
    countUsage("do_requests");
    const now = Date.now();
    const summary = this.readSummary(now);
    const holds = this.sql<{ id: string; run_id: string; nano_usd: string; expires_at: number }>`
      SELECT id, run_id, nano_usd, expires_at FROM holds WHERE expires_at > ${now} ORDER BY expires_at LIMIT 500`;
    return {
      ...summary,
      holds: holds.map((h) => ({ id: h.id, runId: h.run_id, nanoUsd: h.nano_usd, expiresAt: h.expires_at })),
      runsInFlight: this.sql<{ n: number }>`SELECT COUNT(*) AS n FROM active_runs`[0]!.n,
      pendingForD1: this.sql<{ n: number }>`SELECT COUNT(*) AS n FROM outbox`[0]!.n,
    };
  }

  /**
   * May this customer start (or resume) a run? Refused once the month's spend has reached the
   * limit, or when the run's creation would not fit beside what is held. Also tells the run
   * whether it must hold its steps against a budget.
   */
  async admit(input: z.input<typeof AdmitInputSchema> = {}): Promise<AdmitReply> {
    countUsage("do_requests");
    const { runId, holds, maxRunsInFlight } = parseOrRefuse(AdmitInputSchema, input);
    const now = Date.now();
    const summary = this.readSummary(now);
    const budget = this.budget();
    const limited = budget.limitNanoUsd !== null;
    if (summary.state === "exhausted") {
      return { allowed: false, limited, placed: [], reason: "budget", refusal: `the monthly budget of ${nanoToUsdString(budget.limitNanoUsd!)} USD is spent (${nanoToUsdString(BigInt(summary.spendNanoUsd))} USD)`, summary };
    }
    const placed: string[] = [];
    if (runId && this.sql`SELECT 1 FROM active_runs WHERE run_id = ${runId}`.length === 0) {
      const inFlight = this.sql<{ n: number }>`SELECT COUNT(*) AS n FROM active_runs`[0]!.n;
      const cap = maxRunsInFlight ?? DEFAULT_MAX_RUNS_IN_FLIGHT;
      if (inFlight >= cap) return { allowed: false, limited, placed, refusal: `${inFlight} runs are in flight, the most this customer's plan allows at once (${cap})`, reason: "too_many_runs", summary };
    }
    if (limited && holds?.length) {
      // All or none: the holds the run needs (those not placed already) must fit together.
      const fresh = holds.filter((h) => this.sql`SELECT 1 FROM holds WHERE id = ${h.holdId}`.length === 0);
      const refusal = holdRefusal(budget, BigInt(summary.spendNanoUsd), BigInt(summary.heldNanoUsd), fresh.reduce((sum, h) => sum + BigInt(h.nanoUsd), 0n));
      if (refusal) return { allowed: false, limited, placed, refusal, reason: "budget", summary };
      for (const h of fresh) {
        this.sql`INSERT INTO holds (id, run_id, nano_usd, expires_at) VALUES (${h.holdId}, ${h.runId}, ${h.nanoUsd}, ${h.expiresAt})`;
        placed.push(h.holdId);
      }
    }
    if (runId) this.sql`INSERT OR IGNORE INTO active_runs (run_id, admitted_at, limited) VALUES (${runId}, ${now}, ${limited ? 1 : 0})`;
    return { allowed: true, limited, refusal: null, reason: null, placed, summary: placed.length > 0 ? this.readSummary(now) : summary };
  }

  /**
   * Holds `nanoUsd` of the budget for a step about to run (its worst case) until the step's cost
   * is counted or the hold lapses. Refused when spend + every active hold + this would pass the
   * hard limit. Idempotent by id.
   */
  async reserve(input: z.input<typeof ReserveInputSchema>): Promise<ReserveReply> {
    countUsage("do_requests");
    const hold = parseOrRefuse(ReserveInputSchema, input);
    return this.placeHold(hold, this.readSummary(Date.now()));
  }

  /** Lets a hold go without a cost to settle it (the step it was for never started), and forgets a run admitted again after it had ended. */
  async release(input: z.input<typeof ReleaseInputSchema>): Promise<void> {
    countUsage("do_requests");
    const { holdIds, endedRunId } = parseOrRefuse(ReleaseInputSchema, input);
    this.ensureSchema();
    if (holdIds?.length) this.sql`DELETE FROM holds WHERE id IN (SELECT value FROM json_each(${JSON.stringify(holdIds)}))`;
    if (endedRunId) this.sql`DELETE FROM active_runs WHERE run_id = ${endedRunId}`;
  }

  /**
   * Counts a run's cost records (each (run, seq) once), settles the holds they name, raises
   * threshold alerts, and queues the run's rollup for D1 — all in one transaction, so nothing
   * counted can miss D1 and nothing reaches D1 uncounted.
   */
  async record(input: z.input<typeof RecordInputSchema>): Promise<RecordReply> {
    countUsage("do_requests");
    const { customerId, runId, records, rollup, final, releaseHolds } = parseOrRefuse(RecordInputSchema, input);
    this.ensureSchema();
    const now = Date.now();
    let counted = 0;
    this.ctx.storage.transactionSync(() => {
      const run = this.sql<{ seq: number; months: string }>`SELECT seq, months FROM runs WHERE run_id = ${runId}`[0];
      const fresh = freshRecords(records, run?.seq ?? 0);
      counted = fresh.length;
      const months: Record<string, string> = run ? JSON.parse(run.months) : {};
      const added = nanoByMonth(fresh.map((r) => ({ at: r.at, nanoUsd: BigInt(r.nanoUsd) })));
      for (const [month, nano] of added) {
        this.sql`INSERT OR REPLACE INTO spend (month, nano_usd) VALUES (${month}, ${(this.spend(month) + nano).toString()})`;
        months[month] = (BigInt(months[month] ?? "0") + nano).toString();
      }
      const holdIds = [...records.map((r) => r.holdId).filter((id): id is string => id !== null), ...releaseHolds];
      if (holdIds.length > 0) this.sql`DELETE FROM holds WHERE id IN (SELECT value FROM json_each(${JSON.stringify(holdIds)}))`;
      const seq = Math.max(run?.seq ?? 0, ...fresh.map((r) => r.seq));
      if (!run || fresh.length > 0) {
        this.sql`INSERT OR REPLACE INTO runs (run_id, seq, months, updated_at) VALUES (${runId}, ${seq}, ${JSON.stringify(months)}, ${now})`;
      }
      this.queueRollup(rollup);
      if (final) this.sql`DELETE FROM active_runs WHERE run_id = ${runId}`;
      for (const month of added.keys()) this.queueThresholdAlerts(customerId, month, now);
    });
    await this.forward();
    const summary = this.readSummary(now);
    return { counted, spendNanoUsd: summary.spendNanoUsd, limited: summary.budget.limitNanoUsd !== null, exhausted: summary.state === "exhausted" };
  }

  /**
   * Compares the ledger's month with D1's: the totals, and each run's. A run D1 lacks or holds
   * less of is repaired (its run object sends its rollup again); what nothing explains is
   * reported and alerted. Runs from the cron and, on demand, from GET /v1/customers/:id/ledger.
   */
  async reconcile(input: z.input<typeof ReconcileInputSchema>): Promise<ReconciliationReport> {
    countUsage("do_requests");
    const { customerId, month: requested } = parseOrRefuse(ReconcileInputSchema, input);
    this.ensureSchema();
    const now = Date.now();
    const month = requested ?? monthOf(now);
    const from = Date.parse(`${month}-01T00:00:00Z`);
    const next = new Date(from);
    next.setUTCMonth(next.getUTCMonth() + 1);
    const to = next.getTime();
    const ledgerTotal = this.spend(month);
    const d1 = await this.d1RunTotals(customerId, from, to);
    const d1Total = [...d1.values()].reduce((a, b) => a + b, 0n);
    const detailKept = from >= now - DETAIL_KEPT_MS;
    const repaired: ReconciliationReport["repaired"] = [];
    const unexplained: ReconciliationReport["unexplained"] = [];
    if (detailKept) {
      const ledgerRuns = new Map<string, bigint>();
      for (const row of this.sql<{ run_id: string; months: string }>`SELECT run_id, months FROM runs`) {
        const amount = (JSON.parse(row.months) as Record<string, string>)[month];
        if (amount !== undefined) ledgerRuns.set(row.run_id, BigInt(amount));
      }
      const runsTotal = [...ledgerRuns.values()].reduce((a, b) => a + b, 0n);
      if (runsTotal !== ledgerTotal) {
        unexplained.push({ runId: null, ledgerNanoUsd: ledgerTotal.toString(), d1NanoUsd: runsTotal.toString(), reason: "the ledger's month spend differs from the sum of its runs" });
      }
      const { behind, unknown } = compareRunTotals(ledgerRuns, d1);
      await forEachLimited(behind, SWEEP_PARALLEL, async (diff) => {
        try {
          const reply = await runStub(this.env as Env, diff.runId).resendCosts();
          if (reply.ok) repaired.push({ runId: diff.runId, ledgerNanoUsd: diff.ledgerNanoUsd.toString(), d1NanoUsd: diff.d1NanoUsd.toString() });
          else unexplained.push({ runId: diff.runId, ledgerNanoUsd: diff.ledgerNanoUsd.toString(), d1NanoUsd: diff.d1NanoUsd.toString(), reason: `D1 is behind and the run cannot resend its cost: ${reply.reason}` });
        } catch (err) {
          // Unreachable now: the next reconciliation tries again.
          log("ledger.repair_failed", { customerId, runId: diff.runId, error: errorMessage(err) }, "warn");
        }
      });
      for (const diff of unknown) {
        unexplained.push({ runId: diff.runId, ledgerNanoUsd: "0", d1NanoUsd: diff.d1NanoUsd.toString(), reason: "D1 holds cost for a run this ledger never counted" });
      }
    } else if (d1Total !== ledgerTotal) {
      unexplained.push({ runId: null, ledgerNanoUsd: ledgerTotal.toString(), d1NanoUsd: d1Total.toString(), reason: "totals differ for a month older than the per-run detail the ledger keeps" });
    }
    if (unexplained.length > 0) this.queueMismatchAlert(customerId, month, unexplained, now);
    this.pruneDetail(now);
    await this.forward();
    const report: ReconciliationReport = {
      month,
      ledgerNanoUsd: ledgerTotal.toString(),
      d1NanoUsd: d1Total.toString(),
      differenceNanoUsd: (ledgerTotal - d1Total).toString(),
      runsCompared: d1.size,
      repaired: repaired.sort((a, b) => (a.runId < b.runId ? -1 : 1)),
      unexplained,
      detailKept,
      checkedAt: now,
    };
    if (repaired.length > 0 || unexplained.length > 0) {
      log("ledger.reconciled", { customerId, month, difference: report.differenceNanoUsd, repaired: repaired.length, unexplained: unexplained.length }, unexplained.length > 0 ? "error" : "warn");
    }
    return report;
  }

  override async alarm(): Promise<void> {
    countUsage("do_requests");
    this.ensureSchema();
    await this.forward();
    if (this.budget().limitNanoUsd !== null && this.sql`SELECT 1 FROM active_runs WHERE limited = 0 LIMIT 1`.length > 0) await this.limitRunsInFlight();
  }

  // ---- internals ------------------------------------------------------------------------

  private placeHold(hold: z.infer<typeof ReserveInputSchema>, summary: LedgerSummary): ReserveReply {
    if (this.sql`SELECT 1 FROM holds WHERE id = ${hold.holdId}`.length > 0) return { ok: true };
    const refusal = holdRefusal(this.budget(), BigInt(summary.spendNanoUsd), BigInt(summary.heldNanoUsd), BigInt(hold.nanoUsd));
    if (refusal) return { ok: false, reason: "budget_exceeded", message: refusal };
    this.sql`INSERT INTO holds (id, run_id, nano_usd, expires_at) VALUES (${hold.holdId}, ${hold.runId}, ${hold.nanoUsd}, ${hold.expiresAt})`;
    return { ok: true };
  }

  /** The rollup for D1, replacing an older one of the same run still waiting in the outbox. */
  private queueRollup(rollup: RunRollup) {
    const chunks = Math.max(1, Math.ceil(rollup.rows.length / ROLLUP_ROWS_PER_OUTBOX_ROW));
    for (let i = 0; i < chunks; i++) {
      const rows = rollup.rows.slice(i * ROLLUP_ROWS_PER_OUTBOX_ROW, (i + 1) * ROLLUP_ROWS_PER_OUTBOX_ROW);
      const message: EventMessage = { kind: "cost.rollup", rollup: { ...rollup, rows } };
      this.sql`INSERT INTO outbox (key, version, body) VALUES (${`rollup:${rollup.runId}:${i}`}, ${rollup.version}, ${JSON.stringify(message)})
        ON CONFLICT (key) DO UPDATE SET version = excluded.version, body = excluded.body WHERE excluded.version >= outbox.version`;
    }
  }

  private queueAlert(alert: Extract<EventMessage, { kind: "alert.raise" }>["alert"]) {
    const message: EventMessage = { kind: "alert.raise", alert };
    this.sql`INSERT OR IGNORE INTO outbox (key, version, body) VALUES (${`alert:${alert.id}`}, 0, ${JSON.stringify(message)})`;
  }

  private queueThresholdAlerts(customerId: string, month: string, now: number) {
    const budget = this.budget();
    if (budget.limitNanoUsd === null) return;
    const spend = this.spend(month);
    for (const threshold of thresholdsReached(spend, budget)) {
      const insert = this.ctx.storage.sql.exec("INSERT OR IGNORE INTO alerted (month, threshold) VALUES (?, ?)", month, threshold);
      insert.toArray();
      if (insert.rowsWritten === 0) continue; // alerted already this month
      const limit = budget.limitNanoUsd;
      const exhausted = threshold >= 1;
      this.queueAlert({
        id: `alert_budget_${customerId}_${month}_${Math.round(threshold * 100)}`,
        kind: exhausted ? "budget_exhausted" : "budget_soft_limit",
        severity: exhausted ? "error" : "warning",
        customerId,
        message: exhausted
          ? `Customer ${customerId} reached its monthly budget of ${nanoToUsdString(limit)} USD: new runs are refused`
          : `Customer ${customerId} passed ${Math.round(threshold * 100)}% of its monthly budget (${nanoToUsdString(spend)} of ${nanoToUsdString(limit)} USD)`,
        details: { month, threshold, spendNanoUsd: spend.toString(), limitNanoUsd: limit.toString() },
        createdAt: now,
      });
      log(exhausted ? "budget_exhausted" : "budget_soft_limit", { customerId, threshold, month }, "warn");
    }
  }

  private queueMismatchAlert(customerId: string, month: string, unexplained: ReconciliationReport["unexplained"], now: number) {
    // One alert per distinct set of differences: the cron finding the same ones again stays quiet.
    const fingerprint = unexplained.map((u) => `${u.runId}:${u.ledgerNanoUsd}:${u.d1NanoUsd}`).join("|");
    let hash = 0;
    for (let i = 0; i < fingerprint.length; i++) hash = (Math.imul(hash, 31) + fingerprint.charCodeAt(i)) | 0;
    this.queueAlert({
      id: `alert_ledger_${customerId}_${month}_${(hash >>> 0).toString(36)}`,
      kind: "ledger_mismatch",
      severity: "error",
      customerId,
      message: `Customer ${customerId}'s ledger and D1 disagree for ${month} in ${unexplained.length} way(s) reconciliation cannot explain`,
      details: { month, unexplained: unexplained.slice(0, 20) },
      createdAt: now,
    });
  }

  /**
   * Hands the outbox to the events queue, oldest first, in batches within the queue's size
   * limits; a row is deleted only once sent (and only if no newer version replaced it meanwhile).
   * One pass at a time; a failure re-arms the alarm with backoff.
   */
  private forward(): Promise<void> {
    if (this.forwarding) {
      this.forwardAgain = true;
      return this.forwarding;
    }
    this.forwarding = (async () => {
      do {
        this.forwardAgain = false;
        await this.forwardPass();
      } while (this.forwardAgain);
    })().finally(() => {
      this.forwarding = null;
    });
    return this.forwarding;
  }

  private async forwardPass() {
    for (;;) {
      const rows = this.sql<{ key: string; version: number; body: string }>`SELECT key, version, body FROM outbox LIMIT 100`;
      if (rows.length === 0) {
        this.forwardFailures = 0;
        return;
      }
      const batches: (typeof rows)[] = [[]];
      let bytes = 0;
      for (const row of rows) {
        if (row.body.length > MESSAGE_BYTES) log("ledger.outbox_oversized", { key: row.key, bytes: row.body.length }, "error");
        if (bytes + row.body.length > BATCH_BYTES && batches[batches.length - 1]!.length > 0) {
          batches.push([]);
          bytes = 0;
        }
        batches[batches.length - 1]!.push(row);
        bytes += row.body.length;
      }
      for (const batch of batches) {
        try {
          await (this.env as Env).EVENTS.sendBatch(batch.map((r) => ({ body: JSON.parse(r.body) })));
          countUsage("queue_operations", batch.length);
        } catch (err) {
          const delay = FORWARD_RETRY_MS[Math.min(this.forwardFailures, FORWARD_RETRY_MS.length - 1)]!;
          this.forwardFailures += 1;
          log("ledger.forward_failed", { messages: batch.length, retryInMs: delay, error: errorMessage(err) }, "error");
          await this.armAlarm(Date.now() + delay);
          return;
        }
        for (const row of batch) this.sql`DELETE FROM outbox WHERE key = ${row.key} AND version = ${row.version}`;
      }
    }
  }

  /** Tells every run admitted without a limit that it has one now; a run that has ended is forgotten. */
  private async limitRunsInFlight(): Promise<number> {
    const ids = this.sql<{ run_id: string }>`SELECT run_id FROM active_runs WHERE limited = 0 LIMIT ${SWEEP_PAGE}`.map((r) => r.run_id);
    let limited = 0;
    let failed = false;
    await forEachLimited(ids, SWEEP_PARALLEL, async (runId) => {
      try {
        const reply = await runStub(this.env as Env, runId).limitBudget();
        if (reply.ok) {
          limited += 1;
          this.sql`UPDATE active_runs SET limited = 1 WHERE run_id = ${runId}`;
        } else this.sql`DELETE FROM active_runs WHERE run_id = ${runId}`; // ended (or never created): not in flight
      } catch (err) {
        failed = true;
        log("ledger.limit_run_failed", { runId, error: errorMessage(err) }, "warn");
      }
    });
    if (failed || ids.length === SWEEP_PAGE) await this.armAlarm(Date.now() + 1_000);
    return limited;
  }

  /** Keeps the one alarm at or before `at`. */
  private async armAlarm(at: number) {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  private async d1RunTotals(customerId: string, from: number, to: number): Promise<Map<string, bigint>> {
    const totals = new Map<string, bigint>();
    const db = (this.env as Env).DB;
    // Whole dollars and the nano-USD below a dollar apart: each sum stays inside 64 bits.
    for (let after = ""; ;) {
      const page = await db
        .prepare(
          `SELECT run_id, CAST(SUM(nano_usd / 1000000000) AS TEXT) AS usd, CAST(SUM(nano_usd % 1000000000) AS TEXT) AS nano
           FROM cost_rollups WHERE customer_id = ?1 AND hour >= ?2 AND hour < ?3 AND run_id > ?4
           GROUP BY run_id ORDER BY run_id LIMIT 5000`,
        )
        .bind(customerId, from, to, after)
        .all<{ run_id: string; usd: string; nano: string }>();
      countD1(page);
      for (const r of page.results) totals.set(r.run_id, BigInt(r.usd) * 1_000_000_000n + BigInt(r.nano));
      if (page.results.length < 5000) return totals;
      after = page.results[page.results.length - 1]!.run_id;
    }
  }

  private pruneDetail(now: number) {
    const before = now - DETAIL_KEPT_MS;
    this.sql`DELETE FROM runs WHERE updated_at < ${before}`;
    this.sql`DELETE FROM active_runs WHERE admitted_at < ${before}`;
  }

  private budget(): Budget {
    const row = this.sql<{ limit_nano_usd: string | null; soft_thresholds: string }>`SELECT limit_nano_usd, soft_thresholds FROM budget`[0];
    return row ? { limitNanoUsd: row.limit_nano_usd === null ? null : BigInt(row.limit_nano_usd), softThresholds: JSON.parse(row.soft_thresholds) } : { limitNanoUsd: null, softThresholds: [] };
  }

  private spend(month: string): bigint {
    return BigInt(this.sql<{ nano_usd: string }>`SELECT nano_usd FROM spend WHERE month = ${month}`[0]?.nano_usd ?? "0");
  }

  /** Active holds; lapsed ones are deleted on the way. */
  private held(now: number): bigint {
    this.sql`DELETE FROM holds WHERE expires_at <= ${now}`;
    return this.sql<{ nano_usd: string }>`SELECT nano_usd FROM holds`.reduce((sum, r) => sum + BigInt(r.nano_usd), 0n);
  }

  private readSummary(now: number): LedgerSummary {
    this.ensureSchema();
    const month = monthOf(now);
    const budget = this.budget();
    const spend = this.spend(month);
    const held = this.held(now);
    const remaining = remainingBudget(budget, spend, held);
    return {
      month,
      spendNanoUsd: spend.toString(),
      heldNanoUsd: held.toString(),
      remainingNanoUsd: remaining === null ? null : remaining.toString(),
      budget: { limitNanoUsd: budget.limitNanoUsd === null ? null : budget.limitNanoUsd.toString(), softThresholds: budget.softThresholds },
      state: budgetState(spend, budget),
    };
  }
}

async function forEachLimited<T>(items: readonly T[], parallel: number, work: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += parallel) await Promise.all(items.slice(i, i + parallel).map(work));
}

export { ledgerStub } from "./rpc";
export type { LedgerSummary } from "./rpc";
