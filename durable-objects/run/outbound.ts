/**
 * What the run object sends out, built from its state: job dispatches, dead letters and run
 * index updates. Pure, so what a message carries (and its bounds) is decided in one place.
 */
import type { DeadLetterMessage, EventMessage, JobMessage } from "../../src/data-plane/messages";
import type { Dispatch, RunState } from "../../src/domain/run-machine";
import { truncateText } from "../../src/lib/text";
import { INDEX_ROWS_PER_ATTEMPT, INDEX_ROWS_PER_RUN } from "./meters";
import { runHeadline } from "./views";

/** Dead letters carry the latest attempts, index messages their latest attempts with short messages: both stay far below 128 KB. */
const DEAD_LETTER_ATTEMPTS = 10;
const INDEXED_FAILURE_CHARS = 500;
/** The index message carries at most this many attempts (the latest). */
const MAX_INDEXED_ATTEMPTS = 200;

export function jobMessage(state: RunState, d: Dispatch, pool: string): JobMessage {
  return { v: 1, runId: state.def.id, stepIndex: d.stepIndex, dispatch: d.dispatch, pool };
}

export function deadLetterMessage(state: RunState, d: { stepIndex: number; dispatch: number }, now: number): DeadLetterMessage {
  const step = state.steps[d.stepIndex]!;
  return {
    v: 1,
    kind: "step_failed",
    runId: state.def.id,
    customerId: state.def.customerId,
    runType: state.def.runType,
    pool: state.def.pool,
    stepIndex: d.stepIndex,
    dispatch: d.dispatch,
    step: state.def.steps[d.stepIndex]!.name,
    failure: step.error ?? { type: "worker_error", message: "unknown failure" },
    attempts: step.attempts,
    history: step.history.slice(-DEAD_LETTER_ATTEMPTS).map((h) => ({ attempt: h.attempt, startedAt: h.startedAt, finishedAt: h.finishedAt, outcome: h.outcome, ...(h.failure ? { failure: h.failure } : {}) })),
    ...(step.history.length > DEAD_LETTER_ATTEMPTS ? { attemptsOmitted: step.history.length - DEAD_LETTER_ATTEMPTS } : {}),
    deadAt: now,
  };
}

/** D1 rows the next index message will write: the run's row, and the attempts new or changed since the last one (all, after a wake). */
export function indexRowsFor(state: RunState, indexed: ReadonlyMap<string, string>): number {
  let changed = 0;
  for (const s of state.steps) for (const h of s.history) if (indexed.get(`${s.index}.${h.attempt}`) !== h.outcome) changed += 1;
  return INDEX_ROWS_PER_RUN + INDEX_ROWS_PER_ATTEMPT * Math.min(MAX_INDEXED_ATTEMPTS, changed);
}

/** The run index row and its attempts, as the events consumer writes them to D1. */
export function indexMessage(state: RunState, version: number, dueAt: number | null): EventMessage {
  const def = state.def;
  return {
    kind: "run.index",
    run: {
      ...runHeadline(state),
      failureType: state.failure?.type ?? null,
      failedStep: state.failure?.step ?? null,
      idempotencyKey: def.idempotencyKey,
      version,
      dueAt,
    },
    attempts: state.steps.flatMap((s) =>
      s.history.map((h) => ({
        stepIndex: s.index,
        step: def.steps[s.index]!.name,
        stepType: def.steps[s.index]!.type,
        attempt: h.attempt,
        status: h.outcome,
        failureType: h.failure?.type ?? null,
        failureMessage: h.failure ? truncateText(h.failure.message, INDEXED_FAILURE_CHARS) : null,
        startedAt: h.startedAt,
        finishedAt: h.finishedAt,
      })),
    ).slice(-MAX_INDEXED_ATTEMPTS),
  };
}
