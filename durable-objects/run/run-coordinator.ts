/**
 * One Durable Object per run: the run's state machine (src/domain/run-machine.ts) made
 * durable. Every command loads the state, applies the pure transition, persists the touched
 * rows, the events and the cost records it caused in one transaction, then sends the
 * dispatches it produced. A single alarm serves every timer the run has (sleeps, retry delays,
 * leases, undelivered dispatches, undelivered costs).
 *
 * Costs: each closed attempt (and the run's creation, and its own overhead) becomes a cost
 * record in the run's journal (cost-journal.ts) within the checkpoint that closed it; the
 * journal is delivered to the customer's ledger until the ledger acknowledges it. Under a hard
 * budget every attempt first holds its worst case in the ledger; the record that closes the
 * attempt settles the hold.
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { getPool } from "../../src/config/pools";
import { resolveReferences, type JsonValue } from "../../src/domain/input-references";
import { customerScope, withSecretPlaceholders } from "../../src/domain/secrets";
import type { PriceBook } from "../../src/domain/pricing";
import {
  cancelRun,
  completeStep,
  createRun,
  failStep,
  failDeadLetteredDispatch,
  fireTimers,
  heartbeat,
  mergeOutcomes,
  newStepState,
  nextLeaseId,
  nextTimerAt,
  resumeRun,
  startRefusal,
  startStep,
  stopForBudget,
  type Clock,
  type Dispatch,
  type Outcome,
  type RunDefinition,
  type RunState,
} from "../../src/domain/run-machine";
import { isTerminalRun } from "../../src/domain/run-status";
import { MAX_STEP_TIMEOUT_MS } from "../../src/domain/step-spec";
import type { TokenUsage } from "../../src/domain/token-usage";
import { worstCaseAttempt } from "../../src/domain/worst-case";
import { configureLogging, errorMessage, log } from "../../src/lib/log";
import { countUsage, usageTotals } from "../../src/lib/usage";
import { priceBookCovering } from "../../src/services/pricing-service";
import { getStepType } from "../../src/steps/registry";
import { ledgerStub, type RecordReply } from "../ledger/rpc";
import { insertRows, sqlHelper } from "../sql";
import { CostJournal } from "./cost-journal";
import {
  AttemptMeterSchema,
  attemptQuantities,
  overheadQuantities,
  D1_ROWS_PER_ROLLUP_ROW,
  INDEX_ROWS_PER_RUN,
  LEDGER_ROWS_PER_DELIVERY,
  QUEUE_OPERATIONS_PER_MESSAGE,
  type AttemptMeter,
} from "./meters";
import {
  CompleteStepInputSchema,
  DeadLetterDispatchInputSchema,
  FailStepInputSchema,
  RunDefinitionSchema,
  StartStepInputSchema,
  type CommandReply,
  type DeadLetterReply,
  type RunCoordinatorApi,
  type CreateRunResult,
  type ReportResult,
  type RunEvent,
  type RunSnapshot,
  type StartStepResult,
  type StepAssignment,
  creationHoldId,
  runHoldId,
} from "./rpc";
import { deadLetterMessage, indexMessage, indexRowsFor, jobMessage } from "./outbound";
import { STEP_UPSERT, STEP_UPSERT_CONFLICT, headerOf, stepFromRow, stepRow } from "./run-store";
import { createSchema, migrateSchema } from "./schema";
import { snapshotOf } from "./views";

const OUTBOX_RETRY_MS = 5_000;
const DEFAULT_LEASE_MS = 30_000;
const REDISPATCH_MS = 30_000;
const DAY_MS = 86_400_000;
/** A finished run's object keeps its storage this long (RETENTION_STEP_DETAIL_DAYS), then deletes it. */
const DEFAULT_RETENTION_DAYS = 30;
/** The reconciler looks at a run this long after it should have moved on by its own timers. */
const DEFAULT_RECONCILE_AFTER_MS = 60_000;
/** A failed run's dead letter should be recorded within this long; else the reconciler resends it. */
const DEAD_LETTER_DUE_MS = 5 * 60_000;
/** A run carried on inline for long delivers its costs this often, not only when it pauses. */
const COST_FLUSH_MS = 10_000;
/** Backoff for a cost delivery the ledger did not acknowledge. */
const COST_RETRY_MS = [1_000, 5_000, 15_000, 60_000, 300_000];
/** A hold lapses on its own this long after the attempt's longest possible end. */
const HOLD_MARGIN_MS = 5 * 60_000;

interface CommitOptions {
  /** The command is a request to this object (counted once). */
  request?: boolean;
  /** The lease whose attempt this command's request and rows are billed to; absent: the run's overhead. */
  billTo?: string;
  /** The attempt started in this command was started by a queue delivery. */
  queuedStart?: boolean;
  /** The hold placed for the attempt started in this command. */
  holdId?: string | null;
  /** Tokens reported for a lease whose attempt this command closes. */
  usage?: { lease: string; tokens: TokenUsage[] };
  /** Prices for the records this command appends (null: priced at delivery). */
  book?: PriceBook | null;
  /** This command creates the run: its creation record takes the request and rows. */
  creation?: boolean;
  /** The control plane's own check (the reconciler's poke): the platform's cost, not the run's. */
  unbilled?: boolean;
  alarmFired?: boolean;
}

export class RunCoordinator extends DurableObject implements RunCoordinatorApi {
  private readonly sql = sqlHelper(this.ctx.storage);
  private readonly journal = new CostJournal(this.sql);
  private state: RunState | null = null;
  private loaded = false;
  private alarmAt: number | null = null;
  /** Event sequence of the last persisted event: the run index row's version. */
  private lastSeq = 0;
  /** The run row as last written, so a command that leaves it alone writes no row. */
  private persistedHeader = "";
  /** The open attempts' meters, mirrored in their step rows. */
  private readonly meters = new Map<string, AttemptMeter>();
  /** The status the D1 run index was last sent (this wake); see indexDue(). */
  private indexedStatus: RunState["status"] | null = null;
  /** Each attempt's outcome as last sent to the index (this wake): only changed attempts write D1 rows. */
  private readonly indexedAttempts = new Map<string, string>();
  /** When undelivered costs are next due for delivery (part of the one alarm); null: nothing due. */
  private costsDueAt: number | null = null;
  /** When the dead-letter outbox is tried again after a failed send (part of the one alarm). */
  private outboxRetryAt: number | null = null;
  private costFailures = 0;
  private delivering: Promise<RecordReply | null> | null = null;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    configureLogging(env.LOG_LEVEL);
  }

  // ---- commands -------------------------------------------------------------------------

  async create(input: z.input<typeof RunDefinitionSchema>): Promise<CreateRunResult> {
    countUsage("do_requests");
    const def = RunDefinitionSchema.parse(input) as RunDefinition;
    // Prices first: between looking for the run and creating it nothing may be awaited, so
    // racing creates with one idempotency key meet one run.
    const book = await this.priceBook([]);
    const existing = await this.load();
    if (existing) {
      if (existing.def.requestHash !== def.requestHash) return { ok: false, reason: "idempotency_key_reused", run: this.view(existing) };
      return { ok: true, created: false, run: this.view(existing), dueAt: this.dueAt(existing) };
    }
    createSchema(this.ctx.storage);
    this.journal.load();
    const { state, outcome } = createRun(def, this.clock());
    this.state = state;
    this.sql`INSERT INTO run (id, definition, status, started_at, finished_at, failure) VALUES (${def.id}, ${JSON.stringify(def)}, ${state.status}, NULL, NULL, NULL)`;
    this.persistedHeader = headerOf(state);
    // The control plane writes the new run's index row itself, so it lists at once.
    this.indexedStatus = state.status;
    await this.commit(state, outcome, { request: true, creation: true, book });
    // Under a hard budget the creation's hold is settled at once, so it does not stand in the way of the run's first step.
    if (def.budgetLimited) await this.deliverCosts(state);
    return { ok: true, created: true, run: this.view(state), dueAt: this.dueAt(state) };
  }

  async get(): Promise<RunSnapshot | null> {
    countUsage("do_requests");
    const state = await this.load();
    return state ? this.view(state) : null;
  }

  async events(afterSeq = 0, limit = 500): Promise<RunEvent[]> {
    countUsage("do_requests");
    // Callers validate their page; a bad one here reads from the start, at most 1,001 rows.
    const after = Number.isSafeInteger(afterSeq) && afterSeq > 0 ? afterSeq : 0;
    const count = Number.isSafeInteger(limit) ? Math.min(Math.max(limit, 1), 1001) : 500;
    if (!(await this.load())) return [];
    return this.sql<{ seq: number; at: number; type: string; step: string | null; attempt: number | null; data: string | null }>`
      SELECT seq, at, type, step, attempt, data FROM events WHERE seq > ${after} ORDER BY seq LIMIT ${count}`.map((row) => ({
      ...row,
      data: row.data ? JSON.parse(row.data) : null,
    }));
  }

  async startStep(input: z.input<typeof StartStepInputSchema>): Promise<StartStepResult> {
    countUsage("do_requests");
    const msg = StartStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    return this.startAttempt(state, msg, { queued: true });
  }

  async heartbeat(leaseId: string): Promise<{ ok: boolean; reason?: string }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const result = heartbeat(state, String(leaseId), this.clock());
    if (!result.ok) return result;
    await this.commit(state, result.outcome, { request: true, billTo: String(leaseId) });
    // A step that needs heartbeats is a long one: now the index should say the run is running.
    if (this.indexedStatus !== state.status) {
      this.journal.addOverhead({ queueOperations: QUEUE_OPERATIONS_PER_MESSAGE, d1RowsWritten: indexRowsFor(state, this.indexedAttempts) });
      await this.sendIndexUpdate(state);
    }
    return { ok: true };
  }

  async completeStep(input: z.input<typeof CompleteStepInputSchema>): Promise<ReportResult> {
    countUsage("do_requests");
    const report = CompleteStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const tokens = report.usage ?? [];
    const book = await this.priceBook(tokens.map((t) => t.model));
    const limited = state.def.budgetLimited === true;
    // Under a hard budget the next step is held against it before it starts: not inline here.
    const result = completeStep(state, report.leaseId, report.output, this.clock(), report.continueInline && !limited);
    if (!result.ok) {
      // The attempt was closed already (cancelled, superseded): its state change is refused, but
      // the tokens it reports were billed by the provider, so they are billed here too.
      if (tokens.length > 0) await this.recordLateUsage(state, report.leaseId, tokens, book);
      return result;
    }
    const usage = { lease: report.leaseId, tokens };
    if (!limited) {
      const next = await this.assign(state, result.outcome, { request: true, billTo: report.leaseId, usage, book });
      // Carried on inline, the run keeps going in this consumer; otherwise it pauses here.
      if (!next.ok) this.ctx.waitUntil(this.deliverCosts(state));
      return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
    }
    const held = result.outcome.dispatches.splice(0);
    await this.commit(state, result.outcome, { request: true, billTo: report.leaseId, usage, book });
    const reply = await this.deliverCosts(state);
    if (reply?.exhausted) {
      const stopped = stopForBudget(state, "the customer's monthly budget is spent", this.clock());
      if (stopped.ok) {
        await this.commit(state, stopped.outcome);
        this.ctx.waitUntil(this.deliverCosts(state));
        return { ok: true, next: null, runStatus: state.status };
      }
    }
    if (report.continueInline && held.length === 1) {
      const next = await this.startAttempt(state, held[0]!, { queued: false });
      if (next.ok || next.reason === "budget_exceeded") return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
    }
    await this.sendDispatches(state, { ...result.outcome, dispatches: held });
    return { ok: true, next: null, runStatus: state.status };
  }

  async failStep(input: z.input<typeof FailStepInputSchema>): Promise<ReportResult> {
    countUsage("do_requests");
    const report = FailStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const book = await this.priceBook([]);
    const result = failStep(state, report.leaseId, report.failure, this.clock());
    if (!result.ok) return result;
    await this.commit(state, result.outcome, { request: true, billTo: report.leaseId, book });
    // The run pauses (a retry delay) or ends here: what it cost so far goes to the ledger.
    this.ctx.waitUntil(this.deliverCosts(state));
    return { ok: true, next: null, runStatus: state.status };
  }

  async cancel(reason = "cancelled by request"): Promise<CommandReply> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run", run: null };
    const book = await this.priceBook([]);
    const result = cancelRun(state, String(reason).slice(0, 500), this.clock());
    if (!result.ok) return { ok: false, reason: result.reason, run: this.view(state) };
    await this.commit(state, result.outcome, { request: true, book });
    // A running attempt was closed: its cost is billed and its hold let go now.
    await this.deliverCosts(state);
    return { ok: true, run: this.view(state) };
  }

  async resume(): Promise<CommandReply> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run", run: null };
    const result = resumeRun(state, this.clock());
    if (!result.ok) return { ok: false, reason: result.reason, run: this.view(state) };
    await this.commit(state, result.outcome, { request: true });
    return { ok: true, run: this.view(state) };
  }

  override async alarm(): Promise<void> {
    countUsage("do_requests");
    this.alarmAt = null;
    const state = await this.load();
    if (!state) return;
    const retention = this.retentionAt(state);
    if (retention !== null && retention <= Date.now()) {
      // Its retention is over: the run forgets itself (its cost lives on in D1's rollups).
      log("run.deleted", { runId: state.def.id, pool: state.def.pool, finishedAt: new Date(state.finishedAt!).toISOString() });
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      this.state = null;
      this.loaded = false;
      return;
    }
    if (this.costsDueAt !== null && this.costsDueAt <= Date.now()) await this.deliverCosts(state);
    this.outboxRetryAt = null;
    await this.flushOutbox(state);
    if (isTerminalRun(state.status)) {
      // A finished run has no timers of its own: what was due is done; only its retention is left.
      if (this.journal.undelivered && this.costsDueAt === null) await this.deliverCosts(state);
      await this.armAlarm(state, true);
      return;
    }
    const book = await this.priceBook([]);
    const outcome = fireTimers(state, this.clock());
    await this.commit(state, outcome, { request: true, alarmFired: true, book });
    // A lease expired (an attempt closed) or the run ended: bill it now.
    if (outcome.closed.length > 0 || isTerminalRun(state.status)) await this.deliverCosts(state);
  }

  /**
   * The dead-letter consumer reports that the queue gave up on a dispatch: the step and the
   * run fail (worker_error), unless the dispatch is no longer current. Returns what the
   * dead-letter entry records.
   */
  async deadLetterDispatch(input: z.input<typeof DeadLetterDispatchInputSchema>): Promise<DeadLetterReply> {
    countUsage("do_requests");
    const msg = DeadLetterDispatchInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const book = await this.priceBook([]);
    const result = failDeadLetteredDispatch(state, msg, msg.reason, this.clock());
    if (!result.ok) return { ok: false, reason: result.reason };
    await this.commit(state, result.outcome, { request: true, book });
    await this.deliverCosts(state);
    return { ok: true, deadLetter: deadLetterMessage(state, msg, Date.now()) };
  }

  /**
   * Self-healing for whatever a crash may have dropped: sends unsent dead letters and costs,
   * fires due timers, re-arms the alarm, and brings the D1 index up to date. The reconciler
   * (cron) calls it for runs whose index row has not moved for a while.
   */
  async reconcile(options: { resendDeadLetter?: boolean } = {}): Promise<{ status: RunState["status"] | null; dueAt: number | null }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { status: null, dueAt: null };
    if (options.resendDeadLetter) this.requeueDeadLetter(state);
    await this.flushOutbox(state);
    const book = await this.priceBook([]);
    const outcome = fireTimers(state, this.clock());
    this.indexedStatus = null;
    outcome.statusChanged = true;
    await this.commit(state, outcome, { request: true, alarmFired: true, book, unbilled: true });
    // Records a crash left undelivered go now; the poke's own overhead waits for the run's next
    // delivery, or goes now when the run has ended (nothing else will deliver it).
    if (this.journal.recordsPending > 0 || (isTerminalRun(state.status) && this.journal.undelivered)) await this.deliverCosts(state);
    return { status: state.status, dueAt: this.dueAt(state) };
  }

  async limitBudget(): Promise<{ ok: true; status: RunState["status"] } | { ok: false; reason: "unknown_run" | "run_finished" }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    if (isTerminalRun(state.status)) return { ok: false, reason: "run_finished" };
    if (state.def.budgetLimited !== true) {
      state.def.budgetLimited = true;
      this.journal.addOverhead({ doRequests: 1, rowsWritten: 2 });
      this.ctx.storage.transactionSync(() => {
        this.sql`UPDATE run SET definition = ${JSON.stringify(state.def)}`;
        this.journal.persistState();
      });
      log("run.budget_limited", { runId: state.def.id, pool: state.def.pool });
    }
    return { ok: true, status: state.status };
  }

  async resendCosts(): Promise<{ ok: true } | { ok: false; reason: "unknown_run" | "not_delivered" }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const reply = await this.deliverCosts(state, { rollupEvenIfNothingNew: true });
    return reply ? { ok: true } : { ok: false, reason: "not_delivered" };
  }

  // ---- internals ------------------------------------------------------------------------

  private clock(): Clock {
    const env = this.env as Env;
    const leaseMs = Number(env.LEASE_MS) || DEFAULT_LEASE_MS;
    const redispatchMs = Number(env.REDISPATCH_MS) || REDISPATCH_MS;
    return { now: Date.now(), leaseMs, redispatchMs, random: Math.random };
  }

  /** Prices covering `models` now (reloaded when the cache lacks one); null when they cannot be had: records are then priced at delivery. */
  private async priceBook(models: readonly string[]): Promise<PriceBook | null> {
    try {
      return await priceBookCovering(this.env as Env, models, Date.now());
    } catch (err) {
      log("costs.prices_unavailable", { runId: this.state?.def.id, error: errorMessage(err) }, "warn");
      return null;
    }
  }

  private resolvedConfig(state: RunState, stepIndex: number): { ok: true; config: JsonValue } | { ok: false; message: string } {
    try {
      const config = resolveReferences(state.def.steps[stepIndex]!.config, {
        input: state.def.input,
        steps: Object.fromEntries(state.steps.filter((s) => s.status === "succeeded").map((s) => [state.def.steps[s.index]!.name, { output: s.output }])),
      });
      return { ok: true, config: config as JsonValue };
    } catch (err) {
      return { ok: false, message: errorMessage(err) };
    }
  }

  /**
   * Starts a dispatched step. Under a hard budget its worst case is held first; a hold the
   * budget cannot take stops the run before the step (budget_exceeded, nothing started).
   */
  private async startAttempt(state: RunState, msg: Dispatch, options: { queued: boolean }): Promise<StartStepResult> {
    const refusal = startRefusal(state, msg);
    if (refusal) return { ok: false, reason: refusal };
    let holdId: string | null = null;
    if (state.def.budgetLimited === true) {
      const hold = await this.holdBudget(state, msg.stepIndex);
      if (!hold.ok) {
        const stopped = stopForBudget(state, hold.message, this.clock());
        if (stopped.ok) {
          await this.commit(state, stopped.outcome, { request: options.queued });
          // The run ended here: what it cost so far goes to the ledger, as at every other end.
          this.ctx.waitUntil(this.deliverCosts(state));
        }
        return { ok: false, reason: "budget_exceeded" };
      }
      holdId = hold.holdId;
    }
    const started = startStep(state, msg, this.clock());
    if (!started.ok) {
      // Something else started or ended the step while the hold was placed.
      if (holdId) this.ctx.waitUntil(ledgerStub(this.env as Env, state.def.customerId).release({ holdIds: [holdId] }).catch(() => {}));
      return started;
    }
    return this.assign(state, started.outcome, { request: options.queued, queuedStart: options.queued, billTo: started.outcome.started!.leaseId, holdId });
  }

  /** Holds the step's worst case (tokens its type may use, its infrastructure, the overhead allowance) in the ledger. */
  private async holdBudget(state: RunState, stepIndex: number): Promise<{ ok: true; holdId: string } | { ok: false; message: string }> {
    const def = state.def.steps[stepIndex]!;
    const step = state.steps[stepIndex]!;
    const resolved = this.resolvedConfig(state, stepIndex);
    const stepType = getStepType(def.type);
    // Secrets are resolved only on the worker: each reference counts as the longest value a secret may have.
    const parsed = resolved.ok && stepType ? stepType.configSchema.safeParse(withSecretPlaceholders(resolved.config)) : null;
    // A config that cannot run holds nothing beyond its infrastructure: the attempt fails at once.
    const tokens = parsed?.success && stepType?.worstCaseTokens ? stepType.worstCaseTokens(parsed.data) : [];
    const timeoutMs = Math.min(def.timeoutMs ?? state.def.timeoutMs ?? MAX_STEP_TIMEOUT_MS, MAX_STEP_TIMEOUT_MS);
    const leaseMs = this.clock().leaseMs;
    const book = await this.priceBook(tokens.map((t) => t.model));
    if (!book) return { ok: false, message: "prices are unavailable, so the step's worst case cannot be held against the budget" };
    const worst = worstCaseAttempt(book, Date.now(), { tokens, timeoutMs, leaseMs });
    if (!worst.ok) return { ok: false, message: `no price for model ${worst.unpriced.map((m) => `"${m}"`).join(", ")}` };
    const holdId = `${state.def.id}:${nextLeaseId(step)}`;
    const reply = await ledgerStub(this.env as Env, state.def.customerId).reserve({
      holdId,
      runId: state.def.id,
      nanoUsd: worst.nanoUsd.toString(),
      expiresAt: Date.now() + timeoutMs + leaseMs + HOLD_MARGIN_MS,
    });
    return reply.ok ? { ok: true, holdId } : { ok: false, message: reply.message };
  }

  /**
   * Persists the outcome of a started step and hands the worker its assignment. A config
   * whose references do not resolve fails the attempt as permanent: no retry can fix it.
   */
  private async assign(state: RunState, outcome: Outcome, options: CommitOptions): Promise<StartStepResult> {
    const started = outcome.started;
    if (!started) {
      await this.commit(state, outcome, options);
      return { ok: false, reason: "not_queued" };
    }
    const resolved = this.resolvedConfig(state, started.stepIndex);
    if (!resolved.ok) {
      const failed = failStep(state, started.leaseId, { type: "permanent", message: resolved.message }, this.clock());
      await this.commit(state, failed.ok ? mergeOutcomes(outcome, failed.outcome) : outcome, options);
      this.ctx.waitUntil(this.deliverCosts(state));
      return { ok: false, reason: "invalid_config" };
    }
    await this.commit(state, outcome, options);
    const def = state.def.steps[started.stepIndex]!;
    const step = state.steps[started.stepIndex]!;
    const assignment: StepAssignment = {
      runId: state.def.id,
      pool: state.def.pool,
      stepIndex: started.stepIndex,
      leaseId: started.leaseId,
      attempt: started.attempt,
      startedAt: step.startedAt!,
      leaseMs: this.clock().leaseMs,
      step: { name: def.name, type: def.type, config: resolved.config, timeoutMs: def.timeoutMs ?? state.def.timeoutMs ?? null },
      secretScope: state.def.secretScope ?? customerScope(state.def.customerId),
    };
    return { ok: true, assignment };
  }

  private hasTable(name: string): boolean {
    return this.sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ${name}`.length > 0;
  }

  /** The run's state, or null for an id no run was created under (reading writes nothing). */
  private async load(): Promise<RunState | null> {
    if (this.loaded) return this.state;
    const hasRun = this.hasTable("run");
    const row = hasRun
      ? this.sql<{ definition: string; status: string; started_at: number | null; finished_at: number | null; failure: string | null }>`
          SELECT definition, status, started_at, finished_at, failure FROM run LIMIT 1`[0]
      : undefined;
    if (row) {
      migrateSchema(this.ctx.storage);
      const def = JSON.parse(row.definition) as RunDefinition;
      // A step with no row has never left `pending`.
      const steps = def.steps.map((_, index) => newStepState(index));
      this.meters.clear();
      for (const stepRow of this.sql`SELECT * FROM steps`) {
        const step = stepFromRow(stepRow);
        steps[step.index] = step;
        const meter = stepRow.meter ? AttemptMeterSchema.safeParse(JSON.parse(String(stepRow.meter))) : null;
        if (meter?.success && meter.data.lease === step.leaseId) this.meters.set(meter.data.lease, meter.data);
      }
      this.state = {
        def,
        status: row.status as RunState["status"],
        startedAt: row.started_at,
        finishedAt: row.finished_at,
        failure: row.failure ? JSON.parse(row.failure) : null,
        steps,
      };
      this.lastSeq = this.sql<{ seq: number | null }>`SELECT MAX(seq) AS seq FROM events`[0]?.seq ?? 0;
      this.persistedHeader = headerOf(this.state);
      this.journal.load();
      this.alarmAt = await this.ctx.storage.getAlarm();
      // Woken with costs the ledger has not acknowledged (a crash, an eviction): deliver them.
      if (this.journal.undelivered) this.costsDueAt = Date.now();
    }
    this.loaded = true;
    return this.state;
  }

  /**
   * One transaction for everything the command changed: the run row, the touched steps (with
   * their attempts' meters), dead letters (outbox), events, and the cost records of attempts it
   * closed. The rows written are counted before the rows that carry the count, so each record
   * bills exactly the rows its commands wrote. The alarm is re-armed before anything is awaited,
   * so undelivered costs always have a timer.
   */
  private async commit(state: RunState, outcome: Outcome, options: CommitOptions = {}): Promise<void> {
    const now = Date.now();
    const header = headerOf(state);
    if (outcome.started) {
      const lease = outcome.started.leaseId;
      this.meters.set(lease, { lease, queued: options.queuedStart === true, doRequests: 0, rowsWritten: 0, ...(options.holdId ? { holdId: options.holdId } : {}) });
    }
    const indexing = outcome.statusChanged && this.indexDue(state);
    const billTo = options.billTo !== undefined ? this.meters.get(options.billTo) : undefined;
    const overhead = !options.creation && !options.unbilled;
    if (overhead) {
      const messages = (indexing ? 1 : 0) + outcome.deadLetters.length;
      this.journal.addOverhead({
        doRequests: options.request && !billTo ? 1 : 0,
        queueOperations: messages * QUEUE_OPERATIONS_PER_MESSAGE,
        d1RowsWritten: indexing ? indexRowsFor(state, this.indexedAttempts) : 0,
      });
    }
    try {
      this.ctx.storage.transactionSync(() => {
        const rowsBefore = usageTotals().do_rows_written;
        if (header !== this.persistedHeader) {
          this.sql`UPDATE run SET status = ${state.status}, started_at = ${state.startedAt}, finished_at = ${state.finishedAt},
            failure = ${state.failure ? JSON.stringify(state.failure) : null}`;
        }
        // Dead letters go out through an outbox written with the failure: a crash between this
        // commit and the send cannot lose one (the alarm or the reconciler sends it later).
        insertRows(this.ctx.storage, "INSERT INTO outbox (queue, body)", outcome.deadLetters.map((d) => ["dead_letter", JSON.stringify(deadLetterMessage(state, d, now))]));
        let seq = this.lastSeq;
        insertRows(
          this.ctx.storage,
          "INSERT INTO events (seq, at, type, step, attempt, data)",
          outcome.events.map((e) => [++seq, now, e.type, e.step ?? null, e.attempt ?? null, e.data ? JSON.stringify(e.data) : null]),
        );
        const costRecords = outcome.closed.length + (options.creation ? 1 : 0);
        // Rows still to write: the step rows, the cost records, and the journal's state row
        // when it changes (it does when this command's rows go to the run's overhead).
        const stateRow = !billTo && overhead ? 1 : this.journal.stateRowsDue;
        const rows = usageTotals().do_rows_written - rowsBefore + outcome.touched.size + costRecords + stateRow;
        if (billTo) {
          billTo.doRequests += options.request ? 1 : 0;
          billTo.rowsWritten += rows;
        } else if (overhead) {
          this.journal.addOverhead({ rowsWritten: rows });
        }
        if (outcome.touched.size > 0) {
          insertRows(this.ctx.storage, STEP_UPSERT, [...outcome.touched].map((index) => stepRow(state.steps[index]!, this.meters)), STEP_UPSERT_CONFLICT);
        }
        for (const closed of outcome.closed) {
          const meter = this.meters.get(closed.leaseId) ?? null;
          this.meters.delete(closed.leaseId);
          const tokens = options.usage?.lease === closed.leaseId ? options.usage.tokens : [];
          this.journal.append(
            {
              kind: "attempt",
              lease: closed.leaseId,
              step: state.def.steps[closed.stepIndex]!.name,
              attempt: closed.attempt,
              at: closed.finishedAt,
              ...attemptQuantities(meter, closed.finishedAt - closed.startedAt),
              tokens,
              holdId: meter?.holdId ?? null,
            },
            options.book ?? null,
          );
        }
        if (options.creation) {
          this.journal.append(
            {
              kind: "create",
              step: null,
              attempt: null,
              at: state.def.createdAt,
              infra: { worker_requests: 1, do_requests: 1, do_rows_written: rows, d1_rows_written: INDEX_ROWS_PER_RUN },
              estimated: ["d1_rows_written"],
              tokens: [],
              holdId: state.def.budgetLimited ? creationHoldId(state.def.id) : null,
            },
            options.book ?? null,
          );
        }
        this.journal.persistState();
      });
      this.persistedHeader = header;
    } catch (err) {
      // Memory may now be ahead of storage: forget it and reload on the next command.
      this.loaded = false;
      this.state = null;
      throw err;
    }
    this.lastSeq += outcome.events.length;
    // An attempt closed or the run ended: its costs get a timer (the alarm), whatever else delivers them.
    if ((outcome.closed.length > 0 || (outcome.statusChanged && isTerminalRun(state.status))) && this.costsDueAt === null) this.costsDueAt = now + COST_FLUSH_MS;
    const alarm = this.armAlarm(state, options.alarmFired === true);
    for (const event of outcome.events) {
      log(event.type, { runId: state.def.id, step: event.step, attempt: event.attempt, pool: state.def.pool, ...event.data }, levelOf(event.type));
    }
    await this.sendDispatches(state, outcome);
    if (outcome.deadLetters.length > 0) await this.flushOutbox(state);
    if (indexing) await this.sendIndexUpdate(state);
    await alarm;
  }

  /** Tokens reported on a lease whose attempt had already closed, billed once. */
  private async recordLateUsage(state: RunState, leaseId: string, tokens: TokenUsage[], book: PriceBook | null) {
    const step = state.steps.find((s) => s.history.some((h) => h.leaseId === leaseId));
    const attempt = step?.history.find((h) => h.leaseId === leaseId);
    if (!step || !attempt || this.journal.hasTokensFor(leaseId)) return;
    this.journal.addOverhead({ doRequests: 1, rowsWritten: 2 });
    this.ctx.storage.transactionSync(() => {
      this.journal.append(
        { kind: "late", lease: leaseId, step: state.def.steps[step.index]!.name, attempt: attempt.attempt, at: Date.now(), infra: {}, estimated: [], tokens, holdId: null },
        book,
      );
      this.journal.persistState();
    });
    log("costs.late_usage", { runId: state.def.id, step: state.def.steps[step.index]!.name, attempt: attempt.attempt, pool: state.def.pool, leaseId });
    // The alarm is the fallback (a crash before the delivery below): due later, so it does not race the delivery and bill a second one.
    if (this.costsDueAt === null) this.costsDueAt = Date.now() + COST_RETRY_MS[0]!;
    await this.armAlarm(state, false);
    this.ctx.waitUntil(this.deliverCosts(state));
  }

  /**
   * Sends the journal's undelivered records to the customer's ledger, with the run's whole
   * rollup for D1. One delivery at a time; until the ledger acknowledges, the alarm tries again
   * with backoff, also after the run has ended. The delivery's own cost (the ledger request,
   * its rows, the message to D1 and the rows it writes) is billed in it, as overhead.
   */
  private deliverCosts(state: RunState, options: { rollupEvenIfNothingNew?: boolean } = {}): Promise<RecordReply | null> {
    const run = async (): Promise<RecordReply | null> => {
      const book = await this.priceBook(this.journal.unpricedModels());
      if (!book) return this.costDeliveryFailed(state, "prices are unavailable");
      const pending = this.journal.undelivered;
      if (!pending && !options.rollupEvenIfNothingNew) {
        this.costsDueAt = null;
        return null;
      }
      const attribution = { runId: state.def.id, customerId: state.def.customerId, projectId: state.def.projectId, runType: state.def.runType, pool: state.def.pool };
      this.ctx.storage.transactionSync(() => {
        if (pending) {
          const rollupRows = Math.max(1, this.journal.rollup(attribution).rows.length);
          this.journal.addOverhead({ doRequests: 1, ledgerRowsWritten: LEDGER_ROWS_PER_DELIVERY, queueOperations: QUEUE_OPERATIONS_PER_MESSAGE, d1RowsWritten: D1_ROWS_PER_ROLLUP_ROW * rollupRows, rowsWritten: 2 });
          this.journal.billOverhead(Date.now(), book, overheadQuantities);
        }
        this.journal.persistState();
      });
      const { records, blockedBy } = this.journal.deliverable(book);
      if (blockedBy.length > 0) log("costs.unpriced_model", { runId: state.def.id, pool: state.def.pool, models: blockedBy }, "error");
      const upTo = records.length > 0 ? records[records.length - 1]!.seq : this.journal.lastSentSeq;
      const final = isTerminalRun(state.status) && blockedBy.length === 0;
      try {
        const reply = await ledgerStub(this.env as Env, state.def.customerId).record({
          customerId: state.def.customerId,
          runId: state.def.id,
          records: records.map((r) => ({ seq: r.seq, at: r.at, nanoUsd: r.nanoUsd.toString(), holdId: r.holdId })),
          rollup: this.journal.rollup(attribution, upTo),
          final,
          // The run's allowance for its life outside steps goes with its last delivery.
          releaseHolds: final && state.def.budgetLimited ? [runHoldId(state.def.id)] : [],
        });
        this.journal.markSent(upTo);
        this.costFailures = 0;
        if (blockedBy.length > 0) return this.costDeliveryFailed(state, `no price for model ${blockedBy.join(", ")}`, reply);
        this.costsDueAt = this.journal.undelivered ? Date.now() + COST_FLUSH_MS : null;
        await this.armAlarm(state, false);
        return reply;
      } catch (err) {
        return this.costDeliveryFailed(state, errorMessage(err));
      }
    };
    const previous = this.delivering ?? Promise.resolve(null);
    const next = previous.catch(() => null).then(run);
    this.delivering = next;
    return next.finally(() => {
      if (this.delivering === next) this.delivering = null;
    });
  }

  private async costDeliveryFailed(state: RunState, reason: string, reply: RecordReply | null = null): Promise<RecordReply | null> {
    const delay = COST_RETRY_MS[Math.min(this.costFailures, COST_RETRY_MS.length - 1)]!;
    this.costFailures += 1;
    log("costs.delivery_failed", { runId: state.def.id, pool: state.def.pool, pending: this.journal.recordsPending, retryInMs: delay, error: reason }, "warn");
    this.costsDueAt = Date.now() + delay;
    await this.armAlarm(state, false);
    return reply;
  }

  private async sendDispatches(state: RunState, outcome: Outcome) {
    if (outcome.dispatches.length === 0) return;
    const pool = getPool(state.def.pool);
    if (!pool) throw new Error(`run ${state.def.id} names unknown pool ${state.def.pool}`);
    const messages = outcome.dispatches.map((d) => ({ body: jobMessage(state, d, pool.name) }));
    // A failed send leaves the step queued with a dispatch deadline: the alarm sends it again.
    try {
      await pool.jobs(this.env as Env).sendBatch(messages);
      countUsage("queue_operations", messages.length);
    } catch (err) {
      log("dispatch.send_failed", { runId: state.def.id, pool: pool.name, error: errorMessage(err) }, "error");
    }
  }

  /**
   * The D1 run index follows the run lazily, to keep a message and a D1 write off every run's
   * path: it is updated when the run finishes, starts waiting, or keeps a step running long
   * enough to heartbeat (or retries after a delay). A run that goes from queued to done in one
   * consumer invocation is indexed twice in all: created and finished.
   * GET /v1/runs/:id always reads the run object, so it is never stale.
   */
  private indexDue(state: RunState): boolean {
    if (state.status === this.indexedStatus) return false;
    if (state.status !== "running") return true;
    return state.steps.some((s) => s.status === "queued" && s.notBefore !== null);
  }

  /**
   * A failed run whose dead letter never reached the DLQ (lost in flight) sends it again; the
   * dead-letter consumer's entry id makes a second copy harmless.
   */
  private requeueDeadLetter(state: RunState) {
    if (state.status !== "failed" || state.failure?.type === "cancelled" || state.failure?.type === "budget_exceeded") return;
    const step = state.steps.find((s) => s.status === "failed");
    if (!step) return;
    // One waiting copy is enough: a repeated check must not pile up copies.
    if (this.sql`SELECT 1 FROM outbox LIMIT 1`.length > 0) return;
    insertRows(this.ctx.storage, "INSERT INTO outbox (queue, body)", [["dead_letter", JSON.stringify(deadLetterMessage(state, { stepIndex: step.index, dispatch: step.dispatch }, Date.now()))]]);
  }

  /** Sends what the outbox holds; what cannot be sent now is tried again in a few seconds. */
  private async flushOutbox(state: RunState) {
    if (!this.hasTable("outbox")) return;
    const rows = this.sql<{ id: number; queue: string; body: string }>`SELECT id, queue, body FROM outbox ORDER BY id`;
    if (rows.length === 0) return;
    const pool = getPool(state.def.pool);
    try {
      if (!pool) throw new Error(`unknown pool ${state.def.pool}`);
      await pool.deadLetters(this.env as Env).sendBatch(rows.map((r) => ({ body: JSON.parse(r.body) })));
      countUsage("queue_operations", rows.length);
      this.sql`DELETE FROM outbox WHERE id <= ${rows[rows.length - 1]!.id}`;
    } catch (err) {
      log("dead_letter.send_failed", { runId: state.def.id, pool: state.def.pool, error: errorMessage(err) }, "error");
      this.outboxRetryAt = Date.now() + OUTBOX_RETRY_MS;
      await this.armAlarm(state, false);
    }
  }

  private async sendIndexUpdate(state: RunState) {
    this.indexedStatus = state.status;
    for (const s of state.steps) for (const h of s.history) this.indexedAttempts.set(`${s.index}.${h.attempt}`, h.outcome);
    const message = indexMessage(state, this.lastSeq, this.dueAt(state));
    try {
      await (this.env as Env).EVENTS.send(message);
      countUsage("queue_operations");
    } catch (err) {
      log("index.send_failed", { runId: state.def.id, error: errorMessage(err) }, "error");
    }
  }

  /**
   * When a finished run whose costs are all delivered and dead letters sent deletes itself;
   * null while anything of it is still due.
   */
  private retentionAt(state: RunState): number | null {
    if (!isTerminalRun(state.status) || state.finishedAt === null || this.journal.undelivered || this.outboxRetryAt !== null) return null;
    const days = Number((this.env as Env).RETENTION_STEP_DETAIL_DAYS);
    return state.finishedAt + (Number.isFinite(days) && days > 0 ? days : DEFAULT_RETENTION_DAYS) * DAY_MS;
  }

  /**
   * When the run should have moved on by its own timers (plus a grace), for the reconciler's
   * indexed deadline: a run is looked at only once it is overdue, never while it waits as planned.
   * A failed run is due until its dead letter is recorded (the dead-letter consumer clears it).
   */
  private dueAt(state: RunState): number | null {
    const grace = Number((this.env as Env).RECONCILE_AFTER_MS) || DEFAULT_RECONCILE_AFTER_MS;
    if (isTerminalRun(state.status)) {
      const deadLettered = state.status === "failed" && state.failure?.type !== "cancelled" && state.failure?.type !== "budget_exceeded";
      return deadLettered && state.finishedAt !== null ? state.finishedAt + DEAD_LETTER_DUE_MS : null;
    }
    const timer = nextTimerAt(state);
    return (timer ?? Date.now()) + grace;
  }

  /**
   * Keeps the one alarm at or before the earliest timer: the run's own (nextTimerAt), the
   * delivery of undelivered costs, a dead-letter resend, and the end of a finished run's
   * retention. Moving it later is skipped on the hot path (an early alarm finds nothing due and
   * re-arms itself), which saves a storage write per step.
   */
  private armAlarm(state: RunState, alarmFired: boolean): Promise<void> {
    const candidates = [nextTimerAt(state), this.costsDueAt, this.outboxRetryAt, this.retentionAt(state)].filter((t): t is number => t !== null);
    const next = candidates.length > 0 ? Math.min(...candidates) : null;
    if (next === null) {
      // Nothing left to wait for: a finished run keeps no timer, so an idle platform costs nothing.
      const had = this.alarmAt !== null && !alarmFired;
      this.alarmAt = null;
      return had ? this.ctx.storage.deleteAlarm() : Promise.resolve();
    }
    // Off the hot path (a finished run) the alarm moves later too, so no early alarm wakes it for nothing.
    if (alarmFired || this.alarmAt === null || next < this.alarmAt || (isTerminalRun(state.status) && next !== this.alarmAt)) {
      this.alarmAt = next;
      return this.ctx.storage.setAlarm(next);
    }
    return Promise.resolve();
  }

  private view(state: RunState): RunSnapshot {
    return snapshotOf(state, this.journal.view());
  }
}

/** Transitions every attempt passes through are debug; outcomes and run transitions are info. */
const DEBUG_EVENTS = new Set(["step.started", "step.queued"]);
const levelOf = (type: string) => (DEBUG_EVENTS.has(type) ? "debug" : "info");

