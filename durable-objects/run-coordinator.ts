/**
 * One Durable Object per run: the run's state machine (src/domain/run-machine.ts) made
 * durable. Every command loads the state, applies the pure transition, persists the touched
 * rows and the events in one transaction, then sends the dispatches it produced. A single
 * alarm serves every timer the run has (sleeps, retry delays, leases, undelivered dispatches).
 */
import { DurableObject } from "cloudflare:workers";
import type { z } from "zod";
import { getPool } from "../src/config/pools";
import type { DeadLetterMessage, EventMessage, JobMessage } from "../src/data-plane/messages";
import { resolveReferences, type JsonValue } from "../src/domain/input-references";
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
  nextTimerAt,
  resumeRun,
  startStep,
  stopForBudget,
  type Clock,
  type Outcome,
  type RunDefinition,
  type RunState,
  type StepState,
} from "../src/domain/run-machine";
import { configureLogging, errorMessage, log } from "../src/lib/log";
import { countUsage, usageTotals } from "../src/lib/usage";
import { cachedPriceBook } from "../src/services/pricing-service";
import { estimatePromptTokens } from "../src/steps/llm";
import { worstCaseTokenCost, type TokenUsage } from "../src/domain/pricing";
import { ledgerStub, type RecordReply } from "./customer-ledger";
import { AttemptMeters, attemptCosts, creationCosts, forLedger } from "./run-costs";
import type { CostEvent } from "../src/domain/cost-events";
import {
  CompleteStepInputSchema,
  DeadLetterDispatchInputSchema,
  FailStepInputSchema,
  RunDefinitionSchema,
  StartStepInputSchema,
  type CommandReply,
  type DeadLetterReply,
  type RunCoordinatorApi,
  type JsonObject,
  type CreateRunResult,
  type ReportResult,
  type RunEvent,
  type RunSnapshot,
  type StartStepResult,
  type StepAssignment,
} from "./run-coordinator-rpc";
import { insertRows, sqlHelper } from "./sql";

const SCHEMA_VERSION = 2;
const OUTBOX_RETRY_MS = 5_000;
/** 100,000 nano-USD ($0.0001): held for a step's infrastructure on top of its worst-case tokens. */
const INFRA_RESERVE_NANO = 100_000n;
const DEFAULT_LEASE_MS = 30_000;
const REDISPATCH_MS = 5 * 60_000;

export class RunCoordinator extends DurableObject implements RunCoordinatorApi {
  private readonly sql = sqlHelper(this.ctx.storage);
  private state: RunState | null = null;
  private loaded = false;
  private alarmAt: number | null = null;
  /** Event sequence of the last persisted event: the run index row's version. */
  private lastSeq = 0;
  /** The run row as last written, so a command that leaves it alone writes no row. */
  private persistedHeader = "";
  private readonly meters = new AttemptMeters();
  /**
   * Priced cost events not yet in the customer's ledger. Without a hard budget they are sent in
   * one request when the run pauses or ends (see flushCosts), not one per step: metering must
   * not cost more than what it meters.
   */
  private pendingCosts: CostEvent[] = [];
  /** Batches sent but not confirmed: resent with the same id, which the ledger counts once. */
  private unconfirmed: { id: string; events: CostEvent[] }[] = [];
  /** The status the D1 run index was last sent (this wake); see indexDue(). */
  private indexedStatus: RunState["status"] | null = null;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    configureLogging(env.LOG_LEVEL);
  }

  // ---- commands -------------------------------------------------------------------------

  async create(input: z.input<typeof RunDefinitionSchema>): Promise<CreateRunResult> {
    countUsage("do_requests");
    const def = RunDefinitionSchema.parse(input) as RunDefinition;
    const existing = await this.load();
    if (existing) {
      if (existing.def.requestHash !== def.requestHash) return { ok: false, reason: "idempotency_key_reused", run: this.snapshot(existing) };
      return { ok: true, created: false, run: this.snapshot(existing) };
    }
    this.createSchema();
    const { state, outcome } = createRun(def, this.clock());
    this.state = state;
    this.sql`INSERT INTO run (id, definition, status, started_at, finished_at, failure) VALUES (${def.id}, ${JSON.stringify(def)}, ${state.status}, NULL, NULL, NULL)`;
    this.persistedHeader = headerOf(state);
    // The control plane writes the new run's index row itself, so it lists at once.
    this.indexedStatus = state.status;
    const rowsWritten = await this.commit(state, outcome);
    await this.priceCreation(state, rowsWritten + 1);
    return { ok: true, created: true, run: this.snapshot(state) };
  }

  async get(): Promise<RunSnapshot | null> {
    countUsage("do_requests");
    const state = await this.load();
    return state ? this.snapshot(state) : null;
  }

  async events(afterSeq = 0, limit = 500): Promise<RunEvent[]> {
    countUsage("do_requests");
    if (!(await this.load())) return [];
    return this.sql<{ seq: number; at: number; type: string; step: string | null; attempt: number | null; data: string | null }>`
      SELECT seq, at, type, step, attempt, data FROM events WHERE seq > ${afterSeq} ORDER BY seq LIMIT ${limit}`.map((row) => ({
      ...row,
      data: row.data ? JSON.parse(row.data) : null,
    }));
  }

  async startStep(input: z.input<typeof StartStepInputSchema>): Promise<StartStepResult> {
    countUsage("do_requests");
    const msg = StartStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const result = startStep(state, msg, this.clock());
    if (!result.ok) return result;
    this.meters.start(result.outcome.started!.leaseId, true);
    return this.assign(state, result.outcome);
  }

  async heartbeat(leaseId: string): Promise<{ ok: boolean; reason?: string }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const result = heartbeat(state, String(leaseId), this.clock());
    if (!result.ok) return result;
    this.meters.add(String(leaseId), { doRequests: 1, rowsWritten: await this.commit(state, result.outcome) });
    // A step that needs heartbeats is a long one: now the index should say the run is running.
    if (this.indexedStatus !== state.status) await this.sendIndexUpdate(state);
    return { ok: true };
  }

  async completeStep(input: z.input<typeof CompleteStepInputSchema>): Promise<ReportResult> {
    countUsage("do_requests");
    const report = CompleteStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const finishing = state.steps.find((s) => s.leaseId === report.leaseId && s.status === "running");
    const limited = state.def.budgetLimited === true;
    // With a hard budget, the step's cost is settled before anything else starts.
    const result = completeStep(state, report.leaseId, report.output, this.clock(), report.continueInline && !limited);
    if (!result.ok) return result;
    if (!limited) {
      const next = await this.assign(state, result.outcome, report.leaseId);
      if (finishing) await this.priceAttempt(state, finishing.index, report.leaseId, report.usage);
      // Carried on inline: the run keeps going in this consumer; otherwise it pauses here.
      if (!next.ok) this.ctx.waitUntil(this.flushCosts(state));
      return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
    }
    const held = result.outcome.dispatches.splice(0);
    this.meters.add(report.leaseId, { doRequests: 1, rowsWritten: await this.commit(state, result.outcome) });
    if (finishing) await this.priceAttempt(state, finishing.index, report.leaseId, report.usage);
    const reply = await this.flushCosts(state, `res:${state.def.id}:${report.leaseId}`);
    if (reply?.exhausted) {
      const stopped = stopForBudget(state, "the customer's monthly budget is spent", this.clock());
      if (stopped.ok) {
        await this.commit(state, stopped.outcome);
        return { ok: true, next: null, runStatus: state.status };
      }
    }
    if (report.continueInline && held.length === 1) {
      const started = startStep(state, held[0]!, this.clock());
      if (started.ok) {
        const next = await this.assign(state, started.outcome);
        return { ok: true, next: next.ok ? next.assignment : null, runStatus: state.status };
      }
    }
    await this.sendDispatches(state, { ...result.outcome, dispatches: held });
    return { ok: true, next: null, runStatus: state.status };
  }

  async failStep(input: z.input<typeof FailStepInputSchema>): Promise<ReportResult> {
    countUsage("do_requests");
    const report = FailStepInputSchema.parse(input);
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run" };
    const failing = state.steps.find((s) => s.leaseId === report.leaseId && s.status === "running");
    const result = failStep(state, report.leaseId, report.failure, this.clock());
    if (!result.ok) return result;
    this.meters.add(report.leaseId, { doRequests: 1, rowsWritten: await this.commit(state, result.outcome) });
    // A failed attempt costs what it used, whether or not it is tried again.
    if (failing) await this.priceAttempt(state, failing.index, report.leaseId, undefined);
    this.ctx.waitUntil(this.flushCosts(state, `res:${state.def.id}:${report.leaseId}`));
    return { ok: true, next: null, runStatus: state.status };
  }

  async cancel(reason = "cancelled by request"): Promise<CommandReply> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run", run: null };
    const result = cancelRun(state, String(reason).slice(0, 500), this.clock());
    if (!result.ok) return { ok: false, reason: result.reason, run: this.snapshot(state) };
    await this.commit(state, result.outcome);
    this.ctx.waitUntil(this.flushCosts(state));
    return { ok: true, run: this.snapshot(state) };
  }

  async resume(): Promise<CommandReply> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { ok: false, reason: "unknown_run", run: null };
    const result = resumeRun(state, this.clock());
    if (!result.ok) return { ok: false, reason: result.reason, run: this.snapshot(state) };
    await this.commit(state, result.outcome);
    return { ok: true, run: this.snapshot(state) };
  }

  override async alarm(): Promise<void> {
    countUsage("do_requests");
    this.alarmAt = null;
    const state = await this.load();
    if (!state) return;
    await this.flushOutbox(state);
    const outcome = fireTimers(state, this.clock());
    await this.commit(state, outcome, { alarmFired: true });
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
    const result = failDeadLetteredDispatch(state, msg, msg.reason, this.clock());
    if (!result.ok) return { ok: false, reason: result.reason };
    await this.commit(state, result.outcome);
    return { ok: true, deadLetter: this.deadLetter(state, msg, Date.now()) };
  }

  /**
   * Self-healing for whatever a crash may have dropped: sends unsent dead letters, fires due
   * timers, re-arms the alarm, and brings the D1 index up to date. The reconciler (cron)
   * calls it for runs whose index row has not moved for a while.
   */
  async reconcile(options: { resendDeadLetter?: boolean } = {}): Promise<{ status: RunState["status"] | null }> {
    countUsage("do_requests");
    const state = await this.load();
    if (!state) return { status: null };
    if (options.resendDeadLetter) this.requeueDeadLetter(state);
    await this.flushOutbox(state);
    const outcome = fireTimers(state, this.clock());
    this.indexedStatus = null;
    outcome.statusChanged = true;
    await this.commit(state, outcome, { alarmFired: true });
    return { status: state.status };
  }

  // ---- internals ------------------------------------------------------------------------

  private clock(): Clock {
    const env = this.env as Env;
    const leaseMs = Number(env.LEASE_MS) || DEFAULT_LEASE_MS;
    const redispatchMs = Number(env.REDISPATCH_MS) || REDISPATCH_MS;
    return { now: Date.now(), leaseMs, redispatchMs, random: Math.random };
  }

  /**
   * Persists the outcome of a started step and hands the worker its assignment. A config
   * whose references do not resolve fails the attempt as permanent: no retry can fix it.
   */
  private async assign(state: RunState, outcome: Outcome, finishingLease?: string): Promise<StartStepResult> {
    const started = outcome.started;
    if (!started) {
      const rows = await this.commit(state, outcome);
      if (finishingLease) this.meters.add(finishingLease, { doRequests: 1, rowsWritten: rows });
      return { ok: false, reason: "not_queued" };
    }
    if (finishingLease) this.meters.start(started.leaseId, false);
    const def = state.def.steps[started.stepIndex]!;
    let config: unknown;
    try {
      config = resolveReferences(def.config, {
        input: state.def.input,
        steps: Object.fromEntries(state.steps.filter((s) => s.status === "succeeded").map((s) => [state.def.steps[s.index]!.name, { output: s.output }])),
      });
    } catch (err) {
      const failed = failStep(state, started.leaseId, { type: "permanent", message: errorMessage(err) }, this.clock());
      await this.commit(state, failed.ok ? mergeOutcomes(outcome, failed.outcome) : outcome);
      return { ok: false, reason: "invalid_config" };
    }
    const rows = await this.commit(state, outcome);
    if (finishingLease) this.meters.add(finishingLease, { doRequests: 1, rowsWritten: rows });
    else this.meters.add(started.leaseId, { rowsWritten: rows });
    const refused = await this.reserveBudget(state, def, config, started.leaseId);
    if (refused) {
      const failed = failStep(state, started.leaseId, { type: "budget_exceeded", message: refused }, this.clock());
      if (failed.ok) await this.commit(state, failed.outcome);
      return { ok: false, reason: "invalid_config" };
    }
    const step = state.steps[started.stepIndex]!;
    const assignment: StepAssignment = {
      runId: state.def.id,
      pool: state.def.pool,
      stepIndex: started.stepIndex,
      leaseId: started.leaseId,
      attempt: started.attempt,
      startedAt: step.startedAt!,
      leaseMs: this.clock().leaseMs,
      step: { name: def.name, type: def.type, config: config as JsonValue, timeoutMs: def.timeoutMs ?? state.def.timeoutMs ?? null },
    };
    return { ok: true, assignment };
  }

  /**
   * The object's schema, versioned: created with the run, upgraded on wake when older.
   * One multi-statement exec, since every run is a new object and this is on its create path.
   */
  private migrate() {
    const current = this.hasTable("schema_meta") ? (this.sql<{ version: number }>`SELECT version FROM schema_meta`[0]?.version ?? 0) : 0;
    if (current < SCHEMA_VERSION) this.createSchema();
  }

  /** Idempotent (IF NOT EXISTS): safe on a new object without asking what it holds. */
  private createSchema() {
    this.ctx.storage.transactionSync(() => {
      this.ctx.storage.sql.exec(`
        CREATE TABLE IF NOT EXISTS run (id TEXT PRIMARY KEY, definition TEXT NOT NULL, status TEXT NOT NULL,
          started_at INTEGER, finished_at INTEGER, failure TEXT);
        CREATE TABLE IF NOT EXISTS steps (idx INTEGER PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL,
          attempt_base INTEGER NOT NULL, dispatch INTEGER NOT NULL, lease_id TEXT, deadline INTEGER, not_before INTEGER,
          wake_at INTEGER, output TEXT, error TEXT, started_at INTEGER, finished_at INTEGER, history TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,
          type TEXT NOT NULL, step TEXT, attempt INTEGER, data TEXT);
        CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS schema_meta (version INTEGER NOT NULL);
        DELETE FROM schema_meta;
        INSERT INTO schema_meta (version) VALUES (${SCHEMA_VERSION});`);
    });
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
      this.migrate();
      const def = JSON.parse(row.definition) as RunDefinition;
      // A step with no row has never left `pending`.
      const steps = def.steps.map((_, index) => newStepState(index));
      for (const row of this.sql`SELECT * FROM steps`) {
        const step = stepFromRow(row);
        steps[step.index] = step;
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
      this.alarmAt = await this.ctx.storage.getAlarm();
    }
    this.loaded = true;
    return this.state;
  }

  private async commit(
    state: RunState,
    outcome: Outcome,
    options: { alarmFired?: boolean } = {},
  ): Promise<number> {
    const now = Date.now();
    const header = headerOf(state);
    const rowsBefore = usageTotals().do_rows_written;
    let rowsWritten = 0;
    try {
      this.ctx.storage.transactionSync(() => {
        if (header !== this.persistedHeader) {
          this.sql`UPDATE run SET status = ${state.status}, started_at = ${state.startedAt}, finished_at = ${state.finishedAt},
            failure = ${state.failure ? JSON.stringify(state.failure) : null}`;
        }
        insertRows(this.ctx.storage, STEP_UPSERT, [...outcome.touched].map((index) => stepRow(state.steps[index]!)));
        // Dead letters go out through an outbox written with the failure: a crash between this
        // commit and the send cannot lose one (the alarm or the reconciler sends it later).
        insertRows(this.ctx.storage, "INSERT INTO outbox (queue, body)", outcome.deadLetters.map((d) => ["dead_letter", JSON.stringify(this.deadLetter(state, d, now))]));
        let seq = this.lastSeq;
        insertRows(
          this.ctx.storage,
          "INSERT INTO events (seq, at, type, step, attempt, data)",
          outcome.events.map((e) => [++seq, now, e.type, e.step ?? null, e.attempt ?? null, e.data ? JSON.stringify(e.data) : null]),
        );
      });
      this.persistedHeader = header;
      rowsWritten = usageTotals().do_rows_written - rowsBefore;
    } catch (err) {
      // Memory may now be ahead of storage: forget it and reload on the next command.
      this.loaded = false;
      this.state = null;
      throw err;
    }
    this.lastSeq += outcome.events.length;
    for (const event of outcome.events) {
      log(event.type, { runId: state.def.id, step: event.step, attempt: event.attempt, pool: state.def.pool, ...event.data }, levelOf(event.type));
    }
    await this.sendDispatches(state, outcome);
    if (outcome.deadLetters.length > 0) await this.flushOutbox(state);
    if (outcome.statusChanged && this.indexDue(state)) await this.sendIndexUpdate(state);
    await this.armAlarm(state, options.alarmFired === true);
    return rowsWritten;
  }

  // ---- costs ----------------------------------------------------------------------------

  private attribution(state: RunState, step: string | null, attempt: number | null) {
    const d = state.def;
    return { customerId: d.customerId, projectId: d.projectId, runId: d.id, runType: d.runType, pool: d.pool, step, attempt };
  }

  private async priceCreation(state: RunState, rowsWritten: number) {
    try {
      const book = await cachedPriceBook(this.env as Env, Date.now(), { allowStale: true });
      this.pendingCosts.push(...creationCosts(book, this.attribution(state, null, null), rowsWritten, state.def.createdAt));
    } catch (err) {
      log("costs.price_failed", { runId: state.def.id, error: errorMessage(err) }, "error");
    }
  }

  /** Prices one attempt (tokens it reported, operations counted for it) into pendingCosts. */
  private async priceAttempt(state: RunState, stepIndex: number, leaseId: string, usage: TokenUsage[] | undefined) {
    const record = state.steps[stepIndex]!.history.find((h) => h.leaseId === leaseId);
    if (!record) return;
    const name = state.def.steps[stepIndex]!.name;
    try {
      const at = record.finishedAt ?? Date.now();
      const book = await cachedPriceBook(this.env as Env, Date.now(), { allowStale: true });
      const { events, unpriced } = attemptCosts(book, this.attribution(state, name, record.attempt), this.meters.take(leaseId), usage, at - record.startedAt, at);
      if (unpriced.length > 0) log("costs.unpriced_model", { runId: state.def.id, step: name, models: unpriced }, "error");
      this.pendingCosts.push(...events);
    } catch (err) {
      log("costs.price_failed", { runId: state.def.id, step: name, error: errorMessage(err) }, "error");
    }
  }

  /**
   * Sends pending cost events to the customer's ledger in one request (ids make a resend
   * harmless). Called when the run pauses or ends, or after every step for a customer with a
   * hard budget, whose ledger must be current before the next step starts.
   */
  private async flushCosts(state: RunState, releaseReservation?: string): Promise<RecordReply | null> {
    if (this.pendingCosts.length > 0) this.unconfirmed.push({ id: `${state.def.id}:${crypto.randomUUID()}`, events: this.pendingCosts.splice(0) });
    if (this.unconfirmed.length === 0 && !releaseReservation) return null;
    const ledger = ledgerStub(this.env as Env, state.def.customerId);
    let reply: RecordReply | null = null;
    try {
      const batches = [...this.unconfirmed];
      for (const [i, batch] of batches.entries()) {
        const last = i === batches.length - 1;
        reply = await ledger.record({ customerId: state.def.customerId, batchId: batch.id, events: forLedger(batch.events), ...(last && releaseReservation ? { releaseReservation } : {}) });
        this.unconfirmed.splice(this.unconfirmed.indexOf(batch), 1);
      }
      if (batches.length === 0 && releaseReservation) reply = await ledger.record({ customerId: state.def.customerId, events: [], releaseReservation });
      return reply;
    } catch (err) {
      log("costs.record_failed", { runId: state.def.id, batches: this.unconfirmed.length, error: errorMessage(err) }, "error");
      return null;
    }
  }

  /**
   * Before an llm step of a customer with a hard budget runs, its worst case (the prompt's
   * estimate, all of maxTokens) is held in the ledger; it is settled to the actual cost when the
   * step reports. Returns why the step may not run, or null.
   */
  private async reserveBudget(state: RunState, def: { type: string }, config: unknown, leaseId: string): Promise<string | null> {
    if (def.type !== "llm" || state.def.budgetLimited !== true) return null;
    const llm = config as { model: string; messages: { content: string }[]; maxTokens?: number };
    const book = await cachedPriceBook(this.env as Env);
    const price = book.modelPrice(llm.model, Date.now());
    if (!price) return `no price for model "${llm.model}"`;
    // The infrastructure the attempt will use is held too: a generous flat amount, far above what
    // a step's requests, rows and queue operations cost.
    const worstCase = worstCaseTokenCost(price, estimatePromptTokens(llm.messages ?? []), llm.maxTokens ?? 4096) + INFRA_RESERVE_NANO;
    const reply = await ledgerStub(this.env as Env, state.def.customerId).reserve({ customerId: state.def.customerId, id: `res:${state.def.id}:${leaseId}`, nanoUsd: worstCase.toString() });
    return reply.ok ? null : reply.message;
  }

  private async sendDispatches(state: RunState, outcome: Outcome) {
    if (outcome.dispatches.length === 0) return;
    const pool = getPool(state.def.pool);
    if (!pool) throw new Error(`run ${state.def.id} names unknown pool ${state.def.pool}`);
    const messages = outcome.dispatches.map((d) => ({
      body: { v: 1, runId: state.def.id, stepIndex: d.stepIndex, dispatch: d.dispatch, pool: pool.name } satisfies JobMessage,
    }));
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

  private deadLetter(state: RunState, d: { stepIndex: number; dispatch: number }, now: number): DeadLetterMessage {
    const step = state.steps[d.stepIndex]!;
    return {
      v: 1,
      kind: "step_failed",
      runId: state.def.id,
      customerId: state.def.customerId,
      runType: state.def.runType,
      pool: state.def.pool,
      stepIndex: d.stepIndex,
      dispatch: d.dispatch,
      step: state.def.steps[d.stepIndex]!.name,
      failure: step.error ?? { type: "worker_error", message: "unknown failure" },
      attempts: step.attempts,
      history: step.history.map((h) => ({ attempt: h.attempt, startedAt: h.startedAt, finishedAt: h.finishedAt, outcome: h.outcome, ...(h.failure ? { failure: h.failure } : {}) })),
      deadAt: now,
    };
  }

  /**
   * A failed run whose dead letter never reached the DLQ (lost in flight) sends it again; the
   * dead-letter consumer's entry id makes a second copy harmless.
   */
  private requeueDeadLetter(state: RunState) {
    if (state.status !== "failed" || state.failure?.type === "cancelled" || state.failure?.type === "budget_exceeded") return;
    const step = state.steps.find((s) => s.status === "failed");
    if (!step) return;
    insertRows(this.ctx.storage, "INSERT INTO outbox (queue, body)", [["dead_letter", JSON.stringify(this.deadLetter(state, { stepIndex: step.index, dispatch: step.dispatch }, Date.now()))]]);
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
      const retryAt = Date.now() + OUTBOX_RETRY_MS;
      if (this.alarmAt === null || retryAt < this.alarmAt) {
        await this.ctx.storage.setAlarm(retryAt);
        this.alarmAt = retryAt;
      }
    }
  }

  private async sendIndexUpdate(state: RunState) {
    this.indexedStatus = state.status;
    const def = state.def;
    const message: EventMessage = {
      kind: "run.index",
      run: {
        id: def.id,
        customerId: def.customerId,
        projectId: def.projectId,
        runType: def.runType,
        pool: def.pool,
        priority: def.priority,
        status: state.status,
        createdAt: def.createdAt,
        startedAt: state.startedAt,
        finishedAt: state.finishedAt,
        failureType: state.failure?.type ?? null,
        failedStep: state.failure?.step ?? null,
        idempotencyKey: def.idempotencyKey,
        version: this.lastSeq,
      },
      attempts: state.steps.flatMap((s) =>
        s.history.map((h) => ({
          stepIndex: s.index,
          step: def.steps[s.index]!.name,
          stepType: def.steps[s.index]!.type,
          attempt: h.attempt,
          status: h.outcome,
          failureType: h.failure?.type ?? null,
          failureMessage: h.failure?.message ?? null,
          startedAt: h.startedAt,
          finishedAt: h.finishedAt,
        })),
      ).slice(-200),
    };
    try {
      await (this.env as Env).EVENTS.send(message);
      countUsage("queue_operations");
    } catch (err) {
      log("index.send_failed", { runId: def.id, error: errorMessage(err) }, "error");
    }
  }

  /**
   * Keeps the one alarm at or before the earliest timer. Moving it later is skipped on the
   * hot path (an early alarm finds nothing due and re-arms itself), which saves a storage
   * write per step.
   */
  private async armAlarm(state: RunState, alarmFired: boolean) {
    const next = nextTimerAt(state);
    if (next === null) {
      // Nothing left to wait for: a finished run keeps no timer, so an idle platform costs nothing.
      if (this.alarmAt !== null && !alarmFired) await this.ctx.storage.deleteAlarm();
      this.alarmAt = null;
      return;
    }
    if (alarmFired || this.alarmAt === null || next < this.alarmAt) {
      await this.ctx.storage.setAlarm(next);
      this.alarmAt = next;
    }
  }

  private snapshot(state: RunState): RunSnapshot {
    const def = state.def;
    return {
      id: def.id,
      customerId: def.customerId,
      projectId: def.projectId,
      runType: def.runType,
      pool: def.pool,
      priority: def.priority,
      status: state.status,
      input: def.input as JsonValue,
      metadata: def.metadata as JsonObject,
      createdAt: def.createdAt,
      startedAt: state.startedAt,
      finishedAt: state.finishedAt,
      failure: state.failure,
      steps: state.steps.map((s) => ({
        name: def.steps[s.index]!.name,
        type: def.steps[s.index]!.type,
        status: s.status,
        attempts: s.attempts,
        output: s.output as JsonValue,
        error: s.error,
        startedAt: s.startedAt,
        finishedAt: s.finishedAt,
      })),
    };
  }
}

/** Transitions every attempt passes through are debug; outcomes and run transitions are info. */
const DEBUG_EVENTS = new Set(["step.started", "step.queued"]);
const levelOf = (type: string) => (DEBUG_EVENTS.has(type) ? "debug" : "info");

/** The run row's mutable fields, as one comparable string. */
function headerOf(state: RunState): string {
  return JSON.stringify([state.status, state.startedAt, state.finishedAt, state.failure]);
}

const STEP_UPSERT = `INSERT OR REPLACE INTO steps (idx, status, attempts, attempt_base, dispatch, lease_id, deadline,
  not_before, wake_at, output, error, started_at, finished_at, history)`;

function stepRow(s: StepState): SqlStorageValue[] {
  return [
    s.index, s.status, s.attempts, s.attemptBase, s.dispatch, s.leaseId, s.deadline, s.notBefore, s.wakeAt,
    s.output === null ? null : JSON.stringify(s.output), s.error ? JSON.stringify(s.error) : null,
    s.startedAt, s.finishedAt, JSON.stringify(s.history),
  ];
}

function stepFromRow(row: Record<string, SqlStorageValue>): StepState {
  const num = (v: SqlStorageValue | undefined) => (v === null || v === undefined ? null : Number(v));
  return {
    index: Number(row.idx),
    status: row.status as StepState["status"],
    attempts: Number(row.attempts),
    attemptBase: Number(row.attempt_base),
    dispatch: Number(row.dispatch),
    leaseId: typeof row.lease_id === "string" ? row.lease_id : null,
    deadline: num(row.deadline),
    notBefore: num(row.not_before),
    wakeAt: num(row.wake_at),
    output: row.output === null ? null : JSON.parse(String(row.output)),
    error: row.error === null ? null : JSON.parse(String(row.error)),
    startedAt: num(row.started_at),
    finishedAt: num(row.finished_at),
    history: JSON.parse(String(row.history)),
  };
}
