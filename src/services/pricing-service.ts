/**
 * Versioned prices in D1: model token prices and infrastructure unit prices. Every version is
 * kept, so a cost can be priced as of the moment it was incurred; a PUT adds a version and
 * never edits one. Prices are cached per isolate for PRICE_CACHE_MS.
 */
import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import { z } from "zod";
import { DomainError, validationFailed } from "../domain/errors";
import { infraPrices, modelPrices, priceVersions } from "../db/schema";
import { nanoJson, nanoToExactUsdString, usdToNano } from "../domain/money";
import {
  INFRA_METERS,
  INFRA_METER_NAMES,
  MAX_NANO_PER_MILLION,
  MAX_USD_PER_MILLION,
  MODEL_NAME,
  PriceBook,
  isInfraMeter,
  pricePerMillion,
  type InfraMeter,
  type InfraPrice,
  type ModelPrice,
  type PriceVersionInfo,
} from "../domain/pricing";

/**
 * USD per million units as a decimal string or number, at most 9 decimals, converted exactly,
 * at most MAX_USD_PER_MILLION.
 */
export const UsdPerMillion = z.union([z.string(), z.number()]).superRefine((value, ctx) => {
  let nano: bigint;
  try {
    nano = usdToNano(value);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `must be a non-negative USD amount with at most 9 decimals: ${(err as Error).message}` });
    return;
  }
  if (nano > MAX_NANO_PER_MILLION) ctx.addIssue({ code: "custom", message: `must be at most ${MAX_USD_PER_MILLION} USD per million` });
});

/**
 * What a GET (or PUT) response adds to the PUT fields. Accepted and ignored, so a GET document
 * is a valid PUT body (GET → edit → PUT); any other unknown field is still refused.
 */
const READ_ONLY = "Read-only, from a GET document: accepted and ignored";
const ReadOnlyFields = {
  at: z.string().max(100).optional().describe(READ_ONLY),
  inForce: z.looseObject({}).optional().describe(READ_ONLY),
  versions: z.array(z.unknown()).optional().describe(READ_ONLY),
  created: z.looseObject({}).optional().describe(`${READ_ONLY} (a PUT response adds it)`),
};

export const ModelPriceInputSchema = z
  .object({
    model: z.string().regex(MODEL_NAME, "model must be 1-200 characters: letters, digits and . _ : / @ + -"),
    inputUsdPerMTok: UsdPerMillion,
    outputUsdPerMTok: UsdPerMillion,
    /** null or absent: cached input is billed at the input price */
    cachedInputUsdPerMTok: UsdPerMillion.nullable().optional(),
    /** null or absent: reasoning tokens are billed at the output price */
    reasoningUsdPerMTok: UsdPerMillion.nullable().optional(),
  })
  .strict();

export const PricingUpdateSchema = z
  .object({
    models: z
      .array(ModelPriceInputSchema)
      .max(500)
      .superRefine((models, ctx) => {
        const seen = new Set<string>();
        models.forEach((m, i) => {
          if (seen.has(m.model)) ctx.addIssue({ code: "custom", path: [i, "model"], message: `model "${m.model}" appears more than once` });
          seen.add(m.model);
        });
      })
      .optional(),
    infra: z
      .record(z.string(), UsdPerMillion)
      .superRefine((infra, ctx) => {
        for (const meter of Object.keys(infra)) {
          if (!isInfraMeter(meter)) ctx.addIssue({ code: "custom", path: [meter], message: `unknown meter "${meter}"; meters: ${INFRA_METER_NAMES.join(", ")}` });
        }
      })
      .optional()
      .describe(`USD per million units by meter: ${INFRA_METER_NAMES.join(", ")}`),
    effectiveFrom: z.iso.datetime({ offset: true }).optional().describe("When the new prices take effect (default: now)"),
    note: z.string().max(500).optional(),
    ...ReadOnlyFields,
  })
  .strict()
  .superRefine((body, ctx) => {
    if (!body.models?.length && !Object.keys(body.infra ?? {}).length) {
      ctx.addIssue({ code: "custom", path: ["models"], message: "name at least one model in `models` or one meter in `infra`" });
    }
  });
export type PricingUpdate = z.infer<typeof PricingUpdateSchema>;

/** Defaults to 10 s; "0" turns the cache off (tests). */
export function priceCacheMs(env: Pick<Env, "PRICE_CACHE_MS">): number {
  const ms = Number(env.PRICE_CACHE_MS ?? 10_000);
  return Number.isFinite(ms) && ms >= 0 ? ms : 10_000;
}

// Per-isolate cache. `generation` makes an invalidation win over a load already in flight.
// Loads are numbered in the order they start, so a newer book is never replaced by an older
// one, and priceBookCovering can tell a load that began after it was called.
type Load = { promise: Promise<PriceBook>; seq: number };
let cached: { book: PriceBook; loadedAt: number; seq: number } | null = null;
let loading: Load | null = null;
let generation = 0;
let loadsStarted = 0;
const loadSeq = new WeakMap<PriceBook, number>();

/** Forgets this isolate's prices; other isolates see a change within PRICE_CACHE_MS. */
export function invalidatePriceCache(): void {
  cached = null;
  loading = null;
  generation += 1;
}

/** A load from D1 that refreshes the cache when it lands (unless invalidated meanwhile). */
function startLoad(env: Pick<Env, "DB" | "PRICE_CACHE_MS">): Load {
  const started = generation;
  const seq = ++loadsStarted;
  const promise = loadPriceBook(drizzle(env.DB)).then((book) => {
    loadSeq.set(book, seq);
    if (started === generation && (!cached || cached.seq < seq)) cached = { book, loadedAt: Date.now(), seq };
    if (loading?.promise === promise) loading = null;
    return book;
  });
  const load = { promise, seq };
  if (priceCacheMs(env) > 0) {
    loading = load;
    // A failed load must not stick: the next caller tries again.
    promise.catch(() => {
      if (loading === load) loading = null;
    });
  }
  return load;
}

/** Every version of every price, straight from D1. */
export async function loadPriceBook(db: DrizzleD1Database): Promise<PriceBook> {
  const [models, infra, versions] = await db.batch([db.select().from(modelPrices), db.select().from(infraPrices), db.select().from(priceVersions)]);
  return new PriceBook(
    models.map(
      (r): ModelPrice => ({
        model: r.model,
        version: r.version,
        effectiveFrom: r.effectiveFrom,
        input: BigInt(r.input),
        output: BigInt(r.output),
        cachedInput: r.cachedInput === null ? null : BigInt(r.cachedInput),
        reasoning: r.reasoning === null ? null : BigInt(r.reasoning),
      }),
    ),
    infra.flatMap((r): InfraPrice[] => (isInfraMeter(r.meter) ? [{ meter: r.meter, version: r.version, effectiveFrom: r.effectiveFrom, perMillion: BigInt(r.perMillion) }] : [])),
    versions.map((r): PriceVersionInfo => ({ version: r.version, effectiveFrom: r.effectiveFrom, createdAt: r.createdAt, note: r.note })),
  );
}

/**
 * The price book, from this isolate's cache while it is younger than PRICE_CACHE_MS. Usable
 * outside a request (a Durable Object, a queue consumer): it needs only `env.DB`.
 */
export async function cachedPriceBook(
  env: Pick<Env, "DB" | "PRICE_CACHE_MS">,
  now = Date.now(),
  options: { allowStale?: boolean } = {},
): Promise<PriceBook> {
  const ttl = priceCacheMs(env);
  if (cached && ttl > 0 && now - cached.loadedAt < ttl) return cached.book;
  if (ttl > 0 && loading) return options.allowStale && cached ? cached.book : loading.promise;
  // On the step path an expired book is used while a fresh one loads: a step never waits on
  // D1 for prices (they change rarely, and at most one refresh late).
  if (options.allowStale && cached && ttl > 0) {
    void cachedPriceBook(env, now).catch(() => {});
    return cached.book;
  }
  return startLoad(env).promise;
}

/**
 * A price book with a price in force at `at` for every model of `models` if D1 has one: the
 * cached book (stale allowed, as on the step path) when it has them all, else one loaded from
 * D1 after this call began, which also refreshes the cache. A model priced moments ago can
 * look unpriced to a stale price cache, and is then never billed: a cache miss must reload the
 * prices, never drop the event. The book may still lack a model; the caller decides. A failed
 * load rejects (the caller retries later).
 */
export async function priceBookCovering(env: Pick<Env, "DB" | "PRICE_CACHE_MS">, models: readonly string[], at: number): Promise<PriceBook> {
  // Only a load that starts after this point can see a price written before the call.
  const since = loadsStarted;
  const book = await cachedPriceBook(env, Date.now(), { allowStale: true });
  if (book.unknownModels(models, at).length === 0 || (loadSeq.get(book) ?? 0) > since) return book;
  // A load in flight serves if it started after this call did (the stale path above may have
  // just started one, or a concurrent miss): one D1 read for every miss waiting on it.
  return (loading && loading.seq > since ? loading : startLoad(env)).promise;
}

const iso = (ms: number) => new Date(ms).toISOString();
const exactUsd = (nano: bigint) => nanoToExactUsdString(nano);

function presentVersion(v: PriceVersionInfo) {
  return { version: v.version, effectiveFrom: iso(v.effectiveFrom), createdAt: iso(v.createdAt), note: v.note };
}

function newVersionId(now: number): string {
  const random = [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(36).padStart(2, "0")).join("");
  // The timestamp first: priceInForce breaks ties of effectiveFrom by version, so a later PUT
  // for the same instant wins (13 digits until the year 2286).
  return `v-${now}-${random}`;
}

/** Model names as given, or with the request field that named each (for the 422's details). */
export type ModelReference = string | { model: string; field: string };

export class PricingService {
  private readonly db: DrizzleD1Database;

  constructor(private readonly env: Env, db?: DrizzleD1Database) {
    this.db = db ?? drizzle(env.DB);
  }

  book(): Promise<PriceBook> {
    return cachedPriceBook(this.env);
  }

  /**
   * GET /v1/pricing: the prices in force at `at` (default now). `models` and `infra` hold
   * exactly the PUT fields, so the document is a valid PUT body; the exact nano figures and
   * the version of each price are in the read-only `inForce`.
   */
  async get(at = Date.now()) {
    const book = await this.book();
    const modelsNow = book.modelsInForce(at);
    const infraNow = book.infraInForce(at);
    const nullable = <T>(value: bigint | null, f: (nano: bigint) => T) => (value === null ? null : f(value));
    return {
      at: iso(at),
      models: modelsNow.map((p) => ({
        model: p.model,
        inputUsdPerMTok: exactUsd(p.input),
        outputUsdPerMTok: exactUsd(p.output),
        cachedInputUsdPerMTok: nullable(p.cachedInput, exactUsd),
        reasoningUsdPerMTok: nullable(p.reasoning, exactUsd),
      })),
      infra: Object.fromEntries(infraNow.map((p) => [p.meter, exactUsd(p.perMillion)])) as Partial<Record<InfraMeter, string>>,
      inForce: {
        models: modelsNow.map((p) => ({
          model: p.model,
          version: p.version,
          effectiveFrom: iso(p.effectiveFrom),
          inputNanoUsdPerMTok: nanoJson(p.input),
          outputNanoUsdPerMTok: nanoJson(p.output),
          cachedInputNanoUsdPerMTok: nullable(p.cachedInput, nanoJson),
          reasoningNanoUsdPerMTok: nullable(p.reasoning, nanoJson),
        })),
        infra: infraNow.map((p) => ({
          meter: p.meter,
          unit: INFRA_METERS[p.meter],
          version: p.version,
          effectiveFrom: iso(p.effectiveFrom),
          nanoUsdPerMillionUnits: nanoJson(p.perMillion),
        })),
      },
      versions: [...book.versions].sort((a, b) => b.effectiveFrom - a.effectiveFrom || (a.version < b.version ? 1 : -1)).map(presentVersion),
    };
  }

  /**
   * PUT /v1/pricing: one new version, from `effectiveFrom` (default now), for exactly the models
   * and meters named; every other price stays as it is. A named model gets a whole new record:
   * a cached or reasoning price left out falls back to the input or output price.
   */
  async put(body: PricingUpdate, now = Date.now()) {
    const parsed = PricingUpdateSchema.safeParse(body);
    if (!parsed.success) {
      throw validationFailed(parsed.error);
    }
    const update = parsed.data;
    const effectiveFrom = update.effectiveFrom ? Date.parse(update.effectiveFrom) : now;
    const version = newVersionId(now);
    const optional = (usd: string | number | null | undefined) => (usd === null || usd === undefined ? null : pricePerMillion(usd).toString());
    const modelRows = (update.models ?? []).map((m) => ({
      model: m.model,
      version,
      effectiveFrom,
      input: pricePerMillion(m.inputUsdPerMTok).toString(),
      output: pricePerMillion(m.outputUsdPerMTok).toString(),
      cachedInput: optional(m.cachedInputUsdPerMTok),
      reasoning: optional(m.reasoningUsdPerMTok),
    }));
    const infraRows = Object.entries(update.infra ?? {}).map(([meter, usd]) => ({ meter, version, effectiveFrom, perMillion: pricePerMillion(usd).toString() }));

    // One batch is one transaction: a version appears with all its prices or not at all.
    // D1 binds at most 100 parameters per statement: 7 per model row, 4 per meter row.
    await this.db.batch([
      this.db.insert(priceVersions).values({ version, effectiveFrom, createdAt: now, note: update.note ?? null }),
      ...chunks(modelRows, 14).map((rows) => this.db.insert(modelPrices).values(rows)),
      ...chunks(infraRows, 20).map((rows) => this.db.insert(infraPrices).values(rows)),
    ]);
    invalidatePriceCache();
    return {
      created: {
        ...presentVersion({ version, effectiveFrom, createdAt: now, note: update.note ?? null }),
        models: modelRows.map((r) => r.model),
        infra: infraRows.map((r) => r.meter),
      },
      ...(await this.get(now)),
    };
  }

  /**
   * Refuses (422, naming each) models without a price in force at `at`: a run that would use
   * one could not be billed. Called when a run is created.
   */
  async assertKnownModels(models: readonly ModelReference[], at = Date.now()): Promise<void> {
    if (models.length === 0) return;
    const book = await this.book();
    const unknown = models
      .map((m) => (typeof m === "string" ? { model: m, field: "model" } : m))
      .filter((m) => book.modelPrice(m.model, at) === undefined);
    if (unknown.length === 0) return;
    const names = [...new Set(unknown.map((m) => `"${m.model}"`))].join(", ");
    throw new DomainError(
      "unprocessable",
      `no price for model ${names}: add it with PUT /v1/pricing before using it`,
      unknown.map((m) => ({ field: m.field, message: `model "${m.model}" has no price` })),
    );
  }
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
