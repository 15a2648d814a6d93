/**
 * Degradation against a trailing baseline, and alert episodes. Pure: the scheduled check
 * (src/services/anomaly-check.ts) reads the figures and applies the verdicts.
 *
 * A figure is degraded when its recent value is both `fire.ratio` × its baseline and
 * `fire.floor` above it (the floor keeps tiny baselines from alerting on noise); it has
 * recovered when it is back within `clear.ratio` × baseline or within `clear.floor` of it.
 * Between the two (hysteresis) nothing changes, so a figure hovering at the threshold does not
 * flap. An episode opens (one alert) on a degraded verdict while closed, and clears on a
 * recovered verdict while open; too few samples in either window decide nothing.
 */

export const ANOMALY_FIGURES = ["p95_duration", "failure_rate", "cost_per_run", "backlog"] as const;
export type AnomalyFigure = (typeof ANOMALY_FIGURES)[number];

export interface Rule {
  fire: { ratio: number; floor: number };
  clear: { ratio: number; floor: number };
  /** samples needed in the recent window and in the baseline for a verdict */
  minRecent: number;
  minBaseline: number;
  unit: string;
  describe: string;
}

/** The windows: recent = the hour before the current one plus the current one so far; baseline = the 24 hours before. */
export const RECENT_HOURS = 1;
export const BASELINE_HOURS = 24;
/** Backlog is sampled each minute: recent = the last 10 minutes, baseline = the 24 hours before. */
export const BACKLOG_RECENT_MINUTES = 10;

export const RULES: Record<AnomalyFigure, Rule> = {
  p95_duration: {
    fire: { ratio: 1.5, floor: 1000 },
    clear: { ratio: 1.2, floor: 250 },
    minRecent: 20,
    minBaseline: 20,
    unit: "ms",
    describe: "p95 run duration",
  },
  failure_rate: {
    fire: { ratio: 2, floor: 0.1 },
    clear: { ratio: 1.5, floor: 0.05 },
    minRecent: 20,
    minBaseline: 20,
    unit: "ratio",
    describe: "run failure rate",
  },
  cost_per_run: {
    fire: { ratio: 1.5, floor: 0 },
    clear: { ratio: 1.2, floor: 0 },
    minRecent: 20,
    minBaseline: 20,
    unit: "nano-USD",
    describe: "cost per run",
  },
  backlog: {
    fire: { ratio: 3, floor: 100 },
    clear: { ratio: 1.5, floor: 50 },
    minRecent: 5,
    minBaseline: 60,
    unit: "runs",
    describe: "queue depth (backlog)",
  },
};

/** A figure over the two windows. Money is bigint (nano-USD) and compared exactly. */
export interface Observation<V extends number | bigint = number | bigint> {
  recent: V | null;
  baseline: V | null;
  recentSamples: number;
  baselineSamples: number;
}

export type Verdict = "degraded" | "recovered" | "steady" | "insufficient";

/** Parts per million, for exact comparisons of bigints with fractional ratios. */
const PPM = 1_000_000;

function scaled(value: number | bigint, ratio: number): number | bigint {
  return typeof value === "bigint" ? (value * BigInt(Math.round(ratio * PPM))) / BigInt(PPM) : value * ratio;
}

const plus = (value: number | bigint, floor: number): number | bigint => (typeof value === "bigint" ? value + BigInt(Math.round(floor)) : value + floor);
const ge = (a: number | bigint, b: number | bigint) => (typeof a === "bigint" && typeof b === "bigint" ? a * BigInt(PPM) >= b * BigInt(PPM) : Number(a) >= Number(b));
const max = (a: number | bigint, b: number | bigint) => (ge(a, b) ? a : b);
const min = (a: number | bigint, b: number | bigint) => (ge(a, b) ? b : a);

/** The value at or above which the figure is degraded: max(baseline × fire.ratio, baseline + fire.floor). */
export function fireThreshold(rule: Rule, baseline: number | bigint): number | bigint {
  return max(scaled(baseline, rule.fire.ratio), plus(baseline, rule.fire.floor));
}

/** The value at or below which it has recovered: max(baseline × clear.ratio, baseline + clear.floor). */
export function clearThreshold(rule: Rule, baseline: number | bigint): number | bigint {
  return max(scaled(baseline, rule.clear.ratio), plus(baseline, rule.clear.floor));
}

export function evaluate(rule: Rule, obs: Observation): { verdict: Verdict; fireAt: number | bigint | null; clearAt: number | bigint | null } {
  if (obs.recent === null || obs.baseline === null || obs.recentSamples < rule.minRecent || obs.baselineSamples < rule.minBaseline) {
    return { verdict: "insufficient", fireAt: null, clearAt: null };
  }
  const fireAt = fireThreshold(rule, obs.baseline);
  const clearAt = min(clearThreshold(rule, obs.baseline), fireAt);
  if (ge(obs.recent, fireAt)) return { verdict: "degraded", fireAt, clearAt };
  if (ge(clearAt, obs.recent)) return { verdict: "recovered", fireAt, clearAt };
  return { verdict: "steady", fireAt, clearAt };
}

/** What an episode does on a verdict: open one alert, clear it, or nothing. */
export function episodeAction(open: boolean, verdict: Verdict): "open" | "clear" | "none" {
  if (!open && verdict === "degraded") return "open";
  if (open && verdict === "recovered") return "clear";
  return "none";
}

/** The episode a figure of a scope belongs to, e.g. "p95_duration:runType:hello". */
export const episodeKey = (figure: AnomalyFigure, scope: string, key: string) => `${figure}:${scope}:${key}`;
