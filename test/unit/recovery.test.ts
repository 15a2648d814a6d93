/**
 * Recovery, in the pure code: a lost dispatch is sent again under its own generation with
 * doubling waits; platform faults retry on their own budget; text is cut with a marker that
 * tells the truth; retention settings and cut-offs; the consumer's backoff for an unreachable
 * run object.
 */
import { describe, expect, it } from "vitest";
import { platformRetryDelaySeconds } from "../../src/data-plane/job-consumer";
import { DEFAULT_RETENTION, retentionCutoffs, retentionSettings } from "../../src/domain/retention";
import {
  MAX_PLATFORM_FAILURES,
  MAX_REDISPATCH_WAIT_MS,
  completeStep,
  createRun,
  failStep,
  fireTimers,
  nextTimerAt,
  redispatchWaitMs,
  resumeRun,
  startStep,
  type Clock,
  type RunDefinition,
  type RunState,
} from "../../src/domain/run-machine";
import type { RetryPolicy } from "../../src/domain/retry-policy";
import { truncateText } from "../../src/lib/text";

const LEASE_MS = 1000;
const REDISPATCH_MS = 30_000;
const clockAt = (now: number): Clock => ({ now, leaseMs: LEASE_MS, redispatchMs: REDISPATCH_MS, random: () => 0.5 });

function definition(steps: RunDefinition["steps"], retry?: RetryPolicy): RunDefinition {
  return {
    id: "run_recovery",
    customerId: "c",
    projectId: "p",
    runType: null,
    pool: "standard",
    priority: "normal",
    input: null,
    metadata: {},
    steps,
    retry,
    idempotencyKey: null,
    requestHash: "h",
    createdAt: 0,
  };
}

const work = (name: string, retry?: RetryPolicy) => ({ name, type: "synthetic", config: {}, ...(retry ? { retry } : {}) });
const noDelay = (maxAttempts: number): RetryPolicy => ({ maxAttempts, initialDelayMs: 0, maxDelayMs: 0, backoffFactor: 1 });

describe("a dispatch that is not picked up", () => {
  it("is sent again under the same generation, each wait twice the last, capped at an hour", () => {
    const { state, outcome } = createRun(definition([work("a")]), clockAt(0));
    expect(outcome.dispatches).toEqual([{ stepIndex: 0, dispatch: 1 }]);
    const step = state.steps[0]!;
    expect(step.deadline).toBe(REDISPATCH_MS);
    expect(nextTimerAt(state)).toBe(REDISPATCH_MS);
    // Not before its deadline.
    expect(fireTimers(state, clockAt(REDISPATCH_MS - 1)).dispatches).toEqual([]);

    const waits: number[] = [];
    const resendEvents: unknown[] = [];
    let now = REDISPATCH_MS;
    for (let i = 1; i <= 9; i++) {
      const out = fireTimers(state, clockAt(now));
      expect(out.dispatches).toEqual([{ stepIndex: 0, dispatch: 1 }]);
      expect([...out.touched]).toEqual([0]);
      resendEvents.push(...out.events.filter((e) => e.type === "step.redispatched").map((e) => e.data?.resends));
      expect(step.resends).toBe(i);
      expect(step.dispatch).toBe(1);
      expect(step.status).toBe("queued");
      waits.push(step.deadline! - now);
      expect(nextTimerAt(state)).toBe(step.deadline);
      // Nothing more is sent until the new deadline.
      expect(fireTimers(state, clockAt(step.deadline! - 1)).dispatches).toEqual([]);
      now = step.deadline!;
    }
    expect(waits).toEqual([60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, MAX_REDISPATCH_WAIT_MS, MAX_REDISPATCH_WAIT_MS, MAX_REDISPATCH_WAIT_MS]);
    expect(MAX_REDISPATCH_WAIT_MS).toBe(3_600_000);
    // Each resend is told in the run's events with its count.
    expect(resendEvents).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // No attempt was made or lost by resending.
    expect(step.attempts).toBe(0);
    expect(step.history).toEqual([]);
  });

  it("the first message, of the generation it was sent with, still starts the step after resends; the copies are then refused", () => {
    const { state } = createRun(definition([work("a"), work("b")]), clockAt(0));
    fireTimers(state, clockAt(REDISPATCH_MS));
    fireTimers(state, clockAt(REDISPATCH_MS * 3));
    expect(state.steps[0]!.resends).toBe(2);
    const started = startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(REDISPATCH_MS * 3 + 5));
    expect(started.ok && started.outcome.started).toEqual({ stepIndex: 0, leaseId: "0.1.1", attempt: 1 });
    // The resent copies arrive later: harmless.
    expect(startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(REDISPATCH_MS * 3 + 6))).toEqual({ ok: false, reason: "already_running" });
    completeStep(state, "0.1.1", null, clockAt(REDISPATCH_MS * 3 + 7));
    expect(startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(REDISPATCH_MS * 3 + 8))).toEqual({ ok: false, reason: "not_queued" });
    expect(state.steps[0]!.attempts).toBe(1);
    // The next step starts its own waits from the beginning.
    expect(state.steps[1]!.resends).toBe(0);
    expect(state.steps[1]!.deadline).toBe(REDISPATCH_MS * 3 + 7 + REDISPATCH_MS);
  });

  it("a retry starts the waits over, under its new generation; a delayed retry's dispatch gets the first wait", () => {
    const retry = { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 100, backoffFactor: 1 };
    const { state } = createRun(definition([work("a", retry)]), clockAt(0));
    fireTimers(state, clockAt(REDISPATCH_MS));
    fireTimers(state, clockAt(REDISPATCH_MS * 3));
    const step = state.steps[0]!;
    const t = REDISPATCH_MS * 3 + 10;
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(t));
    failStep(state, "0.1.1", { type: "transient", message: "x" }, clockAt(t + 1));
    expect(step.dispatch).toBe(2);
    expect(step.resends).toBe(0);
    // The delay (75 ms with random 0.5) passes: sent, and given REDISPATCH_MS to be picked up.
    const sent = fireTimers(state, clockAt(step.notBefore!));
    expect(sent.dispatches).toEqual([{ stepIndex: 0, dispatch: 2 }]);
    expect(step.deadline).toBe(t + 1 + 75 + REDISPATCH_MS);
    const again = fireTimers(state, clockAt(step.deadline!));
    expect(again.dispatches).toEqual([{ stepIndex: 0, dispatch: 2 }]);
    expect(again.events).toEqual([{ type: "step.redispatched", step: "a", data: { reason: "dispatch not picked up in time", resends: 1 } }]);
    expect(step.dispatch).toBe(2);
  });

  it("redispatchWaitMs doubles from the clock's first wait and stops at the cap", () => {
    const clock = { redispatchMs: 30_000 };
    expect([0, 1, 2, 3].map((n) => redispatchWaitMs(clock, n))).toEqual([30_000, 60_000, 120_000, 240_000]);
    expect(redispatchWaitMs(clock, 7)).toBe(MAX_REDISPATCH_WAIT_MS);
    expect(redispatchWaitMs(clock, 1000)).toBe(MAX_REDISPATCH_WAIT_MS);
    expect(redispatchWaitMs({ redispatchMs: 5 }, 3)).toBe(40);
  });
});

/** Starts the step's current dispatch and lets its lease expire; returns what the expiry did. */
function loseLease(state: RunState, index: number, now: number) {
  const step = state.steps[index]!;
  if (step.notBefore !== null) fireTimers(state, clockAt(step.notBefore));
  const started = startStep(state, { stepIndex: index, dispatch: step.dispatch }, clockAt(now));
  expect(started.ok).toBe(true);
  const out = fireTimers(state, clockAt(now + LEASE_MS));
  expect(out.events.map((e) => e.type)).toContain("lease.expired");
  return out;
}

describe("platform faults retry on their own budget", () => {
  it("lease expiries do not use up a step's maxAttempts: 1, but MAX_PLATFORM_FAILURES of them fail the step", () => {
    expect(MAX_PLATFORM_FAILURES).toBe(10);
    const { state } = createRun(definition([work("a", noDelay(1)), work("b")]), clockAt(0));
    const step = state.steps[0]!;
    for (let i = 1; i < MAX_PLATFORM_FAILURES; i++) {
      const out = loseLease(state, 0, i * 10_000);
      expect(step.platformFailures).toBe(i);
      expect(step.status).toBe("queued");
      expect(state.status).not.toBe("failed");
      expect(out.deadLetters).toEqual([]);
      expect(out.dispatches).toEqual([{ stepIndex: 0, dispatch: i + 1 }]);
      expect(out.events.map((e) => e.type)).toEqual(["lease.expired", "step.failed", "step.retry_scheduled"]);
    }
    const last = loseLease(state, 0, 1_000_000);
    expect(step.platformFailures).toBe(MAX_PLATFORM_FAILURES);
    expect(step.attempts).toBe(MAX_PLATFORM_FAILURES);
    expect(step.status).toBe("failed");
    expect(state.status).toBe("failed");
    expect(state.failure).toEqual({ type: "worker_error", message: "lease expired: the worker stopped reporting", step: "a" });
    expect(state.steps[1]!.status).toBe("skipped");
    expect(last.deadLetters).toEqual([{ stepIndex: 0, dispatch: MAX_PLATFORM_FAILURES }]);
  });

  it("the step's own failures still use its policy: one lost lease, then a failure of the step, ends a maxAttempts: 1 step", () => {
    const { state } = createRun(definition([work("a", noDelay(1))]), clockAt(0));
    loseLease(state, 0, 0);
    expect(state.steps[0]!.status).toBe("queued");
    startStep(state, { stepIndex: 0, dispatch: 2 }, clockAt(5000));
    failStep(state, "0.2.2", { type: "transient", message: "the step's own failure" }, clockAt(5001));
    expect(state.status).toBe("failed");
    expect(state.failure?.type).toBe("transient");

    // With two attempts of its own, lost leases in between do not take either away.
    const other = createRun(definition([work("a", noDelay(2))]), clockAt(0)).state;
    const s = other.steps[0]!;
    loseLease(other, 0, 0);
    loseLease(other, 0, 10_000);
    startStep(other, { stepIndex: 0, dispatch: s.dispatch }, clockAt(20_000));
    failStep(other, s.leaseId!, { type: "transient", message: "own 1" }, clockAt(20_001));
    expect(s.status).toBe("queued");
    loseLease(other, 0, 30_000);
    startStep(other, { stepIndex: 0, dispatch: s.dispatch }, clockAt(40_000));
    failStep(other, s.leaseId!, { type: "transient", message: "own 2" }, clockAt(40_001));
    expect(other.status).toBe("failed");
    expect(s.attempts).toBe(5);
    expect(s.platformFailures).toBe(3);
  });

  it("a worker_error the step reports itself (it threw) is the step's failure, not the platform's", () => {
    const { state } = createRun(definition([work("a", noDelay(1))]), clockAt(0));
    startStep(state, { stepIndex: 0, dispatch: 1 }, clockAt(0));
    failStep(state, "0.1.1", { type: "worker_error", message: "step threw: boom" }, clockAt(1));
    expect(state.status).toBe("failed");
    expect(state.steps[0]!.platformFailures).toBe(0);
  });

  it("platform retries back off by the count of platform failures, with the step's delays", () => {
    const retry = { maxAttempts: 1, initialDelayMs: 100, maxDelayMs: 10_000, backoffFactor: 2 };
    const { state } = createRun(definition([work("a", retry)]), clockAt(0));
    const step = state.steps[0]!;
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const out = loseLease(state, 0, i * 100_000);
      delays.push(out.events.find((e) => e.type === "step.retry_scheduled")!.data!.delayMs as number);
      expect(out.dispatches).toEqual([]);
      expect(step.notBefore).toBe(i * 100_000 + LEASE_MS + delays[i]!);
    }
    // Equal jitter with random 0.5: three quarters of 100, 200, 400, 800.
    expect(delays).toEqual([75, 150, 300, 600]);
  });

  it("resume grants a fresh platform budget", () => {
    const { state } = createRun(definition([work("a", noDelay(1))]), clockAt(0));
    const step = state.steps[0]!;
    for (let i = 0; i < MAX_PLATFORM_FAILURES; i++) loseLease(state, 0, i * 10_000);
    expect(state.status).toBe("failed");
    const resumed = resumeRun(state, clockAt(200_000));
    expect(resumed.ok).toBe(true);
    expect(step.platformFailures).toBe(0);
    // One more lost lease is retried, not the end of the run.
    loseLease(state, 0, 300_000);
    expect(step.status).toBe("queued");
    expect(state.status).not.toBe("failed");
    expect(step.platformFailures).toBe(1);
    // And the step's own attempt is fresh too.
    startStep(state, { stepIndex: 0, dispatch: step.dispatch }, clockAt(400_000));
    completeStep(state, step.leaseId!, "ok", clockAt(400_001));
    expect(state.status).toBe("succeeded");
  });
});

describe("platformRetryDelaySeconds (an unreachable run object)", () => {
  it("1 s, 2 s, 4 s … doubling per delivery, at most 5 minutes", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map(platformRetryDelaySeconds)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256]);
    expect(platformRetryDelaySeconds(10)).toBe(300);
    expect(platformRetryDelaySeconds(100)).toBe(300);
    // A first delivery reported as attempt 0 does not wait less than a second.
    expect(platformRetryDelaySeconds(0)).toBe(1);
  });

  it("rides out hours of outage before production's 100 deliveries run out", () => {
    let total = 0;
    for (let attempt = 1; attempt < 100; attempt++) total += platformRetryDelaySeconds(attempt);
    expect(total).toBeGreaterThan(7 * 3600);
  });
});

describe("truncateText", () => {
  const markerOf = (text: string) => /^(.*) … \[truncated: (\d+) more characters\]$/s.exec(text);

  it("leaves text within the limit alone", () => {
    expect(truncateText("", 10)).toBe("");
    expect(truncateText("abc", 3)).toBe("abc");
    const exact = "x".repeat(4000);
    expect(truncateText(exact, 4000)).toBe(exact);
  });

  it("cuts longer text to the limit, keeping its start, with a marker that counts exactly what is missing", () => {
    for (const [length, max] of [[4001, 4000], [10_000, 4000], [1_000_000, 4000], [10_000, 500], [600, 500], [123_456, 100], [100_000, 99_990]] as const) {
      const text = Array.from({ length }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
      const cut = truncateText(text, max);
      expect(cut.length).toBeLessThanOrEqual(max);
      const match = markerOf(cut);
      expect(match, `${length} → ${max}`).not.toBeNull();
      const [, kept, missing] = match!;
      expect(text.startsWith(kept!)).toBe(true);
      // What is shown and what the marker says is missing add up to the original.
      expect(kept!.length + Number(missing), `${length} → ${max}`).toBe(length);
      // As much is kept as the limit allows.
      expect(cut.length).toBe(max);
    }
  });
});

describe("retention settings", () => {
  it("defaults: 30 days of detail, 13 months of costs, 30 days of resolved DLQ entries, 90 days of alerts", () => {
    expect(DEFAULT_RETENTION).toEqual({ stepDetailDays: 30, costMonths: 13, resolvedDlqDays: 30, alertDays: 90 });
    expect(retentionSettings({})).toEqual(DEFAULT_RETENTION);
  });

  it("reads each var; a missing, zero, negative, fractional or non-numeric value keeps its default", () => {
    expect(retentionSettings({ RETENTION_STEP_DETAIL_DAYS: "7", RETENTION_COST_MONTHS: "24", RETENTION_RESOLVED_DLQ_DAYS: "14", RETENTION_ALERT_DAYS: "365" })).toEqual({
      stepDetailDays: 7,
      costMonths: 24,
      resolvedDlqDays: 14,
      alertDays: 365,
    });
    for (const bad of ["", "0", "-5", "1.5", "abc", "NaN", "Infinity", " "]) {
      expect(retentionSettings({ RETENTION_STEP_DETAIL_DAYS: bad, RETENTION_COST_MONTHS: bad, RETENTION_RESOLVED_DLQ_DAYS: bad, RETENTION_ALERT_DAYS: bad }), JSON.stringify(bad)).toEqual(DEFAULT_RETENTION);
    }
    // One bad value does not disturb the others.
    expect(retentionSettings({ RETENTION_STEP_DETAIL_DAYS: "x", RETENTION_ALERT_DAYS: "10" })).toEqual({ ...DEFAULT_RETENTION, alertDays: 10 });
  });
});

describe("retention cut-offs", () => {
  const DAY = 86_400_000;
  const at = (iso: string) => Date.parse(iso);

  it("day-based kinds go by days before now", () => {
    const now = at("2026-12-01T12:34:56.789Z");
    const cut = retentionCutoffs(now, DEFAULT_RETENTION);
    expect(cut.stepDetail).toBe(now - 30 * DAY);
    expect(cut.resolvedDlq).toBe(now - 30 * DAY);
    expect(cut.alerts).toBe(now - 90 * DAY);
    expect(retentionCutoffs(now, { ...DEFAULT_RETENTION, stepDetailDays: 1 }).stepDetail).toBe(now - DAY);
  });

  it("costs keep whole UTC months: this month and the 12 before it, across a year boundary", () => {
    // December 2026: kept from December 2025.
    expect(retentionCutoffs(at("2026-12-01T12:00:00Z"), DEFAULT_RETENTION).costs).toBe(at("2025-12-01T00:00:00Z"));
    // January 2027: kept from January 2026 (month arithmetic crosses the year).
    expect(retentionCutoffs(at("2027-01-15T00:00:00Z"), DEFAULT_RETENTION).costs).toBe(at("2026-01-01T00:00:00Z"));
    // The first and last instants of a month give the same cut-off.
    expect(retentionCutoffs(at("2027-03-01T00:00:00.000Z"), DEFAULT_RETENTION).costs).toBe(at("2026-03-01T00:00:00Z"));
    expect(retentionCutoffs(at("2027-03-31T23:59:59.999Z"), DEFAULT_RETENTION).costs).toBe(at("2026-03-01T00:00:00Z"));
    // One month: only the current month is kept; 25 months: across two year boundaries.
    expect(retentionCutoffs(at("2027-02-28T00:00:00Z"), { ...DEFAULT_RETENTION, costMonths: 1 }).costs).toBe(at("2027-02-01T00:00:00Z"));
    expect(retentionCutoffs(at("2027-02-28T00:00:00Z"), { ...DEFAULT_RETENTION, costMonths: 25 }).costs).toBe(at("2025-02-01T00:00:00Z"));
    // A cut-off is always a month start, in UTC, whatever the time of day.
    const c = new Date(retentionCutoffs(at("2026-07-04T23:30:00Z"), { ...DEFAULT_RETENTION, costMonths: 8 }).costs);
    expect(c.toISOString()).toBe("2025-12-01T00:00:00.000Z");
  });
});
