import { runStub } from "../../durable-objects/run/rpc";
import { and, desc, eq, gte, lt, lte, or, type SQL } from "drizzle-orm";
import type { DrizzleD1Database } from "drizzle-orm/d1";
import { identityOf } from "../domain/run-identity";
import type { RunDefinition } from "../domain/run-machine";
import type { Principal } from "../domain/principal";
import { DomainError } from "../domain/errors";
import { cursorKey, pageOf, timeAndIdCursor } from "../domain/pagination";
import { DEFAULT_POOL } from "../config/pools";
import { DEFAULT_PLAN_WEIGHT } from "../domain/plan";
import { ledgerSubshards, subLedgerOf } from "../domain/ledger-subshards";
import { runs } from "../db/schema";
import { isTerminalRun, type Priority, type RunStatus } from "../domain/run-status";
import type { RetryPolicy } from "../domain/retry-policy";
import type { StepSpec } from "../domain/step-spec";
import { fingerprint, newId, runIdForIdempotencyKey } from "../lib/ids";
import { countD1 } from "../lib/usage";
import type { CustomersService } from "./customers-service";
import { presentCost, presentEvent, presentRun } from "./run-view";
import type { RunCoordinatorApi } from "../../durable-objects/run/rpc";
import { admitRun, resumeAdmitted, undoAdmission } from "./admission";
import { modelsNamedBySteps } from "../domain/step-models";
import type { PricingService } from "./pricing-service";
import { nanoJson } from "../domain/money";
import { assertKnownPool, secretScopeOfOwner, type RunTypesService } from "./run-types-service";
import { assertStepSecrets, assertValidSteps } from "./step-validation";
import { customerScope, type SecretScope } from "../domain/secrets";
import type { SecretsService } from "./secrets-service";
import { resolveReferences, type JsonValue } from "../domain/input-references";
import { attemptBounds, type AttemptBounds } from "../steps/attempt-bounds";

export interface CreateRunInput {
  projectId: string;
  customerId?: string;
  runType?: string;
  steps?: StepSpec[];
  input?: unknown;
  priority?: Priority;
  pool?: string;
  idempotencyKey?: string;
  metadata?: Record<string, unknown>;
}

export interface ListRunsQuery {
  status?: RunStatus;
  projectId?: string;
  runType?: string;
  customerId?: string;
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

const RUN_ID = /^run_[0-9a-z]{24}$/;

/** Newest first by (createdAt, id). */
const RUNS_CURSOR = timeAndIdCursor(RUN_ID, "base64json");

export class RunsService {
  constructor(
    private readonly env: Env,
    private readonly db: DrizzleD1Database,
    private readonly customers: CustomersService,
    private readonly runTypes: RunTypesService,
    private readonly pricing: PricingService,
    private readonly secrets: SecretsService,
    /** Work that may finish after the response: the run is already durable in its object. */
    private readonly waitUntil: (work: Promise<unknown>) => void,
  ) {}

  private stub(runId: string) {
    return runStub(this.env, runId);
  }

  /**
   * The run's cost sub-ledger when its customer has some (LEDGER_SUBSHARDS). A misconfigured
   * value gives none (the API refuses to serve then anyway, naming it): the primary is always right.
   */
  private costSubLedger(customerId: string, runId: string): { subLedger?: number } {
    const config = ledgerSubshards(this.env);
    const subLedger = typeof config === "string" ? null : subLedgerOf(runId, config[customerId]);
    return subLedger === null ? {} : { subLedger };
  }

  private customerFor(principal: Principal, requested: string | undefined): string {
    if (principal.kind === "customer") {
      if (requested !== undefined && requested !== principal.customerId) {
        throw new DomainError("forbidden", "a customer key may create runs only for its own customer", [{ field: "customerId", message: "not your customer" }]);
      }
      return principal.customerId;
    }
    if (!requested) throw new DomainError("validation_failed", "customerId is required with the admin key", [{ field: "customerId", message: "Required" }]);
    return requested;
  }

  async create(principal: Principal, body: CreateRunInput) {
    const customerId = this.customerFor(principal, body.customerId);
    if (!body.runType && !body.steps) {
      throw new DomainError("validation_failed", "give either runType or steps", [{ field: "runType", message: "runType or steps is required" }]);
    }
    if (body.runType && body.steps) {
      throw new DomainError("validation_failed", "give runType or steps, not both", [{ field: "steps", message: "not allowed together with runType" }]);
    }
    if (body.steps) assertValidSteps(body.steps);
    const [runType, customerExists] = await Promise.all([
      // Only the platform's run types and the run's customer's own: another customer's is unknown here.
      body.runType ? this.runTypes.findFor(customerId, body.runType) : Promise.resolve(null),
      principal.kind === "admin" ? this.customers.exists(customerId) : Promise.resolve(true),
    ]);
    if (!customerExists) throw new DomainError("unprocessable", `customer "${customerId}" does not exist`, [{ field: "customerId", message: "unknown customer" }]);
    if (body.runType && !runType) throw new DomainError("unprocessable", `run type "${body.runType}" does not exist`, [{ field: "runType", message: "unknown run type" }]);

    const steps = runType?.definition.steps ?? body.steps!;
    const pool = body.pool ?? runType?.definition.pool ?? DEFAULT_POOL;
    assertKnownPool(pool, "pool");
    // Where the steps came from decides whose secrets they may use: a platform-wide run type
    // the platform's; a customer's own run type or inline steps only that customer's.
    const secretScope = runType ? secretScopeOfOwner(runType.owner) : customerScope(customerId);
    await assertStepSecrets(this.secrets, secretScope, steps, runType ? { field: "runType" } : { prefix: "steps" });
    // An unpriced model is refused now, never run at a silent zero cost.
    await this.pricing.assertKnownModels(modelsNamedBySteps(steps, body.runType ? "runType" : "steps"));
    const retry: RetryPolicy | undefined = runType?.definition.retry;
    const id = body.idempotencyKey ? await runIdForIdempotencyKey(customerId, body.idempotencyKey) : newId("run");
    const limits = await this.customers.limits(customerId);
    const admission = await admitRun(this.env, customerId, id, {
      creation: true,
      maxRunsInFlight: limits.maxRunsInFlight,
      firstStep: firstStepBounds(steps[0], body.input ?? null, runType?.definition.timeoutMs),
    });
    const now = Date.now();
    const def: RunDefinition & { secretScope: SecretScope } = {
      id,
      customerId,
      projectId: body.projectId,
      runType: body.runType ?? null,
      pool,
      priority: body.priority ?? runType?.definition.priority ?? "normal",
      input: body.input ?? null,
      metadata: body.metadata ?? {},
      steps: steps.map((s) => ({ name: s.name, type: s.type, config: s.config ?? {}, retry: s.retry, timeoutMs: s.timeoutMs })),
      retry,
      timeoutMs: runType?.definition.timeoutMs,
      secretScope,
      idempotencyKey: body.idempotencyKey ?? null,
      requestHash: await fingerprint({ ...body, customerId }),
      budgetLimited: admission.limited,
      weight: limits.weight ?? DEFAULT_PLAN_WEIGHT,
      ...this.costSubLedger(customerId, id),
      createdAt: now,
    };
    let result: Awaited<ReturnType<RunCoordinatorApi["create"]>>;
    try {
      result = await this.stub(id).create(def);
    } catch (err) {
      // No run was made (or it is unknown whether): it is not counted as in flight. A run that was
      // made after all is told of its budget by its own next delivery; its count comes back with resume.
      this.waitUntil(undoAdmission(this.env, customerId, id, admission, { runEnded: true }).catch(() => {}));
      throw err;
    }
    // A replay makes no run: the hold placed for creating one is let go at once.
    if (!result.ok || !result.created) {
      const ended = isTerminalRun(result.run.status);
      this.waitUntil(undoAdmission(this.env, customerId, id, admission, { runEnded: ended }).catch(() => {}));
    }
    if (!result.ok) {
      throw new DomainError("idempotency_key_reused", `idempotency key "${body.idempotencyKey}" was already used for a different request (run ${result.run.id})`, [
        { field: "idempotencyKey", message: "already used with a different request body" },
      ]);
    }
    const run = result.run;
    // Listing reads D1. Written after the response; if it is lost, the run object's next
    // index update (through the events queue) writes the row.
    const indexed = this.db
      .insert(runs)
      .values({
        ...identityOf(run),
        status: run.status,
        createdAt: run.createdAt,
        idempotencyKey: def.idempotencyKey,
        version: 0,
        updatedAt: now,
        // Due for the reconciler only once the run should have moved on by its own first timer (a
        // dispatch's pick-up, a first sleep's end): its object says when, and sets it from then on.
        dueAt: result.dueAt,
      })
      .onConflictDoNothing()
      .run()
      .then(countD1);
    this.waitUntil(indexed);
    return { created: result.created, run: presentRun(run) };
  }

  /** A run the principal may see; another tenant's run is indistinguishable from none. */
  private async snapshot(principal: Principal, runId: string) {
    if (!RUN_ID.test(runId)) throw new DomainError("not_found", `run "${runId}" not found`);
    const run = await this.stub(runId).get();
    if (!run || (principal.kind === "customer" && run.customerId !== principal.customerId)) {
      throw new DomainError("not_found", `run "${runId}" not found`);
    }
    return run;
  }

  async get(principal: Principal, runId: string) {
    return presentRun(await this.snapshot(principal, runId));
  }

  /** GET /v1/runs/:id/cost: the run's cost by meter (tokens by model, infrastructure operations), from the run's own cost records. */
  async cost(principal: Principal, runId: string) {
    const { cost } = await this.snapshot(principal, runId);
    return {
      runId,
      ...presentCost(cost),
      pendingRecords: cost.pendingRecords,
      lines: cost.lines.map((l) => ({ meter: l.meter, model: l.model, quantity: nanoJson(BigInt(l.quantity)), nanoUsd: nanoJson(BigInt(l.nanoUsd)), estimated: l.estimated })),
    };
  }

  /** A page of the run's events after sequence number `after`, oldest first; `nextCursor` is the `after` of the next page (null: none). */
  async events(principal: Principal, runId: string, page: { after: number; limit: number }) {
    await this.snapshot(principal, runId);
    // One more than asked: whether another page exists, without a second call.
    const { items, nextCursor } = pageOf(await this.stub(runId).events(page.after, page.limit + 1), page.limit, (last) => last.seq);
    return { events: items.map(presentEvent), nextCursor };
  }

  async cancel(principal: Principal, runId: string) {
    await this.snapshot(principal, runId);
    const reply = await this.stub(runId).cancel("cancelled by request");
    if (!reply.ok) throw new DomainError("conflict", `run "${runId}" has already finished (${reply.run?.status}) and cannot be cancelled`);
    return presentRun(reply.run);
  }

  async resume(principal: Principal, runId: string) {
    const run = await this.snapshot(principal, runId);
    await resumeAdmitted(this.env, run.customerId, runId, { maxRunsInFlight: (await this.customers.limits(run.customerId)).maxRunsInFlight });
    const reply = await this.stub(runId).resume();
    if (!reply.ok) throw new DomainError("conflict", `run "${runId}" is ${reply.run?.status}; only a failed run can be resumed`);
    return presentRun(reply.run);
  }

  async list(principal: Principal, query: ListRunsQuery) {
    const conditions: (SQL | undefined)[] = [];
    if (principal.kind === "customer") {
      if (query.customerId && query.customerId !== principal.customerId) {
        throw new DomainError("forbidden", "a customer key may list only its own runs", [{ field: "query.customerId", message: "not your customer" }]);
      }
      conditions.push(eq(runs.customerId, principal.customerId));
    } else if (query.customerId) conditions.push(eq(runs.customerId, query.customerId));
    if (query.status) conditions.push(eq(runs.status, query.status));
    if (query.projectId) conditions.push(eq(runs.projectId, query.projectId));
    if (query.runType) conditions.push(eq(runs.runType, query.runType));
    if (query.from) conditions.push(gte(runs.createdAt, Date.parse(query.from)));
    if (query.to) conditions.push(lte(runs.createdAt, Date.parse(query.to)));
    const after = cursorKey(RUNS_CURSOR, query.cursor);
    if (after) conditions.push(or(lt(runs.createdAt, after.at), and(eq(runs.createdAt, after.at), lt(runs.id, after.id))));
    const rows = await this.db
      .select()
      .from(runs)
      .where(and(...conditions))
      .orderBy(desc(runs.createdAt), desc(runs.id))
      .limit(query.limit + 1)
      .all();
    const page = pageOf(rows, query.limit, (last) => RUNS_CURSOR.encode({ at: last.createdAt, id: last.id }));
    return {
      runs: page.items.map((r) => ({
        id: r.id,
        customerId: r.customerId,
        projectId: r.projectId,
        runType: r.runType,
        pool: r.pool,
        priority: r.priority,
        status: r.status,
        createdAt: new Date(r.createdAt).toISOString(),
        startedAt: r.startedAt === null ? null : new Date(r.startedAt).toISOString(),
        finishedAt: r.finishedAt === null ? null : new Date(r.finishedAt).toISOString(),
        durationMs: r.durationMs,
        ...(r.failureType ? { failure: { type: r.failureType, step: r.failedStep } } : {}),
      })),
      nextCursor: page.nextCursor,
    };
  }
}

/** The first step's bounds, with its config resolved against the run's input as its first attempt will be. */
function firstStepBounds(step: { type: string; config?: unknown; timeoutMs?: number } | undefined, input: unknown, runTimeoutMs: number | undefined): AttemptBounds | undefined {
  if (!step) return undefined;
  let config: JsonValue | null;
  try {
    config = resolveReferences(step.config ?? {}, { input, steps: {} }) as JsonValue;
  } catch {
    config = null;
  }
  return attemptBounds(step, config, runTimeoutMs);
}
