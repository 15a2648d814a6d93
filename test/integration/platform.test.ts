import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { clearReadinessCache } from "../../src/api/routes/health";
import { AuthService } from "../../src/services/auth-service";
import { registerStepType, stepTypeNames } from "../../src/steps/registry";
import { api, createRun, isFinished, newCustomer, waitForRun } from "../helpers";

describe("platform surface", () => {
  it("serves an OpenAPI document generated from the request schemas, and docs", async () => {
    const doc = await api("GET", "/openapi.json", { key: null });
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(["/v1/runs", "/v1/runs/{id}", "/v1/runs/{id}/cancel", "/v1/runs/{id}/events", "/v1/customers", "/v1/run-types/{name}", "/health"]),
    );
    const createRunBody = doc.body.paths["/v1/runs"].post.requestBody.content["application/json"].schema;
    const schema = createRunBody.$ref ? doc.body.components.schemas[createRunBody.$ref.split("/").pop()] : createRunBody;
    expect(schema.required).toContain("projectId");
    expect(schema.properties.priority.enum).toEqual(["high", "normal", "low"]);
    // /docs/ itself (Swagger UI) is a static asset in front of the Worker, which the test pool
    // does not serve: test/browser/dashboard.test.ts loads it over wrangler dev. The Worker's part
    // is the slash-less path.
    const docs = await exports.default.fetch(new Request("https://runplane.test/docs", { redirect: "manual" }));
    expect(docs.status).toBe(308);
    expect(docs.headers.get("location")).toBe("/docs/");
  });

  it("answers health without auth, readiness as {status} to the public and with its checks to the admin key", async () => {
    clearReadinessCache();
    expect((await api("GET", "/health", { key: null })).body).toEqual({ status: "ok" });
    const ready = await api("GET", "/health/ready", { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ok" });
    const detailed = await api("GET", "/health/ready");
    expect(detailed.status).toBe(200);
    expect(detailed.body.checks).toEqual({ config: { ok: true }, d1: { ok: true }, durableObjects: { ok: true }, queues: { ok: true } });
    expect(Date.parse(detailed.body.checkedAt)).toBeGreaterThan(0);
  });

  it("refuses to serve in production with the development admin key", () => {
    const db = {} as never;
    expect(new AuthService({ ...env, RUNPLANE_ENV: "production", ADMIN_API_KEY: "dev-admin-key" } as Env, db).misconfiguration()).toMatch(/development value/);
    expect(new AuthService({ ...env, RUNPLANE_ENV: "production", ADMIN_API_KEY: "" } as Env, db).misconfiguration()).toMatch(/not set/);
    expect(new AuthService({ ...env, RUNPLANE_ENV: "production", ADMIN_API_KEY: "a-real-secret" } as Env, db).misconfiguration()).toBeNull();
    expect(new AuthService({ ...env, RATE_LIMIT_RPS: "lots" } as unknown as Env, db).misconfiguration()).toMatch(/RATE_LIMIT_RPS is "lots"/);
    expect(new AuthService({ ...env, RATE_LIMIT_BURST: "0" } as unknown as Env, db).misconfiguration()).toMatch(/RATE_LIMIT_BURST/);
  });

  it("runs a custom step type registered by a platform team", async () => {
    registerStepType({
      type: "uppercase",
      description: "Upper-cases a text",
      configSchema: z.object({ text: z.string() }).strict(),
      async execute(config) {
        return { ok: true, output: config.text.toUpperCase() };
      },
    });
    expect(stepTypeNames()).toContain("uppercase");
    const customer = await newCustomer();
    const bad = await createRun(customer.key, { steps: [{ name: "shout", type: "uppercase", config: { text: 5 } }] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details[0].field).toBe("steps.0.config.text");
    const created = await createRun(customer.key, { input: { who: "ada" }, steps: [{ name: "shout", type: "uppercase", config: { text: "hello {{input.who}}" } }] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.steps[0].output).toBe("HELLO ADA");
  });
});
