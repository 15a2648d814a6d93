/**
 * What drives cost, and how it moved against the previous period of the same length: the
 * run types, models and customers ranked by cost, each with its share and its change, and plain
 * findings an operator can act on (the seed's "identify optimization opportunities"). Pure:
 * money is bigint nano-USD; shares and percentages are computed in integer arithmetic to 0.1 %.
 */
import { divideHalfEven, nanoJson, nanoToUsdString } from "../domain/money";
import { percentChange } from "./formulas";

export const DRIVER_DIMENSIONS = ["runType", "model", "customer"] as const;
export type DriverDimension = (typeof DRIVER_DIMENSIONS)[number];

export interface PeriodCost {
  nanoUsd: bigint;
  aiNanoUsd: bigint;
  runs: number;
}

export interface DriverInput {
  key: string;
  current: PeriodCost;
  previous: PeriodCost;
}

/** A change worth naming: at least this many percent, either way. */
export const NOTABLE_CHANGE_PERCENT = 20;
/** A driver worth naming: at least this share of the period's cost. */
export const NOTABLE_SHARE_PERCENT = 25;

const zero = (): PeriodCost => ({ nanoUsd: 0n, aiNanoUsd: 0n, runs: 0 });
const perRun = (p: PeriodCost) => (p.runs > 0 ? divideHalfEven(p.nanoUsd, BigInt(p.runs)) : null);
/** part ÷ whole in percent, one decimal, exact integer arithmetic. */
export const sharePercent = (part: bigint, whole: bigint) => (whole === 0n ? null : Number(divideHalfEven(part * 1000n, whole)) / 10);
const money = (nano: bigint) => ({ nanoUsd: nanoJson(nano), usd: nanoToUsdString(nano) });
const usd = (nano: bigint) => `$${nanoToUsdString(nano)}`;

export function presentDriver(d: DriverInput, total: bigint) {
  const cpr = perRun(d.current);
  const cprBefore = perRun(d.previous);
  return {
    key: d.key,
    current: { ...money(d.current.nanoUsd), runs: d.current.runs, costPerRun: cpr === null ? null : money(cpr) },
    previous: { ...money(d.previous.nanoUsd), runs: d.previous.runs, costPerRun: cprBefore === null ? null : money(cprBefore) },
    sharePercent: sharePercent(d.current.nanoUsd, total),
    change: { ...money(d.current.nanoUsd - d.previous.nanoUsd), percent: percentChange(d.previous.nanoUsd, d.current.nanoUsd) },
    costPerRunChangePercent: cpr !== null && cprBefore !== null ? percentChange(cprBefore, cpr) : null,
  };
}

export type PresentedDriver = ReturnType<typeof presentDriver>;

const NAMES: Record<DriverDimension, string> = { runType: "run type", model: "model", customer: "customer" };

/** The findings, most telling first: the largest drivers, the notable moves, the AI/infra split. */
export function findings(
  drivers: Record<DriverDimension, DriverInput[]>,
  totals: { current: PeriodCost; previous: PeriodCost },
): string[] {
  const out: string[] = [];
  const total = totals.current.nanoUsd;
  const change = percentChange(totals.previous.nanoUsd, total);
  const fresh = totals.previous.nanoUsd === 0n;
  if (change !== null && Math.abs(change) >= NOTABLE_CHANGE_PERCENT) {
    out.push(`Total cost ${change > 0 ? "rose" : "fell"} ${Math.abs(change)}% against the previous period (${usd(totals.previous.nanoUsd)} → ${usd(total)}).`);
  }
  for (const dim of DRIVER_DIMENSIONS) {
    const top = [...drivers[dim]].sort((a, b) => (b.current.nanoUsd > a.current.nanoUsd ? 1 : b.current.nanoUsd < a.current.nanoUsd ? -1 : a.key.localeCompare(b.key)))[0];
    const share = top ? sharePercent(top.current.nanoUsd, total) : null;
    if (top && share !== null && share >= NOTABLE_SHARE_PERCENT && drivers[dim].length > 1) {
      out.push(`${NAMES[dim][0]!.toUpperCase()}${NAMES[dim].slice(1)} ${top.key} drives ${share}% of the cost (${usd(top.current.nanoUsd)}).`);
    }
  }
  for (const dim of ["runType", "model"] as const) {
    for (const d of drivers[dim]) {
      const cpr = perRun(d.current);
      const before = perRun(d.previous);
      const moved = cpr !== null && before !== null ? percentChange(before, cpr) : null;
      if (dim === "runType" && moved !== null && Math.abs(moved) >= NOTABLE_CHANGE_PERCENT) {
        out.push(`Cost per run of run type ${d.key} ${moved > 0 ? "rose" : "fell"} ${Math.abs(moved)}% (${usd(before!)} → ${usd(cpr!)}).`);
      } else {
        const c = percentChange(d.previous.nanoUsd, d.current.nanoUsd);
        if (c !== null && c >= NOTABLE_CHANGE_PERCENT && d.current.nanoUsd - d.previous.nanoUsd > 0n && (sharePercent(d.current.nanoUsd, total) ?? 0) >= 5) {
          out.push(`Cost of ${NAMES[dim]} ${d.key} rose ${c}% (${usd(d.previous.nanoUsd)} → ${usd(d.current.nanoUsd)}).`);
        }
        if (!fresh && d.previous.nanoUsd === 0n && d.current.nanoUsd > 0n && (sharePercent(d.current.nanoUsd, total) ?? 0) >= 5) {
          out.push(`${NAMES[dim][0]!.toUpperCase()}${NAMES[dim].slice(1)} ${d.key} is new this period and costs ${usd(d.current.nanoUsd)}.`);
        }
      }
    }
  }
  if (fresh && total > 0n) out.push("Nothing was spent in the previous period: there is no change to compare yet.");
  const aiShare = sharePercent(totals.current.aiNanoUsd, total);
  if (aiShare !== null) {
    out.push(
      aiShare >= 50
        ? `AI tokens are ${aiShare}% of the cost: model choice, prompt size and cached input are the levers.`
        : `Infrastructure is ${Math.round((100 - aiShare) * 10) / 10}% of the cost: steps per run, retries and heartbeats are the levers.`,
    );
  }
  return out;
}

export { zero as emptyPeriodCost };
