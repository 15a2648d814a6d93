import { describe, expect, it } from "vitest";
import { api, createRun, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

describe("cancel", () => {
  it("a running run stops before its next step", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("long", { durationMs: 800 }), synthetic("never")] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.steps[0].status === "running");

    const cancelled = await api("POST", `/v1/runs/${runId}/cancel`, { key: customer.key });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.run.status).toBe("cancelled");
    expect(cancelled.body.run.failure).toMatchObject({ type: "cancelled", step: "long" });

    // The worker finishes its attempt; its result is refused and nothing further runs.
    await new Promise((r) => setTimeout(r, 1200));
    const run = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    expect(run.status).toBe("cancelled");
    expect(run.steps.map((s: any) => s.status)).toEqual(["cancelled", "skipped"]);
    expect(run.steps[1].attempts).toBe(0);
    const events = (await api("GET", `/v1/runs/${runId}/events`, { key: customer.key })).body.events;
    expect(events.some((e: any) => e.type === "step.succeeded")).toBe(false);
  });

  it("a sleeping run can be cancelled; its timer then does nothing", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [{ name: "nap", type: "sleep", config: { durationMs: 400 } }, synthetic("after")] });
    const runId = created.body.run.id;
    await waitForRun(customer.key, runId, (r) => r.status === "waiting");
    expect((await api("POST", `/v1/runs/${runId}/cancel`, { key: customer.key })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 700));
    const run = (await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run;
    expect(run.status).toBe("cancelled");
    expect(run.steps.map((s: any) => s.status)).toEqual(["cancelled", "skipped"]);
  });

  it("cancelling a finished run is a 409 and changes nothing", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, { steps: [synthetic("quick")] });
    const finished = await waitForRun(customer.key, created.body.run.id, isFinished);
    const res = await api("POST", `/v1/runs/${created.body.run.id}/cancel`, { key: customer.key });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("conflict");
    expect({ ...(await api("GET", `/v1/runs/${created.body.run.id}`, { key: customer.key })).body.run, cost: null }).toEqual({ ...finished, cost: null });
  });
});
