/**
 * The most a step attempt (or a run's creation) can cost, priced before it happens: a hard
 * budget holds this much until the real cost is counted. Every figure is an upper bound on
 * what the run object meters for the attempt (see durable-objects/run/meters.ts), so a step
 * that fits its hold can never push spend past the limit.
 */
import { costNano, type PriceBook } from "./pricing";

/** Tokens a step may use at most: a step type that calls a model says so (StepType.worstCaseTokens). */
export interface WorstCaseTokens {
  model: string;
  /** input tokens, each priced at the full (uncached) input price */
  promptTokens: number;
  /** output tokens, each priced at the dearer of the output and reasoning prices */
  outputTokens: number;
}

/** Rows one run-object command writes at most (run row, two step rows, its events, cost records, outbox). */
export const MAX_ROWS_PER_COMMAND = 16;
/** Rows one heartbeat writes (the step row with its new deadline). */
export const ROWS_PER_HEARTBEAT = 1;
/**
 * The run's own operations around one attempt — its cost delivery to the ledger and on to D1,
 * an index update, a retry timer — billed as overhead records: 25,000 nano-USD, about twice what
 * they cost at Cloudflare's prices.
 */
export const OVERHEAD_ALLOWANCE_NANO = 25_000n;
/**
 * Held for a run's whole life, beside its steps' holds: what the run does outside any step (its
 * end, or its stop by the budget, and the index update and delivery that follow; alarms of its
 * sleeps). Released with the run's last delivery.
 */
export const RUN_ALLOWANCE_NANO = 25_000n;

export type WorstCase = { ok: true; nanoUsd: bigint } | { ok: false; unpriced: string[] };

/**
 * One attempt at most: its tokens, a queue delivery (a Worker request and three queue
 * operations), the run object's requests and rows for start, report and a heartbeat every
 * leaseMs/3 until the timeout, CPU for the whole timeout, and the overhead allowance.
 */
export function worstCaseAttempt(book: PriceBook, at: number, step: { tokens: readonly WorstCaseTokens[]; timeoutMs: number; leaseMs: number }): WorstCase {
  const unpriced = book.unknownModels(step.tokens.map((t) => t.model), at);
  if (unpriced.length > 0) return { ok: false, unpriced };
  let nano = OVERHEAD_ALLOWANCE_NANO;
  for (const t of step.tokens) {
    const price = book.modelPrice(t.model, at)!;
    const output = price.reasoning !== null && price.reasoning > price.output ? price.reasoning : price.output;
    nano += costNano(BigInt(t.promptTokens), price.input) + costNano(BigInt(t.outputTokens), output);
  }
  const heartbeats = Math.ceil(step.timeoutMs / Math.max(250, Math.floor(step.leaseMs / 3))) + 1;
  const infra: [Parameters<PriceBook["infraPrice"]>[0], number][] = [
    ["worker_requests", 1],
    ["queue_operations", 3],
    ["do_requests", 2 + heartbeats],
    ["do_rows_written", 2 * MAX_ROWS_PER_COMMAND + heartbeats * ROWS_PER_HEARTBEAT],
    ["worker_cpu_ms", step.timeoutMs],
  ];
  for (const [meter, quantity] of infra) nano += book.priceInfra(meter, quantity, at)?.nanoUsd ?? 0n;
  return { ok: true, nanoUsd: nano };
}

/**
 * Creating a run at most: the API request, the create request and its rows, the run index row,
 * and the delivery of the creation's cost (a ledger request and its rows, a message to D1 and the
 * rows it writes).
 */
export function worstCaseCreation(book: PriceBook, at: number): bigint {
  let nano = 0n;
  const quantities = [["worker_requests", 1], ["do_requests", 2], ["do_rows_written", MAX_ROWS_PER_COMMAND + 8], ["queue_operations", 3], ["d1_rows_written", 10]] as const;
  for (const [meter, quantity] of quantities) nano += book.priceInfra(meter, quantity, at)?.nanoUsd ?? 0n;
  return nano;
}
