/**
 * How long Runplane keeps what it stores, and the instant before which each kind is swept.
 * Money outlives detail: cost rollups are kept by the month, far longer than step detail, and
 * the detail sweep never touches them.
 */
export interface RetentionSettings {
  /** Finished runs: their objects, index rows, step attempts, dead events. */
  stepDetailDays: number;
  /** Cost rollups (per run, hour and model), counted in whole calendar months. */
  costMonths: number;
  /** DLQ entries once resolved (retried or discarded); open ones are kept until resolved. */
  resolvedDlqDays: number;
  alertDays: number;
}

export const DEFAULT_RETENTION: RetentionSettings = { stepDetailDays: 30, costMonths: 13, resolvedDlqDays: 30, alertDays: 90 };

const DAY_MS = 86_400_000;

/** Settings from the Worker's vars; a missing or invalid value keeps its default. */
export function retentionSettings(vars: Partial<Record<"RETENTION_STEP_DETAIL_DAYS" | "RETENTION_COST_MONTHS" | "RETENTION_RESOLVED_DLQ_DAYS" | "RETENTION_ALERT_DAYS", string>>): RetentionSettings {
  const positive = (value: string | undefined, fallback: number) => {
    const n = Number(value);
    return Number.isInteger(n) && n > 0 ? n : fallback;
  };
  return {
    stepDetailDays: positive(vars.RETENTION_STEP_DETAIL_DAYS, DEFAULT_RETENTION.stepDetailDays),
    costMonths: positive(vars.RETENTION_COST_MONTHS, DEFAULT_RETENTION.costMonths),
    resolvedDlqDays: positive(vars.RETENTION_RESOLVED_DLQ_DAYS, DEFAULT_RETENTION.resolvedDlqDays),
    alertDays: positive(vars.RETENTION_ALERT_DAYS, DEFAULT_RETENTION.alertDays),
  };
}

export interface RetentionCutoffs {
  stepDetail: number;
  /** The first instant kept: the start of the UTC month `costMonths − 1` months before now's. */
  costs: number;
  resolvedDlq: number;
  alerts: number;
}

export function retentionCutoffs(now: number, settings: RetentionSettings): RetentionCutoffs {
  const d = new Date(now);
  return {
    stepDetail: now - settings.stepDetailDays * DAY_MS,
    costs: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - (settings.costMonths - 1), 1),
    resolvedDlq: now - settings.resolvedDlqDays * DAY_MS,
    alerts: now - settings.alertDays * DAY_MS,
  };
}
