import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { adminOnly } from "../auth";
import { bearer, errors, json, jsonBody } from "../openapi";
import { MAX_USD_PER_MILLION } from "../../domain/pricing";
import { PricingUpdateSchema } from "../../services/pricing-service";

const ExactInt = z.union([z.number().int(), z.string()]).openapi({ description: "Exact integer: a JSON number while ≤ 2^53, else a decimal string" });
const Usd = z.string().openapi({ description: "USD per million units, exact decimal", example: "0.15" });

const Version = z.object({ version: z.string(), effectiveFrom: z.string(), createdAt: z.string(), note: z.string().nullable() });

const Pricing = z
  .object({
    at: z.string().openapi({ description: "The instant these prices are in force at (read-only)" }),
    models: z
      .array(
        z.object({
          model: z.string(),
          inputUsdPerMTok: Usd,
          outputUsdPerMTok: Usd,
          cachedInputUsdPerMTok: Usd.nullable().openapi({ description: "null: cached input is billed at the input price" }),
          reasoningUsdPerMTok: Usd.nullable().openapi({ description: "null: reasoning tokens are billed at the output price" }),
        }),
      )
      .openapi({ description: "Model prices in force, exactly the fields PUT takes" }),
    infra: z.record(z.string(), Usd).openapi({ description: "USD per million units by meter, the shape PUT takes" }),
    inForce: z
      .object({
        models: z.array(
          z.object({
            model: z.string(),
            version: z.string(),
            effectiveFrom: z.string(),
            inputNanoUsdPerMTok: ExactInt,
            outputNanoUsdPerMTok: ExactInt,
            cachedInputNanoUsdPerMTok: ExactInt.nullable(),
            reasoningNanoUsdPerMTok: ExactInt.nullable(),
          }),
        ),
        infra: z.array(z.object({ meter: z.string(), unit: z.string(), version: z.string(), effectiveFrom: z.string(), nanoUsdPerMillionUnits: ExactInt })),
      })
      .openapi({ description: "Read-only: each price in force as exact nano-USD per million, with its version and effective date" }),
    versions: z.array(Version).openapi({ description: "Every price version, latest effective first (read-only)" }),
  })
  .openapi("Pricing");

const get = createRoute({
  method: "get",
  path: "/v1/pricing",
  operationId: "getPricing",
  tags: ["costs"],
  summary: "Prices in force now (or at `at`), with every version",
  description: "Model token prices and infrastructure unit prices. The document is a valid body for PUT /v1/pricing.",
  security: bearer,
  request: { query: z.object({ at: z.iso.datetime({ offset: true }).optional().openapi({ description: "Prices in force at this instant (default now)" }) }) },
  responses: { 200: json(Pricing, "Prices in force"), ...errors(400, 401, 429, 503) },
});

const put = createRoute({
  method: "put",
  path: "/v1/pricing",
  operationId: "putPricing",
  tags: ["costs"],
  summary: "Add a price version for the models and meters named (admin)",
  description:
    "The new version applies from `effectiveFrom` (default now); models and meters not named keep their prices. " +
    `Prices are USD per million tokens or units, as decimal strings or numbers with at most 9 decimals, converted exactly, at most ${MAX_USD_PER_MILLION} USD per million. ` +
    "A named model gets a whole new record: a cached-input or reasoning price left out is billed at the input or output price. " +
    "A GET (or PUT) response is a valid body: its read-only fields `at`, `inForce`, `versions` and `created` are accepted and ignored, so GET → edit → PUT works; " +
    "the prices it lists are all added as the new version. Any other unknown field is a 400.",
  security: bearer,
  middleware: adminOnly,
  request: jsonBody(PricingUpdateSchema),
  responses: {
    200: json(
      Pricing.extend({ created: Version.extend({ models: z.array(z.string()), infra: z.array(z.string()) }) }),
      "The version added, and the prices now in force",
    ),
    ...errors(400, 401, 403, 413, 415, 429, 503),
  },
});

export function registerPricing(app: App) {
  app.openapi(get, async (c) => {
    const { at } = c.req.valid("query");
    return c.json(await c.get("services").pricing.get(at ? Date.parse(at) : undefined), 200);
  });
  app.openapi(put, async (c) => c.json(await c.get("services").pricing.put(c.req.valid("json")), 200));
}
