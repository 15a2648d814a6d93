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
    /** dlq_entry | budget_soft_limit | budget_exhausted | ledger_mismatch | p95_duration | failure_rate | cost_per_run | backlog */
    kind: text("kind").notNull(),
    severity: text("severity").notNull(),
    customerId: text("customer_id"),
    runId: text("run_id"),
    dlqId: text("dlq_id"),
    message: text("message").notNull(),
    /** JSON: what the alert is about (the DLQ entry, the budget, …). */
    details: text("details").notNull().default("{}"),
    createdAt: integer("created_at").notNull(),
    /** Degradation alerts: the episode they open (alert_episodes.key); null for the others. */
    episode: text("episode"),
    /** Degradation alerts: when the figure recovered (the episode cleared); null while firing. */
    resolvedAt: integer("resolved_at"),
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
    /** The first hour of the run's rows of this model (for model "", the run's first cost): where cost per run counts the run. */
    firstHour: integer("first_hour"),
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

// ---- Operational metrics (docs/analytics.md) ----
// Raw samples arrive through the events queue (API timings, pool samples, uptime probes) and are
// inserted once by their deterministic keys. Hourly rollups are recomputed from the raw rows
// (runs, step_attempts, cost_rollups, and the samples) for the hours marked in rollup_dirty, by
// the minute cron: a recomputation sets, never adds, so a replay changes nothing. Every rollup
// and sample table is WITHOUT ROWID (hand-edited in migration 0008): its key is the row.

/** A count per failure type (src/domain/run-status.ts FAILURE_TYPES): failures_transient, … */
const failureColumns = () => ({
  failuresTransient: integer("failures_transient").notNull().default(0),
  failuresTimeout: integer("failures_timeout").notNull().default(0),
  failuresWorkerError: integer("failures_worker_error").notNull().default(0),
  failuresPermanent: integer("failures_permanent").notNull().default(0),
  failuresBudgetExceeded: integer("failures_budget_exceeded").notNull().default(0),
  failuresCancelled: integer("failures_cancelled").notNull().default(0),
});

/** Runs by the UTC hour they were created in, per customer, project, run type ('' = inline steps) and pool. */
export const runRollups = sqliteTable(
  "run_rollups",
  {
    hour: integer("hour").notNull(),
    customerId: text("customer_id").notNull(),
    projectId: text("project_id").notNull(),
    runType: text("run_type").notNull().default(""),
    pool: text("pool").notNull(),
    runs: integer("runs").notNull().default(0),
    succeeded: integer("succeeded").notNull().default(0),
    failed: integer("failed").notNull().default(0),
    cancelled: integer("cancelled").notNull().default(0),
    unfinished: integer("unfinished").notNull().default(0),
    /** failed and cancelled runs by their failure type */
    ...failureColumns(),
    /** finished runs with a duration (started, then finished) */
    timed: integer("timed").notNull().default(0),
    durationSumMs: integer("duration_sum_ms").notNull().default(0),
    durationMaxMs: integer("duration_max_ms"),
    /** sketch of the durations: {bucket: count} (src/metrics/sketch.ts) */
    durationHist: text("duration_hist").notNull().default("{}"),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.customerId, t.projectId, t.runType, t.pool] })],
);

/** Step attempts (jobs) by the UTC hour they started in. */
export const attemptRollups = sqliteTable(
  "attempt_rollups",
  {
    hour: integer("hour").notNull(),
    customerId: text("customer_id").notNull(),
    projectId: text("project_id").notNull(),
    runType: text("run_type").notNull().default(""),
    pool: text("pool").notNull(),
    attempts: integer("attempts").notNull().default(0),
    /** attempts numbered 1: the steps started */
    firstAttempts: integer("first_attempts").notNull().default(0),
    /** attempts numbered 2: the steps that needed a retry */
    retriedSteps: integer("retried_steps").notNull().default(0),
    /** attempts numbered 2 and up */
    retries: integer("retries").notNull().default(0),
    running: integer("running").notNull().default(0),
    succeeded: integer("succeeded").notNull().default(0),
    failed: integer("failed").notNull().default(0),
    ...failureColumns(),
    /** worker time of the finished attempts */
    busyMs: integer("busy_ms").notNull().default(0),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.customerId, t.projectId, t.runType, t.pool] })],
);

/** cost_rollups summed over runs: per hour, customer, project, run type, pool and model ('' = infrastructure). */
export const costHourly = sqliteTable(
  "cost_hourly",
  {
    hour: integer("hour").notNull(),
    customerId: text("customer_id").notNull(),
    projectId: text("project_id").notNull(),
    runType: text("run_type").notNull().default(""),
    pool: text("pool").notNull(),
    model: text("model").notNull().default(""),
    /** runs counted here: whose first cost of this model (for '', whose first cost at all) is in this hour */
    runs: integer("runs").notNull().default(0),
    inputTokens: integer("input_tokens").notNull().default(0),
    cachedInputTokens: integer("cached_input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    aiNanoUsd: integer("ai_nano_usd").notNull().default(0),
    infraNanoUsd: integer("infra_nano_usd").notNull().default(0),
    nanoUsd: integer("nano_usd").notNull().default(0),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.customerId, t.projectId, t.runType, t.pool, t.model] })],
);

/** API timings as isolates flush them: one row per (minute, flush, route, method, status class, customer). */
export const apiSamples = sqliteTable(
  "api_samples",
  {
    minute: integer("minute").notNull(),
    sampleId: text("sample_id").notNull(),
    route: text("route").notNull(),
    method: text("method").notNull(),
    statusClass: integer("status_class").notNull(),
    customerId: text("customer_id").notNull().default(""),
    count: integer("count").notNull(),
    sumMs: integer("sum_ms").notNull(),
    maxMs: integer("max_ms").notNull(),
    hist: text("hist").notNull().default("{}"),
    receivedAt: integer("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.minute, t.sampleId, t.route, t.method, t.statusClass, t.customerId] })],
);

/** API response times per hour, route, method and customer ('' = the admin key or no key). */
export const apiRollups = sqliteTable(
  "api_rollups",
  {
    hour: integer("hour").notNull(),
    route: text("route").notNull(),
    method: text("method").notNull(),
    customerId: text("customer_id").notNull().default(""),
    requests: integer("requests").notNull().default(0),
    responses2xx: integer("responses_2xx").notNull().default(0),
    responses3xx: integer("responses_3xx").notNull().default(0),
    responses4xx: integer("responses_4xx").notNull().default(0),
    responses5xx: integer("responses_5xx").notNull().default(0),
    sumMs: integer("sum_ms").notNull().default(0),
    maxMs: integer("max_ms").notNull().default(0),
    hist: text("hist").notNull().default("{}"),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.route, t.method, t.customerId] })],
);

/**
 * A pool's state once a minute: backlog, work in flight, utilization, desired concurrency. The
 * minute cron takes them from the pool controllers' newest samples (source 'controller'), or from
 * the run index while the controllers are idle and write none (source 'cron').
 */
export const poolSamples = sqliteTable(
  "pool_samples",
  {
    minute: integer("minute").notNull(),
    pool: text("pool").notNull(),
    source: text("source").notNull(),
    /** backlog: runs waiting for or holding a worker (queued + running) */
    depth: integer("depth").notNull(),
    queued: integer("queued").notNull().default(0),
    running: integer("running").notNull().default(0),
    /** runs on a durable timer (sleep, retry delay): no worker held */
    waiting: integer("waiting").notNull().default(0),
    inFlight: integer("in_flight").notNull(),
    /** jobs finished in the minute before the sample; null when the source does not track it */
    processed: integer("processed"),
    /** the pool's consumer max_concurrency */
    concurrency: integer("concurrency").notNull(),
    /** the controller's desired concurrency; null in a 'cron' sample */
    desiredConcurrency: integer("desired_concurrency"),
    /** busy ÷ capacity as the controller measures it, or in flight ÷ concurrency in a 'cron' sample, 0…1 */
    utilization: real("utilization").notNull(),
    dlqOpen: integer("dlq_open").notNull().default(0),
    sampledAt: integer("sampled_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.minute, t.pool] })],
);

export const poolRollups = sqliteTable(
  "pool_rollups",
  {
    hour: integer("hour").notNull(),
    pool: text("pool").notNull(),
    samples: integer("samples").notNull().default(0),
    depthSum: integer("depth_sum").notNull().default(0),
    depthMax: integer("depth_max").notNull().default(0),
    inFlightSum: integer("in_flight_sum").notNull().default(0),
    inFlightMax: integer("in_flight_max").notNull().default(0),
    utilizationSum: real("utilization_sum").notNull().default(0),
    concurrencyMax: integer("concurrency_max").notNull().default(0),
    desiredSum: integer("desired_sum").notNull().default(0),
    desiredSamples: integer("desired_samples").notNull().default(0),
    processedSum: integer("processed_sum").notNull().default(0),
    processedSamples: integer("processed_samples").notNull().default(0),
    dlqOpenSum: integer("dlq_open_sum").notNull().default(0),
    dlqOpenMax: integer("dlq_open_max").notNull().default(0),
    computedAt: integer("computed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.pool] })],
);

/** The minute cron's probe of the control plane (GET /health/ready through the Worker's own router). */
export const uptimeProbes = sqliteTable("uptime_probes", {
  minute: integer("minute").primaryKey(),
  ok: integer("ok").notNull(),
  status: integer("status").notNull(),
  latencyMs: integer("latency_ms").notNull(),
  /** the checks that failed, comma-separated */
  failed: text("failed").notNull().default(""),
  probedAt: integer("probed_at").notNull(),
});

export const uptimeRollups = sqliteTable("uptime_rollups", {
  hour: integer("hour").primaryKey(),
  probes: integer("probes").notNull().default(0),
  ok: integer("ok").notNull().default(0),
  latencySumMs: integer("latency_sum_ms").notNull().default(0),
  latencyMaxMs: integer("latency_max_ms").notNull().default(0),
  computedAt: integer("computed_at").notNull(),
});

/** Hours whose rollup of `source` must be recomputed: marked in the same batch as the raw rows that changed. */
export const rollupDirty = sqliteTable(
  "rollup_dirty",
  {
    source: text("source").notNull(),
    hour: integer("hour").notNull(),
    markedAt: integer("marked_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.source, t.hour] })],
);

/**
 * One row per watched figure (e.g. "p95_duration:runType:hello"): whether its degradation episode
 * is open and which alert opened it. The episode and its alert change in one batch.
 */
export const alertEpisodes = sqliteTable("alert_episodes", {
  key: text("key").primaryKey(),
  figure: text("figure").notNull(),
  /** open | clear */
  state: text("state").notNull(),
  alertId: text("alert_id"),
  openedAt: integer("opened_at"),
  clearedAt: integer("cleared_at"),
  /** JSON: the last verdict's figures (recent, baseline, thresholds, samples) */
  last: text("last").notNull().default("{}"),
  updatedAt: integer("updated_at").notNull(),
});
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
