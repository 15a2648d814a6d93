import { afterEach, describe, expect, it, vi } from "vitest";
import { createRun, isFinished, newCustomer, waitForRun } from "../helpers";

// The remote service is outside the platform, so it is the one thing mocked.
const realFetch = globalThis.fetch;
afterEach(() => vi.restoreAllMocks());

function mockRemote(handler: (url: string, init?: RequestInit) => Response | Promise<Response>) {
  return vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith("https://remote.example")) return realFetch(input, init);
    return handler(url, init);
  });
}

describe("http steps", () => {
  it("call the URL with the resolved body and keep the JSON response as output", async () => {
    const calls: { url: string; body: unknown }[] = [];
    mockRemote(async (url, init) => {
      calls.push({ url, body: JSON.parse(String(init?.body)) });
      return Response.json({ echoed: true });
    });
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      input: { orderId: "o-1" },
      steps: [{ name: "notify", type: "http", config: { url: "https://remote.example/hook", method: "POST", body: { order: "{{input.orderId}}" } } }],
    });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output).toEqual({ status: 200, body: { echoed: true } });
    expect(calls).toEqual([{ url: "https://remote.example/hook", body: { order: "o-1" } }]);
  });

  it("retry a 5xx and succeed; fail a 4xx at once as permanent", async () => {
    let n = 0;
    mockRemote((url) => {
      if (url.endsWith("/flaky")) return ++n === 1 ? new Response("busy", { status: 502 }) : Response.json({ ok: 1 });
      return new Response("nope", { status: 404 });
    });
    const customer = await newCustomer();
    const retry = { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20, backoffFactor: 2 };
    const flaky = await createRun(customer.key, { steps: [{ name: "call", type: "http", config: { url: "https://remote.example/flaky" }, retry }] });
    const missing = await createRun(customer.key, { steps: [{ name: "call", type: "http", config: { url: "https://remote.example/missing" }, retry }] });
    const ok = await waitForRun(customer.key, flaky.body.run.id, isFinished);
    expect(ok.status).toBe("succeeded");
    expect(ok.steps[0].attempts).toBe(2);
    const failed = await waitForRun(customer.key, missing.body.run.id, isFinished);
    expect(failed.status).toBe("failed");
    expect(failed.steps[0].attempts).toBe(1);
    expect(failed.failure).toEqual({ type: "permanent", message: "HTTP 404", step: "call" });
  });
});
