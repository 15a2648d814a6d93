import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DEFAULT_INFRA_USD_PER_MILLION, INFRA_METER_NAMES, pricePerMillion } from "../../src/domain/pricing";
import { PricingService } from "../../src/services/pricing-service";
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
    expect(mini).toMatchObject({
      inputUsdPerMTok: "0.15",
      cachedInputUsdPerMTok: "0.075",
      outputUsdPerMTok: "0.60",
      reasoningUsdPerMTok: null,
      inputNanoUsdPerMTok: 150_000_000,
      cachedInputNanoUsdPerMTok: 75_000_000,
      outputNanoUsdPerMTok: 600_000_000,
      version: "defaults-2026-11",
      effectiveFrom: "1970-01-01T00:00:00.000Z",
    });
    expect(res.body.models.map((m: any) => m.model)).toEqual(expect.arrayContaining(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"]));
    expect(res.body.infra.do_duration_ms).toBe("1.5625");
    expect(res.body.infraMeters.find((m: any) => m.meter === "do_duration_ms")).toMatchObject({ nanoUsdPerMillionUnits: 1_562_500_000, version: "cloudflare-2026-11" });
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
    const gpt4o = after.body.models.find((m: any) => m.model === "gpt-4o");
    expect(gpt4o).toMatchObject({
      version: res.body.created.version,
      inputUsdPerMTok: "2.000000001",
      inputNanoUsdPerMTok: 2_000_000_001,
      outputNanoUsdPerMTok: 100_000_000, // 0.1 as a JSON number, still exact
      cachedInputNanoUsdPerMTok: 300_000_000, // 0.3: no 0.29999999999999998
      reasoningNanoUsdPerMTok: 12_500_000_000,
    });
    expect(after.body.infra.worker_requests).toBe("0.35");
    // Everything it did not name is as it was.
    const unchanged = (body: any) => ({ models: body.models.filter((m: any) => m.model !== "gpt-4o"), infra: { ...body.infra, worker_requests: undefined } });
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
    expect(later.body.models.find((m: any) => m.model === "future-model")).toMatchObject({ inputUsdPerMTok: "1.00", effectiveFrom: "2099-01-01T00:00:00.000Z" });
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
    expect(refused).toMatchObject({ code: "unprocessable", status: 422, details: [{ field: "steps.1.config.model", message: 'model "gpt-9" has no price' }] });
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
