/**
 * Prices and cost arithmetic. A price is nano-USD per million units (bigint), so every price
 * Cloudflare or a model vendor publishes, to nine decimals of a dollar per million, is exact.
 * A cost event is quantity × price, rounded half-to-even to a whole nano-USD, once; every total
 * is an exact sum of events.
 */
import { divideHalfEven, usdToNano } from "./money";
import type { TokenUsage } from "./token-usage";

/** Billable infrastructure meters and the unit each is counted in. */
export const INFRA_METERS = {
  worker_requests: "requests",
  worker_cpu_ms: "CPU milliseconds (estimated from step wall time)",
  do_requests: "requests",
  do_duration_ms: "milliseconds of Durable Object wall time at 128 MB",
  do_rows_read: "rows",
  do_rows_written: "rows",
  queue_operations: "operations (64 KB each)",
  d1_rows_read: "rows",
  d1_rows_written: "rows",
} as const;
export type InfraMeter = keyof typeof INFRA_METERS;
export const INFRA_METER_NAMES = Object.keys(INFRA_METERS) as InfraMeter[];

/**
 * Cloudflare's published Workers Paid prices, USD per million units (STACK.md, November 2026).
 * Durable Object duration is $12.50 per million GB-s billed at 128 MB: 0.125 GB × 1 ms =
 * 0.000125 GB-s, so $1.5625 per million ms.
 */
export const DEFAULT_INFRA_USD_PER_MILLION: Record<InfraMeter, string> = {
  worker_requests: "0.30",
  worker_cpu_ms: "0.02",
  do_requests: "0.15",
  do_duration_ms: "1.5625",
  do_rows_read: "0.001",
  do_rows_written: "1.00",
  queue_operations: "0.40",
  d1_rows_read: "0.001",
  d1_rows_written: "1.00",
};

export const TOKEN_METERS = ["input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"] as const;
export type TokenMeter = (typeof TOKEN_METERS)[number];

export interface ModelPrice {
  model: string;
  version: string;
  effectiveFrom: number;
  /** nano-USD per million tokens */
  input: bigint;
  output: bigint;
  /** null: cached input is billed at the input price */
  cachedInput: bigint | null;
  /** null: reasoning tokens are billed at the output price */
  reasoning: bigint | null;
}

export interface InfraPrice {
  meter: InfraMeter;
  version: string;
  effectiveFrom: number;
  perMillion: bigint;
}

/** USD per million (decimal string or number) → nano-USD per million, exactly. */
export const pricePerMillion = (usd: string | number) => usdToNano(usd);

/**
 * The highest price that may be set, USD per million tokens or units. Cost lines must stay far
 * inside SQLite's 64-bit integers: 10,000,000 tokens × 1e14 nano-USD per million is 1e15
 * nano-USD per line, and totals sum many lines.
 */
export const MAX_USD_PER_MILLION = "100000";
export const MAX_NANO_PER_MILLION = usdToNano(MAX_USD_PER_MILLION);

/** Cost of `quantity` units at `perMillion` nano-USD per million units, rounded once, half-to-even. */
export function costNano(quantity: bigint, perMillion: bigint): bigint {
  return divideHalfEven(quantity * perMillion, 1_000_000n);
}

/** The version in force at `at`: the latest whose effectiveFrom is not after it. */
export function priceInForce<T extends { effectiveFrom: number; version: string }>(versions: readonly T[], at: number): T | undefined {
  let best: T | undefined;
  for (const v of versions) {
    if (v.effectiveFrom > at) continue;
    if (!best || v.effectiveFrom > best.effectiveFrom || (v.effectiveFrom === best.effectiveFrom && v.version > best.version)) best = v;
  }
  return best;
}

export type { TokenUsage } from "./token-usage";

export interface PricedQuantity {
  meter: TokenMeter | InfraMeter;
  model: string | null;
  quantity: bigint;
  perMillion: bigint;
  nanoUsd: bigint;
  priceVersion: string;
  estimated: boolean;
}

export class UnknownModelError extends Error {
  constructor(readonly model: string) {
    super(`no price for model "${model}": add it with PUT /v1/pricing before using it`);
  }
}

/** Token usage priced: uncached input, cached input, output and reasoning, each its own line. */
export function priceTokens(usage: TokenUsage, price: ModelPrice | undefined): PricedQuantity[] {
  if (!price) throw new UnknownModelError(usage.model);
  const lines: [TokenMeter, number | undefined, bigint][] = [
    ["input_tokens", usage.inputTokens, price.input],
    ["cached_input_tokens", usage.cachedTokens, price.cachedInput ?? price.input],
    ["output_tokens", usage.outputTokens, price.output],
    ["reasoning_tokens", usage.reasoningTokens, price.reasoning ?? price.output],
  ];
  return lines
    .filter(([, quantity]) => quantity !== undefined && quantity > 0)
    .map(([meter, quantity, perMillion]) => {
      const q = BigInt(quantity!);
      return { meter, model: usage.model, quantity: q, perMillion, nanoUsd: costNano(q, perMillion), priceVersion: price.version, estimated: false };
    });
}

export function priceInfra(meter: InfraMeter, quantity: number, price: InfraPrice | undefined, estimated = false): PricedQuantity | null {
  if (!price || quantity <= 0) return null;
  const q = BigInt(Math.round(quantity));
  return { meter, model: null, quantity: q, perMillion: price.perMillion, nanoUsd: costNano(q, price.perMillion), priceVersion: price.version, estimated };
}

export { MODEL_NAME } from "./token-usage";

export const isTokenMeter = (meter: string): meter is TokenMeter => (TOKEN_METERS as readonly string[]).includes(meter);
export const isInfraMeter = (meter: string): meter is InfraMeter => Object.hasOwn(INFRA_METERS, meter);

export interface PriceVersionInfo {
  version: string;
  effectiveFrom: number;
  createdAt: number;
  note: string | null;
}

/**
 * Every version of every price, answering "what was in force at `at`". Pure: loading the
 * tables is PricingService's job, so a Durable Object can price with a book it loaded itself.
 */
export class PriceBook {
  private readonly models = new Map<string, ModelPrice[]>();
  private readonly infra = new Map<InfraMeter, InfraPrice[]>();

  constructor(
    modelPrices: readonly ModelPrice[],
    infraPrices: readonly InfraPrice[],
    readonly versions: readonly PriceVersionInfo[] = [],
  ) {
    for (const p of modelPrices) this.models.set(p.model, [...(this.models.get(p.model) ?? []), p]);
    for (const p of infraPrices) this.infra.set(p.meter, [...(this.infra.get(p.meter) ?? []), p]);
  }

  modelPrice(model: string, at: number): ModelPrice | undefined {
    return priceInForce(this.models.get(model) ?? [], at);
  }

  infraPrice(meter: InfraMeter, at: number): InfraPrice | undefined {
    return priceInForce(this.infra.get(meter) ?? [], at);
  }

  /** Every model with a price in force at `at`, by name. */
  modelsInForce(at: number): ModelPrice[] {
    return [...this.models.keys()]
      .sort()
      .map((model) => this.modelPrice(model, at))
      .filter((p): p is ModelPrice => p !== undefined);
  }

  /** Every meter with a price in force at `at`, in INFRA_METER_NAMES order. */
  infraInForce(at: number): InfraPrice[] {
    return INFRA_METER_NAMES.map((meter) => this.infraPrice(meter, at)).filter((p): p is InfraPrice => p !== undefined);
  }

  /** The models of `models` that have no price in force at `at`. */
  unknownModels(models: Iterable<string>, at: number): string[] {
    return [...new Set(models)].filter((model) => this.modelPrice(model, at) === undefined);
  }

  /** One usage report priced at `at`, one line per token meter used. Throws UnknownModelError. */
  priceUsage(usage: TokenUsage, at: number): PricedQuantity[] {
    return priceTokens(usage, this.modelPrice(usage.model, at));
  }

  /** An infrastructure quantity priced at `at`; null when nothing is owed (no price, or zero). */
  priceInfra(meter: InfraMeter, quantity: number, at: number, estimated = false): PricedQuantity | null {
    return priceInfra(meter, quantity, this.infraPrice(meter, at), estimated);
  }
}
