import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_MAX_TOKENS, executeLlm, LlmConfig, promptTokenBound, usageFromCompletion } from "../../src/steps/llm";
import { validateStepConfig } from "../../src/steps/registry";
import { createRun, isFinished, newCustomer, waitForRun } from "../helpers";

// The model endpoint is outside the platform, so it is the one thing mocked: a fake
// OpenAI-compatible server at https://llm.example/v1.
const realFetch = globalThis.fetch;
afterEach(() => vi.restoreAllMocks());

interface Call {
  url: string;
  headers: Headers;
  body: any;
}

function fakeEndpoint(handler: (call: Call) => Response | Promise<Response>) {
  const calls: Call[] = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith("https://llm.example") && !url.startsWith("https://other.example")) return realFetch(input, init);
    const call = { url, headers: new Headers(init?.headers), body: JSON.parse(String(init?.body)) };
    calls.push(call);
    return handler(call);
  });
  return calls;
}

const completion = (content: string, usage: unknown, extra: Record<string, unknown> = {}) =>
  Response.json({
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "gpt-4o-mini-2024-07-18",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage,
    ...extra,
  });

const USAGE = {
  prompt_tokens: 1200,
  completion_tokens: 300,
  total_tokens: 1500,
  prompt_tokens_details: { cached_tokens: 1024 },
  completion_tokens_details: { reasoning_tokens: 0 },
};

const config = (extra: Partial<LlmConfig> = {}): LlmConfig => ({
  model: "gpt-4o-mini",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Say hi" },
  ],
  baseUrl: "https://llm.example/v1",
  ...extra,
});
const ctx = (env: Record<string, string> = {}) => ({ signal: new AbortController().signal, env: { LLM_BASE_URL: "", LLM_API_KEY: "", ...env } as Env });

describe("llm steps in a run", () => {
  it("call the endpoint, succeed, and keep the reply as output", async () => {
    const calls = fakeEndpoint(() => completion("Hi!", USAGE));
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      input: { question: "Say hi" },
      steps: [{ name: "ask", type: "llm", config: { model: "gpt-4o-mini", messages: [{ role: "user", content: "{{input.question}}" }], maxTokens: 50, baseUrl: "https://llm.example/v1" } }],
    });
    expect(created.status).toBe(202);
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output).toEqual({ content: "Hi!", finishReason: "stop", model: "gpt-4o-mini-2024-07-18" });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.url).toBe("https://llm.example/v1/chat/completions");
    expect(calls[0]!.body).toEqual({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hi" }], max_tokens: 50 });
  });

  it("refuse a bad config at creation with a 400 naming the field", async () => {
    const customer = await newCustomer();
    const res = await createRun(customer.key, { steps: [{ name: "ask", type: "llm", config: { model: "gpt-4o-mini", messages: [{ role: "robot", content: "x" }], maxTokens: 0 } }] });
    expect(res.status).toBe(400);
    expect(res.body.error.details.map((d: any) => d.field).sort()).toEqual(["steps.0.config.maxTokens", "steps.0.config.messages.0.role"]);
    expect(validateStepConfig("llm", { model: "m", messages: [] })[0]?.path).toEqual(["config", "messages"]);
  });

  it("fail a run permanently on a 4xx, without retrying", async () => {
    fakeEndpoint(() => Response.json({ error: { message: "Incorrect API key provided" } }, { status: 401 }));
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [{ name: "ask", type: "llm", config: config(), retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20, backoffFactor: 2 } }],
    });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("failed");
    expect(run.steps[0].attempts).toBe(1);
    expect(run.failure).toMatchObject({ type: "permanent", step: "ask" });
    expect(run.failure.message).toContain("HTTP 401: Incorrect API key provided");
  });
});

describe("the llm executor", () => {
  it("parses usage into the StepResult: uncached input = prompt − cached", async () => {
    fakeEndpoint(() => completion("Hello", USAGE));
    const result = await executeLlm(config(), ctx());
    expect(result).toEqual({
      ok: true,
      output: { content: "Hello", finishReason: "stop", model: "gpt-4o-mini-2024-07-18" },
      // Billed under the configured model, the one the price list knows.
      usage: [{ model: "gpt-4o-mini", inputTokens: 176, cachedTokens: 1024, outputTokens: 300, reasoningTokens: 0 }],
    });
  });

  it("counts each token once: reasoning tokens apart from the rest of the completion", () => {
    expect(
      usageFromCompletion("o3", { prompt_tokens: 10, completion_tokens: 500, completion_tokens_details: { reasoning_tokens: 448 } }),
    ).toEqual({ model: "o3", inputTokens: 10, cachedTokens: 0, outputTokens: 52, reasoningTokens: 448 });
    expect(usageFromCompletion("m", { prompt_tokens: 5, completion_tokens: 1 })).toEqual({ model: "m", inputTokens: 5, cachedTokens: 0, outputTokens: 1 });
    expect(usageFromCompletion("m", { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: null })).toEqual({ model: "m", inputTokens: 5, cachedTokens: 0, outputTokens: 1 });
    expect(usageFromCompletion("m", { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 6 } })).toBeNull();
    expect(usageFromCompletion("m", { prompt_tokens: -1, completion_tokens: 1 })).toBeNull();
    expect(usageFromCompletion("m", { prompt_tokens: 1.5, completion_tokens: 1 })).toBeNull();
    expect(usageFromCompletion("m", undefined)).toBeNull();
  });

  it("treats 429 with Retry-After: 3 as transient with retryAfterMs 3000", async () => {
    fakeEndpoint(() => Response.json({ error: { message: "Rate limit reached" } }, { status: 429, headers: { "retry-after": "3" } }));
    const result = await executeLlm(config(), ctx());
    expect(result).toEqual({ ok: false, failure: { type: "transient", message: expect.stringContaining("HTTP 429: Rate limit reached"), retryAfterMs: 3000 } });
  });

  it("treats 503 with Retry-After, other 5xx and network errors as transient; other 4xx as permanent", async () => {
    let status = 503;
    fakeEndpoint(() => new Response("unavailable", { status, headers: status === 503 ? { "retry-after": "7" } : {} }));
    expect(await executeLlm(config(), ctx())).toMatchObject({ ok: false, failure: { type: "transient", retryAfterMs: 7000 } });
    status = 500;
    const r500 = await executeLlm(config(), ctx());
    expect(r500).toMatchObject({ ok: false, failure: { type: "transient" } });
    expect(!r500.ok && r500.failure.retryAfterMs).toBeUndefined();
    status = 400;
    expect(await executeLlm(config(), ctx())).toMatchObject({ ok: false, failure: { type: "permanent" } });
    vi.restoreAllMocks();
    vi.spyOn(globalThis, "fetch").mockRejectedValue(new TypeError("connection reset"));
    expect(await executeLlm(config(), ctx())).toMatchObject({ ok: false, failure: { type: "transient", message: expect.stringContaining("connection reset") } });
  });

  it("fails permanently, naming the problem, when the response has no usage", async () => {
    fakeEndpoint(() => completion("Hello", undefined));
    const result = await executeLlm(config(), ctx());
    expect(result).toMatchObject({ ok: false, failure: { type: "permanent", message: expect.stringContaining("no valid `usage`") } });
    vi.restoreAllMocks();
    fakeEndpoint(() => new Response("<html>", { status: 200 }));
    expect(await executeLlm(config(), ctx())).toMatchObject({ ok: false, failure: { type: "permanent", message: expect.stringContaining("not JSON") } });
  });

  it("sends the platform key only to the platform's endpoint, never to a step's own baseUrl", async () => {
    const calls = fakeEndpoint(() => completion("ok", USAGE));
    const env = { LLM_BASE_URL: "https://llm.example/v1/", LLM_API_KEY: "sk-platform" };
    await executeLlm(config({ baseUrl: undefined, temperature: 0.2 }), ctx(env));
    await executeLlm(config({ baseUrl: "https://other.example/v1" }), ctx(env));
    expect(calls.map((c) => [c.url, c.headers.get("authorization")])).toEqual([
      ["https://llm.example/v1/chat/completions", "Bearer sk-platform"],
      ["https://other.example/v1/chat/completions", null],
    ]);
    expect(calls[0]!.body).toEqual({ max_tokens: DEFAULT_MAX_TOKENS, model: "gpt-4o-mini", messages: config().messages, temperature: 0.2 });
  });

  it("goes to OpenAI when neither the step nor LLM_BASE_URL names an endpoint", async () => {
    const urls: string[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL) => {
      urls.push(input instanceof Request ? input.url : String(input));
      return completion("ok", USAGE);
    });
    await executeLlm(config({ baseUrl: undefined }), ctx());
    expect(urls).toEqual(["https://api.openai.com/v1/chat/completions"]);
  });
});

describe("promptTokenBound", () => {
  it("bounds a prompt from above: every byte of UTF-8 a token, plus framing per message", () => {
    expect(promptTokenBound([{ content: "" }])).toBe(8);
    expect(promptTokenBound([{ content: "abcd" }, { content: "abcde" }])).toBe(4 + 8 + 5 + 8);
    expect(promptTokenBound([{ content: "日本" }])).toBe(6 + 8); // 6 bytes of UTF-8
  });
});
