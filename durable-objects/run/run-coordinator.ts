/**
 * One Durable Object per run: the run's state machine (src/domain/run-machine.ts) made
 * durable. This file is the RPC shell: every command loads the state, applies the pure
 * transition, commits the touched rows, the events and the cost records it caused in one
 * transaction, then hands the effects on. Its rooms:
 *  - run-store.ts: the rows (load, row mapping, writes); schema.ts: the versioned schema;
 *  - effects.ts: dispatches, the dead-letter outbox, the D1 index updates;
 *  - meters.ts, cost-journal.ts, cost-delivery.ts: metering, the journal, its delivery to the ledger;
 *  - timers.ts: the one alarm, over the run's timers, cost delivery, outbox retries and retention;
 *  - outbound.ts, views.ts: what its messages and its replies carry.
 *
 * Under a hard budget every attempt first holds its worst case in the ledger; the record that
 * closes the attempt settles the hold.
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { resolveReferences, type JsonValue } from "../../src/domain/input-references";
import { customerScope } from "../../src/domain/secrets";
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
import type { TokenUsage } from "../../src/domain/token-usage";
import { configureLogging, errorMessage, log } from "../../src/lib/log";
import { countUsage, usageTotals } from "../../src/lib/usage";
import { priceBookCovering } from "../../src/services/pricing-service";
import { attemptBounds, boundModels } from "../../src/steps/attempt-bounds";
import { worstCaseAttempt } from "../../src/domain/worst-case";
import { ledgerStub } from "../ledger/rpc";
import { sqlHelper } from "../sql";
import { CostDelivery } from "./cost-delivery";
import { CostJournal } from "./cost-journal";
import { RunEffects } from "./effects";
import { attemptRecord, creationRecord, POOL_REQUESTS_PER_DISPATCH, POOL_ROWS_PER_DISPATCH, QUEUE_OPERATIONS_PER_MESSAGE, type AttemptMeter } from "./meters";
import { deadLetterMessage } from "./outbound";
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
  startingHoldId,
  leaseMsOf,
} from "./rpc";
import { appendEvents, headerOf, insertRun, loadRun, readEvents, writeDefinition, writeHeader, writeSteps } from "./run-store";
import { createSchema } from "./schema";
import { reconcileDueAt, retentionAt, RunAlarm, timerSettings } from "./timers";
import { snapshotOf } from "./views";

/**
 * A dispatch is handed to its pool's controller, which delivers it and sends it again when its slot's
 * lease ends unreported (POOL_SLOT_LEASE_MS): the run's own resend is a backstop, after this long.
 */
const REDISPATCH_MS = 600_000;
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
  private readonly alarmClock = new RunAlarm(this.ctx.storage);
  private readonly effects = new RunEffects(this.env as Env, this.ctx.storage, this.sql, (state) => this.armAlarm(state, false));
  private readonly costs = new CostDelivery({
    env: this.env as Env,
    storage: this.ctx.storage,
    journal: this.journal,
    priceBook: (models) => this.priceBook(models),
    armAlarm: (state) => this.armAlarm(state, false),
    waitUntil: (promise) => this.ctx.waitUntil(promise),
  });
  private state: RunState | null = null;
  private loaded = false;
  /** Event sequence of the last persisted event: the run index row's version. */
  private lastSeq = 0;
  /** The run row as last written, so a command that leaves it alone writes no row. */
  private persistedHeader = "";
  /** The open attempts' meters, mirrored in their step rows. */
  private meters = new Map<string, AttemptMeter>();

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
    insertRun(this.sql, state);
    this.persistedHeader = headerOf(state);
    this.effects.indexedAtCreation(state);
    await this.commit(state, outcome, { request: true, creation: true, book });
    // Under a hard budget the creation's hold is settled at once, so it does not stand in the way of the run's first step.
    if (def.budgetLimited) await this.costs.deliver(state);
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
    return readEvents(this.sql, after, count);
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
    if (this.effects.indexDue(state, { heartbeat: true })) {
      this.journal.addOverhead({ queueOperations: QUEUE_OPERATIONS_PER_MESSAGE, d1RowsWritten: this.effects.indexRows(state) });
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
      if (tokens.length > 0) await this.costs.recordLateUsage(state, report.leaseId, tokens, book);
      return result;
    }
    const usage = { lease: report.leaseId, tokens };
    if (!limited) {
      const next = await this.assign(state, result.outcome, { request: true, billTo: report.leaseId, usage, book });
      // Carried on inline, the run keeps going in this consumer; otherwise it pauses here.
      if (!next.ok) this.costs.soon(state);
      return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
    }
    const held = result.outcome.dispatches.splice(0);
    await this.commit(state, result.outcome, { request: true, billTo: report.leaseId, usage, book });
    const reply = await this.costs.deliver(state);
    if (reply?.exhausted) {
      const stopped = stopForBudget(state, "the customer's monthly budget is spent", this.clock());
      if (stopped.ok) {
        await this.commit(state, stopped.outcome);
        this.costs.soon(state);
        return { ok: true, next: null, runStatus: state.status };
      }
    }
    if (report.continueInline && held.length === 1) {
      const next = await this.startAttempt(state, held[0]!, { queued: false });
      if (next.ok || next.reason === "budget_exceeded") return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
    }
    this.journal.addOverhead({ doRequests: POOL_REQUESTS_PER_DISPATCH * held.length, ledgerRowsWritten: POOL_ROWS_PER_DISPATCH * held.length });
    await this.effects.sendDispatches(state, held);
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
    this.costs.soon(state);
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
    await this.costs.deliver(state);
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
    this.alarmClock.fired();
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
    if (this.costs.isDue(Date.now())) await this.costs.deliver(state);
    this.effects.outboxRetryAt = null;
    await this.effects.flushOutbox(state);
    if (isTerminalRun(state.status)) {
      // A finished run has no timers of its own: what was due is done; only its retention is left.
      if (this.journal.undelivered && this.costs.dueAt === null) await this.costs.deliver(state);
      await this.armAlarm(state, true);
      return;
    }
    const book = await this.priceBook([]);
    const outcome = fireTimers(state, this.clock());
    await this.commit(state, outcome, { request: true, alarmFired: true, book });
    // A lease expired (an attempt closed) or the run ended: bill it now.
    if (outcome.closed.length > 0 || isTerminalRun(state.status)) await this.costs.deliver(state);
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
    await this.costs.deliver(state);
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
    if (options.resendDeadLetter) this.effects.restageDeadLetter(state);
    await this.effects.flushOutbox(state);
    const book = await this.priceBook([]);
    const outcome = fireTimers(state, this.clock());
    this.effects.forgetIndexed();
    outcome.statusChanged = true;
    await this.commit(state, outcome, { request: true, alarmFired: true, book, unbilled: true });
    // Records a crash left undelivered go now; the poke's own overhead waits for the run's next
    // delivery, or goes now when the run has ended (nothing else will deliver it).
    if (this.journal.recordsPending > 0 || (isTerminalRun(state.status) && this.journal.undelivered)) await this.costs.deliver(state);
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
        writeDefinition(this.sql, state);
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
    const reply = await this.costs.deliver(state, { rollupEvenIfNothingNew: true });
    return reply ? { ok: true } : { ok: false, reason: "not_delivered" };
  }

  // ---- internals ------------------------------------------------------------------------

  private clock(): Clock {
    const env = this.env as Env;
    const leaseMs = leaseMsOf(env);
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
          this.costs.soon(state);
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
    const bounds = attemptBounds(def, resolved.ok ? resolved.config : null, state.def.timeoutMs);
    const leaseMs = this.clock().leaseMs;
    const book = await this.priceBook(boundModels(bounds));
    if (!book) return { ok: false, message: "prices are unavailable, so the step's worst case cannot be held against the budget" };
    const worst = worstCaseAttempt(book, Date.now(), { ...bounds, leaseMs });
    if (!worst.ok) return { ok: false, message: `no price for model ${worst.unpriced.map((m) => `"${m}"`).join(", ")}` };
    const holdId = `${state.def.id}:${nextLeaseId(step)}`;
    const reply = await ledgerStub(this.env as Env, state.def.customerId).reserve({
      holdId,
      runId: state.def.id,
      nanoUsd: worst.nanoUsd.toString(),
      expiresAt: Date.now() + bounds.timeoutMs + leaseMs + HOLD_MARGIN_MS,
      // The first attempt to start takes over what admission held for the run's first step.
      replaces: startingHoldId(state.def.id),
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
      this.costs.soon(state);
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

  /** The run's state, or null for an id no run was created under (reading writes nothing). */
  private async load(): Promise<RunState | null> {
    if (this.loaded) return this.state;
    const stored = loadRun(this.ctx.storage, this.sql);
    if (stored) {
      this.state = stored.state;
      this.meters = stored.meters;
      this.lastSeq = stored.lastSeq;
      this.persistedHeader = headerOf(stored.state);
      this.journal.load();
      await this.alarmClock.wake();
      this.costs.woke();
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
    const indexing = outcome.statusChanged && this.effects.indexDue(state);
    const billTo = options.billTo !== undefined ? this.meters.get(options.billTo) : undefined;
    const overhead = !options.creation && !options.unbilled;
    if (overhead) {
      const messages = (indexing ? 1 : 0) + outcome.deadLetters.length;
      this.journal.addOverhead({
        doRequests: (options.request && !billTo ? 1 : 0) + POOL_REQUESTS_PER_DISPATCH * outcome.dispatches.length,
        queueOperations: messages * QUEUE_OPERATIONS_PER_MESSAGE,
        d1RowsWritten: indexing ? this.effects.indexRows(state) : 0,
        ledgerRowsWritten: POOL_ROWS_PER_DISPATCH * outcome.dispatches.length,
      });
    }
    try {
      this.ctx.storage.transactionSync(() => {
        const rowsBefore = usageTotals().do_rows_written;
        if (header !== this.persistedHeader) writeHeader(this.sql, state);
        this.effects.stageDeadLetters(state, outcome.deadLetters, now);
        appendEvents(this.ctx.storage, this.lastSeq, now, outcome.events);
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
        writeSteps(this.ctx.storage, state, outcome.touched, this.meters);
        for (const closed of outcome.closed) {
          const meter = this.meters.get(closed.leaseId) ?? null;
          this.meters.delete(closed.leaseId);
          const tokens = options.usage?.lease === closed.leaseId ? options.usage.tokens : [];
          this.journal.append(attemptRecord(state.def, closed, meter, tokens), options.book ?? null);
        }
        if (options.creation) {
          this.journal.append(creationRecord(state.def, rows, state.def.budgetLimited ? creationHoldId(state.def.id) : null, outcome.dispatches.length), options.book ?? null);
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
    if (outcome.closed.length > 0 || (outcome.statusChanged && isTerminalRun(state.status))) this.costs.closed(now);
    const alarm = this.armAlarm(state, options.alarmFired === true);
    for (const event of outcome.events) {
      log(event.type, { runId: state.def.id, step: event.step, attempt: event.attempt, pool: state.def.pool, ...event.data }, levelOf(event.type));
    }
    await this.effects.sendDispatches(state, outcome.dispatches);
    if (outcome.deadLetters.length > 0) await this.effects.flushOutbox(state);
    if (indexing) await this.sendIndexUpdate(state);
    await alarm;
  }

  private async sendIndexUpdate(state: RunState): Promise<void> {
    await this.effects.sendIndexUpdate(state, this.lastSeq, this.dueAt(state));
  }

  private retentionAt(state: RunState): number | null {
    return retentionAt(state, timerSettings(this.env as Env), this.journal.undelivered || this.effects.outboxRetryAt !== null);
  }

  private dueAt(state: RunState): number | null {
    return reconcileDueAt(state, timerSettings(this.env as Env), Date.now());
  }

  /** Keeps the one alarm at or before the earliest deadline: the run's own timers, costs due, an outbox retry, the end of retention. */
  private armAlarm(state: RunState, alarmFired: boolean): Promise<void> {
    return this.alarmClock.arm([nextTimerAt(state), this.costs.dueAt, this.effects.outboxRetryAt, this.retentionAt(state)], {
      finished: isTerminalRun(state.status),
      alarmFired,
    });
  }

  private view(state: RunState): RunSnapshot {
    return snapshotOf(state, this.journal.view());
  }
}

/** Transitions every attempt passes through are debug; outcomes and run transitions are info. */
const DEBUG_EVENTS = new Set(["step.started", "step.queued"]);
const levelOf = (type: string) => (DEBUG_EVENTS.has(type) ? "debug" : "info");

