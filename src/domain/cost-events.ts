/**
 * Cost events: priced quantities attributed to a customer, project, run, step and attempt.
 * Reports and run totals are exact sums of these; nothing else carries money.
 */
import { isTokenMeter, type PricedQuantity } from "./pricing";

/** Who and what a cost belongs to. `step`/`attempt` null: a run-level cost. */
export interface CostAttribution {
  customerId: string;
  projectId: string;
  runId: string;
  runType: string | null;
  pool: string;
  step: string | null;
  attempt: number | null;
}

export interface CostEvent extends CostAttribution, PricedQuantity {
  id: string;
  /** ms since the epoch: when the cost was incurred (and the time its price was looked up for) */
  at: number;
}

/**
 * Deterministic, so recording the same event twice (a redelivered message, a retried write)
 * stores it once. `discriminator` separates events that share everything else, e.g. several
 * run-level infrastructure charges of one meter ("dispatch-3"). The model comes last because
 * model names may contain ":"; every part before it cannot.
 */
export function costEventId(attribution: Pick<CostAttribution, "runId" | "step" | "attempt">, meter: string, model: string | null, discriminator = ""): string {
  return `ce:${attribution.runId}:${attribution.step ?? "-"}:${attribution.attempt ?? "-"}:${meter}:${discriminator}:${model ?? "-"}`;
}

/** Priced lines (PriceBook.priceUsage / priceInfra) as events ready to store. */
export function toCostEvents(attribution: CostAttribution, lines: readonly (PricedQuantity | null)[], at: number, discriminator = ""): CostEvent[] {
  return lines
    .filter((line): line is PricedQuantity => line !== null)
    .map((line) => ({ ...attribution, ...line, id: costEventId(attribution, line.meter, line.model, discriminator), at }));
}

export interface CostSummary {
  totalNanoUsd: bigint;
  /** token meters */
  aiNanoUsd: bigint;
  /** infrastructure meters */
  infraNanoUsd: bigint;
}

/** Exact totals of a set of events, AI (token meters) and infrastructure (the rest) apart. */
export function summarizeCosts(events: Iterable<{ meter: string; nanoUsd: bigint }>): CostSummary {
  let ai = 0n;
  let infra = 0n;
  for (const e of events) {
    if (isTokenMeter(e.meter)) ai += e.nanoUsd;
    else infra += e.nanoUsd;
  }
  return { totalNanoUsd: ai + infra, aiNanoUsd: ai, infraNanoUsd: infra };
}
