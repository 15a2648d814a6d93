import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DEFAULT_INFRA_USD_PER_MILLION, INFRA_METER_NAMES, PriceBook, pricePerMillion } from "../../src/domain/pricing";
import { PricingService, cachedPriceBook, priceBookCovering } from "../../src/services/pricing-service";
import { ERROR_STATUS, type ErrorCode } from "../../src/api/errors";
import { api, newCustomer } from "../helpers";

describe("seeded prices (migration 0002)", () => {
  it("hold Cloudflare's unit prices exactly, and the default models", async () => {
    const { results } = await env.DB.prepare("SELECT meter, per_million, version, effective_from FROM infra_prices WHERE version = 'cloudflare-2026-11'").all<{
      meter: string;
      per_million: string;
      version: string;
      effective_from: number;
    }>();
    expect(Object.fromEntries(results.map((r) => [r.meter, r.per_million]))).toEqual(
      Object.fromEntries(INFRA_METER_NAMES.map((m) => [m, pricePerMillion(DEFAULT_INFRA_USD_PER_MILLION[m]).toString()])),
    );
    expect(results.every((r) => r.effective_from === 0)).toBe(true);

    const res = await api("GET", "/v1/pricing?at=2020-01-01T00:00:00Z");
    expect(res.status).toBe(200);
    const mini = res.body.models.find((m: any) => m.model === "gpt-4o-mini");
    // Exactly the PUT fields; the rest is in inForce.
    expect(mini).toEqual({ model: "gpt-4o-mini", inputUsdPerMTok: "0.15", cachedInputUsdPerMTok: "0.075", outputUsdPerMTok: "0.60", reasoningUsdPerMTok: null });
    expect(res.body.inForce.models.find((m: any) => m.model === "gpt-4o-mini")).toEqual({
      model: "gpt-4o-mini",
      version: "defaults-2026-11",
      effectiveFrom: "1970-01-01T00:00:00.000Z",
      inputNanoUsdPerMTok: 150_000_000,
      cachedInputNanoUsdPerMTok: 75_000_000,
      outputNanoUsdPerMTok: 600_000_000,
      reasoningNanoUsdPerMTok: null,
    });
    expect(res.body.models.map((m: any) => m.model)).toEqual(expect.arrayContaining(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"]));
    expect(res.body.inForce.models.map((m: any) => m.model)).toEqual(res.body.models.map((m: any) => m.model));
    expect(res.body.infra.do_duration_ms).toBe("1.5625");
    expect(res.body.inForce.infra.find((m: any) => m.meter === "do_duration_ms")).toEqual({
      meter: "do_duration_ms",
      unit: "milliseconds of Durable Object wall time at 128 MB",
      version: "cloudflare-2026-11",
      effectiveFrom: "1970-01-01T00:00:00.000Z",
      nanoUsdPerMillionUnits: 1_562_500_000,
    });
    expect(res.body.inForce.infra.map((m: any) => m.meter)).toEqual(Object.keys(res.body.infra));
    expect(res.body).not.toHaveProperty("infraMeters");
    expect(res.body.versions.map((v: any) => v.version)).toEqual(expect.arrayContaining(["cloudflare-2026-11", "defaults-2026-11"]));
  });
});

describe("PUT /v1/pricing", () => {
  it("adds one version for the entries it names and leaves the rest; converts decimals exactly", async () => {
    const before = await api("GET", "/v1/pricing");
    const res = await api("PUT", "/v1/pricing", {
      body: {
        models: [{ model: "gpt-4o", inputUsdPerMTok: "2.000000001", outputUsdPerMTok: 0.1, cachedInputUsdPerMTok: 0.3, reasoningUsdPerMTok: "12.5" }],
        infra: { worker_requests: "0.35" },
        note: "test change",
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.created).toMatchObject({ models: ["gpt-4o"], infra: ["worker_requests"], note: "test change" });
    expect(res.body.created.version).toMatch(/^v-\d{13}-[0-9a-z]+$/);

    const after = await api("GET", "/v1/pricing");
    expect(after.body.models.find((m: any) => m.model === "gpt-4o")).toMatchObject({ inputUsdPerMTok: "2.000000001", outputUsdPerMTok: "0.10", reasoningUsdPerMTok: "12.50" });
    expect(after.body.inForce.models.find((m: any) => m.model === "gpt-4o")).toMatchObject({
      version: res.body.created.version,
      inputNanoUsdPerMTok: 2_000_000_001,
      outputNanoUsdPerMTok: 100_000_000, // 0.1 as a JSON number, still exact
      cachedInputNanoUsdPerMTok: 300_000_000, // 0.3: no 0.29999999999999998
      reasoningNanoUsdPerMTok: 12_500_000_000,
    });
    expect(after.body.infra.worker_requests).toBe("0.35");
    // Everything it did not name is as it was.
    const unchanged = (body: any) => ({
      models: body.models.filter((m: any) => m.model !== "gpt-4o"),
      inForce: body.inForce.models.filter((m: any) => m.model !== "gpt-4o"),
      infra: { ...body.infra, worker_requests: undefined },
    });
    expect(unchanged(after.body)).toEqual(unchanged(before.body));
    expect(after.body.versions.filter((v: any) => v.version === res.body.created.version)).toHaveLength(1);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM model_prices WHERE version = ?1").bind(res.body.created.version).first<{ n: number }>();
    expect(rows?.n).toBe(1);
  });

  it("takes effect from effectiveFrom, keeping the older price for earlier instants", async () => {
    const res = await api("PUT", "/v1/pricing", { body: { models: [{ model: "future-model", inputUsdPerMTok: "1", outputUsdPerMTok: "2" }], effectiveFrom: "2099-01-01T00:00:00Z" } });
    expect(res.status).toBe(200);
    expect(res.body.models.some((m: any) => m.model === "future-model")).toBe(false); // not yet in force
    const later = await api("GET", "/v1/pricing?at=2099-06-01T00:00:00Z");
    expect(later.body.models.find((m: any) => m.model === "future-model")).toMatchObject({ inputUsdPerMTok: "1.00" });
    expect(later.body.inForce.models.find((m: any) => m.model === "future-model")).toMatchObject({ effectiveFrom: "2099-01-01T00:00:00.000Z" });
    // Then: a cheaper price later again; the earlier one still answers for its own period.
    await api("PUT", "/v1/pricing", { body: { models: [{ model: "future-model", inputUsdPerMTok: "0.5", outputUsdPerMTok: "2" }], effectiveFrom: "2099-03-01T00:00:00Z" } });
    const feb = await api("GET", "/v1/pricing?at=2099-02-01T00:00:00Z");
    const apr = await api("GET", "/v1/pricing?at=2099-04-01T00:00:00Z");
    expect(feb.body.models.find((m: any) => m.model === "future-model").inputUsdPerMTok).toBe("1.00");
    expect(apr.body.models.find((m: any) => m.model === "future-model").inputUsdPerMTok).toBe("0.50");
  });

  it("answers bad bodies with a 400 naming each bad field", async () => {
    const cases: [unknown, string[]][] = [
      [{ infra: { worker_requests: "0.1", gpu_seconds: "1" } }, ["infra.gpu_seconds"]],
      [{ models: [{ model: "m", inputUsdPerMTok: "1.0000000001", outputUsdPerMTok: "-1" }] }, ["models.0.inputUsdPerMTok", "models.0.outputUsdPerMTok"]],
      [{ models: [{ model: "m", inputUsdPerMTok: 1 }] }, ["models.0.outputUsdPerMTok"]],
      [{ models: [{ model: "m", inputUsdPerMTok: "abc", outputUsdPerMTok: "1", cachedUsd: "1" }] }, ["models.0.inputUsdPerMTok", "models.0"]],
      [{ models: [{ model: "has space", inputUsdPerMTok: 1, outputUsdPerMTok: 1 }] }, ["models.0.model"]],
      [{ models: [{ model: "m", inputUsdPerMTok: 1, outputUsdPerMTok: 1 }, { model: "m", inputUsdPerMTok: 1, outputUsdPerMTok: 1 }] }, ["models.1.model"]],
      [{ models: [{ model: "m", inputUsdPerMTok: 1e21, outputUsdPerMTok: 1 }] }, ["models.0.inputUsdPerMTok"]],
      [{ infra: { worker_requests: 0.1 }, effectiveFrom: "tomorrow" }, ["effectiveFrom"]],
      [{}, ["models"]],
      [{ models: [], infra: {} }, ["models"]],
      [{ infra: { worker_requests: "1" }, extra: true }, ["(root)"]],
      // Read-only fields of a GET document are checked loosely, but checked.
      [{ infra: { worker_requests: "1" }, versions: "all", inForce: [] }, ["versions", "inForce"]],
    ];
    for (const [body, fields] of cases) {
      const res = await api("PUT", "/v1/pricing", { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details.map((d: any) => d.field).sort(), JSON.stringify(body)).toEqual([...fields].sort());
    }
    expect((await api("PUT", "/v1/pricing", { raw: "{not json" })).status).toBe(400);
    const unknownMeter = await api("PUT", "/v1/pricing", { body: { infra: { gpu_seconds: "1" } } });
    expect(unknownMeter.body.error.details[0].message).toContain("unknown meter");
  });

  it("takes a GET document back: GET, change one price, PUT the whole document", async () => {
    const before = await api("GET", "/v1/pricing");
    expect(before.status).toBe(200);
    const doc = structuredClone(before.body);
    const target = doc.models.find((m: any) => m.model === "gpt-4o-mini");
    const newOutput = target.outputUsdPerMTok === "0.65" ? "0.66" : "0.65";
    target.outputUsdPerMTok = newOutput;

    const put = await api("PUT", "/v1/pricing", { body: doc });
    expect(put.status, JSON.stringify(put.body)).toBe(200);

    const after = await api("GET", "/v1/pricing");
    expect(after.body.models).toEqual(before.body.models.map((m: any) => (m.model === "gpt-4o-mini" ? { ...m, outputUsdPerMTok: newOutput } : m)));
    expect(after.body.infra).toEqual(before.body.infra);
    expect(after.body.inForce.models.find((m: any) => m.model === "gpt-4o-mini")).toMatchObject({
      version: put.body.created.version,
      outputNanoUsdPerMTok: Number(pricePerMillion(newOutput)),
    });
  });

  it("takes a GET document back unchanged as a new version with the same prices; a PUT response too", async () => {
    const before = await api("GET", "/v1/pricing");
    const put = await api("PUT", "/v1/pricing", { body: before.body });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const version = put.body.created.version;
    expect(before.body.versions.some((v: any) => v.version === version)).toBe(false);

    const after = await api("GET", "/v1/pricing");
    expect(after.body.models).toEqual(before.body.models);
    expect(after.body.infra).toEqual(before.body.infra);
    const withoutVersion = (p: any) => ({ ...p, version: undefined, effectiveFrom: undefined });
    expect(after.body.inForce.models.map(withoutVersion)).toEqual(before.body.inForce.models.map(withoutVersion));
    expect(after.body.inForce.infra.map(withoutVersion)).toEqual(before.body.inForce.infra.map(withoutVersion));
    expect(new Set([...after.body.inForce.models, ...after.body.inForce.infra].map((p: any) => p.version))).toEqual(new Set([version]));
    expect(after.body.versions).toHaveLength(before.body.versions.length + 1);
    const rows = await env.DB.prepare("SELECT (SELECT COUNT(*) FROM model_prices WHERE version = ?1) AS models, (SELECT COUNT(*) FROM infra_prices WHERE version = ?1) AS infra")
      .bind(version)
      .first<{ models: number; infra: number }>();
    expect(rows).toEqual({ models: before.body.models.length, infra: Object.keys(before.body.infra).length });

    // A PUT response (with `created`) is a valid body as well.
    const again = await api("PUT", "/v1/pricing", { body: put.body });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.models).toEqual(before.body.models);
  });

  it("refuses a price above 100000 USD per million, naming the field; the cap itself is accepted", async () => {
    const res = await api("PUT", "/v1/pricing", {
      body: {
        models: [{ model: "too-dear", inputUsdPerMTok: "100000.000000001", outputUsdPerMTok: "100000", cachedInputUsdPerMTok: 200000, reasoningUsdPerMTok: "1000000" }],
        infra: { worker_requests: "100001", do_requests: "100000" },
      },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details.map((d: any) => d.field).sort()).toEqual(
      ["models.0.inputUsdPerMTok", "models.0.cachedInputUsdPerMTok", "models.0.reasoningUsdPerMTok", "infra.worker_requests"].sort(),
    );
    for (const d of res.body.error.details) expect(d.message).toBe("must be at most 100000 USD per million");
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM model_prices WHERE model = 'too-dear'").first<{ n: number }>())?.n).toBe(0);

    const atCap = await api("PUT", "/v1/pricing", { body: { models: [{ model: "dear-but-allowed", inputUsdPerMTok: "100000", outputUsdPerMTok: 100000 }] } });
    expect(atCap.status).toBe(200);
    expect(atCap.body.inForce.models.find((m: any) => m.model === "dear-but-allowed")).toMatchObject({ inputNanoUsdPerMTok: 100_000_000_000_000 });
  });

  it("still refuses an unknown top-level field of a GET document, naming it", async () => {
    const doc = (await api("GET", "/v1/pricing")).body;
    for (const field of ["infraMeters", "effectiveFom"]) {
      const res = await api("PUT", "/v1/pricing", { body: { ...doc, [field]: "2030-01-01T00:00:00Z" } });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.details).toEqual([{ field: "(root)", message: expect.stringContaining(`"${field}"`) }]);
    }
    // And inside a model: the old read-only fields are not model fields.
    const stale = { ...doc, models: [{ ...doc.models[0], version: "v1" }] };
    const res = await api("PUT", "/v1/pricing", { body: stale });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ field: "models.0", message: expect.stringContaining('"version"') }]);
  });

  it("is admin-only; any key may read", async () => {
    const customer = await newCustomer();
    const put = await api("PUT", "/v1/pricing", { key: customer.key, body: { infra: { worker_requests: "0" } } });
    expect(put.status).toBe(403);
    const garbage = await api("PUT", "/v1/pricing", { key: customer.key, raw: "{not json" });
    expect(garbage.status).toBe(403);
    expect((await api("GET", "/v1/pricing", { key: customer.key })).status).toBe(200);
    expect((await api("GET", "/v1/pricing", { key: null })).status).toBe(401);
    expect((await api("GET", "/v1/pricing?at=yesterday")).status).toBe(400);
  });

  it("is in the OpenAPI document", async () => {
    const doc = await api("GET", "/openapi.json", { key: null });
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(["/v1/pricing", "/v1/costs", "/v1/customers/{id}/profitability"]));
    expect(doc.body.paths["/v1/pricing"].put).toBeDefined();
  });
});

describe("PricingService", () => {
  it("refuses unknown models with a 422 naming each, and accepts priced ones", async () => {
    const pricing = new PricingService(env);
    await expect(pricing.assertKnownModels(["gpt-4o-mini", "claude-sonnet-4"])).resolves.toBeUndefined();
    const refused = await pricing.assertKnownModels(["gpt-4o", { model: "gpt-9", field: "steps.1.config.model" }]).catch((e) => e);
    // A transport-free DomainError; the HTTP edge answers its code with 422.
    expect(refused).toMatchObject({ code: "unprocessable", details: [{ field: "steps.1.config.model", message: 'model "gpt-9" has no price' }] });
    expect(ERROR_STATUS[refused.code as ErrorCode]).toBe(422);
    expect(refused.message).toContain('"gpt-9"');
    // A model priced only from a future date is unknown now.
    await expect(pricing.assertKnownModels(["future-model"], Date.parse("2000-01-01"))).rejects.toMatchObject({ code: "unprocessable" });
  });

  it("caches per isolate for PRICE_CACHE_MS, and a PUT clears its own isolate's cache", async () => {
    const cachedEnv = { ...env, PRICE_CACHE_MS: "60000" } as unknown as Env;
    const pricing = new PricingService(cachedEnv);
    await pricing.book(); // warm
    await env.DB.prepare("INSERT INTO model_prices (model, version, effective_from, input, output) VALUES ('sneaky', 'direct', 0, '1', '1')").run();
    expect((await pricing.book()).modelPrice("sneaky", Date.now())).toBeUndefined(); // still the cached book
    await pricing.put({ models: [{ model: "other", inputUsdPerMTok: "1", outputUsdPerMTok: "1" }] });
    expect((await pricing.book()).modelPrice("sneaky", Date.now())).toBeDefined();
  });
});

describe("priceBookCovering", () => {
  // The suite turns the cache off; these need it on (Env types PRICE_CACHE_MS as wrangler.toml's value).
  const cacheOn = (DB: D1Database) => ({ DB, PRICE_CACHE_MS: "60000" }) as unknown as Pick<Env, "DB" | "PRICE_CACHE_MS">;
  const cachedEnv = cacheOn(env.DB);
  /** The cached env with D1's batch (how drizzle loads the prices) replaced. */
  const withBatch = (batch: (real: D1Database, statements: D1PreparedStatement[]) => Promise<D1Result[]>) => {
    const DB = new Proxy(env.DB, {
      get(target, prop) {
        if (prop === "batch") return (statements: D1PreparedStatement[]) => batch(target, statements);
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    return cacheOn(DB);
  };
  /** D1 that counts price loads, or fails them. */
  const countingEnv = (fail = false) => {
    const counter = { loads: 0 };
    const counted = withBatch((real, statements) => {
      counter.loads += 1;
      return fail ? Promise.reject(new Error("D1 is down")) : real.batch(statements);
    });
    return { env: counted, counter };
  };
  const priceDirectly = async (model: string) => {
    const version = `direct-${model}`;
    await env.DB.batch([
      env.DB.prepare("INSERT INTO price_versions (version, effective_from, created_at, note) VALUES (?1, 0, ?2, 'inserted by a test')").bind(version, Date.now()),
      env.DB.prepare("INSERT INTO model_prices (model, version, effective_from, input, output) VALUES (?1, ?2, 0, '1000', '2000')").bind(model, version),
    ]);
  };

  it("reloads a stale cache that lacks a model priced after it was cached, and refreshes the cache", async () => {
    await cachedPriceBook(cachedEnv); // cached now
    await priceDirectly("priced-after-caching");
    // The cached book does not know it...
    expect((await cachedPriceBook(cachedEnv)).modelPrice("priced-after-caching", Date.now())).toBeUndefined();
    // ...priceBookCovering does,
    const book = await priceBookCovering(cachedEnv, ["gpt-4o-mini", "priced-after-caching"], Date.now());
    expect(book.modelPrice("priced-after-caching", Date.now())).toMatchObject({ version: "direct-priced-after-caching", input: 1000n, output: 2000n });
    // and the cache has the reloaded book.
    expect(await cachedPriceBook(cachedEnv)).toBe(book);
  });

  it("answers from the cache when it covers every model; one load for concurrent misses; a model D1 lacks stays unpriced", async () => {
    await cachedPriceBook(cachedEnv);
    const { env: counted, counter } = countingEnv();
    const cached = await cachedPriceBook(counted);
    expect(await priceBookCovering(counted, ["gpt-4o-mini", "gpt-4o"], Date.now())).toBe(cached);
    expect(counter.loads).toBe(0);

    await priceDirectly("concurrent-miss");
    const books = await Promise.all([
      priceBookCovering(counted, ["concurrent-miss"], Date.now()),
      priceBookCovering(counted, ["concurrent-miss", "gpt-4o"], Date.now()),
    ]);
    expect(counter.loads).toBe(1);
    expect(books[1]).toBe(books[0]);
    expect(books[0].modelPrice("concurrent-miss", Date.now())).toBeDefined();

    const missing = await priceBookCovering(counted, ["never-priced"], Date.now());
    expect(counter.loads).toBe(2);
    expect(missing.modelPrice("never-priced", Date.now())).toBeUndefined();
  });

  it("does not settle for a load that read D1 before the call; an older load never replaces a newer book", async () => {
    await cachedPriceBook(cachedEnv);
    // A load whose read is done but whose answer is held back.
    let readDone!: () => void;
    const read = new Promise<void>((resolve) => (readDone = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held = withBatch(async (real, statements) => {
      const result = await real.batch(statements);
      readDone();
      await released;
      return result;
    });
    const older = priceBookCovering(held, ["never-priced-either"], Date.now());
    try {
      await read;
      await priceDirectly("priced-during-a-load");
      const waited = new Promise<"waited for the older load">((resolve) => setTimeout(() => resolve("waited for the older load"), 2000));
      const book = await Promise.race([priceBookCovering(cachedEnv, ["priced-during-a-load"], Date.now()), waited]);
      expect(book).not.toBe("waited for the older load");
      expect((book as PriceBook).modelPrice("priced-during-a-load", Date.now())).toBeDefined();
    } finally {
      release();
    }
    expect((await older).modelPrice("priced-during-a-load", Date.now())).toBeUndefined(); // it read too early
    expect((await cachedPriceBook(cachedEnv)).modelPrice("priced-during-a-load", Date.now())).toBeDefined();
  });

  it("rejects when the reload fails, and the next call loads again", async () => {
    await cachedPriceBook(cachedEnv);
    await priceDirectly("priced-while-d1-down");
    const down = countingEnv(true);
    await expect(priceBookCovering(down.env, ["priced-while-d1-down"], Date.now())).rejects.toThrow("D1 is down");
    expect(down.counter.loads).toBe(1);
    const book = await priceBookCovering(cachedEnv, ["priced-while-d1-down"], Date.now());
    expect(book.modelPrice("priced-while-d1-down", Date.now())).toBeDefined();
  });
});
