import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp, MAX_BODY_BYTES } from "../../src/api/app";
import { ADMIN, api, documentedOperations, newCustomer } from "../helpers";

// The statuses every /v1 operation can answer whatever it does, probed on each operation of the
// served document. helpers.api() fails any answer whose status the document does not list, so
// each probe proves the status is both answered and documented.

type Operation = Awaited<ReturnType<typeof documentedOperations>>[number];

let v1: Operation[];
beforeAll(async () => {
  v1 = (await documentedOperations()).filter((op) => op.template.startsWith("/v1/"));
});

const fill = (template: string, value: string) => template.replace(/\{[^}]+\}/g, value);
const takesBody = (op: Operation) => op.method === "POST" || op.method === "PUT";

function expectEnvelope(body: any, code: string) {
  expect(body).toEqual({ error: { code, message: expect.any(String), requestId: expect.any(String), details: expect.any(Array) } });
}

describe("every /v1 operation documents what it answers", () => {
  it("the probes reach every operation", () => {
    expect(v1.length).toBe(41);
  });

  it("401 without a key", async () => {
    for (const op of v1) {
      const res = await api(op.method, fill(op.template, "nope"), { key: null });
      expect(res.status, `${op.method} ${op.template}`).toBe(401);
      expectEnvelope(res.body, "unauthorized");
    }
  });

  it("429 to a customer key past its rate limit, admin-only routes included", async () => {
    const { key } = await newCustomer("limited", { rateLimit: { requestsPerSecond: 0.001, burst: 1 } });
    expect((await api("GET", "/v1/runs", { key })).status).toBe(200);
    for (const op of v1) {
      const res = await api(op.method, fill(op.template, "nope"), { key, ...(takesBody(op) ? { body: {} } : {}) });
      expect(res.status, `${op.method} ${op.template}`).toBe(429);
      expectEnvelope(res.body, "rate_limited");
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    }
  });

  it("400 for a malformed path parameter, query or body", async () => {
    for (const op of v1) {
      let path = fill(op.template, "X".repeat(120));
      let options: Parameters<typeof api>[2] = {};
      if (!op.template.includes("{")) {
        if (takesBody(op)) options = { raw: "{not json" };
        else path += "?limit=0&from=yesterday&status=nope&groupBy=nope&at=nope&month=nope";
      }
      const res = await api(op.method, path, { key: ADMIN, ...options });
      expect(res.status, `${op.method} ${path}`).toBe(400);
    }
  });

  it("a customer key gets only documented answers, never a 5xx", async () => {
    const { key } = await newCustomer("probe");
    for (const op of v1) {
      const res = await api(op.method, fill(op.template, "nope"), { key, ...(takesBody(op) ? { body: {} } : {}) });
      expect(res.status, `${op.method} ${op.template}`).toBeLessThan(500);
    }
  });

  it("413 for a body over 1 MiB on every POST, PUT and DELETE, and 415 for one that is not JSON on every POST and PUT", async () => {
    const tooLarge = "x".repeat(MAX_BODY_BYTES + 1);
    for (const op of v1.filter((op) => op.method !== "GET")) {
      const path = fill(op.template, "nope");
      const large = await api(op.method, path, { raw: tooLarge });
      expect(large.status, `${op.method} ${op.template}`).toBe(413);
      expectEnvelope(large.body, "payload_too_large");
      if (!takesBody(op)) continue;
      const text = await api(op.method, path, { raw: "hello", headers: { "content-type": "text/plain" } });
      expect(text.status, `${op.method} ${op.template}`).toBe(415);
      expectEnvelope(text.body, "unsupported_media_type");
    }
  });

  it("503 from a deployment that refuses to serve (production with the development admin key)", async () => {
    const app = createApp();
    const misconfigured = { ...env, RUNPLANE_ENV: "production", ADMIN_API_KEY: "dev-admin-key" } as Env;
    for (const op of v1) {
      const ctx = createExecutionContext();
      const res = await app.fetch(
        new Request(`https://runplane.test${fill(op.template, "nope")}`, { method: op.method, headers: { authorization: "Bearer dev-admin-key" } }),
        misconfigured,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      expect(res.status, `${op.method} ${op.template}`).toBe(503);
      expect(op.statuses, `${op.method} ${op.template}`).toContain("503");
      expectEnvelope(await res.json(), "misconfigured");
    }
  });
});
