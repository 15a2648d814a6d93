import { afterEach, describe, expect, it, vi } from "vitest";
import { cloudflareApiConfig, consumerConcurrencyFor, forgetConsumerRefs, setConsumerMaxConcurrency } from "../../src/lib/cloudflare-queues";

const config = { token: "tok", accountId: "acct", baseUrl: "https://api.cloudflare.com/client/v4" };
const ok = (result: unknown) => new Response(JSON.stringify({ success: true, errors: [], messages: [], result }));

function mockApi(consumers: unknown[]) {
  const calls: { method: string; url: string; auth: string | null; body: any }[] = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    calls.push({ method: init?.method ?? "GET", url, auth: new Headers(init?.headers).get("authorization"), body: init?.body ? JSON.parse(String(init.body)) : null });
    if (url.includes("/queues?page=")) return ok([{ queue_id: "q1", queue_name: "runplane-jobs-standard" }]);
    if (url.endsWith("/queues/q1/consumers")) return ok(consumers);
    if (init?.method === "PUT") return ok({});
    return new Response("{}", { status: 404 });
  });
  return calls;
}

afterEach(() => {
  vi.restoreAllMocks();
  forgetConsumerRefs();
});

describe("pushing max_concurrency to Cloudflare", () => {
  it("is configured only when both the token and the account id are set", () => {
    expect(cloudflareApiConfig({})).toBeNull();
    expect(cloudflareApiConfig({ CLOUDFLARE_API_TOKEN: "t", CLOUDFLARE_ACCOUNT_ID: "" })).toBeNull();
    expect(cloudflareApiConfig({ CLOUDFLARE_API_TOKEN: "t", CLOUDFLARE_ACCOUNT_ID: "a" })).toMatchObject({ token: "t", accountId: "a" });
  });

  it("maps chains to invocations: ceil(desired / batch), between 1 and 250", () => {
    expect(consumerConcurrencyFor(0, 100)).toBe(1);
    expect(consumerConcurrencyFor(101, 100)).toBe(2);
    expect(consumerConcurrencyFor(7, 1)).toBe(7);
    expect(consumerConcurrencyFor(10_000, 1)).toBe(250);
  });

  it("finds the queue and its Worker consumer, then PUTs the whole consumer back with max_concurrency changed; ids are cached", async () => {
    const calls = mockApi([
      { consumer_id: "other", type: "http_pull", settings: {} },
      { consumer_id: "c1", type: "worker", script_name: "runplane", dead_letter_queue: "runplane-dlq-standard", settings: { batch_size: 100, max_retries: 100, max_wait_time_ms: 0, max_concurrency: 10 } },
    ]);
    await setConsumerMaxConcurrency(config, "runplane-jobs-standard", "runplane", 3);
    await setConsumerMaxConcurrency(config, "runplane-jobs-standard", "runplane", 5);
    expect(calls.map((c) => `${c.method} ${c.url.replace(config.baseUrl, "")}`)).toEqual([
      "GET /accounts/acct/queues?page=1&per_page=100",
      "GET /accounts/acct/queues/q1/consumers",
      "PUT /accounts/acct/queues/q1/consumers/c1",
      "PUT /accounts/acct/queues/q1/consumers/c1",
    ]);
    expect(calls.every((c) => c.auth === "Bearer tok")).toBe(true);
    expect(calls[2]!.body).toEqual({ type: "worker", script_name: "runplane", dead_letter_queue: "runplane-dlq-standard", settings: { batch_size: 100, max_retries: 100, max_wait_time_ms: 0, max_concurrency: 3 } });
    expect(calls[3]!.body.settings.max_concurrency).toBe(5);
  });

  it("an API error is thrown with Cloudflare's message and without the account id; a missing consumer is named", async () => {
    vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response(JSON.stringify({ success: false, errors: [{ code: 10000, message: "Authentication error" }] }), { status: 403 }));
    const err = await setConsumerMaxConcurrency(config, "runplane-jobs-standard", "runplane", 2).catch((e: Error) => e);
    expect(String(err)).toMatch(/answered 403: Authentication error/);
    expect(String(err)).not.toMatch(/acct/);
    vi.restoreAllMocks();
    mockApi([]);
    await expect(setConsumerMaxConcurrency(config, "runplane-jobs-standard", "runplane", 2)).rejects.toThrow(/has no Worker consumer runplane/);
  });
});
