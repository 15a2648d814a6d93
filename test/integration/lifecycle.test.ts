import { describe, expect, it, vi } from "vitest";
import { api, createRun, d1Count, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

describe("a run's life through the queue", () => {
  it("runs a 3-step synthetic run to success with every output and timestamp recorded, and lists it", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      input: { greeting: "hello" },
      steps: [
        synthetic("fetch", { durationMs: 20, output: { items: [1, 2, 3] } }),
        synthetic("transform", { output: { first: "{{steps.fetch.output.items.0}}", text: "{{input.greeting}} world" } }),
        synthetic("store"),
      ],
    });
    expect(created.status).toBe(202);
    expect(created.headers.get("x-request-id")).toBeTruthy();
    const runId = created.body.run.id;
    expect(runId).toMatch(/^run_/);
    expect(created.body.run.status).toBe("queued");

    const run = await waitForRun(customer.key, runId, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps.map((s: any) => [s.name, s.status, s.attempts])).toEqual([
      ["fetch", "succeeded", 1],
      ["transform", "succeeded", 1],
      ["store", "succeeded", 1],
    ]);
    expect(run.steps[0].output).toEqual({ items: [1, 2, 3] });
    expect(run.steps[1].output).toEqual({ first: 1, text: "hello world" });
    expect(run.steps[2].output).toEqual({ step: "store", attempt: 1 });
    for (const step of run.steps) {
      expect(Date.parse(step.startedAt)).toBeLessThanOrEqual(Date.parse(step.finishedAt));
    }
    expect(Date.parse(run.startedAt)).toBeLessThanOrEqual(Date.parse(run.finishedAt));
    expect(run.durationMs).toBe(Date.parse(run.finishedAt) - Date.parse(run.startedAt));

    // The run index in D1 catches up through the events queue.
    await vi.waitUntil(async () => {
      const list = await api("GET", "/v1/runs?status=succeeded", { key: customer.key });
      return list.body.runs.some((r: any) => r.id === runId);
    }, { timeout: 5000, interval: 50 });
    expect(await d1Count("step_attempts", "run_id = ?", runId)).toBe(3);

    const events = await api("GET", `/v1/runs/${runId}/events`, { key: customer.key });
    const types = events.body.events.map((e: any) => e.type);
    expect(types[0]).toBe("run.created");
    expect(types.at(-1)).toBe("run.succeeded");
    expect(types.filter((t: string) => t === "step.succeeded")).toHaveLength(3);
  });

  it("lists a new run at once, filters by project and status, and pages with a cursor", async () => {
    const customer = await newCustomer();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await createRun(customer.key, { projectId: i < 3 ? "alpha" : "beta", steps: [synthetic("only")] });
      ids.push(res.body.run.id);
    }
    const alpha = await api("GET", "/v1/runs?projectId=alpha", { key: customer.key });
    expect(alpha.body.runs).toHaveLength(3);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await api("GET", `/v1/runs?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { key: customer.key });
      expect(page.status).toBe(200);
      expect(page.body.runs.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.runs.map((r: any) => r.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen.sort()).toEqual([...ids].sort());
  });

  it("runs a registered run type submitted as {runType, input}", async () => {
    const put = await api("PUT", "/v1/run-types/two-steps", {
      body: { priority: "high", steps: [synthetic("a", { output: "{{input.n}}" }), synthetic("b")], retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 100, backoffFactor: 2 } },
    });
    expect(put.status).toBe(201);
    const again = await api("PUT", "/v1/run-types/two-steps", { body: { steps: [synthetic("a", { output: "{{input.n}}" }), synthetic("b")] } });
    expect(again.status).toBe(200);
    expect((await api("GET", "/v1/run-types/two-steps")).body.runType.steps).toHaveLength(2);

    const customer = await newCustomer();
    const created = await createRun(customer.key, { runType: "two-steps", input: { n: 42 } });
    expect(created.status).toBe(202);
    expect(created.body.run.runType).toBe("two-steps");
    expect(created.body.run.pool).toBe("standard");
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output).toBe(42);
  });
});
