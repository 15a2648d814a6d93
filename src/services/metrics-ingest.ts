/**
 * What the events consumer writes for the metrics: the raw samples (API timings, pool samples,
 * uptime probes), each inserted once by its deterministic key (INSERT OR IGNORE: a redelivered
 * sample writes nothing), and the dirty marks that tell the minute cron which hours' rollups to
 * recompute. A mark goes in the same D1 batch as the raw rows it is for (or a later one), never
 * before them, so a recomputation never misses a row it was marked for.
 */
import type { z } from "zod";
import type { ApiTimingSampleSchema, PoolSample, UptimeProbe } from "../data-plane/messages";
import { hourOf } from "../metrics/buckets";

export const ROLLUP_SOURCES = ["runs", "attempts", "costs", "api", "pools", "probes"] as const;
export type RollupSource = (typeof ROLLUP_SOURCES)[number];

/** Hours to recompute, per source. */
export class DirtyHours {
  private readonly marks = new Map<RollupSource, Set<number>>();

  mark(source: RollupSource, ms: number | null | undefined): void {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return;
    let hours = this.marks.get(source);
    if (!hours) this.marks.set(source, (hours = new Set()));
    hours.add(hourOf(ms));
  }

  get empty(): boolean {
    return this.marks.size === 0;
  }

  /** One statement per source; an hour already marked costs no row written. */
  statements(db: D1Database, now: number): D1PreparedStatement[] {
    return [...this.marks].map(([source, hours]) =>
      db.prepare("INSERT OR IGNORE INTO rollup_dirty (source, hour, marked_at) SELECT ?1, value, ?2 FROM json_each(?3)").bind(source, now, JSON.stringify([...hours])),
    );
  }
}

export function apiSampleStatement(db: D1Database, sample: z.infer<typeof ApiTimingSampleSchema>, now: number): D1PreparedStatement {
  return db
    .prepare(
      `INSERT OR IGNORE INTO api_samples (minute, sample_id, route, method, status_class, customer_id, count, sum_ms, max_ms, hist, received_at)
       SELECT json_extract(value, '$.minute'), ?1, json_extract(value, '$.route'), json_extract(value, '$.method'),
              json_extract(value, '$.statusClass'), json_extract(value, '$.customerId'), json_extract(value, '$.count'),
              json_extract(value, '$.sumMs'), json_extract(value, '$.maxMs'), json_extract(value, '$.hist'), ?2
       FROM json_each(?3)`,
    )
    .bind(sample.sampleId, now, JSON.stringify(sample.entries));
}

export function poolSampleStatement(db: D1Database, s: PoolSample): D1PreparedStatement {
  return db
    .prepare(
      `INSERT OR IGNORE INTO pool_samples (minute, pool, source, depth, queued, running, waiting, in_flight, processed, concurrency,
         desired_concurrency, utilization, dlq_open, sampled_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)`,
    )
    .bind(s.minute, s.pool, s.source, s.depth, s.queued, s.running, s.waiting, s.inFlight, s.processed, s.concurrency, s.desiredConcurrency, s.utilization, s.dlqOpen, s.sampledAt);
}

export function probeStatement(db: D1Database, p: UptimeProbe): D1PreparedStatement {
  return db
    .prepare("INSERT OR IGNORE INTO uptime_probes (minute, ok, status, latency_ms, failed, probed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
    .bind(p.minute, p.ok ? 1 : 0, p.status, p.latencyMs, p.failed.join(","), p.probedAt);
}
