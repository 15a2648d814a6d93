/**
 * Writes what the platform records for analytics to D1 in batches, off the step path: run index
 * rows and step attempts (upserts guarded by the run's event sequence), cost rollups (upserts
 * guarded by the run's cost record sequence), alerts, and the metrics' samples (API timings,
 * pool samples, uptime probes: inserted once by their keys). Each batch also marks the hours
 * whose metric rollups the minute cron must recompute (src/services/rollups.ts). Redelivered or
 * reordered messages change nothing.
 */
import { errorMessage, log } from "../lib/log";
import { countD1, countUsage } from "../lib/usage";
import { writeRollups } from "../services/costs-service";
import { indexStatements } from "./index-writes";
import { deliverAlert, recordAlert } from "../services/dead-letters";
import { recordDeadEvent } from "../services/dead-events";
import { apiSampleStatement, DirtyHours, poolSampleStatement, probeStatement } from "../services/metrics-ingest";
import { ALERT_DELIVERY_ATTEMPTS } from "./dlq-consumer";
import { EventMessageSchema, type AttemptRow, type EventMessage, type PoolSample, type RunIndexRow, type RunRollup, type UptimeProbe } from "./messages";

type ApiSample = Extract<EventMessage, { kind: "metrics.api" }>;

interface Effects {
  runs: Map<string, { run: RunIndexRow; attempts: AttemptRow[] }>;
  rollups: RunRollup[];
  apiSamples: ApiSample[];
  poolSamples: PoolSample[];
  probes: UptimeProbe[];
}

const noEffects = (): Effects => ({ runs: new Map(), rollups: [], apiSamples: [], poolSamples: [], probes: [] });

function collect(effects: Effects, event: Exclude<EventMessage, { kind: "alert.raise" }>) {
  if (event.kind === "cost.rollup") effects.rollups.push(event.rollup);
  else if (event.kind === "metrics.api") effects.apiSamples.push(event);
  else if (event.kind === "metrics.pool") effects.poolSamples.push(event.sample);
  else if (event.kind === "metrics.probe") effects.probes.push(event.probe);
  else if (event.kind === "run.index") {
    const seen = effects.runs.get(event.run.id);
    if (!seen || seen.run.version < event.run.version) effects.runs.set(event.run.id, { run: event.run, attempts: event.attempts });
  }
}

export async function consumeEvents(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const effects = noEffects();
  for (const message of batch.messages) {
    const parsed = EventMessageSchema.safeParse(message.body);
    if (!parsed.success) {
      // No retry can fix it: kept whole with its reason, as the events dead-letter queue keeps what it receives.
      const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".")}: ${i.message}`);
      log("events.malformed", { messageId: message.id, issues }, "error");
      await recordDeadEvent(env.DB, message.id, message.body, `malformed: ${issues.join("; ")}`);
      continue;
    }
    const event = parsed.data;
    if (event.kind === "alert.raise") {
      await recordAlert(env.DB, event.alert);
      if ((await deliverAlert(env, event.alert.id, message.attempts >= ALERT_DELIVERY_ATTEMPTS)) === "retry") {
        message.retry({ delaySeconds: Math.min(60, 2 ** message.attempts) });
      }
    } else collect(effects, event);
  }
  // Success acks the whole batch: one delete per message.
  countUsage("queue_operations", batch.messages.length);
  await writeEffects(env, effects);
}

/** One message's effect on D1, for a message the queue gave up on (no webhook retries here). */
export async function applyEventMessage(env: Env, body: unknown): Promise<void> {
  const event = EventMessageSchema.parse(body);
  if (event.kind === "alert.raise") {
    await recordAlert(env.DB, event.alert);
    await deliverAlert(env, event.alert.id, true);
    return;
  }
  const effects = noEffects();
  collect(effects, event);
  await writeEffects(env, effects);
}

async function writeEffects(env: Env, effects: Effects) {
  const now = Date.now();
  if (effects.rollups.length > 0) {
    const costHours = new DirtyHours();
    for (const r of effects.rollups) for (const row of r.rows) costHours.mark("costs", row.hour);
    await writeRollups(env.DB, effects.rollups, costHours.statements(env.DB, now));
  }
  const dirty = new DirtyHours();
  const statements: D1PreparedStatement[] = [];
  for (const sample of effects.apiSamples) {
    statements.push(apiSampleStatement(env.DB, sample, now));
    for (const e of sample.entries) dirty.mark("api", e.minute);
  }
  for (const sample of effects.poolSamples) {
    statements.push(poolSampleStatement(env.DB, sample));
    dirty.mark("pools", sample.minute);
  }
  for (const probe of effects.probes) {
    statements.push(probeStatement(env.DB, probe));
    dirty.mark("probes", probe.minute);
  }
  for (const { run, attempts } of effects.runs.values()) {
    dirty.mark("runs", run.createdAt);
    for (const a of attempts) dirty.mark("attempts", a.startedAt);
  }
  statements.push(...indexStatements(env.DB, effects.runs.values(), now));
  if (statements.length === 0) return;
  // The marks ride in the same batch (one transaction) as the rows they are about.
  statements.push(...dirty.statements(env.DB, now));
  try {
    countD1(await env.DB.batch(statements));
  } catch (err) {
    log("events.write_failed", { runs: effects.runs.size, samples: effects.apiSamples.length + effects.poolSamples.length + effects.probes.length, error: errorMessage(err) }, "error");
    throw err; // the whole batch is delivered again; the upserts make that harmless
  }
}
