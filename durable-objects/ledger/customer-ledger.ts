/**
 * One Durable Object per customer: its spend, as the platform enforces it. Month-to-date spend
 * in real time; a budget with soft thresholds (an alert once per threshold per month) and a hard
 * limit (new runs refused, no step started whose worst case would pass it); holds, so that
 * concurrent steps can never overspend, each lapsing on its own; cost records counted once per
 * (run, seq). What it counts goes on to D1 through an outbox written in the same transaction,
 * and a reconciliation compares its totals with D1's and repairs D1. The rules live in
 * src/domain/ledger.ts; this class persists and applies them.
 *
 * A hot customer (LEDGER_SUBSHARDS) also has cost sub-ledgers, objects of this same class named
 * `${customerId}#${k}`: they count its runs' records and write their rollups to D1, and report
 * their month totals to this, the primary, which keeps budgets, holds and admission
 * (src/domain/ledger-subshards.ts).
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { runStub } from "../run/rpc";
import type { EventMessage, RunRollup } from "../../src/data-plane/messages";
import { DomainError, parseOrRefuse } from "../../src/domain/errors";
import { monthOf, nanoByMonth } from "../../src/domain/cost-records";
import { DEFAULT_MAX_RUNS_IN_FLIGHT, budgetState, compareRunTotals, freshRecords, holdRefusal, remainingBudget, thresholdsReached, type Budget } from "../../src/domain/ledger";
import { isNewerSubTotal, ledgerSubshards, monthSpend, subLedgersToAsk, type SubTotal } from "../../src/domain/ledger-subshards";
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
  SubLedgerMonthInputSchema,
  SubTotalsInputSchema,
  ledgerStub,
  subLedgerStub,
  type AdmitReply,
  type CustomerLedgerApi,
  type LedgerSummary,
  type LedgerView,
  type RecordReply,
  type ReconciliationReport,
  type ReserveReply,
  type SubLedgerMonth,
  type SubTotalsReply,
} from "./rpc";

const DAY_MS = 86_400_000;
/** Per-run totals are kept this long (two full months), for reconciliation and deduplication. */
export const DETAIL_KEPT_MS = 62 * DAY_MS;
const FORWARD_RETRY_MS = [1_000, 5_000, 15_000, 60_000, 300_000];
/** A queue message must stay below 128 KB, a sendBatch below 256 KB. */
const MESSAGE_BYTES = 100_000;
const BATCH_BYTES = 200_000;
const ROLLUP_ROWS_PER_OUTBOX_ROW = 200;
/**
 * A sub-ledger reports to its primary this long after the first delivery since its last report:
 * every delivery meanwhile is in the same report, one total per month. The primary's view of the
 * spend lags by this much; the holds a report settles stay held until it arrives.
 */
export const SUBTOTAL_FLUSH_MS = 500;
const REPORT_RETRY_MS = [1_000, 5_000, 15_000, 60_000, 300_000];
/** Holds and ended runs a report carries at most (the rest go in the next one, at once). */
const RELEASES_PER_REPORT = 2_000;
/** Runs per page a sub-ledger gives the primary's reconciliation. */
const SUB_RUNS_PAGE = 5_000;
/** Run objects told of a new budget per pass, and at once. */
const SWEEP_PAGE = 200;
const SWEEP_PARALLEL = 20;

export class CustomerLedger extends DurableObject implements CustomerLedgerApi {
  private readonly sql = sqlHelper(this.ctx.storage);
  private schemaReady = false;
  private forwarding: Promise<void> | null = null;
  private forwardAgain = false;
  private forwardFailures = 0;
  private reporting: Promise<void> | null = null;
  private reportFailures = 0;
  /** On a sub-ledger: what the primary last said of the budget (a hint for the run; the primary's holds enforce it). */
  private primaryExhausted = false;

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
      subLedgers: this.sql<{ sub_ledger: number; month: string; nano_usd: string; version: number; updated_at: number }>`
        SELECT sub_ledger, month, nano_usd, version, updated_at FROM sub_totals ORDER BY month, sub_ledger`.map((r) => ({
        subLedger: r.sub_ledger,
        month: r.month,
        nanoUsd: r.nano_usd,
        version: r.version,
        updatedAt: r.updated_at,
      })),
      pendingForPrimary:
        this.sql<{ n: number }>`SELECT COUNT(*) AS n FROM primary_outbox`[0]!.n + this.sql<{ n: number }>`SELECT COUNT(*) AS n FROM primary_releases`[0]!.n,
      reportsSent: this.subLedgerIdentity()?.reportsSent ?? 0,
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
      const refusal = holdRefusal(budget, BigInt(summary.spendNanoUsd), BigInt(summary.heldNanoUsd), fresh.reduce((sum, h) => sum + BigInt(h.nanoUsd), 0n), "starting this run");
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
    const { customerId, runId, records, rollup, final, releaseHolds, subLedger } = parseOrRefuse(RecordInputSchema, input);
    this.ensureSchema();
    if (subLedger !== undefined) return this.recordAsSubLedger(customerId, subLedger, runId, records, rollup, final, releaseHolds);
    const now = Date.now();
    let counted = 0;
    this.ctx.storage.transactionSync(() => {
      const run = this.sql<{ seq: number; months: string }>`SELECT seq, months FROM runs WHERE run_id = ${runId}`[0];
      const fresh = freshRecords(records, run?.seq ?? 0);
      counted = fresh.length;
      const months: Record<string, string> = run ? JSON.parse(run.months) : {};
      const added = nanoByMonth(fresh.map((r) => ({ at: r.at, nanoUsd: BigInt(r.nanoUsd) })));
      for (const [month, nano] of added) {
        this.sql`INSERT OR REPLACE INTO spend (month, nano_usd) VALUES (${month}, ${(this.ownSpend(month) + nano).toString()})`;
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
   * A sub-ledger's record: counted and rolled up for D1 as the primary does, and in the same
   * transaction its new month totals, the holds its records settle and the run's end are put in
   * the report to the primary, which the alarm sends a moment later with whatever else arrived.
   */
  private async recordAsSubLedger(
    customerId: string,
    subLedger: number,
    runId: string,
    records: z.infer<typeof RecordInputSchema>["records"],
    rollup: RunRollup,
    final: boolean,
    releaseHolds: string[],
  ): Promise<RecordReply> {
    const now = Date.now();
    let counted = 0;
    this.ctx.storage.transactionSync(() => {
      const identity = this.subLedgerIdentity();
      if (identity && (identity.customerId !== customerId || identity.subLedger !== subLedger)) {
        const message = `this object is sub-ledger ${identity.subLedger} of ${identity.customerId}, not ${subLedger} of ${customerId}`;
        throw new DomainError("validation_failed", `Invalid request: subLedger: ${message}`, [{ field: "subLedger", message }]);
      }
      if (!identity) this.sql`INSERT INTO sub_ledger (id, customer_id, sub_ledger, report_version) VALUES (1, ${customerId}, ${subLedger}, 0)`;
      const run = this.sql<{ seq: number; months: string }>`SELECT seq, months FROM runs WHERE run_id = ${runId}`[0];
      const fresh = freshRecords(records, run?.seq ?? 0);
      counted = fresh.length;
      const months: Record<string, string> = run ? JSON.parse(run.months) : {};
      const added = nanoByMonth(fresh.map((r) => ({ at: r.at, nanoUsd: BigInt(r.nanoUsd) })));
      if (added.size > 0) {
        this.sql`UPDATE sub_ledger SET report_version = report_version + 1`;
        const version = this.subLedgerIdentity()!.reportVersion;
        for (const [month, nano] of added) {
          const total = (this.ownSpend(month) + nano).toString();
          this.sql`INSERT OR REPLACE INTO spend (month, nano_usd) VALUES (${month}, ${total})`;
          // SET, not ADD: the row holds the month's latest total, however many deliveries came since the last report.
          this.sql`INSERT OR REPLACE INTO primary_outbox (month, nano_usd, version) VALUES (${month}, ${total}, ${version})`;
          months[month] = (BigInt(months[month] ?? "0") + nano).toString();
        }
      }
      const holdIds = [...records.map((r) => r.holdId).filter((id): id is string => id !== null), ...releaseHolds];
      for (const holdId of holdIds) this.sql`INSERT OR IGNORE INTO primary_releases (kind, id) VALUES ('hold', ${holdId})`;
      if (final) this.sql`INSERT OR IGNORE INTO primary_releases (kind, id) VALUES ('ended_run', ${runId})`;
      const seq = Math.max(run?.seq ?? 0, ...fresh.map((r) => r.seq));
      if (!run || fresh.length > 0) {
        this.sql`INSERT OR REPLACE INTO runs (run_id, seq, months, updated_at) VALUES (${runId}, ${seq}, ${JSON.stringify(months)}, ${now})`;
      }
      this.queueRollup(rollup);
    });
    if (this.sql`SELECT 1 FROM primary_outbox UNION ALL SELECT 1 FROM primary_releases LIMIT 1`.length > 0) await this.armAlarm(now + SUBTOTAL_FLUSH_MS);
    await this.forward();
    // The budget is the primary's: the run learns of it from the primary's holds before its next step.
    return { counted, spendNanoUsd: this.ownSpend(monthOf(now)).toString(), limited: false, exhausted: this.primaryExhausted };
  }

  /**
   * On the primary: a sub-ledger's report. Each month total replaces the one held only if newer
   * (a redelivered or overtaken report applies nothing); the holds it names are settled and the
   * runs it names are no longer in flight, in the same transaction as the totals that count them.
   */
  async applySubTotals(input: z.input<typeof SubTotalsInputSchema>): Promise<SubTotalsReply> {
    countUsage("do_requests");
    const report = parseOrRefuse(SubTotalsInputSchema, input);
    this.ensureSchema();
    const now = Date.now();
    let applied = 0;
    this.ctx.storage.transactionSync(() => {
      applied = this.mergeSubTotals(report.subLedger, report.totals, now);
      if (report.releaseHolds.length > 0) this.sql`DELETE FROM holds WHERE id IN (SELECT value FROM json_each(${JSON.stringify(report.releaseHolds)}))`;
      if (report.endedRuns.length > 0) this.sql`DELETE FROM active_runs WHERE run_id IN (SELECT value FROM json_each(${JSON.stringify(report.endedRuns)}))`;
      for (const total of report.totals) this.queueThresholdAlerts(report.customerId, total.month, now);
    });
    await this.forward();
    return { applied, exhausted: this.readSummary(now).state === "exhausted" };
  }

  /**
   * On a sub-ledger: its month for the primary's reconciliation. The total and the sum of its
   * runs are read together, so they agree unless something is wrong; the runs come in pages.
   */
  async subLedgerMonth(input: z.input<typeof SubLedgerMonthInputSchema>): Promise<SubLedgerMonth> {
    countUsage("do_requests");
    const { month, afterRunId } = parseOrRefuse(SubLedgerMonthInputSchema, input);
    this.ensureSchema();
    const now = Date.now();
    if (afterRunId === "") this.pruneDetail(now);
    const path = `$."${month}"`;
    const version = this.subLedgerIdentity()?.reportVersion ?? 0;
    // Only the first page sums every run: that sum and the total are read in one go.
    const runsNanoUsd =
      afterRunId === ""
        ? this.sql<{ amount: string }>`SELECT json_extract(months, ${path}) AS amount FROM runs WHERE json_extract(months, ${path}) IS NOT NULL`
            .reduce((sum, r) => sum + BigInt(r.amount), 0n)
            .toString()
        : null;
    const page = this.sql<{ run_id: string; amount: string }>`
      SELECT run_id, json_extract(months, ${path}) AS amount FROM runs
      WHERE run_id > ${afterRunId} AND json_extract(months, ${path}) IS NOT NULL ORDER BY run_id LIMIT ${SUB_RUNS_PAGE + 1}`;
    return {
      total: { month, nanoUsd: this.ownSpend(month).toString(), version },
      runsNanoUsd,
      runs: page.slice(0, SUB_RUNS_PAGE).map((r) => ({ runId: r.run_id, nanoUsd: String(r.amount) })),
      more: page.length > SUB_RUNS_PAGE,
    };
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
    // The sub-ledgers first: their current totals replace what they last reported, so the
    // ledger's side is exact now, not as of their last report.
    const subLedgers = await this.readSubLedgers(customerId, month, now);
    const ledgerTotal = this.spend(month);
    const d1 = await this.d1RunTotals(customerId, from, to);
    const d1Total = [...d1.values()].reduce((a, b) => a + b, 0n);
    const detailKept = from >= now - DETAIL_KEPT_MS;
    const repaired: ReconciliationReport["repaired"] = [];
    const unexplained: ReconciliationReport["unexplained"] = [...subLedgers.unexplained];
    if (detailKept) {
      const ledgerRuns = new Map<string, bigint>();
      for (const row of this.sql<{ run_id: string; months: string }>`SELECT run_id, months FROM runs`) {
        const amount = (JSON.parse(row.months) as Record<string, string>)[month];
        if (amount !== undefined) ledgerRuns.set(row.run_id, BigInt(amount));
      }
      const runsTotal = [...ledgerRuns.values()].reduce((a, b) => a + b, 0n);
      const ownTotal = this.ownSpend(month);
      if (runsTotal !== ownTotal) {
        unexplained.push({ runId: null, ledgerNanoUsd: ownTotal.toString(), d1NanoUsd: runsTotal.toString(), reason: "the ledger's month spend differs from the sum of its runs" });
      }
      // A run's costs meet one ledger only (its sub-ledger is chosen once, at its creation).
      for (const [runId, amount] of subLedgers.runs) ledgerRuns.set(runId, (ledgerRuns.get(runId) ?? 0n) + amount);
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
    await this.reportToPrimary();
    await this.forward();
    if (this.budget().limitNanoUsd !== null && this.sql`SELECT 1 FROM active_runs WHERE limited = 0 LIMIT 1`.length > 0) await this.limitRunsInFlight();
  }

  // ---- internals ------------------------------------------------------------------------

  private placeHold(hold: z.infer<typeof ReserveInputSchema>, summary: LedgerSummary): ReserveReply {
    if (this.sql`SELECT 1 FROM holds WHERE id = ${hold.holdId}`.length > 0) return { ok: true };
    // A hold taken over frees its amount for this one (the summary has already dropped lapsed holds).
    // Only the same run's: a hold id naming another run's hold takes over nothing.
    const replaced = hold.replaces === undefined ? [] : this.sql<{ nano_usd: string }>`SELECT nano_usd FROM holds WHERE id = ${hold.replaces} AND run_id = ${hold.runId}`;
    const freed = replaced.length > 0 ? BigInt(replaced[0]!.nano_usd) : 0n;
    const refusal = holdRefusal(this.budget(), BigInt(summary.spendNanoUsd), BigInt(summary.heldNanoUsd) - freed, BigInt(hold.nanoUsd));
    if (refusal) return { ok: false, reason: "budget_exceeded", message: refusal };
    this.ctx.storage.transactionSync(() => {
      if (replaced.length > 0) this.sql`DELETE FROM holds WHERE id = ${hold.replaces!} AND run_id = ${hold.runId}`;
      this.sql`INSERT INTO holds (id, run_id, nano_usd, expires_at) VALUES (${hold.holdId}, ${hold.runId}, ${hold.nanoUsd}, ${hold.expiresAt})`;
    });
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

  /**
   * On a sub-ledger: sends the primary one report with every month total changed since the last
   * acknowledged one (SET, by version) and the holds and ended runs waiting for it. A row is
   * deleted only once acknowledged, and a total only if no newer one replaced it meanwhile. One
   * pass at a time; a failure re-arms the alarm with backoff.
   */
  private reportToPrimary(): Promise<void> {
    this.reporting ??= this.reportPass().finally(() => {
      this.reporting = null;
    });
    return this.reporting;
  }

  private async reportPass() {
    const identity = this.subLedgerIdentity();
    if (!identity) return;
    for (;;) {
      const totals = this.sql<{ month: string; nano_usd: string; version: number }>`SELECT month, nano_usd, version FROM primary_outbox ORDER BY month LIMIT 24`;
      const releases = this.sql<{ kind: string; id: string }>`SELECT kind, id FROM primary_releases LIMIT ${RELEASES_PER_REPORT}`;
      if (totals.length === 0 && releases.length === 0) {
        this.reportFailures = 0;
        return;
      }
      const holds = releases.filter((r) => r.kind === "hold").map((r) => r.id);
      const endedRuns = releases.filter((r) => r.kind === "ended_run").map((r) => r.id);
      try {
        const reply = await ledgerStub(this.env as Env, identity.customerId).applySubTotals({
          customerId: identity.customerId,
          subLedger: identity.subLedger,
          totals: totals.map((t) => ({ month: t.month, nanoUsd: t.nano_usd, version: t.version })),
          releaseHolds: holds,
          endedRuns,
        });
        this.primaryExhausted = reply.exhausted;
      } catch (err) {
        const delay = REPORT_RETRY_MS[Math.min(this.reportFailures, REPORT_RETRY_MS.length - 1)]!;
        this.reportFailures += 1;
        log("ledger.report_failed", { customerId: identity.customerId, subLedger: identity.subLedger, months: totals.length, releases: releases.length, retryInMs: delay, error: errorMessage(err) }, "error");
        await this.armAlarm(Date.now() + delay);
        return;
      }
      this.ctx.storage.transactionSync(() => {
        for (const t of totals) this.sql`DELETE FROM primary_outbox WHERE month = ${t.month} AND version = ${t.version}`;
        if (holds.length > 0) this.sql`DELETE FROM primary_releases WHERE kind = 'hold' AND id IN (SELECT value FROM json_each(${JSON.stringify(holds)}))`;
        if (endedRuns.length > 0) this.sql`DELETE FROM primary_releases WHERE kind = 'ended_run' AND id IN (SELECT value FROM json_each(${JSON.stringify(endedRuns)}))`;
        this.sql`UPDATE sub_ledger SET reports_sent = reports_sent + 1`;
      });
      this.reportFailures = 0;
      if (releases.length < RELEASES_PER_REPORT) {
        // What arrived during the request goes in the next flush, not at once: one report per flush.
        if (this.sql`SELECT 1 FROM primary_outbox UNION ALL SELECT 1 FROM primary_releases LIMIT 1`.length > 0) await this.armAlarm(Date.now() + SUBTOTAL_FLUSH_MS);
        return;
      }
    }
  }

  /** On the primary: takes each total newer than the one held for sub-ledger `subLedger`; returns how many it took. */
  private mergeSubTotals(subLedger: number, totals: readonly SubTotal[], now: number): number {
    let applied = 0;
    for (const total of totals) {
      const held = this.sql<{ version: number }>`SELECT version FROM sub_totals WHERE sub_ledger = ${subLedger} AND month = ${total.month}`[0];
      if (!isNewerSubTotal(held, total)) continue;
      this.sql`INSERT OR REPLACE INTO sub_totals (sub_ledger, month, nano_usd, version, updated_at) VALUES (${subLedger}, ${total.month}, ${total.nanoUsd}, ${total.version}, ${now})`;
      applied += 1;
    }
    return applied;
  }

  /**
   * On the primary, for reconciliation: each sub-ledger's month (configured now or ever
   * reported), its total taken as the newest report, and its runs' totals.
   */
  private async readSubLedgers(customerId: string, month: string, now: number): Promise<{ runs: Map<string, bigint>; unexplained: ReconciliationReport["unexplained"] }> {
    const config = ledgerSubshards(this.env as Env);
    const configured = typeof config === "string" ? undefined : config[customerId];
    const reported = this.sql<{ sub_ledger: number }>`SELECT DISTINCT sub_ledger FROM sub_totals`.map((r) => r.sub_ledger);
    const runs = new Map<string, bigint>();
    const unexplained: ReconciliationReport["unexplained"] = [];
    // An unreachable sub-ledger fails the reconciliation: its runs would look unknown to D1. The next one tries again.
    await forEachLimited(subLedgersToAsk(configured, reported), SWEEP_PARALLEL, async (index) => {
      const stub = subLedgerStub(this.env as Env, customerId, index);
      for (let after = ""; ;) {
        const page = await stub.subLedgerMonth({ month, afterRunId: after });
        if (page.runsNanoUsd !== null) {
          if (page.total.version > 0) {
            this.ctx.storage.transactionSync(() => {
              if (this.mergeSubTotals(index, [page.total], now) > 0) this.queueThresholdAlerts(customerId, month, now);
            });
          }
          if (page.runsNanoUsd !== page.total.nanoUsd) {
            unexplained.push({ runId: null, ledgerNanoUsd: page.total.nanoUsd, d1NanoUsd: page.runsNanoUsd, reason: `sub-ledger ${index}'s month spend differs from the sum of its runs` });
          }
        }
        for (const r of page.runs) runs.set(r.runId, (runs.get(r.runId) ?? 0n) + BigInt(r.nanoUsd));
        if (!page.more || page.runs.length === 0) return;
        after = page.runs[page.runs.length - 1]!.runId;
      }
    });
    return { runs, unexplained };
  }

  /** Who this object is when it is a cost sub-ledger (null: a primary ledger). */
  private subLedgerIdentity(): { customerId: string; subLedger: number; reportVersion: number; reportsSent: number } | null {
    const row = this.sql<{ customer_id: string; sub_ledger: number; report_version: number; reports_sent: number }>`
      SELECT customer_id, sub_ledger, report_version, reports_sent FROM sub_ledger`[0];
    return row ? { customerId: row.customer_id, subLedger: row.sub_ledger, reportVersion: row.report_version, reportsSent: row.reports_sent } : null;
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

  /** Keeps the one alarm at or before `at` (while the alarm runs, getAlarm() is null: a new one is set). */
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

  /** The month's spend: what this object counted itself plus its sub-ledgers' latest totals. */
  private spend(month: string): bigint {
    return monthSpend(this.ownSpend(month), this.sql<{ nanoUsd: string }>`SELECT nano_usd AS nanoUsd FROM sub_totals WHERE month = ${month}`);
  }

  /** What this object counted itself for the month. */
  private ownSpend(month: string): bigint {
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
