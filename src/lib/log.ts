/**
 * Structured logs: one object per event, so `wrangler tail` and Workers Logs can filter on
 * runId, step, attempt and pool. Objects (not strings) let Workers Logs index the fields.
 */
export interface LogFields {
  runId?: string;
  step?: string;
  attempt?: number;
  pool?: string;
  [key: string]: unknown;
}

export function log(event: string, fields: LogFields = {}, level: "info" | "warn" | "error" = "info"): void {
  const entry: Record<string, unknown> = { event, level, at: new Date().toISOString() };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) entry[key] = value;
  if (level === "error") console.error(entry);
  else if (level === "warn") console.warn(entry);
  else console.log(entry);
}

export const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err));
