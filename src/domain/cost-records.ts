/**
 * Cost records: what one step attempt, or one run-level charge, cost. A run object writes a
 * record's usage (tokens reported, operations counted) in the same transaction as the
 * checkpoint that caused it; the record is priced with the prices in force when it was
 * incurred, counted once in the customer's ledger (by its per-run sequence number), and kept
 * in D1 as per-run hourly rollups. Reports and run totals are exact sums of records.
 */
import { divideHalfEven } from "./money";
import { isTokenMeter, type InfraMeter, type PriceBook, type PricedQuantity, type TokenMeter } from "./pricing";
import type { TokenUsage } from "./token-usage";

/**
 * create: the API request and the run object's creation; attempt: one step attempt, closed;
 * late: tokens a worker reported after its attempt was closed (cancelled, superseded) — the
 * provider billed them, so they are billed too; overhead: the run's own operations outside
 * attempts (alarms, index and cost messages, the D1 rows they write).
 */
export const COST_RECORD_KINDS = ["create", "attempt", "late", "overhead"] as const;
export type CostRecordKind = (typeof COST_RECORD_KINDS)[number];

export type InfraQuantities = Partial<Record<InfraMeter, number>>;

/** A record before pricing: what was used, as persisted with the checkpoint that caused it. */
export interface UsageRecord {
  /** Per run, increasing, never reused: the ledger counts each (run, seq) once. */
  seq: number;
  kind: CostRecordKind;
  /** The attempt's lease (attempt and late records), so a late report can tell whether its tokens were billed. */
  lease?: string;
  step: string | null;
  attempt: number | null;
  /** ms since the epoch: when the cost was incurred, and the instant whose prices apply. */
  at: number;
  infra: InfraQuantities;
  /** Meters of `infra` whose quantity is an estimate (e.g. CPU time from wall time). */
  estimated: InfraMeter[];
  tokens: TokenUsage[];
  /** The budget hold this record settles (released when the ledger counts it). */
  holdId: string | null;
}

export interface CostLine extends PricedQuantity {}

export interface CostRecord extends UsageRecord {
  lines: CostLine[];
  nanoUsd: bigint;
  aiNanoUsd: bigint;
}

export type PricingResult = { ok: true; record: CostRecord } | { ok: false; unpriced: string[] };

/**
 * Prices a record at its own instant. Token usage of a model without a price makes the whole
 * record unpriceable (never priced at zero): the caller keeps it and tries again with fresh prices.
 */
export function priceRecord(book: PriceBook, usage: UsageRecord): PricingResult {
  const unpriced = book.unknownModels(
    usage.tokens.map((t) => t.model),
    usage.at,
  );
  if (unpriced.length > 0) return { ok: false, unpriced };
  const lines: CostLine[] = [];
  for (const tokens of usage.tokens) lines.push(...book.priceUsage(tokens, usage.at));
  for (const [meter, quantity] of Object.entries(usage.infra) as [InfraMeter, number][]) {
    const line = book.priceInfra(meter, quantity, usage.at, usage.estimated.includes(meter));
    if (line) lines.push(line);
  }
  let nano = 0n;
  let ai = 0n;
  for (const line of lines) {
    nano += line.nanoUsd;
    if (isTokenMeter(line.meter)) ai += line.nanoUsd;
  }
  return { ok: true, record: { ...usage, lines, nanoUsd: nano, aiNanoUsd: ai } };
}

export interface CostSummary {
  totalNanoUsd: bigint;
  /** token meters */
  aiNanoUsd: bigint;
  /** infrastructure meters */
  infraNanoUsd: bigint;
}

export interface SummaryLine {
  meter: string;
  model: string | null;
  quantity: bigint;
  nanoUsd: bigint;
  estimated: boolean;
}

/** Exact totals of a set of priced lines, AI (token meters) and infrastructure (the rest) apart, and the lines merged by meter and model. */
export function summarizeLines(lines: Iterable<{ meter: string; model: string | null; quantity: bigint; nanoUsd: bigint; estimated: boolean }>): CostSummary & { lines: SummaryLine[] } {
  let ai = 0n;
  let infra = 0n;
  const merged = new Map<string, SummaryLine>();
  for (const l of lines) {
    if (isTokenMeter(l.meter)) ai += l.nanoUsd;
    else infra += l.nanoUsd;
    const key = `${l.meter}\u0000${l.model ?? ""}`;
    const line = merged.get(key) ?? { meter: l.meter, model: l.model, quantity: 0n, nanoUsd: 0n, estimated: false };
    line.quantity += l.quantity;
    line.nanoUsd += l.nanoUsd;
    line.estimated ||= l.estimated;
    merged.set(key, line);
  }
  const sorted = [...merged.values()].sort((a, b) => (a.meter === b.meter ? (a.model ?? "").localeCompare(b.model ?? "") : a.meter.localeCompare(b.meter)));
  return { totalNanoUsd: ai + infra, aiNanoUsd: ai, infraNanoUsd: infra, lines: sorted };
}

// ---- D1 rollups -------------------------------------------------------------------------

export const HOUR_MS = 3_600_000;
export const hourOf = (ms: number) => Math.floor(ms / HOUR_MS) * HOUR_MS;

/**
 * A row never holds more than this: SQLite's integers end at 2^63 − 1, and a report's sums
 * stay exact because each row does (see costs-service's split sums). Far beyond any real run.
 */
export const ROW_NANO_CAP = 2n ** 62n;

/**
 * One run's cost in one UTC hour for one model ("" = the run's infrastructure, which carries
 * no tokens), as D1 keeps it: the tokens, the money, and the priced lines merged by meter.
 * `part` > 0 only when one row would pass ROW_NANO_CAP.
 */
export interface RollupRow {
  hour: number;
  model: string;
  part: number;
  inputTokens: bigint;
  cachedInputTokens: bigint;
  outputTokens: bigint;
  reasoningTokens: bigint;
  aiNanoUsd: bigint;
  infraNanoUsd: bigint;
  nanoUsd: bigint;
  /** Attempt records folded into this row. */
  attempts: number;
  lines: SummaryLine[];
  priceVersions: string[];
}

const TOKEN_COLUMN: Record<TokenMeter, "inputTokens" | "cachedInputTokens" | "outputTokens" | "reasoningTokens"> = {
  input_tokens: "inputTokens",
  cached_input_tokens: "cachedInputTokens",
  output_tokens: "outputTokens",
  reasoning_tokens: "reasoningTokens",
};

const rowKey = (hour: number, model: string) => `${hour}\u0000${model}`;

/**
 * A run's rollup rows from all its priced records. Records only ever append (in seq order), a
 * record's lines always land in the same rows, and a row's parts fill in order, so a later
 * rollup of the same run only adds to rows or adds rows: a D1 upsert by version is enough.
 */
export function buildRollup(records: readonly CostRecord[]): RollupRow[] {
  const ordered = [...records].sort((a, b) => a.seq - b.seq);
  const rows = new Map<string, { parts: { lines: CostLine[]; nano: bigint; attempts: Set<number> }[] }>();
  for (const record of ordered) {
    const hour = hourOf(record.at);
    const byModel = new Map<string, CostLine[]>();
    for (const line of record.lines) {
      const model = isTokenMeter(line.meter) ? (line.model ?? "") : "";
      byModel.set(model, [...(byModel.get(model) ?? []), line]);
    }
    for (const [model, lines] of byModel) {
      const key = rowKey(hour, model);
      const entry = rows.get(key) ?? { parts: [{ lines: [], nano: 0n, attempts: new Set<number>() }] };
      rows.set(key, entry);
      const amount = lines.reduce((sum, l) => sum + l.nanoUsd, 0n);
      let part = entry.parts[entry.parts.length - 1]!;
      if (part.lines.length > 0 && part.nano + amount > ROW_NANO_CAP) {
        part = { lines: [], nano: 0n, attempts: new Set<number>() };
        entry.parts.push(part);
      }
      part.lines.push(...lines);
      part.nano += amount;
      if (record.kind === "attempt") part.attempts.add(record.seq);
    }
  }
  const out: RollupRow[] = [];
  for (const [key, entry] of rows) {
    const [hourText, model] = key.split("\u0000") as [string, string];
    entry.parts.forEach((part, index) => {
      const summary = summarizeLines(part.lines);
      const row: RollupRow = {
        hour: Number(hourText),
        model,
        part: index,
        inputTokens: 0n,
        cachedInputTokens: 0n,
        outputTokens: 0n,
        reasoningTokens: 0n,
        aiNanoUsd: summary.aiNanoUsd,
        infraNanoUsd: summary.infraNanoUsd,
        nanoUsd: summary.totalNanoUsd,
        attempts: part.attempts.size,
        lines: summary.lines,
        priceVersions: [...new Set(part.lines.map((l) => l.priceVersion))].sort(),
      };
      for (const line of summary.lines) if (isTokenMeter(line.meter)) row[TOKEN_COLUMN[line.meter]] += line.quantity;
      out.push(row);
    });
  }
  return out.sort((a, b) => a.hour - b.hour || a.model.localeCompare(b.model) || a.part - b.part);
}

/** Σ over records of their nano-USD, by UTC month ("2026-11"): what a ledger adds to each month's spend. */
export function nanoByMonth(records: Iterable<{ at: number; nanoUsd: bigint }>): Map<string, bigint> {
  const months = new Map<string, bigint>();
  for (const r of records) {
    const month = monthOf(r.at);
    months.set(month, (months.get(month) ?? 0n) + r.nanoUsd);
  }
  return months;
}

export const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7);

/** Average of a total over a count, half-to-even, for "cost per run" figures. */
export const perUnit = (total: bigint, count: number) => (count > 0 ? divideHalfEven(total, BigInt(count)) : 0n);
