/**
 * The run's cost journal, in its own SQLite: one row per cost record (the usage it stands for,
 * and its priced lines once priced), and one row of delivery state (the last record the ledger
 * has counted, and the overhead meter not yet billed). Records are appended inside the
 * checkpoint transaction that caused them; the run object delivers everything after `sentSeq`
 * to the customer's ledger until the ledger acknowledges it, also after the run has ended.
 * A record is never deleted while the run exists: it is the run's cost history.
 */
import { buildRollup, priceRecord, summarizeLines, type CostLine, type CostRecord, type UsageRecord } from "../../src/domain/cost-records";
import type { PriceBook } from "../../src/domain/pricing";
import { rollupToWire, type RunRollup } from "../../src/data-plane/messages";
import { addOverhead, emptyOverhead, isEmptyOverhead, OverheadMeterSchema, type OverheadMeter } from "./meters";
import type { RunCostView } from "./rpc";
import type { SqlRow } from "../sql";

export const COST_JOURNAL_SCHEMA = `
  CREATE TABLE IF NOT EXISTS costs (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, lease TEXT, at INTEGER NOT NULL,
    usage TEXT NOT NULL, priced TEXT);
  CREATE TABLE IF NOT EXISTS cost_state (id INTEGER PRIMARY KEY CHECK (id = 1), sent_seq INTEGER NOT NULL, overhead TEXT NOT NULL);`;

type Sql = <T extends SqlRow = SqlRow>(strings: TemplateStringsArray, ...values: SqlStorageValue[]) => T[];

interface PricedJson {
  lines: { meter: string; model: string | null; quantity: string; perMillion: string; nanoUsd: string; priceVersion: string; estimated: boolean }[];
  nanoUsd: string;
  aiNanoUsd: string;
}

const encodePriced = (r: CostRecord): string =>
  JSON.stringify({
    lines: r.lines.map((l) => ({ ...l, quantity: l.quantity.toString(), perMillion: l.perMillion.toString(), nanoUsd: l.nanoUsd.toString() })),
    nanoUsd: r.nanoUsd.toString(),
    aiNanoUsd: r.aiNanoUsd.toString(),
  } satisfies PricedJson);

function decodePriced(usage: UsageRecord, text: string): CostRecord {
  const p = JSON.parse(text) as PricedJson;
  return {
    ...usage,
    lines: p.lines.map((l): CostLine => ({ ...l, meter: l.meter as CostLine["meter"], quantity: BigInt(l.quantity), perMillion: BigInt(l.perMillion), nanoUsd: BigInt(l.nanoUsd) })),
    nanoUsd: BigInt(p.nanoUsd),
    aiNanoUsd: BigInt(p.aiNanoUsd),
  };
}

interface Row {
  seq: number;
  usage: string;
  priced: string | null;
}

export class CostJournal {
  private lastSeq = 0;
  private sentSeq = 0;
  private overhead: OverheadMeter = emptyOverhead();
  /** The delivery-state row as last written, so an unchanged one is not written again. */
  private persisted = "";

  constructor(private readonly sql: Sql) {}

  /** Reads the journal's state; the tables must exist. */
  load() {
    this.lastSeq = this.sql<{ seq: number | null }>`SELECT MAX(seq) AS seq FROM costs`[0]?.seq ?? 0;
    const state = this.sql<{ sent_seq: number; overhead: string }>`SELECT sent_seq, overhead FROM cost_state`[0];
    this.sentSeq = state?.sent_seq ?? 0;
    this.overhead = state ? OverheadMeterSchema.parse(JSON.parse(state.overhead)) : emptyOverhead();
    this.persisted = state ? this.stateText() : "";
  }

  /** Records appended but not yet counted by the ledger, or overhead not yet billed. */
  get undelivered(): boolean {
    return this.lastSeq > this.sentSeq || !isEmptyOverhead(this.overhead);
  }

  get recordsPending(): number {
    return this.lastSeq - this.sentSeq;
  }

  addOverhead(add: Partial<OverheadMeter>) {
    this.overhead = addOverhead(this.overhead, add);
  }

  /** Rows `persistState` will write now: what a command counts for itself before it writes them. */
  get stateRowsDue(): number {
    return this.stateText() === this.persisted ? 0 : 1;
  }

  /**
   * Appends a record inside the caller's transaction, priced now when `book` has every price it
   * needs (else it is priced at delivery). Returns its seq.
   */
  append(usage: Omit<UsageRecord, "seq">, book: PriceBook | null): number {
    const record: UsageRecord = { ...usage, seq: this.lastSeq + 1 };
    const priced = book ? priceRecord(book, record) : null;
    this.sql`INSERT INTO costs (seq, kind, lease, at, usage, priced) VALUES (${record.seq}, ${record.kind}, ${record.lease ?? null}, ${record.at},
      ${JSON.stringify(record)}, ${priced?.ok ? encodePriced(priced.record) : null})`;
    this.lastSeq = record.seq;
    return record.seq;
  }

  /** Writes the delivery state if it changed (inside the caller's transaction). */
  persistState() {
    const text = this.stateText();
    if (text === this.persisted) return;
    this.sql`INSERT OR REPLACE INTO cost_state (id, sent_seq, overhead) VALUES (1, ${this.sentSeq}, ${JSON.stringify(this.overhead)})`;
    this.persisted = text;
  }

  /** Moves the unbilled overhead into a record of its own (inside the caller's transaction). */
  billOverhead(at: number, book: PriceBook | null, quantities: (meter: OverheadMeter) => Pick<UsageRecord, "infra" | "estimated">) {
    if (isEmptyOverhead(this.overhead)) return;
    this.append({ kind: "overhead", step: null, attempt: null, at, tokens: [], holdId: null, ...quantities(this.overhead) }, book);
    this.overhead = emptyOverhead();
  }

  /** Whether a report with tokens was already billed for this lease (a late duplicate must not bill them twice). */
  hasTokensFor(lease: string): boolean {
    return this.sql<{ usage: string }>`SELECT usage FROM costs WHERE lease = ${lease}`.some((r) => (JSON.parse(r.usage) as UsageRecord).tokens.length > 0);
  }

  /** Models named by records still waiting for a price. */
  unpricedModels(): string[] {
    const rows = this.sql<{ usage: string }>`SELECT usage FROM costs WHERE priced IS NULL`;
    return [...new Set(rows.flatMap((r) => (JSON.parse(r.usage) as UsageRecord).tokens.map((t) => t.model)))];
  }

  /**
   * Prices what is still unpriced (in seq order) and returns the records after `sentSeq` the
   * ledger may count now: all of them, or those before the first that still has no price (the
   * ledger counts a run's records in order).
   */
  deliverable(book: PriceBook): { records: CostRecord[]; blockedBy: string[] } {
    const records: CostRecord[] = [];
    for (const row of this.sql<Row & SqlRow>`SELECT seq, usage, priced FROM costs WHERE seq > ${this.sentSeq} ORDER BY seq`) {
      const usage = JSON.parse(row.usage) as UsageRecord;
      if (row.priced !== null) {
        records.push(decodePriced(usage, row.priced));
        continue;
      }
      const priced = priceRecord(book, usage);
      if (!priced.ok) return { records, blockedBy: priced.unpriced };
      this.sql`UPDATE costs SET priced = ${encodePriced(priced.record)} WHERE seq = ${row.seq}`;
      records.push(priced.record);
    }
    return { records, blockedBy: [] };
  }

  /** Every priced record up to `upTo`: the run's cost as the ledger will have counted it. */
  priced(upTo = this.lastSeq): CostRecord[] {
    return this.sql<Row & SqlRow>`SELECT seq, usage, priced FROM costs WHERE priced IS NOT NULL AND seq <= ${upTo} ORDER BY seq`.map((row) =>
      decodePriced(JSON.parse(row.usage) as UsageRecord, row.priced!),
    );
  }

  /** The ledger has counted every record up to `seq`. */
  markSent(seq: number) {
    if (seq <= this.sentSeq) return;
    this.sentSeq = seq;
    this.persistState();
  }

  get lastSentSeq(): number {
    return this.sentSeq;
  }

  /** The run's whole cost as D1 keeps it, from its priced records up to `upTo`. */
  rollup(attribution: Omit<RunRollup, "version" | "rows">, upTo = this.lastSeq): RunRollup {
    const records = this.priced(upTo);
    return { ...attribution, version: records.reduce((max, r) => Math.max(max, r.seq), 0), rows: buildRollup(records).map(rollupToWire) };
  }

  /** The run's cost so far, exact. */
  view(): RunCostView {
    const records = this.priced();
    const summary = summarizeLines(records.flatMap((r) => r.lines));
    return {
      totalNanoUsd: summary.totalNanoUsd.toString(),
      aiNanoUsd: summary.aiNanoUsd.toString(),
      infraNanoUsd: summary.infraNanoUsd.toString(),
      lines: summary.lines.map((l) => ({ meter: l.meter, model: l.model, quantity: l.quantity.toString(), nanoUsd: l.nanoUsd.toString(), estimated: l.estimated })),
      settled: this.recordsPending === 0,
      pendingRecords: this.recordsPending,
    };
  }

  private stateText() {
    return JSON.stringify([this.sentSeq, this.overhead]);
  }
}
