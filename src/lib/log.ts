/**
 * Structured logs: one object per event, so `wrangler tail` and Workers Logs can filter on
 * runId, step, attempt and pool. Objects (not strings) let Workers Logs index the fields.
 * LOG_LEVEL (debug | info | warn | error, default info) sets the least severe level written;
 * per-step transitions that every attempt goes through ("step.started") are debug, and
 * outcomes ("step.succeeded", "step.failed", every run transition) are info.
 */
export interface LogFields {
  runId?: string;
  step?: string;
  attempt?: number;
  pool?: string;
  [key: string]: unknown;
}

export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold = RANK.info;
let forced: LogLevel | null = null;

/** Called by each entry point with the deployment's LOG_LEVEL. */
export function configureLogging(level: string | undefined): void {
  threshold = RANK[forced ?? ((level ?? "info") as LogLevel)] ?? RANK.info;
}

/**
 * Tests that drive hundreds of runs through the local runtime: info logs (forwarded line by line
 * to the test runner) would cost more than the platform's own work. null: LOG_LEVEL again.
 */
export function forceLogLevel(level: LogLevel | null): void {
  forced = level;
  if (level) threshold = RANK[level];
}

export function log(event: string, fields: LogFields = {}, level: LogLevel = "info"): void {
  if (RANK[level] < threshold) return;
  const entry: Record<string, unknown> = { event, level, at: new Date().toISOString() };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) entry[key] = value;
  if (level === "error") console.error(entry);
  else if (level === "warn") console.warn(entry);
  else console.log(entry);
}

export const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err));
