/**
 * The run state machine, free of storage and I/O. The run's Durable Object loads a RunState,
 * calls one of these commands, persists the steps named in `touched`, appends `events` to its
 * log, and carries out `dispatches`. Commands mutate the state they are given only after
 * every guard has passed: a rejected command leaves it untouched.
 */
import type { SecretScope } from "./secrets";
import { DEFAULT_RETRY_POLICY, retryDelayMs, type RetryPolicy } from "./retry-policy";
import {
  isActiveStep,
  isRetryableFailure,
  isTerminalRun,
  type FailureType,
  type RunStatus,
  type StepStatus,
} from "./run-status";
import { getStepType } from "../steps/registry";
import type { StepFailure } from "./run-status";
import type { RunIdentity } from "./run-identity";

export interface StepDefinition {
  name: string;
  type: string;
  config: Record<string, unknown>;
  retry?: RetryPolicy;
  timeoutMs?: number;
}

/** Who a run belongs to and where it runs: the fields every shape of a run starts with. */
export interface RunDefinition extends RunIdentity {
  input: unknown;
  metadata: Record<string, unknown>;
  steps: StepDefinition[];
  retry?: RetryPolicy;
  timeoutMs?: number;
  idempotencyKey: string | null;
  /** Fingerprint of the creating request, to tell a replay from a reused idempotency key. */
  requestHash: string;
  /** The customer has a hard budget: each step's cost is settled before the next one starts. */
  budgetLimited?: boolean;
  /** The customer's plan weight when the run was created: its share of a busy pool (absent: 1). */
  weight?: number;
  /**
   * The customer's cost sub-ledger (LEDGER_SUBSHARDS) that counts this run's costs, chosen at its
   * creation and kept, so a redelivered record always meets the same counter. Absent: the
   * customer's primary ledger, as for every run before sub-ledgers existed.
   */
  subLedger?: number;
  /**
   * Whose secrets the steps' {{secrets.…}} references resolve in: "platform" for the steps of a
   * platform-wide run type, else "customer:<id>". Runs from before secrets existed have none:
   * their customer's.
   */
  secretScope?: SecretScope;
  createdAt: number;
}

export type { StepFailure } from "./run-status";

export interface AttemptRecord {
  attempt: number;
  leaseId: string;
  startedAt: number;
  finishedAt: number | null;
  outcome: "running" | "succeeded" | "failed";
  failure?: { type: FailureType; message: string };
}

export interface StepState {
  index: number;
  status: StepStatus;
  /** Attempts ever made; numbers keep counting across resumes. */
  attempts: number;
  /** Attempts made before the current budget: a resume or DLQ retry grants a fresh set. */
  attemptBase: number;
  /** Generation of the step's dispatch; a queue message carrying an older one is stale. */
  dispatch: number;
  /** Times the current dispatch was sent again for want of a pick-up (each wait twice the last). */
  resends: number;
  /** Attempts lost to the platform (a worker that stopped reporting, a consumer that crashed): they
   * have their own budget (MAX_PLATFORM_FAILURES), not the step's retry policy. */
  platformFailures: number;
  leaseId: string | null;
  /** Running: the lease's end. Queued: when an undelivered dispatch is sent again. */
  deadline: number | null;
  /** Queued for a retry: not to be dispatched before this time. */
  notBefore: number | null;
  /** Sleeping: when the durable timer fires. */
  wakeAt: number | null;
  output: unknown;
  error: { type: FailureType; message: string } | null;
  startedAt: number | null;
  finishedAt: number | null;
  history: AttemptRecord[];
}

export interface RunFailure {
  type: FailureType;
  message: string;
  step: string | null;
}

export interface RunState {
  def: RunDefinition;
  status: RunStatus;
  startedAt: number | null;
  finishedAt: number | null;
  failure: RunFailure | null;
  steps: StepState[];
}

export interface MachineEvent {
  type: string;
  step?: string;
  attempt?: number;
  data?: Record<string, unknown>;
}

export interface Dispatch {
  stepIndex: number;
  dispatch: number;
}

export interface Outcome {
  touched: Set<number>;
  events: MachineEvent[];
  /** Steps to send to the pool's queue now. */
  dispatches: Dispatch[];
  /** Steps whose failure ended the run: each goes to the pool's dead-letter queue. */
  deadLetters: Dispatch[];
  /** The run's status changed: its index row and attempt records are due for an update. */
  statusChanged: boolean;
  /** A step started within this command (inline continuation): its lease. */
  started: StartedStep | null;
  /** Attempts this command ended, however (succeeded, failed, expired, cancelled): each is billed. */
  closed: ClosedAttempt[];
}

export interface ClosedAttempt {
  stepIndex: number;
  leaseId: string;
  attempt: number;
  startedAt: number;
  finishedAt: number;
}

export interface StartedStep {
  stepIndex: number;
  leaseId: string;
  attempt: number;
}

export type Rejection =
  | "run_finished"
  | "unknown_step"
  | "stale_dispatch"
  | "already_running"
  | "not_queued"
  | "stale_lease"
  | "not_failed";

export type CommandResult = { ok: true; outcome: Outcome } | { ok: false; reason: Rejection };

/**
 * A step whose attempts keep failing for the platform's reasons (worker_error: lease expiry, a
 * crashed consumer) stops after this many, even though they do not use up its retry policy.
 */
export const MAX_PLATFORM_FAILURES = 10;

/** The longest wait before a dispatch is sent again (the waits double from Clock.redispatchMs). */
export const MAX_REDISPATCH_WAIT_MS = 3_600_000;

/** How long a dispatch sent `resends` times already may wait for a pick-up before it is sent again. */
export const redispatchWaitMs = (clock: Pick<Clock, "redispatchMs">, resends: number) => Math.min(MAX_REDISPATCH_WAIT_MS, clock.redispatchMs * 2 ** resends);

export interface Clock {
  now: number;
  leaseMs: number;
  /** How long a dispatched step may sit unpicked before it is first sent again (then twice as long, …). */
  redispatchMs: number;
  random: () => number;
}

const newOutcome = (): Outcome => ({
  touched: new Set(),
  events: [],
  dispatches: [],
  deadLetters: [],
  statusChanged: false,
  started: null,
  closed: [],
});

function setRunStatus(state: RunState, status: RunStatus, out: Outcome) {
  if (state.status !== status) {
    state.status = status;
    out.statusChanged = true;
  }
}

/** One outcome holding the effects of two commands applied in turn. */
export function mergeOutcomes(first: Outcome, second: Outcome): Outcome {
  return {
    touched: new Set([...first.touched, ...second.touched]),
    events: [...first.events, ...second.events],
    dispatches: [...first.dispatches, ...second.dispatches],
    deadLetters: [...first.deadLetters, ...second.deadLetters],
    statusChanged: first.statusChanged || second.statusChanged,
    started: second.started,
    closed: [...first.closed, ...second.closed],
  };
}

export function newStepState(index: number): StepState {
  return {
    index,
    status: "pending",
    attempts: 0,
    attemptBase: 0,
    dispatch: 0,
    resends: 0,
    platformFailures: 0,
    leaseId: null,
    deadline: null,
    notBefore: null,
    wakeAt: null,
    output: null,
    error: null,
    startedAt: null,
    finishedAt: null,
    history: [],
  };
}

export function retryPolicyOf(state: RunState, index: number): RetryPolicy {
  return state.def.steps[index]?.retry ?? state.def.retry ?? DEFAULT_RETRY_POLICY;
}

/** A new run: every step pending, then the first one dispatched. */
export function createRun(def: RunDefinition, clock: Clock): { state: RunState; outcome: Outcome } {
  const state: RunState = {
    def,
    status: "queued",
    startedAt: null,
    finishedAt: null,
    failure: null,
    steps: def.steps.map((_, index) => newStepState(index)),
  };
  const out = newOutcome();
  out.statusChanged = true;
  out.events.push({ type: "run.created", data: { steps: def.steps.length } });
  advance(state, clock, out, false);
  return { state, outcome: out };
}

function queueStep(state: RunState, step: StepState, clock: Clock, out: Outcome, delayMs: number) {
  step.status = "queued";
  step.dispatch += 1;
  step.resends = 0;
  step.leaseId = null;
  step.notBefore = delayMs > 0 ? clock.now + delayMs : null;
  step.deadline = delayMs > 0 ? null : clock.now + clock.redispatchMs;
  out.touched.add(step.index);
  if (delayMs === 0) out.dispatches.push({ stepIndex: step.index, dispatch: step.dispatch });
}

/**
 * Moves the run on from its first unfinished step. With `inline`, a step that a worker can
 * run is started at once for the caller instead of being queued.
 */
function advance(state: RunState, clock: Clock, out: Outcome, inline: boolean) {
  const step = state.steps.find((s) => s.status !== "succeeded" && s.status !== "skipped");
  if (!step) {
    setRunStatus(state, "succeeded", out);
    state.finishedAt = clock.now;
    out.events.push({ type: "run.succeeded" });
    return;
  }
  if (step.status !== "pending") return;
  const def = state.def.steps[step.index]!;
  const durable = getStepType(def.type)?.durable;
  if (durable) {
    const durationMs = Math.max(0, Number(durable.wakeAfterMs(def.config)) || 0);
    step.status = "waiting";
    step.startedAt = clock.now;
    step.wakeAt = clock.now + durationMs;
    out.touched.add(step.index);
    if (state.startedAt === null) state.startedAt = clock.now;
    setRunStatus(state, "waiting", out);
    out.events.push({ type: "step.waiting", step: def.name, data: { wakeAt: new Date(step.wakeAt).toISOString() } });
    return;
  }
  queueStep(state, step, clock, out, 0);
  if (state.status === "waiting") setRunStatus(state, "running", out);
  if (inline) {
    // Started here for the caller: no queue message, and no separate "queued" event.
    out.dispatches.pop();
    startStep(state, { stepIndex: step.index, dispatch: step.dispatch }, clock, out);
  } else {
    out.events.push({ type: "step.queued", step: def.name });
  }
}

/** A worker picked up a dispatch: it gets a lease on a new attempt. */
/**
 * Why a dispatch cannot start its step now, or null when it can. With `startStep`'s own guards,
 * so a caller can act before starting (hold a budget for the attempt) without a second copy.
 */
export function startRefusal(state: RunState, msg: Dispatch): Rejection | null {
  if (isTerminalRun(state.status)) return "run_finished";
  const step = state.steps[msg.stepIndex];
  if (!step) return "unknown_step";
  if (msg.dispatch !== step.dispatch) return "stale_dispatch";
  if (step.status === "running") return "already_running";
  if (step.status !== "queued") return "not_queued";
  return null;
}

/** The lease the step's next attempt will hold: step.dispatch.attempt. */
export const nextLeaseId = (step: StepState) => `${step.index}.${step.dispatch}.${step.attempts + 1}`;

export function startStep(
  state: RunState,
  msg: Dispatch,
  clock: Clock,
  into?: Outcome,
): CommandResult {
  const refusal = startRefusal(state, msg);
  if (refusal) return { ok: false, reason: refusal };
  const step = state.steps[msg.stepIndex]!;

  const out = into ?? newOutcome();
  step.leaseId = nextLeaseId(step);
  step.status = "running";
  step.attempts += 1;
  step.deadline = clock.now + clock.leaseMs;
  step.notBefore = null;
  step.startedAt = clock.now;
  step.finishedAt = null;
  step.history.push({ attempt: step.attempts, leaseId: step.leaseId, startedAt: clock.now, finishedAt: null, outcome: "running" });
  out.touched.add(step.index);
  if (state.startedAt === null) state.startedAt = clock.now;
  setRunStatus(state, "running", out);
  const name = state.def.steps[step.index]!.name;
  out.events.push({ type: "step.started", step: name, attempt: step.attempts, data: { leaseId: step.leaseId } });
  out.started = { stepIndex: step.index, leaseId: step.leaseId, attempt: step.attempts };
  return { ok: true, outcome: out };
}

function heldLease(state: RunState, leaseId: string): StepState | null {
  if (isTerminalRun(state.status)) return null;
  const step = state.steps.find((s) => s.leaseId === leaseId);
  return step && step.status === "running" ? step : null;
}

export function heartbeat(state: RunState, leaseId: string, clock: Clock): CommandResult {
  const step = heldLease(state, leaseId);
  if (!step) return { ok: false, reason: isTerminalRun(state.status) ? "run_finished" : "stale_lease" };
  const out = newOutcome();
  step.deadline = clock.now + clock.leaseMs;
  out.touched.add(step.index);
  return { ok: true, outcome: out };
}

function closeAttempt(step: StepState, clock: Clock, out: Outcome, outcome: AttemptRecord["outcome"], failure?: AttemptRecord["failure"]) {
  const record = step.history[step.history.length - 1];
  if (record && record.outcome === "running") {
    record.finishedAt = clock.now;
    record.outcome = outcome;
    if (failure) record.failure = failure;
    out.closed.push({ stepIndex: step.index, leaseId: record.leaseId, attempt: record.attempt, startedAt: record.startedAt, finishedAt: clock.now });
  }
}

export function completeStep(
  state: RunState,
  leaseId: string,
  output: unknown,
  clock: Clock,
  inline = false,
): CommandResult {
  const step = heldLease(state, leaseId);
  if (!step) return { ok: false, reason: isTerminalRun(state.status) ? "run_finished" : "stale_lease" };
  const out = newOutcome();
  step.status = "succeeded";
  step.output = output ?? null;
  step.error = null;
  step.leaseId = null;
  step.deadline = null;
  step.finishedAt = clock.now;
  closeAttempt(step, clock, out, "succeeded");
  out.touched.add(step.index);
  out.events.push({
    type: "step.succeeded",
    step: state.def.steps[step.index]!.name,
    attempt: step.attempts,
    data: { durationMs: clock.now - (step.startedAt ?? clock.now) },
  });
  advance(state, clock, out, inline);
  return { ok: true, outcome: out };
}

export function failStep(state: RunState, leaseId: string, failure: StepFailure, clock: Clock): CommandResult {
  const step = heldLease(state, leaseId);
  if (!step) return { ok: false, reason: isTerminalRun(state.status) ? "run_finished" : "stale_lease" };
  const out = newOutcome();
  recordFailure(state, step, failure, clock, out);
  return { ok: true, outcome: out };
}

function recordFailure(state: RunState, step: StepState, failure: StepFailure, clock: Clock, out: Outcome) {
  const name = state.def.steps[step.index]!.name;
  const error = { type: failure.type, message: failure.message };
  closeAttempt(step, clock, out, "failed", error);
  step.error = error;
  step.leaseId = null;
  step.deadline = null;
  step.finishedAt = clock.now;
  out.touched.add(step.index);
  out.events.push({ type: "step.failed", step: name, attempt: step.attempts, data: { ...error, durationMs: clock.now - (step.startedAt ?? clock.now) } });

  const policy = retryPolicyOf(state, step.index);
  // The platform's own faults retry on their own budget: they never use up the step's policy.
  const platformFault = failure.platform === true;
  if (platformFault) step.platformFailures += 1;
  const attemptInBudget = step.attempts - step.attemptBase - step.platformFailures;
  const withinBudget = platformFault ? step.platformFailures < MAX_PLATFORM_FAILURES : attemptInBudget < policy.maxAttempts;
  if (isRetryableFailure(failure.type) && withinBudget) {
    const delayMs = retryDelayMs(policy, platformFault ? step.platformFailures : attemptInBudget, clock.random, failure.retryAfterMs);
    queueStep(state, step, clock, out, delayMs);
    out.events.push({ type: "step.retry_scheduled", step: name, attempt: step.attempts + 1, data: { delayMs } });
    return;
  }
  step.status = "failed";
  failRun(state, { type: failure.type, message: failure.message, step: name }, clock, out);
  // A refused budget is not a processing failure: it is alerted by the ledger, not dead-lettered.
  if (failure.type !== "budget_exceeded") out.deadLetters.push({ stepIndex: step.index, dispatch: step.dispatch });
}

/**
 * The customer's hard budget is spent: the run stops before its next step, which never runs
 * (failure type budget_exceeded). A step already running is left to report; nothing new starts.
 */
export function stopForBudget(state: RunState, message: string, clock: Clock): CommandResult {
  if (isTerminalRun(state.status)) return { ok: false, reason: "run_finished" };
  const next = state.steps.find((s) => s.status === "queued" || s.status === "waiting" || s.status === "pending");
  if (!next || state.steps.some((s) => s.status === "running")) return { ok: false, reason: "not_queued" };
  const out = newOutcome();
  if (next.status !== "pending") {
    next.status = "skipped";
    next.leaseId = null;
    next.deadline = null;
    next.notBefore = null;
    next.wakeAt = null;
    out.touched.add(next.index);
  }
  out.events.push({ type: "run.budget_exceeded", step: state.def.steps[next.index]!.name, data: { message } });
  failRun(state, { type: "budget_exceeded", message, step: state.def.steps[next.index]!.name }, clock, out);
  return { ok: true, outcome: out };
}

/**
 * The queue gave up on a dispatch (its consumer failed max_retries times): the attempt that
 * may be running is closed and the run fails with the step, as a worker_error. Recorded by the
 * dead-letter consumer itself, so no dead letter is produced here. A dispatch that is no longer
 * current changes nothing.
 */
export function failDeadLetteredDispatch(state: RunState, msg: Dispatch, reason: string, clock: Clock): CommandResult {
  if (isTerminalRun(state.status)) return { ok: false, reason: "run_finished" };
  const step = state.steps[msg.stepIndex];
  if (!step) return { ok: false, reason: "unknown_step" };
  if (msg.dispatch !== step.dispatch || !isActiveStep(step.status)) return { ok: false, reason: "stale_dispatch" };
  const out = newOutcome();
  const name = state.def.steps[step.index]!.name;
  const error = { type: "worker_error" as const, message: reason };
  endActiveStep(step, "failed", error, clock, out);
  step.error = error;
  out.events.push({ type: "step.dead_lettered", step: name, attempt: step.attempts, data: error });
  failRun(state, { ...error, step: name }, clock, out);
  return { ok: true, outcome: out };
}

/** Ends a queued, running or waiting step: its attempt (if one runs) is closed, its timers cleared. */
function endActiveStep(step: StepState, status: "failed" | "cancelled", failure: { type: FailureType; message: string }, clock: Clock, out: Outcome) {
  if (step.status === "running") closeAttempt(step, clock, out, "failed", failure);
  step.status = status;
  step.leaseId = null;
  step.deadline = null;
  step.notBefore = null;
  step.wakeAt = null;
  step.finishedAt = clock.now;
  out.touched.add(step.index);
}

function failRun(state: RunState, failure: RunFailure, clock: Clock, out: Outcome) {
  for (const s of state.steps) {
    if (s.status === "pending") {
      s.status = "skipped";
      out.touched.add(s.index);
    }
  }
  state.failure = failure;
  state.finishedAt = clock.now;
  setRunStatus(state, "failed", out);
  out.events.push({ type: "run.failed", step: failure.step ?? undefined, data: { type: failure.type, message: failure.message } });
}

export function cancelRun(state: RunState, reason: string, clock: Clock): CommandResult {
  if (isTerminalRun(state.status)) return { ok: false, reason: "run_finished" };
  const out = newOutcome();
  const active = state.steps.find((s) => isActiveStep(s.status));
  for (const s of state.steps) {
    if (isActiveStep(s.status)) {
      endActiveStep(s, "cancelled", { type: "cancelled", message: reason }, clock, out);
    } else if (s.status === "pending") {
      s.status = "skipped";
      out.touched.add(s.index);
    }
  }
  state.failure = {
    type: "cancelled",
    message: reason,
    step: active ? state.def.steps[active.index]!.name : null,
  };
  state.finishedAt = clock.now;
  setRunStatus(state, "cancelled", out);
  out.events.push({ type: "run.cancelled", data: { reason } });
  return { ok: true, outcome: out };
}

/** A failed run continues from its first step that did not succeed, with fresh attempts. */
export function resumeRun(state: RunState, clock: Clock): CommandResult {
  if (state.status !== "failed") return { ok: false, reason: "not_failed" };
  const out = newOutcome();
  for (const s of state.steps) {
    if (s.status === "failed" || s.status === "skipped") {
      s.status = "pending";
      s.attemptBase = s.attempts;
      s.platformFailures = 0;
      s.leaseId = null;
      s.deadline = null;
      s.notBefore = null;
      s.finishedAt = null;
      out.touched.add(s.index);
    }
  }
  state.failure = null;
  state.finishedAt = null;
  setRunStatus(state, "queued", out);
  out.events.push({ type: "run.resumed" });
  advance(state, clock, out, false);
  return { ok: true, outcome: out };
}

/** When the run's single alarm must next fire, or null when nothing is pending. */
export function nextTimerAt(state: RunState): number | null {
  if (isTerminalRun(state.status)) return null;
  let next: number | null = null;
  for (const s of state.steps) {
    const due =
      s.status === "waiting" ? s.wakeAt : s.status === "queued" ? (s.notBefore ?? s.deadline) : s.status === "running" ? s.deadline : null;
    if (due !== null && (next === null || due < next)) next = due;
  }
  return next;
}

/**
 * Fires every timer that is due: sleeps end, retry delays elapse, undelivered dispatches are
 * sent again, and expired leases (a crashed or hung worker) count as a failed attempt.
 */
export function fireTimers(state: RunState, clock: Clock): Outcome {
  const out = newOutcome();
  if (isTerminalRun(state.status)) return out;
  for (const step of state.steps) {
    const name = state.def.steps[step.index]!.name;
    if (step.status === "waiting" && step.wakeAt !== null && step.wakeAt <= clock.now) {
      const sleptMs = clock.now - (step.startedAt ?? clock.now);
      step.status = "succeeded";
      step.output = { sleptMs };
      step.wakeAt = null;
      step.finishedAt = clock.now;
      out.touched.add(step.index);
      out.events.push({ type: "step.succeeded", step: name, data: { sleptMs } });
      advance(state, clock, out, false);
    } else if (step.status === "queued" && step.notBefore !== null && step.notBefore <= clock.now) {
      step.notBefore = null;
      step.deadline = clock.now + clock.redispatchMs;
      out.touched.add(step.index);
      out.dispatches.push({ stepIndex: step.index, dispatch: step.dispatch });
    } else if (step.status === "queued" && step.notBefore === null && step.deadline !== null && step.deadline <= clock.now) {
      // Sent again under the same generation (a duplicate is harmless), each wait twice the last:
      // a message merely waiting in a deep queue is re-sent a few times, not once per period.
      step.resends += 1;
      step.deadline = clock.now + redispatchWaitMs(clock, step.resends);
      out.touched.add(step.index);
      out.dispatches.push({ stepIndex: step.index, dispatch: step.dispatch });
      out.events.push({ type: "step.redispatched", step: name, data: { reason: "dispatch not picked up in time", resends: step.resends } });
    } else if (step.status === "running" && step.deadline !== null && step.deadline <= clock.now) {
      out.events.push({ type: "lease.expired", step: name, attempt: step.attempts, data: { leaseId: step.leaseId } });
      recordFailure(state, step, { type: "worker_error", message: "lease expired: the worker stopped reporting", platform: true }, clock, out);
    }
  }
  return out;
}
