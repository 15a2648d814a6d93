import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { api, createRun, d1Count, isFinished, newCustomer, synthetic, waitForRun } from "../helpers";

describe("sleep steps", () => {
  it("wait on the run object's alarm, holding no worker, then the run continues", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [synthetic("before"), { name: "nap", type: "sleep", config: { durationMs: 60_000 } }, synthetic("after")],
    });
    const runId = created.body.run.id;

    const waiting = await waitForRun(customer.key, runId, (r) => r.status === "waiting");
    expect(waiting.steps.map((s: any) => s.status)).toEqual(["succeeded", "waiting", "pending"]);
    // No worker ran or holds the sleep: it has no attempt, and no attempt of it was recorded.
    expect(waiting.steps[1].attempts).toBe(0);
    expect(await d1Count("step_attempts", "run_id = ? AND step = 'nap'", runId)).toBe(0);

    // The timer is the object's alarm: firing it early is a no-op, firing it when due wakes the run.
    const stub = env.RUN_COORDINATOR.get(env.RUN_COORDINATOR.idFromName(runId));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await api("GET", `/v1/runs/${runId}`, { key: customer.key })).body.run.status).toBe("waiting");
  });

  it("a short sleep ends by itself and the run succeeds", async () => {
    const customer = await newCustomer();
    const created = await createRun(customer.key, {
      steps: [{ name: "nap", type: "sleep", config: { durationMs: 300 } }, synthetic("after")],
    });
    const run = await waitForRun(customer.key, created.body.run.id, isFinished);
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].output.sleptMs).toBeGreaterThanOrEqual(300);
    expect(Date.parse(run.steps[1].startedAt)).toBeGreaterThanOrEqual(Date.parse(run.steps[0].startedAt) + 300);
  });
});
