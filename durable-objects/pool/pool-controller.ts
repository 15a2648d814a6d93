/**
 * One Durable Object per pool shard (`pool:<name>:<shard>`): the pool's admission control and
 * autoscaler. Run objects hand it their step dispatches (`enqueue`) instead of sending them to
 * the pool's queue; it keeps them in its READY set (SQLite) and releases them to the queue only
 * while the chains in flight are fewer than the desired concurrency, in the order of
 * src/domain/fair-queue.ts (priority lanes with aging, then start-time fair queuing between
 * customers by plan weight). A consumer reports each admitted chain `done` (and `renew`s its slot
 * on long chains); a slot whose chain never reports expires after POOL_SLOT_LEASE_MS, so a lost
 * report cannot strand capacity (the run's own lease and redispatch timers recover its step).
 *
 * The desired concurrency is src/domain/scaling-policy.ts's answer to the pool's depth, work in
 * flight and utilization (src/domain/pool-meter.ts), evaluated on every enqueue and done and on
 * the object's one alarm. Every change is a decision: kept here (the latest ones), logged, sent to
 * D1 (`pool_scaling_decisions`) through the outbox, and pushed to the Cloudflare consumer's
 * `max_concurrency` when an API token is configured. While the pool is active the alarm samples
 * depth, in-flight and desired into D1 (`pool_concurrency_samples`) every POOL_SAMPLE_MS; once
 * nothing waits, nothing runs and the desired concurrency is back at its minimum, the alarm is
 * deleted: an idle pool runs no timer.
 *
 * What must survive an eviction is written with each change: the waiting dispatches and the
 * admitted chains. The rest (meter, customers' virtual times) is kept in memory and written on
 * the alarm and at each decision; losing the last seconds of it costs some fairness, no work.
 */
import { DurableObject } from "cloudflare:workers";
import { drizzle } from "drizzle-orm/d1";
import { z } from "zod";
import type { JobMessage } from "../../src/data-plane/messages";
import { getPool, shardsOf, type PoolConfig } from "../../src/config/pools";
import { poolConcurrencySamples, poolScalingDecisions } from "../../src/db/schema";
import { parseOrRefuse } from "../../src/domain/errors";
import { FairQueue, type QueuedDispatch } from "../../src/domain/fair-queue";
import { advanceMeter, emptyMeter, PoolMeterSchema, processingRateOf, recordSteps, utilizationOf, type PoolMeter } from "../../src/domain/pool-meter";
import type { Priority } from "../../src/domain/run-status";
import { decideConcurrency, initialHistory, ScalingPolicySchema, shardPolicy, type ScalingHistory, type ScalingPolicy } from "../../src/domain/scaling-policy";
import { cloudflareApiConfig, consumerConcurrencyFor, setConsumerMaxConcurrency } from "../../src/lib/cloudflare-queues";
import { configureLogging, errorMessage, log } from "../../src/lib/log";
import { countD1, countUsage } from "../../src/lib/usage";
import { insertRows, sqlHelper } from "../sql";
import {
  DEFAULT_SLOT_LEASE_MS,
  DoneInputSchema,
  EnqueueInputSchema,
  poolControllerStub,
  SetPolicyInputSchema,
  SlotInputSchema,
  slotKey,
  WhereSchema,
  type DoneReply,
  type EnqueueReply,
  type PoolControllerApi,
  type PoolShardStatus,
  type ScalingDecisionRecord,
} from "./rpc";
import { ensurePoolSchema } from "./schema";

/** While active, the pool's depth, in-flight and desired concurrency are sampled this often. */
export const DEFAULT_SAMPLE_MS = 10_000;
/** Decisions kept in the object for GET /v1/pools/:name (D1 keeps them all). */
const RECENT_DECISIONS = 20;
/** A failed queue send is tried again this much later (the dispatches wait, admitted again). */
const SEND_RETRY_MS = 1_000;
/** Outbox rows per D1 batch. */
const FLUSH_ROWS = 100;
/** A failed push to Cloudflare's API is tried again after 5 s, 10 s, … at most this long. */
const MAX_PUSH_RETRY_MS = 300_000;

interface Waiting extends QueuedDispatch {
  runId: string;
  stepIndex: number;
  dispatch: number;
}

interface Running {
  key: string;
  runId: string;
  stepIndex: number;
  dispatch: number;
  customerId: string;
  priority: Priority;
  weight: number;
  enqueuedAt: number;
  charge: number;
  releasedAt: number;
  leaseUntil: number;
}

const StateSchema = z.object({
  pool: z.string(),
  shard: z.number().int(),
  /** null: the pool's default (src/config/pools.ts), so a new default reaches pools never tuned. */
  policy: ScalingPolicySchema.nullable(),
  history: z.object({
    current: z.number().int().min(0),
    lastScaleUpAt: z.number().nullable(),
    lastScaleDownAt: z.number().nullable(),
    recommendations: z.array(z.object({ at: z.number(), desired: z.number() })),
  }),
  virtualTime: z.number(),
  meter: PoolMeterSchema,
  decisionSeq: z.number().int().min(0),
  recent: z.array(z.custom<ScalingDecisionRecord>()),
  pushed: z.number().int().nullable(),
});
type State = z.infer<typeof StateSchema>;

export class PoolController extends DurableObject implements PoolControllerApi {
  private readonly sql = sqlHelper(this.ctx.storage);
  private loaded = false;
  private config!: PoolConfig;
  private shard = 0;
  private policyOverride: ScalingPolicy | null = null;
  private history: ScalingHistory = initialHistory();
  private meter: PoolMeter = emptyMeter(Date.now());
  private readonly queue = new FairQueue<Waiting>();
  private readonly running = new Map<string, Running>();
  /** Each run's one live dispatch here (waiting or admitted): a run runs one chain at a time. */
  private readonly byRun = new Map<string, string>();
  private decisionSeq = 0;
  private recent: ScalingDecisionRecord[] = [];
  private recheckAt: number | null = null;
  private sendRetryAt: number | null = null;
  private outboxPending = false;
  private outboxRetryAt: number | null = null;
  private outboxFailures = 0;
  private alarmAt: number | null = null;
  private pushed: number | null = null;
  private pushRetryAt: number | null = null;
  private pushFailures = 0;
  private pushing: Promise<void> | null = null;
  /** A decision was made: sample the pool once its admissions are done. */
  private sampleDue = false;
  /** Customers whose flow (virtual time) changed since it was last written. */
  private readonly dirtyFlows = new Set<string>();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    configureLogging(env.LOG_LEVEL);
  }

  private get env_(): Env {
    return this.env as Env;
  }

  private get policy(): ScalingPolicy {
    return this.policyOverride ?? shardPolicy(this.config.defaultPolicy, this.shards);
  }

  private get desired(): number {
    return this.history.current;
  }

  private get slotLeaseMs(): number {
    return Number(this.env_.POOL_SLOT_LEASE_MS) || DEFAULT_SLOT_LEASE_MS;
  }

  /** This pool's controller shards in this deployment (POOL_SHARDS, or the pool's own count): the env is fixed for the object's life. */
  private shardCount: number | null = null;
  private get shards(): number {
    return (this.shardCount ??= shardsOf(this.env_, this.config));
  }

  private get sampleMs(): number {
    return Number(this.env_.POOL_SAMPLE_MS) || DEFAULT_SAMPLE_MS;
  }

  // ---- RPC ------------------------------------------------------------------------------

  async enqueue(input: z.input<typeof EnqueueInputSchema>): Promise<EnqueueReply> {
    countUsage("do_requests");
    const msg = parseOrRefuse(EnqueueInputSchema, input);
    await this.load(msg.pool, msg.shard);
    const now = Date.now();
    this.tick(now);
    const fresh: Waiting[] = [];
    const resend: Running[] = [];
    for (const d of msg.dispatches) {
      const key = slotKey(d.runId, d.stepIndex, d.dispatch);
      const admitted = this.running.get(key);
      if (admitted) {
        // The run sent it again: its message was not picked up in time (lost, or still on its
        // way). Send it again on the same slot; a duplicate is refused by the run object.
        admitted.leaseUntil = now + this.slotLeaseMs;
        resend.push(admitted);
        continue;
      }
      // Waiting already: a re-send keeps its place (and its age) in line.
      if (this.queue.has(key)) continue;
      // A new dispatch of a run ends whatever its earlier one still holds: the run moved on (the
      // chain dispatched its next step, or the run's lease on it expired: a crashed consumer).
      this.supersede(d.runId, key, now);
      const entry: Waiting = { key, runId: d.runId, stepIndex: d.stepIndex, dispatch: d.dispatch, customerId: d.customerId, weight: d.weight, priority: d.priority, enqueuedAt: Math.min(d.enqueuedAt, now) };
      this.queue.add(entry);
      this.byRun.set(entry.runId, key);
      this.dirtyFlows.add(entry.customerId);
      fresh.push(entry);
    }
    this.evaluate(now);
    // Admitted at once when a slot is free: such a dispatch never becomes a waiting row.
    const released = await this.release(now, new Set(fresh.map((e) => e.key)));
    const stillWaiting = fresh.filter((e) => this.queue.has(e.key));
    if (stillWaiting.length > 0) {
      insertRows(
        this.ctx.storage,
        "INSERT OR IGNORE INTO ready (key, run_id, step_index, dispatch, customer_id, priority, weight, enqueued_at)",
        stillWaiting.map((e) => [e.key, e.runId, e.stepIndex, e.dispatch, e.customerId, e.priority, e.weight, e.enqueuedAt]),
      );
    }
    if (resend.length > 0) {
      for (const r of resend) this.sql`UPDATE running SET lease_until = ${r.leaseUntil} WHERE key = ${r.key}`;
      await this.send(resend.map((r) => this.message(r)));
    }
    this.sampleIfDue(now);
    await this.armAlarm(now);
    return { accepted: fresh.length, resent: resend.length, released };
  }

  async done(input: z.input<typeof DoneInputSchema>): Promise<DoneReply> {
    countUsage("do_requests");
    const msg = parseOrRefuse(DoneInputSchema, input);
    await this.load(msg.pool, msg.shard);
    const now = Date.now();
    this.tick(now);
    let steps = 0;
    const known = msg.slots.map(({ key, busyMs, steps: ran }) => {
      steps += ran;
      const slot = this.running.get(key);
      if (slot) this.free(slot, busyMs);
      return slot !== undefined;
    });
    this.meter = recordSteps(this.meter, steps);
    this.evaluate(now);
    await this.release(now);
    this.sampleIfDue(now);
    await this.armAlarm(now);
    return { ok: true, known };
  }

  async renew(input: z.input<typeof SlotInputSchema>): Promise<{ ok: true; known: boolean }> {
    countUsage("do_requests");
    const msg = parseOrRefuse(SlotInputSchema, input);
    await this.load(msg.pool, msg.shard);
    const slot = this.running.get(msg.key);
    if (!slot) return { ok: true, known: false };
    slot.leaseUntil = Date.now() + this.slotLeaseMs;
    this.sql`UPDATE running SET lease_until = ${slot.leaseUntil} WHERE key = ${slot.key}`;
    return { ok: true, known: true };
  }

  async status(input: z.input<typeof WhereSchema>): Promise<PoolShardStatus> {
    countUsage("do_requests");
    const msg = parseOrRefuse(WhereSchema, input);
    await this.load(msg.pool, msg.shard);
    const now = Date.now();
    this.tick(now);
    return this.view(now);
  }

  async setPolicy(input: z.input<typeof SetPolicyInputSchema>): Promise<PoolShardStatus> {
    countUsage("do_requests");
    const msg = parseOrRefuse(SetPolicyInputSchema, input);
    await this.load(msg.pool, msg.shard);
    const now = Date.now();
    this.tick(now);
    this.policyOverride = msg.policy;
    // A new policy is judged afresh: its own cooldowns start from this change.
    this.evaluate(now, "policy changed: ");
    this.persistState();
    await this.release(now);
    this.sampleIfDue(now);
    await this.armAlarm(now);
    return this.view(now);
  }

  override async alarm(): Promise<void> {
    countUsage("do_requests");
    this.alarmAt = null;
    if (!(await this.load(null, null))) return;
    const now = Date.now();
    this.tick(now);
    // A slot whose chain neither reported nor renewed: its message was lost, or its consumer died.
    // The slot comes back, and the dispatch goes back in line (with its age) to be sent again: the
    // controller delivers what it admitted. A duplicate is refused by the run object (the dispatch
    // generation guards it); a consumer that died mid-step is recovered by the run's lease, whose
    // new dispatch supersedes this one.
    for (const slot of [...this.running.values()]) {
      if (slot.leaseUntil <= now) {
        log("pool.slot_expired", { runId: slot.runId, stepIndex: slot.stepIndex, pool: this.config.name, shard: this.shard, heldMs: now - slot.releasedAt }, "warn");
        this.free(slot, null);
        this.requeue(slot);
      }
    }
    if (this.sendRetryAt !== null && this.sendRetryAt <= now) this.sendRetryAt = null;
    this.evaluate(now);
    await this.release(now);
    if (this.active() || this.sampleDue) {
      this.sampleDue = false;
      this.stage("sample", this.sample(now));
    }
    this.persistState();
    await this.flushOutbox(now);
    if (this.pushRetryAt !== null && this.pushRetryAt <= now) this.pushDesired();
    await this.armAlarm(now, true);
  }

  // ---- admission ---------------------------------------------------------------------------

  /**
   * Admits waiting dispatches into free slots, in the fair queue's order, and sends them to the
   * pool's queue. `unsaved` are dispatches of this call that have no waiting row yet.
   */
  private async release(now: number, unsaved: ReadonlySet<string> = new Set()): Promise<number> {
    if (this.sendRetryAt !== null && now < this.sendRetryAt) return 0;
    const taken: { entry: Waiting; charge: number }[] = [];
    while (this.running.size + taken.length < this.desired) {
      const next = this.queue.take(now, this.policy.agingMs, this.policy.scheduling);
      if (!next) break;
      taken.push(next);
    }
    if (taken.length === 0) return 0;
    const slots: Running[] = taken.map(({ entry, charge }) => ({
      key: entry.key,
      runId: entry.runId,
      stepIndex: entry.stepIndex,
      dispatch: entry.dispatch,
      customerId: entry.customerId,
      priority: entry.priority,
      weight: entry.weight,
      enqueuedAt: entry.enqueuedAt,
      charge,
      releasedAt: now,
      leaseUntil: now + this.slotLeaseMs,
    }));
    for (const s of slots) {
      this.running.set(s.key, s);
      this.dirtyFlows.add(s.customerId);
    }
    const saved = slots.filter((s) => !unsaved.has(s.key));
    this.ctx.storage.transactionSync(() => {
      for (const s of saved) this.sql`DELETE FROM ready WHERE key = ${s.key}`;
      insertRows(
        this.ctx.storage,
        "INSERT OR REPLACE INTO running (key, run_id, step_index, dispatch, customer_id, priority, weight, enqueued_at, charge, released_at, lease_until)",
        slots.map((s) => [s.key, s.runId, s.stepIndex, s.dispatch, s.customerId, s.priority, s.weight, s.enqueuedAt, s.charge, s.releasedAt, s.leaseUntil]),
      );
    });
    const sent = await this.send(slots.map((s) => this.message(s)));
    if (!sent) {
      // Back in line, uncharged, with their age: nothing was admitted. Tried again shortly.
      this.sendRetryAt = now + SEND_RETRY_MS;
      this.ctx.storage.transactionSync(() => {
        for (const { entry, charge } of taken) {
          if (!this.running.delete(entry.key)) continue;
          this.sql`DELETE FROM running WHERE key = ${entry.key}`;
          this.queue.untake(entry, charge);
          this.sql`INSERT OR IGNORE INTO ready (key, run_id, step_index, dispatch, customer_id, priority, weight, enqueued_at)
            VALUES (${entry.key}, ${entry.runId}, ${entry.stepIndex}, ${entry.dispatch}, ${entry.customerId}, ${entry.priority}, ${entry.weight}, ${entry.enqueuedAt})`;
        }
      });
      return 0;
    }
    return slots.length;
  }

  private message(slot: Pick<Running, "runId" | "stepIndex" | "dispatch">): JobMessage {
    return { v: 1, runId: slot.runId, stepIndex: slot.stepIndex, dispatch: slot.dispatch, pool: this.config.name, shard: this.shard };
  }

  private async send(messages: JobMessage[]): Promise<boolean> {
    try {
      for (let i = 0; i < messages.length; i += 100) {
        const chunk = messages.slice(i, i + 100);
        await this.config.jobs(this.env_).sendBatch(chunk.map((body) => ({ body })));
        countUsage("queue_operations", chunk.length);
      }
      return true;
    } catch (err) {
      log("pool.send_failed", { pool: this.config.name, shard: this.shard, messages: messages.length, error: errorMessage(err) }, "error");
      return false;
    }
  }

  /** The run's earlier dispatch, admitted or waiting, is over: its slot is free, its waiting entry gone. */
  private supersede(runId: string, key: string, now: number): void {
    const old = this.byRun.get(runId);
    if (old === undefined || old === key) return;
    const slot = this.running.get(old);
    if (slot) {
      log("pool.slot_superseded", { runId, pool: this.config.name, shard: this.shard, heldMs: now - slot.releasedAt }, "debug");
      this.free(slot, now - slot.releasedAt);
      return;
    }
    const waiting = this.queue.remove(old);
    if (waiting) {
      this.sql`DELETE FROM ready WHERE key = ${old}`;
      this.dirtyFlows.add(waiting.customerId);
    }
    this.byRun.delete(runId);
  }

  /** Puts an expired slot's dispatch back in line, as it was when it was first enqueued. */
  private requeue(slot: Running): void {
    const entry: Waiting = { key: slot.key, runId: slot.runId, stepIndex: slot.stepIndex, dispatch: slot.dispatch, customerId: slot.customerId, priority: slot.priority, weight: slot.weight, enqueuedAt: slot.enqueuedAt };
    if (!this.queue.add(entry)) return;
    this.byRun.set(slot.runId, slot.key);
    this.sql`INSERT OR IGNORE INTO ready (key, run_id, step_index, dispatch, customer_id, priority, weight, enqueued_at)
      VALUES (${entry.key}, ${entry.runId}, ${entry.stepIndex}, ${entry.dispatch}, ${entry.customerId}, ${entry.priority}, ${entry.weight}, ${entry.enqueuedAt})`;
  }

  /** A chain ended (busyMs measured) or its slot expired (null): the slot is free again. */
  private free(slot: Running, busyMs: number | null): void {
    this.running.delete(slot.key);
    if (this.byRun.get(slot.runId) === slot.key) this.byRun.delete(slot.runId);
    this.sql`DELETE FROM running WHERE key = ${slot.key}`;
    this.queue.complete(slot.customerId, slot.charge, busyMs);
    this.dirtyFlows.add(slot.customerId);
  }

  // ---- scaling -----------------------------------------------------------------------------

  /** The meter integrates the levels that held until now. Call before changing them. */
  private tick(now: number): void {
    this.meter = advanceMeter(this.meter, now, this.running.size, this.desired);
  }

  private evaluate(now: number, prefix = ""): void {
    const decision = decideConcurrency(
      this.policy,
      { depth: this.queue.size, inFlight: this.running.size, utilization: utilizationOf(this.meter), now },
      this.history,
    );
    const from = this.desired;
    this.history = decision.history;
    this.recheckAt = decision.recheckAt;
    if (!decision.changed) return;
    const record: ScalingDecisionRecord = {
      id: `${this.config.name}:${this.shard}:${++this.decisionSeq}`,
      pool: this.config.name,
      shard: this.shard,
      at: now,
      from,
      to: decision.desired,
      reason: prefix + decision.reason,
      depth: this.queue.size,
      inFlight: this.running.size,
      utilization: utilizationOf(this.meter),
      processingRate: processingRateOf(this.meter),
    };
    this.recent = [record, ...this.recent].slice(0, RECENT_DECISIONS);
    log("pool.scaled", { pool: record.pool, shard: record.shard, from: record.from, to: record.to, reason: record.reason, depth: record.depth, inFlight: record.inFlight, utilization: record.utilization });
    this.stage("decision", record);
    // The series gets a point at each decision, taken once the decision's admissions are made.
    this.sampleDue = true;
    this.persistState();
    this.pushDesired();
  }

  private sampleIfDue(now: number): void {
    if (!this.sampleDue) return;
    this.sampleDue = false;
    this.stage("sample", this.sample(now));
  }

  private active(): boolean {
    return this.queue.size > 0 || this.running.size > 0 || this.desired > this.policy.minConcurrency;
  }

  private sample(now: number) {
    return {
      pool: this.config.name,
      shard: this.shard,
      at: now,
      depth: this.queue.size,
      inFlight: this.running.size,
      desired: this.desired,
      utilization: utilizationOf(this.meter),
      processingRate: processingRateOf(this.meter),
    };
  }

  // ---- the alarm: the one timer, only while the pool is active ------------------------------

  private async armAlarm(now: number, fired = false): Promise<void> {
    const due: number[] = [];
    if (this.active()) due.push(now + this.sampleMs);
    if (this.recheckAt !== null) due.push(this.recheckAt);
    for (const s of this.running.values()) due.push(s.leaseUntil);
    if (this.sendRetryAt !== null) due.push(this.sendRetryAt);
    if (this.outboxPending) due.push(this.outboxRetryAt ?? now + this.sampleMs);
    if (this.pushRetryAt !== null) due.push(this.pushRetryAt);
    const next = due.length > 0 ? Math.max(now, Math.min(...due)) : null;
    if (next === null) {
      // Idle: nothing waits, runs, or is owed to D1; the desired concurrency is at its floor. No timer.
      if (this.alarmAt !== null) {
        this.persistState();
        this.alarmAt = null;
        await this.ctx.storage.deleteAlarm();
      }
      return;
    }
    // Moved earlier at once; later only when it fired (an early alarm finds little to do and re-arms).
    if (fired || this.alarmAt === null || next < this.alarmAt) {
      this.alarmAt = next;
      await this.ctx.storage.setAlarm(next);
    }
  }

  // ---- D1: decisions and samples, through the outbox ---------------------------------------

  private stage(kind: "decision" | "sample", body: unknown): void {
    this.sql`INSERT INTO outbox (kind, body) VALUES (${kind}, ${JSON.stringify(body)})`;
    this.outboxPending = true;
  }

  /** Sends the outbox to D1 (inserts that ignore what is there already), deleting what D1 took. */
  private async flushOutbox(now: number): Promise<void> {
    if (!this.outboxPending || (this.outboxRetryAt !== null && now < this.outboxRetryAt)) return;
    const rows = this.sql<{ id: number; kind: string; body: string }>`SELECT id, kind, body FROM outbox ORDER BY id LIMIT ${FLUSH_ROWS}`;
    if (rows.length === 0) {
      this.outboxPending = false;
      return;
    }
    const decisions = rows.filter((r) => r.kind === "decision").map((r) => JSON.parse(r.body) as ScalingDecisionRecord);
    const samples = rows.filter((r) => r.kind === "sample").map((r) => JSON.parse(r.body) as ReturnType<PoolController["sample"]>);
    const db = drizzle(this.env_.DB);
    try {
      const statements = [
        ...decisions.map((d) =>
          db
            .insert(poolScalingDecisions)
            .values({ id: d.id, pool: d.pool, shard: d.shard, at: d.at, fromConcurrency: d.from, toConcurrency: d.to, reason: d.reason, depth: d.depth, inFlight: d.inFlight, utilization: d.utilization, processingRate: d.processingRate })
            .onConflictDoNothing(),
        ),
        ...samples.map((s) => db.insert(poolConcurrencySamples).values(s).onConflictDoNothing()),
      ];
      const results = await db.batch(statements as [(typeof statements)[number], ...(typeof statements)[number][]]);
      countD1(results as unknown as { meta: { rows_read?: number; rows_written?: number } }[]);
      this.sql`DELETE FROM outbox WHERE id <= ${rows[rows.length - 1]!.id}`;
      this.outboxFailures = 0;
      this.outboxRetryAt = null;
      this.outboxPending = this.sql`SELECT 1 FROM outbox LIMIT 1`.length > 0;
      if (this.outboxPending) this.outboxRetryAt = now;
    } catch (err) {
      this.outboxFailures += 1;
      this.outboxRetryAt = now + Math.min(60_000, 1_000 * 2 ** this.outboxFailures);
      log("pool.outbox_failed", { pool: this.config.name, shard: this.shard, rows: rows.length, error: errorMessage(err) }, "warn");
    }
  }

  // ---- Cloudflare: the consumer's max_concurrency ------------------------------------------

  /** Pushes the desired concurrency to the Cloudflare consumer when the API is configured (in the background). */
  private pushDesired(): void {
    const api = cloudflareApiConfig(this.env_);
    if (!api || this.pushing) return;
    this.pushRetryAt = null;
    this.pushing = (async () => {
      try {
        const total = this.desired + (await this.otherShardsDesired());
        const wanted = consumerConcurrencyFor(total, this.config.messagesPerInvocation);
        if (wanted === this.pushed) return;
        await setConsumerMaxConcurrency(api, this.config.jobQueue, this.config.consumerWorker, wanted);
        this.pushed = wanted;
        this.pushFailures = 0;
        log("pool.consumer_updated", { pool: this.config.name, queue: this.config.jobQueue, maxConcurrency: wanted, desired: total });
        this.persistState();
      } catch (err) {
        this.pushFailures += 1;
        this.pushRetryAt = Date.now() + Math.min(MAX_PUSH_RETRY_MS, 5_000 * 2 ** (this.pushFailures - 1));
        log("pool.consumer_update_failed", { pool: this.config.name, queue: this.config.jobQueue, error: errorMessage(err) }, "warn");
        await this.armAlarm(Date.now());
      } finally {
        this.pushing = null;
      }
      // The desired concurrency moved while the push was under way: push again.
      if (this.pushRetryAt === null && consumerConcurrencyFor(this.desired, this.config.messagesPerInvocation) !== this.pushed && this.shards === 1) this.pushDesired();
    })();
    this.ctx.waitUntil(this.pushing);
  }

  private async otherShardsDesired(): Promise<number> {
    let sum = 0;
    for (let shard = 0; shard < this.shards; shard++) {
      if (shard === this.shard) continue;
      sum += (await poolControllerStub(this.env_, this.config.name, shard).status({ pool: this.config.name, shard })).desiredConcurrency;
    }
    return sum;
  }

  // ---- state -------------------------------------------------------------------------------

  /** Loads the object (once per wake). `pool` is null from the alarm: the object knows its own. */
  private async load(pool: string | null, shard: number | null): Promise<boolean> {
    if (this.loaded) return true;
    ensurePoolSchema(this.ctx.storage);
    const row = this.sql<{ body: string }>`SELECT body FROM state WHERE id = 1`[0];
    const stored = row ? StateSchema.safeParse(JSON.parse(row.body)) : null;
    const name = stored?.success ? stored.data.pool : pool;
    const config = name === null ? undefined : getPool(name);
    if (!config) {
      if (pool === null) {
        // An alarm of an object that never learnt its pool: nothing to do, ever.
        await this.ctx.storage.deleteAlarm();
        return false;
      }
      throw new Error(`unknown pool ${name}`);
    }
    this.config = config;
    this.shard = stored?.success ? stored.data.shard : (shard ?? 0);
    if (stored?.success) {
      const s = stored.data;
      this.policyOverride = s.policy;
      this.history = s.history;
      this.meter = s.meter;
      this.decisionSeq = s.decisionSeq;
      this.recent = s.recent;
      this.pushed = s.pushed;
      this.queue.virtualTime = s.virtualTime;
    }
    for (const f of this.sql<{ customer_id: string; vtime: number; weight: number; cost_ms: number }>`SELECT customer_id, vtime, weight, cost_ms FROM flows`) {
      this.queue.restoreFlow(f.customer_id, { vtime: f.vtime, weight: f.weight, costMs: f.cost_ms });
    }
    for (const r of this.sql<{ key: string; run_id: string; step_index: number; dispatch: number; customer_id: string; priority: string; weight: number; enqueued_at: number }>`SELECT * FROM ready`) {
      this.queue.add({ key: r.key, runId: r.run_id, stepIndex: r.step_index, dispatch: r.dispatch, customerId: r.customer_id, priority: r.priority as Priority, weight: r.weight, enqueuedAt: r.enqueued_at });
      this.byRun.set(r.run_id, r.key);
    }
    for (const r of this.sql<{ key: string; run_id: string; step_index: number; dispatch: number; customer_id: string; priority: string; weight: number; enqueued_at: number; charge: number; released_at: number; lease_until: number }>`SELECT * FROM running`) {
      this.running.set(r.key, {
        key: r.key,
        runId: r.run_id,
        stepIndex: r.step_index,
        dispatch: r.dispatch,
        customerId: r.customer_id,
        priority: r.priority as Priority,
        weight: r.weight,
        enqueuedAt: r.enqueued_at,
        charge: r.charge,
        releasedAt: r.released_at,
        leaseUntil: r.lease_until,
      });
      this.queue.restoreRunning(r.customer_id, r.weight);
      this.byRun.set(r.run_id, r.key);
    }
    this.outboxPending = this.sql`SELECT 1 FROM outbox LIMIT 1`.length > 0;
    this.alarmAt = await this.ctx.storage.getAlarm();
    this.loaded = true;
    if (!row) this.persistState();
    return true;
  }

  /** Writes what is kept in memory between changes: policy, history, meter, virtual times. */
  private persistState(): void {
    const state: State = {
      pool: this.config.name,
      shard: this.shard,
      policy: this.policyOverride,
      history: this.history,
      virtualTime: this.queue.virtualTime,
      meter: this.meter,
      decisionSeq: this.decisionSeq,
      recent: this.recent,
      pushed: this.pushed,
    };
    this.ctx.storage.transactionSync(() => {
      this.sql`INSERT OR REPLACE INTO state (id, body) VALUES (1, ${JSON.stringify(state)})`;
      for (const customerId of this.dirtyFlows) {
        const flow = this.queue.flowState(customerId);
        if (flow) this.sql`INSERT OR REPLACE INTO flows (customer_id, vtime, weight, cost_ms) VALUES (${customerId}, ${flow.vtime}, ${flow.weight}, ${flow.costMs})`;
        else this.sql`DELETE FROM flows WHERE customer_id = ${customerId}`;
      }
    });
    this.dirtyFlows.clear();
  }

  private view(now: number): PoolShardStatus {
    let oldest = now;
    const customers = new Set<string>();
    for (const e of this.queue.values()) {
      oldest = Math.min(oldest, e.enqueuedAt);
      customers.add(e.customerId);
    }
    return {
      pool: this.config.name,
      shard: this.shard,
      depth: this.queue.size,
      depthByPriority: this.queue.countByLane(),
      inFlight: this.running.size,
      desiredConcurrency: this.desired,
      utilization: utilizationOf(this.meter),
      processingRate: processingRateOf(this.meter),
      waitingCustomers: customers.size,
      oldestWaitingMs: now - oldest,
      policy: this.policy,
      recentDecisions: this.recent,
      alarmAt: this.alarmAt,
      pushedMaxConcurrency: this.pushed,
    };
  }
}
