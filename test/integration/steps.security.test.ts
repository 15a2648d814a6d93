import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { HTTP_MAX_BODY_BYTES, httpStep } from "../../src/steps/http";
import { executeLlm, LLM_MAX_RESPONSE_BYTES, type LlmConfig } from "../../src/steps/llm";
import { scrubCredentials } from "../../src/steps/safe-fetch";
import type { StepContext } from "../../src/steps/step-type";
import { api, createRun, isFinished, newCustomer, waitForRun } from "../helpers";

// Nothing here may reach a refused destination, and nothing here reaches the network at all:
// fetch is mocked in every test, and each refusal is proven by the mock never seeing the URL.
const realFetch = globalThis.fetch;
const ALERTS = "http://127.0.0.1:9/";
afterEach(() => vi.restoreAllMocks());

interface Call {
  url: string;
  method: string;
  headers: Headers;
  body: string | undefined;
  redirect: string | undefined;
}

/** Mocks fetch: every call is recorded and answered by `handler`; only the alert webhook (loopback) is passed on. */
function mockFetch(handler: (call: Call) => Response | Promise<Response>) {
  const calls: Call[] = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.startsWith(ALERTS)) return realFetch(input, init);
    const call = { url, method: init?.method ?? "GET", headers: new Headers(init?.headers), body: init?.body as string | undefined, redirect: init?.redirect };
    calls.push(call);
    return handler(call);
  });
  return calls;
}

const redirect = (status: number, location: string) => new Response(null, { status, headers: { location } });

const ctx = (overrides: Record<string, string> = {}): StepContext => ({
  secretValues: [],
  runId: "run-security",
  stepName: "step",
  attempt: 1,
  startedAt: Date.now(),
  signal: new AbortController().signal,
  env: { ...env, ...overrides } as Env,
});

/** A body of `total` bytes produced lazily, one chunk per pull, counting what was pulled. */
const CHUNK = 64 * 1024;
function lazyBody(total: number, chunkBytes = CHUNK) {
  const stats = { pulled: 0, cancelled: false };
  const chunk = new Uint8Array(chunkBytes).fill(0x61); // "a"
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (stats.pulled >= total) return controller.close();
        const n = Math.min(chunkBytes, total - stats.pulled);
        stats.pulled += n;
        controller.enqueue(chunk.slice(0, n));
      },
      cancel() {
        stats.cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, stats };
}

const MiB = 1024 * 1024;

describe("http steps: the destination policy", () => {
  it("a run whose http step targets the metadata address fails permanently, naming the rule, and nothing is sent", async () => {
    const calls = mockFetch(() => Response.json({ leaked: true }));
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [
        {
          name: "meta",
          type: "http",
          config: { url: "http://169.254.169.254/latest/meta-data" },
          retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20, backoffFactor: 2 },
        },
      ],
    });
    expect(created.status).toBe(202);
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.steps[0].attempts).toBe(1); // permanent: not retried
    expect(run.failure).toEqual({
      type: "permanent",
      step: "meta",
      message: "destination refused: 169.254.169.254 is link-local (where cloud metadata services live) (169.254.0.0/16)",
    });
    expect(calls).toEqual([]);
  });

  it("refuses integer, hex and mapped spellings of internal addresses without calling fetch", async () => {
    const calls = mockFetch(() => Response.json({}));
    for (const url of ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://[::ffff:169.254.169.254]/", "http://[fd00::1]/", "http://10.0.0.5/"]) {
      const result = await httpStep.execute({ url }, ctx());
      expect(result, url).toMatchObject({ ok: false, failure: { type: "permanent", message: expect.stringMatching(/^destination refused: /) } });
    }
    expect(calls).toEqual([]);
  });

  it("refuses a port other than 80/443 unless DESTINATION_ALLOWLIST lists it", async () => {
    const calls = mockFetch(() => Response.json({ ok: true }));
    const refused = await httpStep.execute({ url: "https://api.example:8080/thing" }, ctx());
    expect(refused).toEqual({
      ok: false,
      failure: { type: "permanent", message: "destination refused: port 8080 of api.example is not allowed (only 80 and 443; DESTINATION_ALLOWLIST can permit host:port)" },
    });
    expect(calls).toEqual([]);
    const allowed = await httpStep.execute({ url: "https://api.example:8080/thing" }, ctx({ DESTINATION_ALLOWLIST: "api.example:8080" }));
    expect(allowed).toEqual({ ok: true, output: { status: 200, body: { ok: true } } });
    expect(calls.map((c) => c.url)).toEqual(["https://api.example:8080/thing"]);
  });

  it("lets an operator allowlist an internal gateway", async () => {
    const calls = mockFetch(() => Response.json({ internal: true }));
    expect(await httpStep.execute({ url: "https://gateway.internal/x" }, ctx())).toMatchObject({ ok: false, failure: { type: "permanent" } });
    expect(calls).toEqual([]);
    expect(await httpStep.execute({ url: "https://gateway.internal/x" }, ctx({ DESTINATION_ALLOWLIST: "10.9.0.0/16, gateway.internal" }))).toMatchObject({ ok: true });
    expect(calls.map((c) => c.url)).toEqual(["https://gateway.internal/x"]);
  });

  it("refuses localhost in test (as in production) and allows it with RUNPLANE_ENV=development", async () => {
    expect(env.RUNPLANE_ENV).toBe("test");
    const calls = mockFetch(() => Response.json({ mock: true }));
    const refused = await httpStep.execute({ url: "http://localhost:8787/mock" }, ctx());
    expect(refused).toEqual({ ok: false, failure: { type: "permanent", message: "destination refused: localhost is a loopback name (localhost)" } });
    expect(calls).toEqual([]);
    const dev = await httpStep.execute({ url: "http://localhost:8787/mock" }, ctx({ RUNPLANE_ENV: "development" }));
    expect(dev).toEqual({ ok: true, output: { status: 200, body: { mock: true } } });
    expect(calls.map((c) => c.url)).toEqual(["http://localhost:8787/mock"]);
    // Development allows loopback only.
    expect(await httpStep.execute({ url: "http://10.0.0.1/" }, ctx({ RUNPLANE_ENV: "development" }))).toMatchObject({ ok: false, failure: { type: "permanent" } });
    expect(calls).toHaveLength(1);
  });

  it("refuses the Worker's own hostname: the one requests arrive on, and WORKER_HOSTNAMES", async () => {
    const calls = mockFetch(() => Response.json({}));
    await api("GET", "/v1/runs"); // an incoming request on https://runplane.test
    expect(await httpStep.execute({ url: "https://runplane.test/v1/runs" }, ctx())).toEqual({
      ok: false,
      failure: { type: "permanent", message: "destination refused: runplane.test is this Worker's own hostname" },
    });
    expect(await httpStep.execute({ url: "https://runplane.acme.workers.dev/" }, ctx({ WORKER_HOSTNAMES: "runplane.example.com, *.acme.workers.dev" }))).toMatchObject({
      ok: false,
      failure: { message: "destination refused: runplane.acme.workers.dev is this Worker's own hostname" },
    });
    expect(calls).toEqual([]);
  });
});

describe("http steps: redirects", () => {
  it("refuse a redirect to a private address at the hop: the second request is never sent", async () => {
    const calls = mockFetch((call) => (call.url === "https://api.example/start" ? redirect(302, "http://10.0.0.1/") : Response.json({ reached: true })));
    const result = await httpStep.execute({ url: "https://api.example/start" }, ctx());
    expect(result).toEqual({
      ok: false,
      failure: { type: "permanent", message: "destination refused: 10.0.0.1 is in a private range (10.0.0.0/8) (redirect 1, from api.example)" },
    });
    expect(calls.map((c) => c.url)).toEqual(["https://api.example/start"]);
    // fetch was never allowed to follow redirects on its own.
    expect(calls[0]!.redirect).toBe("manual");
  });

  it("re-check every hop, resolve relative Locations, and drop credentials when the origin changes", async () => {
    const calls = mockFetch((call) => {
      if (call.url === "https://api.example/a/start") return redirect(302, "next?x=1"); // relative, same origin
      if (call.url === "https://api.example/a/next?x=1") return redirect(307, "https://other.example/landing"); // another origin
      if (call.url === "https://other.example/landing") return redirect(308, "/final"); // relative to the new origin
      return Response.json({ at: call.url });
    });
    const result = await httpStep.execute(
      {
        url: "https://api.example/a/start",
        method: "PUT",
        headers: { authorization: "Bearer s3cret-token", "x-api-key": "k-123", cookie: "session=1", accept: "application/json" },
        body: { n: 1 },
      },
      ctx(),
    );
    expect(result).toEqual({ ok: true, output: { status: 200, body: { at: "https://other.example/final" } } });
    expect(calls.map((c) => [c.url, c.method, c.body])).toEqual([
      ["https://api.example/a/start", "PUT", '{"n":1}'],
      // 302 after a PUT keeps the method (only POST becomes GET); 307/308 keep method and body.
      ["https://api.example/a/next?x=1", "PUT", '{"n":1}'],
      ["https://other.example/landing", "PUT", '{"n":1}'],
      ["https://other.example/final", "PUT", '{"n":1}'],
    ]);
    const credentials = (c: Call) => [c.headers.get("authorization"), c.headers.get("x-api-key"), c.headers.get("cookie")];
    expect(credentials(calls[0]!)).toEqual(["Bearer s3cret-token", "k-123", "session=1"]);
    expect(credentials(calls[1]!)).toEqual(["Bearer s3cret-token", "k-123", "session=1"]); // same origin: kept
    expect(credentials(calls[2]!)).toEqual([null, null, null]); // another origin: dropped
    expect(credentials(calls[3]!)).toEqual([null, null, null]); // and not restored
    expect(calls.map((c) => c.headers.get("accept"))).toEqual(Array(4).fill("application/json"));
    expect(calls.every((c) => c.redirect === "manual")).toBe(true);
  });

  it("a 303 (and a 302 after POST) continues as GET without the body", async () => {
    const calls = mockFetch((call) => {
      if (call.url.endsWith("/post")) return redirect(302, "/see");
      if (call.url.endsWith("/see")) return redirect(303, "/done");
      return Response.json({ method: call.method });
    });
    const result = await httpStep.execute({ url: "https://api.example/post", body: { a: 1 } }, ctx());
    expect(result).toEqual({ ok: true, output: { status: 200, body: { method: "GET" } } });
    expect(calls.map((c) => [c.method, c.body ?? null, c.headers.get("content-type")])).toEqual([
      ["POST", '{"a":1}', "application/json"],
      ["GET", null, null],
      ["GET", null, null],
    ]);
  });

  it("refuse a later hop after allowed ones, a non-http Location, and more than 5 redirects", async () => {
    let calls = mockFetch((call) => {
      if (call.url.endsWith("/1")) return redirect(301, "https://api.example/2");
      if (call.url.endsWith("/2")) return redirect(302, "https://other.example/3");
      return redirect(302, "http://localhost/admin");
    });
    expect(await httpStep.execute({ url: "https://api.example/1" }, ctx())).toEqual({
      ok: false,
      failure: { type: "permanent", message: "destination refused: localhost is a loopback name (localhost) (redirect 3, from other.example)" },
    });
    expect(calls.map((c) => c.url)).toEqual(["https://api.example/1", "https://api.example/2", "https://other.example/3"]);

    vi.restoreAllMocks();
    calls = mockFetch(() => redirect(302, "file:///etc/passwd"));
    expect(await httpStep.execute({ url: "https://api.example/f" }, ctx())).toMatchObject({
      ok: false,
      failure: { type: "permanent", message: expect.stringContaining('scheme "file" is not allowed') },
    });
    expect(calls).toHaveLength(1);

    vi.restoreAllMocks();
    calls = mockFetch((call) => redirect(302, `/hop${Number(call.url.match(/\d+$/)?.[0] ?? 0) + 1}`));
    expect(await httpStep.execute({ url: "https://api.example/hop0" }, ctx())).toEqual({
      ok: false,
      failure: { type: "permanent", message: "too many redirects: more than 5 (last from api.example)" },
    });
    expect(calls.map((c) => c.url)).toEqual([0, 1, 2, 3, 4, 5].map((n) => `https://api.example/hop${n}`));
  });
});

describe("http steps: response size", () => {
  it("read a huge streamed body only up to the cap, cancel the rest, and mark the output truncated", async () => {
    const { stream, stats } = lazyBody(50 * MiB);
    mockFetch(() => new Response(stream, { headers: { "content-type": "application/json" } }));
    const result = await httpStep.execute({ url: "https://api.example/huge" }, ctx());
    expect(result.ok).toBe(true);
    const output = (result as { output: { status: number; body: string; truncated?: boolean } }).output;
    expect(output.status).toBe(200);
    expect(output.truncated).toBe(true);
    expect(output.body).toBe("a".repeat(HTTP_MAX_BODY_BYTES));
    // Far less than 50 MiB was pulled: the cap, plus at most a few chunks the runtime buffers ahead.
    expect(stats.pulled).toBeLessThanOrEqual(HTTP_MAX_BODY_BYTES + 4 * CHUNK);
    await vi.waitUntil(() => stats.cancelled, { timeout: 2000 });
  });

  it("keep a body of exactly the cap whole; one byte more is truncated; a cut character is left out", async () => {
    let size = HTTP_MAX_BODY_BYTES;
    mockFetch(() => new Response("a".repeat(size)));
    expect(await httpStep.execute({ url: "https://api.example/x" }, ctx())).toEqual({ ok: true, output: { status: 200, body: "a".repeat(HTTP_MAX_BODY_BYTES) } });
    size = HTTP_MAX_BODY_BYTES + 1;
    expect(await httpStep.execute({ url: "https://api.example/x" }, ctx())).toEqual({
      ok: true,
      output: { status: 200, body: "a".repeat(HTTP_MAX_BODY_BYTES), truncated: true },
    });
    vi.restoreAllMocks();
    // "é" is two bytes; the cap falls between them.
    mockFetch(() => new Response("a".repeat(HTTP_MAX_BODY_BYTES - 1) + "é" + "z"));
    expect(await httpStep.execute({ url: "https://api.example/x" }, ctx())).toEqual({
      ok: true,
      output: { status: 200, body: "a".repeat(HTTP_MAX_BODY_BYTES - 1), truncated: true },
    });
  });

  it("do not read the body of a failed call", async () => {
    const { stream, stats } = lazyBody(50 * MiB);
    mockFetch(() => new Response(stream, { status: 500 }));
    expect(await httpStep.execute({ url: "https://api.example/err" }, ctx())).toEqual({ ok: false, failure: { type: "transient", message: "HTTP 500" } });
    expect(stats.pulled).toBeLessThanOrEqual(4 * CHUNK);
    await vi.waitUntil(() => stats.cancelled, { timeout: 2000 });
  });
});

describe("llm steps", () => {
  const config = (extra: Partial<LlmConfig> = {}): LlmConfig => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], ...extra });
  const PLATFORM = { LLM_BASE_URL: "https://llm.example/v1", LLM_API_KEY: "sk-platform-0123456789abcdefXYZ" };
  const KEY_ERROR = {
    error: {
      message: "Incorrect API key provided: sk-abc...xyz. You can find your API key at https://platform.openai.com/account/api-keys.",
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key",
    },
  };

  it("never pass on the platform endpoint's error message: status, a generic phrase, type and code only", async () => {
    mockFetch(() => Response.json(KEY_ERROR, { status: 401 }));
    const result = await executeLlm(config(), ctx(PLATFORM));
    expect(result).toEqual({
      ok: false,
      failure: {
        type: "permanent",
        message: "the platform's model endpoint answered HTTP 401: the endpoint refused the platform's credentials (type invalid_request_error, code invalid_api_key)",
      },
    });
    const message = (result as { failure: { message: string } }).failure.message;
    for (const fragment of ["sk-", "abc", "xyz", "Incorrect", "llm.example"]) expect(message).not.toContain(fragment);
  });

  it("in a run, the tenant sees no key fragment from the platform endpoint (OpenAI by default)", async () => {
    const calls = mockFetch(() => Response.json(KEY_ERROR, { status: 401 }));
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [{ name: "ask", type: "llm", config: config({ maxTokens: 10 }) }] });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(calls.map((c) => c.url)).toEqual(["https://api.openai.com/v1/chat/completions"]);
    expect(run.status).toBe("failed");
    expect(run.failure.message).toContain("HTTP 401");
    expect(run.failure.message).not.toMatch(/sk-|abc\.\.\.xyz|Incorrect API key/);
    expect(JSON.stringify(run)).not.toMatch(/sk-abc|Incorrect API key/);
  });

  it("pass on a step's own endpoint's message shortened, with key-like text scrubbed", async () => {
    mockFetch(() => Response.json({ error: { message: "Invalid key sk-live-abcdefgh1234 for Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig " + "x".repeat(500) } }, { status: 400 }));
    const result = await executeLlm(config({ baseUrl: "https://other.example/v1" }), ctx(PLATFORM));
    expect(result.ok).toBe(false);
    const message = (result as { failure: { message: string } }).failure.message;
    expect(message).toMatch(/^https:\/\/other\.example\/v1\/chat\/completions answered HTTP 400: Invalid key \[redacted key\] for Bearer \[redacted\] x+$/);
    expect(message).not.toMatch(/abcdefgh1234|eyJhbGci/);
    expect(message.length).toBeLessThan(400);
  });

  it("apply the policy to a step's baseUrl and to the platform endpoint, which an operator may allowlist", async () => {
    const calls = mockFetch(() => Response.json({ choices: [{ message: { content: "ok" } }], usage: { prompt_tokens: 1, completion_tokens: 1 } }));
    expect(await executeLlm(config({ baseUrl: "http://169.254.169.254/v1" }), ctx(PLATFORM))).toEqual({
      ok: false,
      failure: { type: "permanent", message: "destination refused: 169.254.169.254 is link-local (where cloud metadata services live) (169.254.0.0/16)" },
    });
    const internal = { ...PLATFORM, LLM_BASE_URL: "http://10.0.0.5/v1" };
    expect(await executeLlm(config(), ctx(internal))).toEqual({
      ok: false,
      failure: {
        type: "permanent",
        message:
          "the platform's model endpoint (LLM_BASE_URL): destination refused: 10.0.0.5 is in a private range (10.0.0.0/8); an operator can permit it in DESTINATION_ALLOWLIST",
      },
    });
    expect(calls).toEqual([]);
    expect(await executeLlm(config(), ctx({ ...internal, DESTINATION_ALLOWLIST: "10.0.0.5" }))).toMatchObject({ ok: true });
    expect(calls.map((c) => [c.url, c.headers.get("authorization")])).toEqual([["http://10.0.0.5/v1/chat/completions", `Bearer ${PLATFORM.LLM_API_KEY}`]]);
  });

  it("do not carry the platform key across a redirect to another origin", async () => {
    const calls = mockFetch((call) =>
      call.url.startsWith("https://llm.example/") ? redirect(307, "https://elsewhere.example/v1/chat/completions") : Response.json({ usage: { prompt_tokens: 1, completion_tokens: 1 } }),
    );
    expect(await executeLlm(config(), ctx(PLATFORM))).toMatchObject({ ok: true });
    expect(calls.map((c) => [c.url, c.method, c.headers.get("authorization"), c.headers.get("content-type")])).toEqual([
      ["https://llm.example/v1/chat/completions", "POST", `Bearer ${PLATFORM.LLM_API_KEY}`, "application/json"],
      ["https://elsewhere.example/v1/chat/completions", "POST", null, "application/json"],
    ]);
  });

  it("fail permanently, naming the cap, on a huge streamed completion, without reading it all", async () => {
    const { stream, stats } = lazyBody(50 * MiB);
    mockFetch(() => new Response(stream, { headers: { "content-type": "application/json" } }));
    const result = await executeLlm(config({ baseUrl: "https://other.example/v1" }), ctx(PLATFORM));
    expect(result).toEqual({
      ok: false,
      failure: {
        type: "permanent",
        message: `https://other.example/v1/chat/completions answered with a body larger than the 4 MiB cap (${LLM_MAX_RESPONSE_BYTES} bytes); it was not read further`,
      },
    });
    expect(stats.pulled).toBeGreaterThanOrEqual(LLM_MAX_RESPONSE_BYTES);
    expect(stats.pulled).toBeLessThanOrEqual(LLM_MAX_RESPONSE_BYTES + 4 * CHUNK);
    await vi.waitUntil(() => stats.cancelled, { timeout: 2000 });
  });

  it("fail at once when the declared Content-Length is over the cap", async () => {
    const { stream, stats } = lazyBody(50 * MiB);
    mockFetch(() => new Response(stream, { headers: { "content-length": String(50 * MiB) } }));
    const result = await executeLlm(config(), ctx(PLATFORM));
    expect(result).toMatchObject({ ok: false, failure: { type: "permanent", message: expect.stringContaining("the platform's model endpoint answered with a body larger than the 4 MiB cap") } });
    expect(stats.pulled).toBeLessThanOrEqual(4 * CHUNK);
  });
});

describe("scrubCredentials", () => {
  it("removes key-like text and known values, and leaves ordinary words", () => {
    expect(scrubCredentials("Incorrect API key provided: sk-abc...xyz.")).toBe("Incorrect API key provided: [redacted key]");
    expect(scrubCredentials("key sk-proj-****************************abcd here")).toBe("key [redacted key] here");
    expect(scrubCredentials("Authorization: Bearer abc.def.ghi")).toBe("Authorization: Bearer [redacted]");
    expect(scrubCredentials('{"api_key": "12345", "token=abc"}')).toBe('{"api_key": "[redacted]", "token=[redacted]"}');
    expect(scrubCredentials("AKIAIOSFODNN7EXAMPLE")).toBe("[redacted key]");
    expect(scrubCredentials("id 0123456789abcdef0123456789abcdef")).toBe("id [redacted]");
    expect(scrubCredentials("the value is my-platform-secret!", ["my-platform-secret"])).toBe("the value is [redacted]!");
    // A tenant's own secret is named as one, before the generic rules could call it [redacted].
    expect(scrubCredentials("echoed 0123456789abcdef0123456789abcdef back", [], ["0123456789abcdef0123456789abcdef"])).toBe("echoed [secret] back");
    expect(scrubCredentials("Rate limit reached for gpt-4o-mini on tokens per min. Limit: 200000")).toBe(
      "Rate limit reached for gpt-4o-mini on tokens per min. Limit: 200000",
    );
  });
});
