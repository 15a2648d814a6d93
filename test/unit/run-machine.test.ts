import { describe, expect, it } from "vitest";
import {
  cancelRun,
  failDeadLetteredDispatch,
  completeStep,
  createRun,
  failStep,
  fireTimers,
  nextTimerAt,
  resumeRun,
  startStep,
  type Clock,
  type RunDefinition,
} from "../../src/domain/run-machine";

const clockAt = (now: number): Clock => ({ now, leaseMs: 1000, redispatchMs: 60_000, random: () => 0.5 });

function definition(steps: RunDefinition["steps"]): RunDefinition {
  return {
    id: "run_test",
    customerId: "c",
    projectId: "p",
    runType: null,
    pool: "standard",
    priority: "normal",
    input: { n: 1 },
    metadata: {},
    steps,
    retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 1000, backoffFactor: 2 },
    idempotencyKey: null,
    requestHash: "h",
    createdAt: 0,
  };
}

const work = (name: string) => ({ name, type: "synthetic", config: {} });

describe("run state machine", () => {
  it("creates a run with its first step dispatched and the rest pending", () => {
    const { state, outcome } = createRun(definition([work("a"), work("b")]), clockAt(0));
    expect(state.status).toBe("queued");
    expect(state.steps.map((s) => s.status)).toEqual(["queued", "pending"]);
    expect(outcome.dispatches).toEqual([{ stepIndex: 0, dispatch: 1 }]);
    // Pending steps need no row: only the dispatched one is written.
    expect([...outcome.touched]).toEqual([0]);
  });

  it("walks steps in order to success; each completion dispatches the next", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    const s1 = startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(10));
    expect(s1.ok && s1.outcome.started?.leaseId).toBe("0.1.1");
    expect(state.status).toBe("running");
    const c1 = completeStep(state, "0.1.1", { x: 1 }, clockAt(20));
    expect(c1.ok && c1.outcome.dispatches).toEqual([{ stepIndex: 1, dispatch: 1 }]);
    startStep(state, { stepIndex: 1, dispatch: 1 }, clockAt(30));
    const c2 = completeStep(state, "1.1.1", "done", clockAt(40));
    expect(c2.ok && c2.outcome.statusChanged).toBe(true);
    expect(state.status).toBe("succeeded");
    expect(state.finishedAt).toBe(40);
    expect(state.steps.map((s) => s.output)).toEqual([{ x: 1 }, "done"]);
  });

  it("with inline continuation, completion starts the next step for the caller instead of queueing it", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const c = completeStep(state, "0.1.1", null, clockAt(2), true);
    expect(c.ok && c.outcome.dispatches).toEqual([]);
    expect(c.ok && c.outcome.started).toEqual({ stepIndex: 1, leaseId: "1.1.1", attempt: 1 });
    expect(state.steps[1]!.status).toBe("running");
  });

  it("rejects duplicate, stale and out-of-order commands without touching the state", () => {
    const { state } = createRun(definition([work("a")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const snapshot = structuredClone(state);
    expect(startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(2))).toEqual({ ok: false, reason: "already_running" });
    expect(startStep(state, { stepIndex: 0, dispatch: 0 }, clockAt(2))).toEqual({ ok: false, reason: "stale_dispatch" });
    expect(startStep(state, { stepIndex: 5, dispatch: 1 }, clockAt(2))).toEqual({ ok: false, reason: "unknown_step" });
    expect(completeStep(state, "0.1.9", null, clockAt(2))).toEqual({ ok: false, reason: "stale_lease" });
    expect(state).toEqual(snapshot);
    completeStep(state, "0.1.1", null, clockAt(3));
    const done = structuredClone(state);
    expect(completeStep(state, "0.1.1", "again", clockAt(4))).toEqual({ ok: false, reason: "run_finished" });
    expect(cancelRun(state, "x", clockAt(4))).toEqual({ ok: false, reason: "run_finished" });
    expect(state).toEqual(done);
  });

  it("retries a transient failure after the policy's delay, then fails the run when attempts run out", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    const f1 = failStep(state, "0.1.1", { type: "transient", message: "boom" }, clockAt(10));
    expect(f1.ok && f1.outcome.dispatches).toEqual([]);
    const step = state.steps[0]!;
    expect(step.status).toBe("queued");
    // initialDelayMs 100, equal jitter with random 0.5: 50 + 25.
    expect(step.notBefore).toBe(10 + 75);
    expect(nextTimerAt(state)).toBe(85);
    expect(fireTimers(state, clockAt(84)).dispatches).toEqual([]);
    expect(fireTimers(state, clockAt(85)).dispatches).toEqual([{ stepIndex: 0, dispatch: 2 }]);
    startStep(state, { stepIndex: 0, dispatch: 2 }, clockAt(90));
    failStep(state, "0.2.2", { type: "transient", message: "boom again" }, clockAt(95));
    expect(state.status).toBe("failed");
    expect(state.failure).toEqual({ type: "transient", message: "boom again", step: "a" });
    expect(state.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect(state.steps[0]!.history.map((h) => h.outcome)).toEqual(["failed", "failed"]);
    expect(nextTimerAt(state)).toBeNull();
  });

  it("does not retry a permanent failure", () => {
    const { state } = createRun(definition([work("a")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    failStep(state, "0.1.1", { type: "permanent", message: "bad request" }, clockAt(1));
    expect(state.status).toBe("failed");
    expect(state.steps[0]!.attempts).toBe(1);
  });

  it("honours a Retry-After longer than the backoff", () => {
    const { state } = createRun(definition([work("a")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    failStep(state, "0.1.1", { type: "transient", message: "429", retryAfterMs: 5000 }, clockAt(0));
    expect(state.steps[0]!.notBefore).toBe(5000);
  });

  it("an expired lease counts as a worker_error attempt and the step is dispatched again", () => {
    const { state } = createRun(definition([work("a")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    expect(nextTimerAt(state)).toBe(1000);
    const out = fireTimers(state, clockAt(1000));
    expect(out.events.map((e) => e.type)).toContain("lease.expired");
    expect(state.steps[0]!.status).toBe("queued");
    expect(state.steps[0]!.history[0]!.failure?.type).toBe("worker_error");
    expect(completeStep(state, "0.1.1", "late", clockAt(1001))).toEqual({ ok: false, reason: "stale_lease" });
  });

  it("sleeps on a timer with no worker, then moves on", () => {
    const { state, outcome } = createRun(definition([{ name: "nap", type: "sleep", config: { durationMs: 500 } }, work("b")]), clockAt(0));
    expect(outcome.dispatches).toEqual([]);
    expect(state.status).toBe("waiting");
    expect(nextTimerAt(state)).toBe(500);
    const woke = fireTimers(state, clockAt(500));
    expect(woke.dispatches).toEqual([{ stepIndex: 1, dispatch: 1 }]);
    expect(state.steps[0]!.output).toEqual({ sleptMs: 500 });
    expect(state.status).toBe("running");
  });

  it("cancel stops active and pending steps; resume continues a failed run from its failed step", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    cancelRun(state, "operator", clockAt(1));
    expect(state.steps.map((s) => s.status)).toEqual(["cancelled", "skipped"]);
    expect(resumeRun(state, clockAt(2))).toEqual({ ok: false, reason: "not_failed" });

    const other = createRun(definition([work("a"), work("b")]), clockAt(0)).state;
    startStep(other, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    completeStep(other, "0.1.1", "kept", clockAt(1));
    startStep(other, { stepIndex: 1, dispatch: 1 }, clockAt(2));
    failStep(other, "1.1.1", { type: "permanent", message: "no" }, clockAt(3));
    const resumed = resumeRun(other, clockAt(4));
    expect(resumed.ok && resumed.outcome.dispatches).toEqual([{ stepIndex: 1, dispatch: 2 }]);
    expect(other.steps[0]!.output).toBe("kept");
    expect(other.steps[0]!.status).toBe("succeeded");
    startStep(other, { stepIndex: 1, dispatch: 2 }, clockAt(5));
    expect(other.steps[1]!.attempts).toBe(2); // attempt numbers keep counting
    expect(other.steps[1]!.attempts - other.steps[1]!.attemptBase).toBe(1); // with a fresh budget
  });

  it("a run that fails on a step produces exactly one dead letter for it; a cancelled run none", () => {
    const { state } = createRun(definition([work("a")]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    const first = failStep(state, "0.1.1", { type: "transient", message: "x" }, clockAt(1));
    expect(first.ok && first.outcome.deadLetters).toEqual([]);
    fireTimers(state, clockAt(1000));
    startStep(state, { stepIndex: 0, dispatch: 2 }, clockAt(1000));
    const last = failStep(state, "0.2.2", { type: "transient", message: "x" }, clockAt(1001));
    expect(last.ok && last.outcome.deadLetters).toEqual([{ stepIndex: 0, dispatch: 2 }]);

    const other = createRun(definition([work("a")]), clockAt(0)).state;
    const cancelled = cancelRun(other, "stop", clockAt(1));
    expect(cancelled.ok && cancelled.outcome.deadLetters).toEqual([]);
  });

  it("a dispatch the queue dead-lettered fails its step and run, unless it is no longer current", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    expect(failDeadLetteredDispatch(state, { stepIndex: 0, dispatch: 7 }, "gave up", clockAt(1))).toEqual({ ok: false, reason: "stale_dispatch" });
    expect(failDeadLetteredDispatch(state, { stepIndex: 1, dispatch: 0 }, "gave up", clockAt(1))).toEqual({ ok: false, reason: "stale_dispatch" });
    const result = failDeadLetteredDispatch(state, { stepIndex: 0, dispatch: 1 }, "gave up", clockAt(2));
    expect(result.ok).toBe(true);
    expect(state.status).toBe("failed");
    expect(state.failure).toEqual({ type: "worker_error", message: "gave up", step: "a" });
    expect(state.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect(failDeadLetteredDispatch(state, { stepIndex: 0, dispatch: 1 }, "again", clockAt(3))).toEqual({ ok: false, reason: "run_finished" });
  });

  it("reports every attempt it ends, however it ends, so each is billed once", () => {
    const closedBy = (outcome: { closed: { leaseId: string; finishedAt: number }[] }) => outcome.closed.map((c) => [c.leaseId, c.finishedAt]);
    // success
    const ok = createRun(definition([work("a")]), clockAt(0)).state;
    startStep(ok, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const done = completeStep(ok, "0.1.1", null, clockAt(5));
    expect(done.ok && closedBy(done.outcome)).toEqual([["0.1.1", 5]]);
    // a failure that is retried, then a lease that expires
    const flaky = createRun(definition([work("a")]), clockAt(0)).state;
    startStep(flaky, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const failed = failStep(flaky, "0.1.1", { type: "transient", message: "x" }, clockAt(2));
    expect(failed.ok && closedBy(failed.outcome)).toEqual([["0.1.1", 2]]);
    const retry = fireTimers(flaky, clockAt(10_000));
    startStep(flaky, retry.dispatches[0]!, clockAt(10_001));
    const expired = fireTimers(flaky, clockAt(20_000));
    expect(closedBy(expired)).toEqual([["0.2.2", 20_000]]);
    // cancel while running
    const cancelled = createRun(definition([work("a")]), clockAt(0)).state;
    startStep(cancelled, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const cancel = cancelRun(cancelled, "stop", clockAt(3));
    expect(cancel.ok && closedBy(cancel.outcome)).toEqual([["0.1.1", 3]]);
    // the queue dead-letters a running dispatch
    const dead = createRun(definition([work("a")]), clockAt(0)).state;
    startStep(dead, { stepIndex: 0, dispatch: 1 }, clockAt(1));
    const lettered = failDeadLetteredDispatch(dead, { stepIndex: 0, dispatch: 1 }, "gave up", clockAt(4));
    expect(lettered.ok && closedBy(lettered.outcome)).toEqual([["0.1.1", 4]]);
    // nothing running: nothing closed
    const idle = createRun(definition([work("a")]), clockAt(0)).state;
    const idleCancel = cancelRun(idle, "stop", clockAt(3));
    expect(idleCancel.ok && idleCancel.outcome.closed).toEqual([]);
  });
});
