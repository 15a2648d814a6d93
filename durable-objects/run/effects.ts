/**
 * What a checkpoint sends out after it is committed: job dispatches to the pool's controller
 * (which admits them to the pool's queue), dead letters through the outbox, and the D1 run
 * index's updates through the events queue. A send that fails loses nothing: a dispatch has a
 * deadline the alarm resends it by, a dead letter stays in the outbox until the queue takes it,
 * and the index is rewritten whole by its next update or by the reconciler.
 */
import { getPool, shardsOf } from "../../src/config/pools";
import { controllerShardOf, poolControllerStub } from "../pool/rpc";
import type { Dispatch, RunState } from "../../src/domain/run-machine";
import { isDeadLettered } from "../../src/domain/run-status";
import { errorMessage, log } from "../../src/lib/log";
import { countUsage } from "../../src/lib/usage";
import { insertRows, type SqlRow } from "../sql";
import { deadLetterMessage, indexMessage, indexRowsFor, jobMessage } from "./outbound";

/** After a failed dead-letter send the outbox is tried again this much later. */
const OUTBOX_RETRY_MS = 5_000;

type Sql = <T extends SqlRow = SqlRow>(strings: TemplateStringsArray, ...values: SqlStorageValue[]) => T[];

export class RunEffects {
  /** The status the D1 run index was last sent (this wake); see indexDue(). */
  private indexedStatus: RunState["status"] | null = null;
  /** Each attempt's outcome as last sent to the index (this wake): only changed attempts write D1 rows. */
  private readonly indexedAttempts = new Map<string, string>();
  /** When the outbox is tried again after a failed send (one of the alarm's deadlines); null: nothing waiting. */
  outboxRetryAt: number | null = null;

  constructor(
    private readonly env: Env,
    private readonly storage: DurableObjectStorage,
    private readonly sql: Sql,
    /** Re-arms the alarm once outboxRetryAt has moved. */
    private readonly armAlarm: (state: RunState) => Promise<void>,
  ) {}

  /** The control plane wrote the new run's index row itself, so it lists at once. */
  indexedAtCreation(state: RunState): void {
    this.indexedStatus = state.status;
  }

  /** The next update rewrites the index row whatever it says now (the reconciler's poke). */
  forgetIndexed(): void {
    this.indexedStatus = null;
  }

  /**
   * The D1 run index follows the run lazily, to keep a message and a D1 write off every run's
   * path: it is updated when the run finishes, starts waiting, or keeps a step running long
   * enough to heartbeat (or retries after a delay). A run that goes from queued to done in one
   * consumer invocation is indexed twice in all: created and finished.
   * GET /v1/runs/:id always reads the run object, so it is never stale.
   */
  indexDue(state: RunState, options: { heartbeat?: boolean } = {}): boolean {
    if (state.status === this.indexedStatus) return false;
    if (state.status !== "running" || options.heartbeat) return true;
    return state.steps.some((s) => s.status === "queued" && s.notBefore !== null);
  }

  /** D1 rows the next index update will write. */
  indexRows(state: RunState): number {
    return indexRowsFor(state, this.indexedAttempts);
  }

  /**
   * Hands the dispatches to the pool's controller (one request), which admits each to the pool's
   * queue when a slot is free, in its priority and fair-share order. A re-send of a dispatch (the
   * run's redispatch timer) carries the same key, so it changes nothing for one still waiting.
   * If the controller cannot be reached, the dispatch goes to the queue directly, unadmitted:
   * the step is not held up by a fault of the scheduler.
   */
  async sendDispatches(state: RunState, dispatches: readonly Dispatch[]): Promise<void> {
    if (dispatches.length === 0) return;
    const pool = getPool(state.def.pool);
    if (!pool) throw new Error(`run ${state.def.id} names unknown pool ${state.def.pool}`);
    const shard = controllerShardOf(state.def.id, shardsOf(this.env, pool));
    const enqueuedAt = Date.now();
    try {
      await poolControllerStub(this.env, pool.name, shard).enqueue({
        pool: pool.name,
        shard,
        dispatches: dispatches.map((d) => ({
          runId: state.def.id,
          stepIndex: d.stepIndex,
          dispatch: d.dispatch,
          customerId: state.def.customerId,
          weight: state.def.weight ?? 1,
          priority: state.def.priority,
          enqueuedAt,
        })),
      });
      return;
    } catch (err) {
      log("dispatch.enqueue_failed", { runId: state.def.id, pool: pool.name, shard, error: errorMessage(err) }, "warn");
    }
    const messages = dispatches.map((d) => ({ body: jobMessage(state, d, pool.name) }));
    // A failed send leaves the step queued with a dispatch deadline: the alarm sends it again.
    try {
      await pool.jobs(this.env).sendBatch(messages);
      countUsage("queue_operations", messages.length);
    } catch (err) {
      log("dispatch.send_failed", { runId: state.def.id, pool: pool.name, error: errorMessage(err) }, "error");
    }
  }

  /**
   * Writes dead letters to the outbox. Called inside the checkpoint's transaction that failed
   * the step: a crash between the commit and the send cannot lose one.
   */
  stageDeadLetters(state: RunState, deadLetters: readonly { stepIndex: number; dispatch: number }[], now: number): void {
    insertRows(this.storage, "INSERT INTO outbox (queue, body)", deadLetters.map((d) => ["dead_letter", JSON.stringify(deadLetterMessage(state, d, now))]));
  }

  /**
   * A failed run whose dead letter never reached the DLQ (lost in flight) sends it again; the
   * dead-letter consumer's entry id makes a second copy harmless.
   */
  restageDeadLetter(state: RunState): void {
    if (!isDeadLettered(state)) return;
    const step = state.steps.find((s) => s.status === "failed");
    if (!step) return;
    // One waiting copy is enough: a repeated check must not pile up copies.
    if (this.sql`SELECT 1 FROM outbox LIMIT 1`.length > 0) return;
    this.stageDeadLetters(state, [{ stepIndex: step.index, dispatch: step.dispatch }], Date.now());
  }

  /** Sends what the outbox holds; what cannot be sent now is tried again in a few seconds. */
  async flushOutbox(state: RunState): Promise<void> {
    if (this.sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'`.length === 0) return;
    const rows = this.sql<{ id: number; queue: string; body: string }>`SELECT id, queue, body FROM outbox ORDER BY id`;
    if (rows.length === 0) return;
    const pool = getPool(state.def.pool);
    try {
      if (!pool) throw new Error(`unknown pool ${state.def.pool}`);
      await pool.deadLetters(this.env).sendBatch(rows.map((r) => ({ body: JSON.parse(r.body) })));
      countUsage("queue_operations", rows.length);
      this.sql`DELETE FROM outbox WHERE id <= ${rows[rows.length - 1]!.id}`;
    } catch (err) {
      log("dead_letter.send_failed", { runId: state.def.id, pool: state.def.pool, error: errorMessage(err) }, "error");
      this.outboxRetryAt = Date.now() + OUTBOX_RETRY_MS;
      await this.armAlarm(state);
    }
  }

  async sendIndexUpdate(state: RunState, version: number, dueAt: number | null): Promise<void> {
    this.indexedStatus = state.status;
    for (const s of state.steps) for (const h of s.history) this.indexedAttempts.set(`${s.index}.${h.attempt}`, h.outcome);
    try {
      await this.env.EVENTS.send(indexMessage(state, version, dueAt));
      countUsage("queue_operations");
    } catch (err) {
      log("index.send_failed", { runId: state.def.id, error: errorMessage(err) }, "error");
    }
  }
}
