/**
 * The secrets API: values go in and never come out; names are checked; each customer has its
 * own secrets and the admin the platform's; the table holds ciphertext only; a Worker without
 * SECRETS_KEY refuses to store secrets.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import worker from "../../src/index";
import { DEV_SECRETS_KEY } from "../../src/services/secrets-service";
import { openSecret } from "../../src/lib/secrets-crypto";
import { ADMIN, api, newCustomer } from "../helpers";

const rand = () => Math.random().toString(36).slice(2, 10);

let alice: { id: string; key: string };
let bob: { id: string; key: string };

beforeAll(async () => {
  alice = await newCustomer("alice");
  bob = await newCustomer("bob");
});

/** Pages through GET /v1/secrets. */
async function listAll(key: string) {
  const all: any[] = [];
  const bodies: string[] = [];
  let cursor: string | null = null;
  do {
    const res: any = await api("GET", `/v1/secrets?limit=2${cursor ? `&cursor=${cursor}` : ""}`, { key });
    expect(res.status).toBe(200);
    bodies.push(JSON.stringify(res.body));
    all.push(...res.body.secrets);
    cursor = res.body.nextCursor;
  } while (cursor);
  return { secrets: all, text: bodies.join("\n") };
}

describe("(f) the secrets API never returns a value", () => {
  it("PUT creates then replaces; GET lists names and times only, for the admin and for customers", async () => {
    const value = `alice-value-${rand()}`;
    const created = await api("PUT", "/v1/secrets/ALICE_API", { key: alice.key, body: { value } });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ secret: { name: "ALICE_API", source: "stored", createdAt: expect.any(String), updatedAt: expect.any(String) } });
    const replaced = await api("PUT", "/v1/secrets/ALICE_API", { key: alice.key, body: { value: `${value}-v2` } });
    expect(replaced.status).toBe(200);
    await api("PUT", "/v1/secrets/ALICE_OTHER", { key: alice.key, body: { value: `${value}-other` } });
    await api("PUT", "/v1/secrets/ALICE_THIRD", { key: alice.key, body: { value: `${value}-third` } });

    const listed = await listAll(alice.key);
    expect(listed.secrets.map((s) => s.name)).toEqual(["ALICE_API", "ALICE_OTHER", "ALICE_THIRD"]);
    for (const s of listed.secrets) expect(Object.keys(s).sort()).toEqual(["createdAt", "name", "source", "updatedAt"]);
    expect(listed.text).not.toContain(value);

    const platformValue = `platform-value-${rand()}`;
    expect((await api("PUT", "/v1/secrets/PLATFORM_LISTED", { body: { value: platformValue } })).status).toBe(201);
    const admin = await listAll(ADMIN);
    expect(admin.text).not.toContain(platformValue);
    expect(admin.text).not.toContain("worker-token-value-5f1c");
    // The Worker secret SECRET_WORKER_TOKEN (vitest.workerd.ts) is listed as the platform's, without a value.
    expect(admin.secrets).toContainEqual({ name: "WORKER_TOKEN", source: "worker", createdAt: null, updatedAt: null });
    expect(admin.secrets.map((s) => s.name)).toContain("PLATFORM_LISTED");
    // The platform's list holds no customer's secrets, and a customer's none of the platform's.
    expect(admin.secrets.map((s) => s.name)).not.toContain("ALICE_API");
    expect(listed.secrets.map((s) => s.name)).not.toContain("PLATFORM_LISTED");
  });

  it("bad names are 400, values are non-empty and at most 8 KiB", async () => {
    for (const name of ["lower", "1LEADING_DIGIT", "HAS-DASH", "_UNDERSCORE", `A${"B".repeat(64)}`, "SPACE%20X"]) {
      const res = await api("PUT", `/v1/secrets/${name}`, { key: alice.key, body: { value: "v" } });
      expect({ name, status: res.status, code: res.body.error?.code }).toEqual({ name, status: 400, code: "validation_failed" });
      expect(res.body.error.details.map((d: any) => d.field)).toContain("param.name");
      expect((await api("DELETE", `/v1/secrets/${name}`, { key: alice.key })).status).toBe(400);
    }
    expect((await api("PUT", `/v1/secrets/A${"B".repeat(63)}`, { key: alice.key, body: { value: "v" } })).status).toBe(201);
    const tooBig = await api("PUT", "/v1/secrets/BIG", { key: alice.key, body: { value: "é".repeat(4097) } }); // 8194 bytes
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.error.details.map((d: any) => d.field)).toContain("value");
    expect((await api("PUT", "/v1/secrets/BIG", { key: alice.key, body: { value: "é".repeat(4096) } })).status).toBe(201);
    expect((await api("PUT", "/v1/secrets/EMPTY", { key: alice.key, body: { value: "" } })).status).toBe(400);
    expect((await api("PUT", "/v1/secrets/EXTRA", { key: alice.key, body: { value: "v", scope: "platform" } })).status).toBe(400);
    expect((await api("PUT", "/v1/secrets/NOBODY", { key: null, body: { value: "v" } })).status).toBe(401);
  });

  it("another customer's secret is neither visible, deletable nor usable", async () => {
    const value = `bob-cannot-${rand()}`;
    await api("PUT", "/v1/secrets/ALICE_ONLY", { key: alice.key, body: { value } });
    expect((await listAll(bob.key)).secrets.map((s) => s.name)).not.toContain("ALICE_ONLY");
    expect((await api("DELETE", "/v1/secrets/ALICE_ONLY", { key: bob.key })).status).toBe(404);
    // Nor does the admin's DELETE reach it: the admin's secrets are the platform's.
    expect((await api("DELETE", "/v1/secrets/ALICE_ONLY")).status).toBe(404);
    const run = await api("POST", "/v1/runs", {
      key: bob.key,
      body: { projectId: "p", steps: [{ name: "call", type: "http", config: { url: "https://api.example/x", headers: { authorization: "Bearer {{secrets.ALICE_ONLY}}" } } }] },
    });
    expect(run.status).toBe(422);
    expect(run.body.error.details.map((d: any) => d.field)).toEqual(["steps.0.config.headers.authorization"]);
    // Bob writing the same name makes his own secret; Alice's is unchanged (its row is still there).
    expect((await api("PUT", "/v1/secrets/ALICE_ONLY", { key: bob.key, body: { value: "bob's" } })).status).toBe(201);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM secrets WHERE name = 'ALICE_ONLY'").first("n")).toBe(2);
    expect((await api("DELETE", "/v1/secrets/ALICE_ONLY", { key: alice.key })).status).toBe(204);
    expect((await api("DELETE", "/v1/secrets/ALICE_ONLY", { key: alice.key })).status).toBe(404);
    expect((await listAll(bob.key)).secrets.map((s) => s.name)).toContain("ALICE_ONLY");
  });

  it("a Worker secret cannot be overwritten or deleted through the API", async () => {
    expect((await api("PUT", "/v1/secrets/WORKER_TOKEN", { body: { value: "replacement" } })).status).toBe(409);
    expect((await api("DELETE", "/v1/secrets/WORKER_TOKEN")).status).toBe(409);
    // A customer's WORKER_TOKEN is simply its own.
    expect((await api("PUT", "/v1/secrets/WORKER_TOKEN", { key: alice.key, body: { value: "alice's own" } })).status).toBe(201);
  });
});

describe("(g) the table holds ciphertext only", () => {
  it("no plaintext in the D1 row; the row decrypts only as the secret it was written as", async () => {
    const value = `plaintext-marker-${rand()}-${rand()}`;
    expect((await api("PUT", "/v1/secrets/AT_REST", { key: alice.key, body: { value } })).status).toBe(201);
    const row = await env.DB.prepare("SELECT * FROM secrets WHERE scope = ? AND name = ?").bind(`customer:${alice.id}`, "AT_REST").first<Record<string, unknown>>();
    expect(row).not.toBeNull();
    const text = JSON.stringify(row);
    expect(text).not.toContain(value);
    expect(text).not.toContain(btoa(value));
    expect(text).not.toContain(value.slice(0, 16));
    const sealed = { ciphertext: String(row!.ciphertext), iv: String(row!.iv) };
    // It is the value, encrypted: the deployment's key opens it...
    expect(await openSecret(env.SECRETS_KEY, `customer:${alice.id}`, "AT_REST", sealed)).toBe(value);
    // ...but not as another scope's or name's secret, nor under another key.
    await expect(openSecret(env.SECRETS_KEY, "platform", "AT_REST", sealed)).rejects.toThrow();
    await expect(openSecret(env.SECRETS_KEY, `customer:${alice.id}`, "OTHER", sealed)).rejects.toThrow();
    await expect(openSecret("another-key-entirely-0123456789abcdef", `customer:${alice.id}`, "AT_REST", sealed)).rejects.toThrow();

    // Every write draws a new nonce.
    await api("PUT", "/v1/secrets/AT_REST", { key: alice.key, body: { value } });
    const again = await env.DB.prepare("SELECT iv, ciphertext FROM secrets WHERE scope = ? AND name = ?").bind(`customer:${alice.id}`, "AT_REST").first<{ iv: string; ciphertext: string }>();
    expect(again!.iv).not.toBe(sealed.iv);
    expect(again!.ciphertext).not.toBe(sealed.ciphertext);
  });

  it("a customer whose id is \"platform\" gets its own scope, not the platform's", async () => {
    const exists = await api("GET", "/v1/customers/platform");
    const key =
      exists.status === 200
        ? (await api("POST", "/v1/customers/platform/keys")).body.apiKey
        : (await api("POST", "/v1/customers", { body: { id: "platform", name: "Named platform" } })).body.apiKey;
    const platformValue = `real-platform-${rand()}`;
    await api("PUT", "/v1/secrets/CONFUSED", { body: { value: platformValue } });
    expect((await api("PUT", "/v1/secrets/CONFUSED", { key, body: { value: "customer platform's" } })).status).toBe(201);
    expect(await env.DB.prepare("SELECT scope FROM secrets WHERE name = 'CONFUSED' ORDER BY scope").all().then((r) => r.results.map((x) => x.scope))).toEqual(["customer:platform", "platform"]);
    // Its inline steps cannot reach the platform's WORKER_TOKEN.
    const run = await api("POST", "/v1/runs", { key, body: { projectId: "p", steps: [{ name: "c", type: "http", config: { url: "https://api.example/x", headers: { "x-api-key": "{{secrets.WORKER_TOKEN}}" } } }] } });
    expect(run.status).toBe(422);
  });
});

describe("a Worker without a usable SECRETS_KEY refuses to store secrets", () => {
  async function putWith(overrides: Partial<Env>) {
    const ctx = createExecutionContext();
    const response = await worker.fetch!(
      new Request("https://runplane.test/v1/secrets/NEEDS_KEY", { method: "PUT", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify({ value: "v" }) }) as any,
      { ...env, ...overrides } as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return { status: response.status, body: (await response.json()) as any };
  }

  it("answers 503 misconfigured without the key, and in production with the development one or a short one", async () => {
    for (const overrides of [{ SECRETS_KEY: "" }, { SECRETS_KEY: undefined as unknown as string }, { RUNPLANE_ENV: "production", SECRETS_KEY: DEV_SECRETS_KEY }, { RUNPLANE_ENV: "production", SECRETS_KEY: "short" }]) {
      const res = await putWith(overrides);
      expect(res.status, JSON.stringify(overrides)).toBe(503);
      expect(res.body.error.code).toBe("misconfigured");
      expect(res.body.error.message).toContain("SECRETS_KEY");
    }
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM secrets WHERE name = 'NEEDS_KEY'").first("n")).toBe(0);
    // The same request with the key set works.
    expect((await putWith({})).status).toBe(201);
  });
});
