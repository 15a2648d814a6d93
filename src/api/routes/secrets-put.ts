import { createRoute, z } from "@hono/zod-openapi";
import type { App } from "../context";
import { bearer, errorResponse, errors, json, jsonBody } from "../openapi";
import { SecretNameParam, SecretSchema } from "../schemas";
import { MAX_SECRET_VALUE_BYTES } from "../../domain/secrets";

const SecretBody = z
  .object({
    value: z
      .string()
      .min(1, "value must not be empty")
      .refine((v) => new TextEncoder().encode(v).length <= MAX_SECRET_VALUE_BYTES, `value must be at most ${MAX_SECRET_VALUE_BYTES} bytes (8 KiB) of UTF-8`)
      .openapi({ description: "The secret; stored encrypted and never returned" }),
  })
  .strict();

const route = createRoute({
  method: "put",
  path: "/v1/secrets/{name}",
  operationId: "putSecret",
  tags: ["secrets"],
  summary: "Create or replace a secret",
  description:
    "Steps reference it as {{secrets.NAME}}. The admin key writes the platform's (usable by platform-wide run types), a customer key its own. A Worker secret SECRET_<NAME> cannot be changed here (409).",
  security: bearer,
  request: { params: SecretNameParam, ...jsonBody(SecretBody) },
  responses: {
    200: json(z.object({ secret: SecretSchema }), "Replaced"),
    201: json(z.object({ secret: SecretSchema }), "Created"),
    ...errors(400, 401, 409, 413, 415, 429),
    503: {
      ...errors(503)[503],
      ...errorResponse("`misconfigured`: SECRETS_KEY is not set (or, in production, is the development value), or the deployment refuses to serve"),
    },
  },
});

export function registerPutSecret(app: App) {
  app.openapi(route, async (c) => {
    const { created, secret } = await c.get("services").secrets.put(c.get("principal"), c.req.valid("param").name, c.req.valid("json").value);
    return created ? c.json({ secret }, 201) : c.json({ secret }, 200);
  });
}
