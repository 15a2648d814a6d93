/**
 * The D1 schema: control-plane records (customers, keys, run types) and the analytics tables
 * (run index, step attempts). Times are integer milliseconds since the epoch, so SQL can
 * bucket them (`strftime('%Y-%m-%d %H:00', created_at / 1000, 'unixepoch')`).
 * Migrations come from this file: `npm run db:generate`.
 */
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { FAILURE_TYPES, PRIORITIES, RUN_STATUSES } from "../domain/run-status";

export const customers = sqliteTable("customers", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  /** JSON: { monthlyFeeNanoUsd, pricePerRunNanoUsd } as decimal strings. */
  plan: text("plan").notNull().default("{}"),
  /** Hard monthly limit in nano-USD as a decimal string; null = no budget. */
  budgetLimitNanoUsd: text("budget_limit_nano_usd"),
  /** JSON array of fractions of the limit that raise a soft alert, e.g. [0.5, 0.8]. */
  budgetSoftThresholds: text("budget_soft_thresholds").notNull().default("[]"),
  createdAt: integer("created_at").notNull(),
  /** When the cron last reconciled this customer's ledger with D1 (the least recent go first). */
  ledgerCheckedAt: integer("ledger_checked_at"),
});

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull().references(() => customers.id),
    /** SHA-256 of the key, hex. The key itself is shown once and never stored. */
    keyHash: text("key_hash").notNull(),
    /** The key's first characters, to tell keys apart in listings. */
    prefix: text("prefix").notNull(),
    createdAt: integer("created_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_hash").on(t.keyHash), index("api_keys_customer").on(t.customerId)],
);

/**
 * Run types share one namespace. `owner` null: platform-wide (written by the admin, visible
 * to every customer, its steps may use the platform's secrets); a customer id: that
 * customer's own (visible to it and the admin only, its steps use only its secrets).
 */
export const runTypes = sqliteTable(
  "run_types",
  {
    name: text("name").primaryKey(),
    /** JSON: { pool, priority, steps, retry, timeoutMs }. */
    definition: text("definition").notNull(),
    owner: text("owner"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("run_types_owner").on(t.owner, t.name)],
);

/**
 * Secrets steps reference as `{{secrets.NAME}}`, encrypted with AES-256-GCM under a key
 * derived from the Worker secret SECRETS_KEY (src/lib/secrets-crypto.ts); the scope and name
 * are bound into each ciphertext, so a row moved to another scope or name does not decrypt.
 * `scope`: "platform" or "customer:<id>" (src/domain/secrets.ts). Values are never returned.
 */
export const secrets = sqliteTable(
  "secrets",
  {
    scope: text("scope").notNull(),
    name: text("name").notNull(),
    /** base64: AES-GCM ciphertext with its tag */
    ciphertext: text("ciphertext").notNull(),
    /** base64: the 96-bit nonce, fresh for every write */
    iv: text("iv").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.scope, t.name] })],
);

export const runs = sqliteTable(
  "runs",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    projectId: text("project_id").notNull(),
    runType: text("run_type"),
    pool: text("pool").notNull(),
    priority: text("priority", { enum: PRIORITIES }).notNull(),
    status: text("status", { enum: RUN_STATUSES }).notNull(),
    createdAt: integer("created_at").notNull(),
    startedAt: integer("started_at"),
    finishedAt: integer("finished_at"),
    durationMs: integer("duration_ms"),
    failureType: text("failure_type", { enum: FAILURE_TYPES }),
    failedStep: text("failed_step"),
    idempotencyKey: text("idempotency_key"),
    /** The run object's event sequence when this row was written; older updates lose. */
    version: integer("version").notNull().default(0),
    updatedAt: integer("updated_at").notNull(),
    /**
     * When the run should have moved on by its own timers, plus a grace (its object sets it with
     * each index update; null: nothing due). The reconciler reads only rows past it, by index.
     */
    dueAt: integer("due_at"),
  },
  (t) => [
    index("runs_customer_created").on(t.customerId, t.createdAt, t.id),
    index("runs_created").on(t.createdAt, t.id),
    index("runs_status_created").on(t.status, t.createdAt),
    index("runs_due").on(t.dueAt),
  ],
);

/** Hand-edited in migration 0007: WITHOUT ROWID, so an attempt costs two D1 rows written, not three. */
export const stepAttempts = sqliteTable(
  "step_attempts",
  {
    runId: text("run_id").notNull(),
    stepIndex: integer("step_index").notNull(),
    attempt: integer("attempt").notNull(),
    step: text("step").notNull(),
    stepType: text("step_type").notNull(),
    customerId: text("customer_id").notNull(),
    projectId: text("project_id").notNull(),
    runType: text("run_type"),
    pool: text("pool").notNull(),
    status: text("status").notNull(),
    failureType: text("failure_type"),
    failureMessage: text("failure_message"),
    startedAt: integer("started_at").notNull(),
    finishedAt: integer("finished_at"),
    durationMs: integer("duration_ms"),
  },
  (t) => [
    primaryKey({ columns: [t.runId, t.stepIndex, t.attempt] }),
    index("step_attempts_started").on(t.startedAt),
  ],
);

export const dlqEntries = sqliteTable(
  "dlq_entries",
  {
    id: text("id").primaryKey(),
    runId: text("run_id").notNull(),
    customerId: text("customer_id"),
    runType: text("run_type"),
    pool: text("pool").notNull(),
    step: text("step"),
    failureType: text("failure_type").notNull(),
    failureMessage: text("failure_message").notNull(),
    attempts: integer("attempts").notNull(),
    /** JSON array of the step's attempts: attempt, startedAt, finishedAt, outcome, failure. */
    history: text("history").notNull(),
    /** The dead-lettered message body as received, JSON. */
    message: text("message").notNull(),
    deadAt: integer("dead_at").notNull(),
    /** open | retried | discarded */
    state: text("state").notNull().default("open"),
  },
  (t) => [index("dlq_entries_dead").on(t.state, t.deadAt), index("dlq_entries_run").on(t.runId)],
);

export const alerts = sqliteTable(
  "alerts",
  {
    id: text("id").primaryKey(),
    /** dlq_entry | budget_soft_limit | budget_exhausted | backlog | failure_rate */
    kind: text("kind").notNull(),
    severity: text("severity").notNull(),
    customerId: text("customer_id"),
    runId: text("run_id"),
    dlqId: text("dlq_id"),
    message: text("message").notNull(),
    /** JSON: what the alert is about (the DLQ entry, the budget, …). */
    details: text("details").notNull().default("{}"),
    createdAt: integer("created_at").notNull(),
    /** none (no webhook configured) | pending | delivered | failed */
    deliveryStatus: text("delivery_status").notNull(),
    deliveryAttempts: integer("delivery_attempts").notNull().default(0),
    lastDeliveryError: text("last_delivery_error"),
  },
  (t) => [index("alerts_created").on(t.createdAt), index("alerts_kind_created").on(t.kind, t.createdAt)],
);

// ---- Costs: versioned prices and priced cost events ----
// Prices are nano-USD per million units as decimal TEXT: exact, and wider than a double.

/** Token prices per model, one row per (model, version); a version takes effect at effective_from. */
export const modelPrices = sqliteTable(
  "model_prices",
  {
    model: text("model").notNull(),
    version: text("version").notNull(),
    effectiveFrom: integer("effective_from").notNull(),
    /** nano-USD per million uncached input tokens */
    input: text("input").notNull(),
    /** nano-USD per million output tokens */
    output: text("output").notNull(),
    /** null: cached input tokens are billed at the input price */
    cachedInput: text("cached_input"),
    /** null: reasoning tokens are billed at the output price */
    reasoning: text("reasoning"),
  },
  (t) => [primaryKey({ columns: [t.model, t.version] })],
);

/** Infrastructure unit prices per meter (INFRA_METERS), one row per (meter, version). */
export const infraPrices = sqliteTable(
  "infra_prices",
  {
    meter: text("meter").notNull(),
    version: text("version").notNull(),
    effectiveFrom: integer("effective_from").notNull(),
    /** nano-USD per million units */
    perMillion: text("per_million").notNull(),
  },
  (t) => [primaryKey({ columns: [t.meter, t.version] })],
);

/** One row per price change (a PUT /v1/pricing or a seeded default set). */
export const priceVersions = sqliteTable("price_versions", {
  version: text("version").primaryKey(),
  effectiveFrom: integer("effective_from").notNull(),
  createdAt: integer("created_at").notNull(),
  note: text("note"),
});

/**
 * What each run cost, per UTC hour and model: one row per (hour, customer, run, model, part),
 * written as a snapshot of the run's priced cost records (see src/domain/cost-records.ts). A
 * newer snapshot replaces an older one (`version` is the run's last record sequence), so a
 * redelivered or reordered message changes nothing. `model` is "" for the run's
 * infrastructure, which carries no tokens. Money is integer nano-USD, at most 2^62 per row.
 *
 * Hand-edited in the migration: WITHOUT ROWID, so the primary key is the table itself and a row
 * costs one D1 row written (plus one for its index), and time-range reports read the primary key.
 */
export const costRollups = sqliteTable(
  "cost_rollups",
  {
    /** ms at the start of the UTC hour */
    hour: integer("hour").notNull(),
    customerId: text("customer_id").notNull(),
    runId: text("run_id").notNull(),
    model: text("model").notNull().default(""),
    part: integer("part").notNull().default(0),
    projectId: text("project_id").notNull(),
    runType: text("run_type"),
    pool: text("pool").notNull(),
    inputTokens: integer("input_tokens").notNull().default(0),
    cachedInputTokens: integer("cached_input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    aiNanoUsd: integer("ai_nano_usd").notNull().default(0),
    infraNanoUsd: integer("infra_nano_usd").notNull().default(0),
    nanoUsd: integer("nano_usd").notNull().default(0),
    /** attempt records folded into the row */
    attempts: integer("attempts").notNull().default(0),
    /** JSON: [{meter, model, quantity, nanoUsd, estimated}], amounts as decimal strings */
    lines: text("lines").notNull().default("[]"),
    /** comma-separated price versions applied */
    priceVersions: text("price_versions").notNull().default(""),
    version: integer("version").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.customerId, t.runId, t.model, t.part] }), index("cost_rollups_customer_hour").on(t.customerId, t.hour)],
);

/**
 * Messages the events queue gave up on (its dead-letter queue), kept whole: nothing the
 * platform meant to record is dropped without a trace. `applied_at` is set once the message's
 * effect reached D1 after all.
 */
export const deadEvents = sqliteTable(
  "dead_events",
  {
    id: text("id").primaryKey(),
    kind: text("kind").notNull(),
    body: text("body").notNull(),
    receivedAt: integer("received_at").notNull(),
    appliedAt: integer("applied_at"),
    error: text("error"),
  },
  (t) => [index("dead_events_received").on(t.receivedAt)],
);

/**
 * Every scaling decision a pool's controller made (durable-objects/pool/): when, from and to
 * which desired concurrency, why, and the signals it saw. `id` is `<pool>:<shard>:<seq>`, made by
 * the controller, so a redelivered batch inserts nothing twice.
 */
export const poolScalingDecisions = sqliteTable(
  "pool_scaling_decisions",
  {
    id: text("id").primaryKey(),
    pool: text("pool").notNull(),
    shard: integer("shard").notNull(),
    at: integer("at").notNull(),
    fromConcurrency: integer("from_concurrency").notNull(),
    toConcurrency: integer("to_concurrency").notNull(),
    reason: text("reason").notNull(),
    depth: integer("depth").notNull(),
    inFlight: integer("in_flight").notNull(),
    /** busy ÷ capacity over the controller's window, 0…1; null: no capacity to measure */
    utilization: real("utilization"),
    /** steps done per second */
    processingRate: real("processing_rate").notNull(),
  },
  (t) => [index("pool_scaling_decisions_pool_at").on(t.pool, t.at)],
);

/**
 * A pool shard's depth, in-flight work and desired concurrency over time, sampled by its
 * controller while the pool is active (every POOL_SAMPLE_MS, and at each decision); an idle pool
 * writes none. Hand-edited in the migration: WITHOUT ROWID (a sample is one D1 row written, and a
 * time-range read walks the primary key).
 */
export const poolConcurrencySamples = sqliteTable(
  "pool_concurrency_samples",
  {
    pool: text("pool").notNull(),
    shard: integer("shard").notNull(),
    at: integer("at").notNull(),
    depth: integer("depth").notNull(),
    inFlight: integer("in_flight").notNull(),
    desired: integer("desired").notNull(),
    utilization: real("utilization"),
    processingRate: real("processing_rate").notNull(),
  },
  (t) => [primaryKey({ columns: [t.pool, t.at, t.shard] })],
);
