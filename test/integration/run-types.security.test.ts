/**
 * Run types and secrets across tenants: what a customer sees of a run type (inline credentials
 * redacted), whose run types it sees and runs (the platform's and its own), whose secrets a
 * run's steps may use (the platform's only from a platform-wide run type), and where a secret
 * value may appear once a step used it (only in the request the step made).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { RunCoordinator } from "../../durable-objects/run/run-coordinator";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

const realFetch = globalThis.fetch;
afterEach(() => vi.restoreAllMocks());

const rand = () => Math.random().toString(36).slice(2, 10);
const once = { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10, backoffFactor: 1 };

interface Call {
  url: string;
  headers: Headers;
  body: string | null;
}

/** The remote API the steps call (https://api.example): outside the platform, so mocked. */
function fakeApi(handler: (call: Call) => Response | Promise<Response> = () => Response.json({ ok: true })) {
  const calls: Call[] = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith("https://api.example/")) return realFetch(input, init);
    const call = { url, headers: new Headers(init?.headers), body: typeof init?.body === "string" ? init.body : null };
    calls.push(call);
    return handler(call);
  });
  return calls;
}

async function putSecret(key: string, name: string, value: string) {
  const res = await api("PUT", `/v1/secrets/${name}`, { key, body: { value } });
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
}

async function putRunType(key: string, name: string, body: unknown, query = "") {
  return api("PUT", `/v1/run-types/${name}${query}`, { key, body });
}

const httpStep = (name: string, config: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name, type: "http", config, retry: once, ...extra });

/** Every row of every table in the run's Durable Object, as JSON. */
async function runObjectDump(runId: string): Promise<string> {
  const stub = env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId));
  return runInDurableObject(stub, (_instance, state) => {
    const tables = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").toArray();
    expect(tables.length).toBeGreaterThan(0);
    return JSON.stringify(Object.fromEntries(tables.map((t) => [t.name, state.storage.sql.exec(`SELECT * FROM "${t.name}"`).toArray()])));
  });
}

/** The step assignments the run objects hand to workers, as they leave the object. */
function captureAssignments() {
  const assignments: unknown[] = [];
  const start = RunCoordinator.prototype.startStep;
  vi.spyOn(RunCoordinator.prototype, "startStep").mockImplementation(async function (this: RunCoordinator, input) {
    const result = await start.call(this, input);
    if (result.ok) assignments.push(result.assignment);
    return result;
  });
  const complete = RunCoordinator.prototype.completeStep;
  vi.spyOn(RunCoordinator.prototype, "completeStep").mockImplementation(async function (this: RunCoordinator, input) {
    const result = await complete.call(this, input);
    if (result.ok && result.next) assignments.push(result.next);
    return result;
  });
  return assignments;
}

/** Everything logged while `fn` runs (the run objects and consumers share this isolate). */
function captureLogs() {
  const lines: string[] = [];
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    });
  }
  return lines;
}

/** The run as D1 holds it once the events consumer has written its attempts. */
async function d1Rows(runId: string, attempts: number) {
  await vi.waitUntil(async () => ((await env.DB.prepare("SELECT COUNT(*) AS n FROM step_attempts WHERE run_id = ? AND finished_at IS NOT NULL").bind(runId).first<{ n: number }>())?.n ?? 0) >= attempts, {
    timeout: 10_000,
    interval: 50,
  });
  const stepAttempts = (await env.DB.prepare("SELECT * FROM step_attempts WHERE run_id = ?").bind(runId).all()).results;
  const run = (await env.DB.prepare("SELECT * FROM runs WHERE id = ?").bind(runId).all()).results;
  const dlq = (await env.DB.prepare("SELECT * FROM dlq_entries WHERE run_id = ?").bind(runId).all()).results;
  return JSON.stringify({ stepAttempts, run, dlq });
}

let alice: { id: string; key: string };
let bob: { id: string; key: string };
const PLATFORM_TOKEN = `platform-token-${rand()}-${rand()}`;

beforeAll(async () => {
  alice = await newCustomer("alice");
  bob = await newCustomer("bob");
  await putSecret("test-admin-key", "PLATFORM_TOKEN", PLATFORM_TOKEN);
});

describe("(a) customers see run types with inline credentials redacted", () => {
  it("hides a literal authorization header, API-key headers and password fields from a customer key; the admin sees them", async () => {
    const name = `inline-creds-${rand()}`;
    const literal = `Bearer sk-live-${rand()}`;
    const definition = {
      steps: [
        httpStep("call", {
          url: "https://api.example/orders",
          method: "POST",
          headers: { Authorization: literal, "X-Api-Key": "key-abc-123", "x-partner-token": "tok-999", accept: "application/json", "x-platform": "Bearer {{secrets.PLATFORM_TOKEN}}" },
          body: { user: "svc", password: "hunter2-pw", nested: { apiKey: "nested-key-1", maxTokens: 5 } },
        }),
      ],
    };
    expect((await putRunType("test-admin-key", name, definition)).status).toBe(201);

    const asCustomer = await api("GET", `/v1/run-types/${name}`, { key: alice.key });
    expect(asCustomer.status).toBe(200);
    const config = asCustomer.body.runType.steps[0].config;
    expect(config.headers).toEqual({
      Authorization: "[redacted]",
      "X-Api-Key": "[redacted]",
      "x-partner-token": "[redacted]",
      accept: "application/json",
      // A secret reference names a secret; it holds no credential, so it stays readable.
      "x-platform": "Bearer {{secrets.PLATFORM_TOKEN}}",
    });
    expect(config.body).toEqual({ user: "svc", password: "[redacted]", nested: { apiKey: "[redacted]", maxTokens: 5 } });
    expect(config.url).toBe("https://api.example/orders");
    const shown = JSON.stringify(asCustomer.body);
    for (const credential of [literal, "key-abc-123", "tok-999", "hunter2-pw", "nested-key-1"]) expect(shown).not.toContain(credential);

    // The list shows the same redacted run type (page through until it appears).
    let listed: any;
    let cursor: string | null = null;
    do {
      const page: any = await api("GET", `/v1/run-types?limit=100${cursor ? `&cursor=${cursor}` : ""}`, { key: alice.key });
      expect(page.status).toBe(200);
      listed ??= page.body.runTypes.find((t: any) => t.name === name);
      expect(JSON.stringify(page.body)).not.toContain(literal);
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(listed.steps[0].config.headers.Authorization).toBe("[redacted]");
    expect(listed.owner).toBeNull();

    const asAdmin = await api("GET", `/v1/run-types/${name}`);
    expect(asAdmin.body.runType.steps[0].config.headers.Authorization).toBe(literal);
    expect(asAdmin.body.runType.steps[0].config.body.password).toBe("hunter2-pw");
    const adminList = await api("GET", "/v1/run-types?limit=500");
    expect(adminList.body.runTypes.find((t: any) => t.name === name).steps[0].config.headers.Authorization).toBe(literal);
  });
});

describe("(b) a customer's run type belongs to it alone", () => {
  it("is invisible (404) to another customer, who can neither run nor take it; the admin sees it", async () => {
    const name = `alice-own-${rand()}`;
    const created = await putRunType(alice.key, name, { steps: [synthetic("a", { output: "{{input.n}}" })] });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.runType.owner).toBe(alice.id);

    // Alice sees and runs it.
    expect((await api("GET", `/v1/run-types/${name}`, { key: alice.key })).status).toBe(200);
    const run = await createRun(alice.key, { runType: name, input: { n: 7 } });
    expect(run.status).toBe(202);
    expect((await waitForRun(alice.key, run.body.run.id, isFinished)).status).toBe("succeeded");

    // To Bob it is exactly like a name that does not exist.
    const never = `never-made-${rand()}`;
    const got = await api("GET", `/v1/run-types/${name}`, { key: bob.key });
    expect(got.status).toBe(404);
    expect(got.body.error.message).toBe((await api("GET", `/v1/run-types/${never}`, { key: bob.key })).body.error.message.replace(never, name));
    const list = await api("GET", "/v1/run-types?limit=500", { key: bob.key });
    expect(list.body.runTypes.map((t: any) => t.name)).not.toContain(name);
    expect(list.body.runTypes.every((t: any) => t.owner === null || t.owner === bob.id)).toBe(true);
    const refused = await createRun(bob.key, { runType: name, input: { n: 1 } });
    expect(refused.status).toBe(422);
    expect(refused.body.error.details).toEqual([{ field: "runType", message: "unknown run type" }]);
    // Not with the admin key on Bob's behalf either: Alice's steps are not Bob's to run.
    expect((await api("POST", "/v1/runs", { body: { projectId: "p", customerId: bob.id, runType: name } })).status).toBe(422);

    // Bob cannot take the name over; Alice's definition is untouched.
    const taken = await putRunType(bob.key, name, { steps: [synthetic("b")] });
    expect(taken.status).toBe(409);
    expect(taken.body.error.message).not.toContain(alice.id);
    expect((await api("GET", `/v1/run-types/${name}`)).body.runType.steps.map((s: any) => s.name)).toEqual(["a"]);

    // The admin sees it, and replaces it only as Alice's.
    expect((await api("GET", `/v1/run-types/${name}`)).body.runType.owner).toBe(alice.id);
    expect((await putRunType("test-admin-key", name, { steps: [synthetic("c")] })).status).toBe(409);
    const replaced = await putRunType("test-admin-key", name, { steps: [synthetic("c")] }, `?owner=${alice.id}`);
    expect(replaced.status).toBe(200);
    expect(replaced.body.runType.owner).toBe(alice.id);
  });

  it("a customer cannot replace a platform-wide run type or write one for another customer", async () => {
    const name = `platform-${rand()}`;
    expect((await putRunType("test-admin-key", name, { steps: [synthetic("a")] })).status).toBe(201);
    const refused = await putRunType(alice.key, name, { steps: [synthetic("evil")] });
    expect(refused.status).toBe(403);
    expect((await api("GET", `/v1/run-types/${name}`)).body.runType.steps[0].name).toBe("a");
    const forBob = await putRunType(alice.key, `for-bob-${rand()}`, { steps: [synthetic("a")] }, `?owner=${bob.id}`);
    expect(forBob.status).toBe(403);
    // The admin may create one for a customer that exists only.
    expect((await putRunType("test-admin-key", `orphan-${rand()}`, { steps: [synthetic("a")] }, "?owner=no-such-customer")).status).toBe(422);
  });
});

describe("(c) a platform run type's secret reaches the endpoint and nothing else", () => {
  it("resolves {{secrets.PLATFORM_TOKEN}} and the Worker secret for a customer's run; the value is in no snapshot, event, output, D1 row, assignment or log", async () => {
    const name = `platform-secret-${rand()}`;
    const WORKER_TOKEN = "worker-token-value-5f1c"; // vitest.workerd.ts: SECRET_WORKER_TOKEN
    const put = await putRunType("test-admin-key", name, {
      steps: [
        httpStep("stored", { url: "https://api.example/orders/{{input.orderId}}", headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } }),
        httpStep("worker", { url: "https://api.example/audit", method: "POST", headers: { "x-api-key": "{{secrets.WORKER_TOKEN}}" }, body: { order: "{{input.orderId}}", note: "key {{secrets.WORKER_TOKEN}}" } }),
      ],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(201);

    const calls = fakeApi(() => Response.json({ accepted: true }));
    const assignments = captureAssignments();
    const logs = captureLogs();
    const created = await createRun(alice.key, { runType: name, input: { orderId: "o-17" } });
    expect(created.status).toBe(202);
    const runId = created.body.run.id;
    const run = await waitForRun(alice.key, runId, isFinished);
    expect(run.status).toBe("succeeded");

    // The endpoint got the values.
    expect(calls.map((c) => c.url)).toEqual(["https://api.example/orders/o-17", "https://api.example/audit"]);
    expect(calls[0]!.headers.get("authorization")).toBe(`Bearer ${PLATFORM_TOKEN}`);
    expect(calls[1]!.headers.get("x-api-key")).toBe(WORKER_TOKEN);
    expect(JSON.parse(calls[1]!.body!)).toEqual({ order: "o-17", note: `key ${WORKER_TOKEN}` });

    // The assignments carried the references, in the platform's scope, never the values.
    expect(assignments).toHaveLength(2);
    expect(JSON.stringify(assignments)).toContain("Bearer {{secrets.PLATFORM_TOKEN}}");
    expect(assignments.every((a: any) => a.secretScope === "platform")).toBe(true);

    const events = await api("GET", `/v1/runs/${runId}/events`, { key: alice.key });
    expect(events.status).toBe(200);
    const places: Record<string, string> = {
      snapshot: JSON.stringify(run),
      adminSnapshot: JSON.stringify((await api("GET", `/v1/runs/${runId}`)).body),
      events: JSON.stringify(events.body),
      outputs: JSON.stringify(run.steps.map((s: any) => s.output)),
      runObjectStorage: await runObjectDump(runId),
      d1: await d1Rows(runId, 2),
      assignments: JSON.stringify(assignments),
      logs: logs.join("\n"),
    };
    expect(places.runObjectStorage).toContain("{{secrets.PLATFORM_TOKEN}}");
    expect(places.d1).toContain("succeeded");
    for (const [where, text] of Object.entries(places)) {
      expect(text, where).not.toContain(PLATFORM_TOKEN);
      expect(text, where).not.toContain(WORKER_TOKEN);
    }
  });

  it("input cannot make a platform step send a secret its config does not reference", async () => {
    const name = `echo-input-${rand()}`;
    expect((await putRunType("test-admin-key", name, { steps: [httpStep("post", { url: "https://api.example/notes", method: "POST", body: { text: "{{input.text}}", whole: "x{{input.pre}}" } })] })).status).toBe(201);
    const calls = fakeApi();
    for (const input of [{ text: "{{secrets.PLATFORM_TOKEN}}", pre: "" }, { text: "hi", pre: "{{secrets.PLATFORM_TOKEN}}" }]) {
      const created = await createRun(alice.key, { runType: name, input });
      const run = await waitForRun(alice.key, created.body.run.id, isFinished);
      expect(run.status).toBe("failed");
      expect(run.failure.type).toBe("permanent");
      expect(run.failure.message).toContain("secret reference");
    }
    // Put together from pieces: "{{" from the config's text, "secrets.…}}" from input.
    const split = `split-${rand()}`;
    expect((await putRunType("test-admin-key", split, { steps: [httpStep("post", { url: "https://api.example/notes", method: "POST", body: "{{{{input.rest}}" })] })).status).toBe(201);
    const pieces = await createRun(alice.key, { runType: split, input: { rest: "secrets.PLATFORM_TOKEN}}" } });
    expect((await waitForRun(alice.key, pieces.body.run.id, isFinished)).failure.message).toContain("secret reference");
    expect(calls).toEqual([]);
  });

  it("a platform run type that uses a secret must fix its destination's host", async () => {
    let refusedForTheSecret = 0;
    for (const url of ["{{input.url}}", "https://{{input.host}}/x", "https://api.example{{input.rest}}", "https://api.example@{{input.rest}}/"]) {
      // Without a secret the URL may be taken (or refused by the URL rules, whatever the secrets).
      const plain = await putRunType("test-admin-key", `dest-plain-${rand()}`, { steps: [httpStep("call", { url })] });
      const res = await putRunType("test-admin-key", `dest-${rand()}`, { steps: [httpStep("call", { url, headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } })] });
      expect(res.status, url).toBeGreaterThanOrEqual(400);
      expect(res.body.error.details.map((d: any) => d.field)).toContain("steps.0.config.url");
      if (plain.status === 201) {
        expect({ url, status: res.status }).toEqual({ url, status: 422 });
        refusedForTheSecret += 1;
      }
    }
    expect(refusedForTheSecret).toBeGreaterThanOrEqual(2);
    // A fixed host with the path from input is fine; so is any URL without a secret.
    expect((await putRunType("test-admin-key", `dest-ok-${rand()}`, { steps: [httpStep("call", { url: "https://api.example/items/{{input.id}}", headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } })] })).status).toBe(201);
    expect((await putRunType("test-admin-key", `dest-free-${rand()}`, { steps: [httpStep("call", { url: "https://api.example/items/{{input.id}}" })] })).status).toBe(201);
  });
});

describe("(d) whose secrets a run may use is decided by where its steps came from", () => {
  it("refuses the platform's secret in inline steps and in customer run types (422 naming the field)", async () => {
    const steps = [httpStep("call", { url: "https://api.example/x", headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } })];
    const inline = await createRun(alice.key, { steps });
    expect(inline.status).toBe(422);
    expect(inline.body.error.code).toBe("unprocessable");
    expect(inline.body.error.details.map((d: any) => d.field)).toEqual(["steps.0.config.headers.authorization"]);
    expect(inline.body.error.message).toContain("PLATFORM_TOKEN");
    // Also when the admin creates the run on the customer's behalf: the steps are still inline.
    expect((await api("POST", "/v1/runs", { body: { projectId: "p", customerId: alice.id, steps } })).status).toBe(422);
    // A Worker secret is the platform's too.
    expect((await createRun(alice.key, { steps: [httpStep("call", { url: "https://api.example/x", headers: { "x-api-key": "{{secrets.WORKER_TOKEN}}" } })] })).status).toBe(422);

    const own = await putRunType(alice.key, `wants-platform-${rand()}`, { steps });
    expect(own.status).toBe(422);
    expect(own.body.error.details.map((d: any) => d.field)).toEqual(["steps.0.config.headers.authorization"]);
    const byAdmin = await putRunType("test-admin-key", `owned-wants-platform-${rand()}`, { steps }, `?owner=${alice.id}`);
    expect(byAdmin.status).toBe(422);
    // Malformed references are a 400; durable steps cannot take secrets at all.
    expect((await createRun(alice.key, { steps: [httpStep("call", { url: "https://api.example/x", headers: { a: "{{secrets.lower}}" } })] })).status).toBe(400);
    const durable = await createRun(alice.key, { steps: [{ name: "nap", type: "sleep", config: { durationMs: 10, note: "{{secrets.PLATFORM_TOKEN}}" } }] });
    expect(durable.status).toBe(400);
    expect(durable.body.error.details).toContainEqual({ field: "steps.0.config", message: expect.stringContaining("never sees secrets") });
  });

  it("a customer's own secret works in its inline steps and own run types, looked up in its scope only", async () => {
    const mine = `alice-secret-${rand()}`;
    const platformValue = `platform-shadow-${rand()}`;
    // The same name exists on the platform with another value: it must not be the one used.
    await putSecret(alice.key, "SHARED_NAME", mine);
    await putSecret("test-admin-key", "SHARED_NAME", platformValue);
    const calls = fakeApi();
    const steps = [httpStep("call", { url: "https://api.example/mine", headers: { authorization: "Bearer {{secrets.SHARED_NAME}}" } })];
    const inline = await createRun(alice.key, { steps });
    expect(inline.status, JSON.stringify(inline.body)).toBe(202);
    expect((await waitForRun(alice.key, inline.body.run.id, isFinished)).status).toBe("succeeded");
    const ownType = `alice-uses-own-${rand()}`;
    expect((await putRunType(alice.key, ownType, { steps })).status).toBe(201);
    const viaType = await createRun(alice.key, { runType: ownType });
    expect((await waitForRun(alice.key, viaType.body.run.id, isFinished)).status).toBe("succeeded");
    // A platform run type with the same reference gets the platform's value.
    const platformType = `platform-uses-shared-${rand()}`;
    expect((await putRunType("test-admin-key", platformType, { steps })).status).toBe(201);
    const viaPlatform = await createRun(alice.key, { runType: platformType });
    expect((await waitForRun(alice.key, viaPlatform.body.run.id, isFinished)).status).toBe("succeeded");
    expect(calls.map((c) => c.headers.get("authorization"))).toEqual([`Bearer ${mine}`, `Bearer ${mine}`, `Bearer ${platformValue}`]);

    // Bob has no such secret: his inline steps are refused, not given Alice's or the platform's.
    expect((await createRun(bob.key, { steps })).status).toBe(422);
  });

  it("a secret gone by the time the step runs fails the attempt as permanent, naming it", async () => {
    const value = `short-lived-${rand()}`;
    await putSecret(alice.key, "SHORT_LIVED", value);
    const calls = fakeApi();
    const created = await createRun(alice.key, {
      steps: [{ name: "nap", type: "sleep", config: { durationMs: 1500 } }, httpStep("call", { url: "https://api.example/late", headers: { authorization: "Bearer {{secrets.SHORT_LIVED}}" } })],
    });
    expect(created.status).toBe(202);
    expect((await api("DELETE", "/v1/secrets/SHORT_LIVED", { key: alice.key })).status).toBe(204);
    const run = await waitForRun(alice.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.failure.type).toBe("permanent");
    expect(run.failure.step).toBe("call");
    expect(run.failure.message).toContain('secret "SHORT_LIVED"');
    expect(JSON.stringify(run)).not.toContain(value);
    expect(calls).toEqual([]);
  });
});

describe("(e) a secret value an endpoint sends back is replaced by [secret]", () => {
  it("in an output, in a network error and in an LLM endpoint's error message", async () => {
    const name = `echoes-${rand()}`;
    const put = await putRunType("test-admin-key", name, {
      steps: [
        httpStep("echo", { url: "https://api.example/echo", headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } }),
        httpStep("broken", { url: "https://api.example/broken", headers: { authorization: "Bearer {{secrets.PLATFORM_TOKEN}}" } }),
      ],
    });
    expect(put.status).toBe(201);
    const llm = `echo-llm-${rand()}`;
    expect(
      (
        await putRunType("test-admin-key", llm, {
          steps: [{ name: "ask", type: "llm", retry: once, config: { model: "gpt-4o-mini", baseUrl: "https://api.example/v1", messages: [{ role: "user", content: "my key is {{secrets.PLATFORM_TOKEN}}" }] } }],
        })
      ).status,
    ).toBe(201);
    fakeApi((call) => {
      const auth = call.headers.get("authorization") ?? "";
      if (call.url.endsWith("/echo")) return Response.json({ youSent: auth, encoded: encodeURIComponent(PLATFORM_TOKEN), b64: btoa(PLATFORM_TOKEN) });
      if (call.url.endsWith("/broken")) throw new TypeError(`connection reset while sending ${auth}`);
      const prompt = JSON.parse(call.body!).messages[0].content as string;
      return Response.json({ error: { message: `invalid request: ${prompt}` } }, { status: 400 });
    });

    const created = await createRun(alice.key, { runType: name });
    const run = await waitForRun(alice.key, created.body.run.id, isFinished);
    expect(run.steps[0].output.body).toEqual({ youSent: "Bearer [secret]", encoded: "[secret]", b64: "[secret]" });
    expect(run.status).toBe("failed");
    expect(run.failure.message).toBe("network error: connection reset while sending Bearer [secret]");

    const asked = await createRun(alice.key, { runType: llm });
    const failed = await waitForRun(alice.key, asked.body.run.id, isFinished);
    expect(failed.failure.type).toBe("permanent");
    expect(failed.failure.message).toContain("invalid request: my key is [secret]");

    const d1 = (await d1Rows(created.body.run.id, 2)) + (await d1Rows(asked.body.run.id, 1));
    expect(d1).toContain("[secret]");
    expect(d1).not.toContain(PLATFORM_TOKEN);
    expect(JSON.stringify((await api("GET", `/v1/runs/${created.body.run.id}/events`, { key: alice.key })).body)).not.toContain(PLATFORM_TOKEN);
  });
});
