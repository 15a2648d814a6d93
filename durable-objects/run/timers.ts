/**
 * The run's one alarm and the deadlines it serves besides the run machine's own timers: the
 * end of a finished run's retention, and the reconciler's deadline for a run that should have
 * moved on by itself. Pure functions, apart from the alarm itself.
 */
import { nextTimerAt, type RunState } from "../../src/domain/run-machine";
import { isTerminalRun, isDeadLettered } from "../../src/domain/run-status";

const DAY_MS = 86_400_000;
/** A finished run's object keeps its storage this long (RETENTION_STEP_DETAIL_DAYS), then deletes it. */
const DEFAULT_RETENTION_DAYS = 30;
/** The reconciler looks at a run this long after it should have moved on by its own timers. */
const DEFAULT_RECONCILE_AFTER_MS = 60_000;
/** A failed run's dead letter should be recorded within this long; else the reconciler resends it. */
const DEAD_LETTER_DUE_MS = 5 * 60_000;

export interface TimerSettings {
  retentionMs: number;
  reconcileGraceMs: number;
}

export function timerSettings(env: Env): TimerSettings {
  const days = Number(env.RETENTION_STEP_DETAIL_DAYS);
  return {
    retentionMs: (Number.isFinite(days) && days > 0 ? days : DEFAULT_RETENTION_DAYS) * DAY_MS,
    reconcileGraceMs: Number(env.RECONCILE_AFTER_MS) || DEFAULT_RECONCILE_AFTER_MS,
  };
}

/**
 * When a finished run deletes itself: its retention after it finished, once its costs are all
 * delivered and its dead letters sent; null while anything of it is still due.
 */
export function retentionAt(state: RunState, settings: TimerSettings, stillDue: boolean): number | null {
  if (!isTerminalRun(state.status) || state.finishedAt === null || stillDue) return null;
  return state.finishedAt + settings.retentionMs;
}

/**
 * When the run should have moved on by its own timers (plus a grace), for the reconciler's
 * indexed deadline: a run is looked at only once it is overdue, never while it waits as planned.
 * A failed run is due until its dead letter is recorded (the dead-letter consumer clears it).
 */
export function reconcileDueAt(state: RunState, settings: TimerSettings, now: number): number | null {
  if (isTerminalRun(state.status)) return isDeadLettered(state) && state.finishedAt !== null ? state.finishedAt + DEAD_LETTER_DUE_MS : null;
  return (nextTimerAt(state) ?? now) + settings.reconcileGraceMs;
}

/**
 * The object's one alarm, kept at or before the earliest of its deadlines. Moving it later is
 * skipped on the hot path (an early alarm finds nothing due and re-arms itself), which saves a
 * storage write per step; off the hot path (a finished run) it moves later too, so no early
 * alarm wakes the run for nothing.
 */
export class RunAlarm {
  private at: number | null = null;

  constructor(private readonly storage: DurableObjectStorage) {}

  async wake(): Promise<void> {
    this.at = await this.storage.getAlarm();
  }

  fired(): void {
    this.at = null;
  }

  arm(deadlines: readonly (number | null)[], options: { finished: boolean; alarmFired: boolean }): Promise<void> {
    const due = deadlines.filter((t): t is number => t !== null);
    const next = due.length > 0 ? Math.min(...due) : null;
    if (next === null) {
      // Nothing left to wait for: a finished run keeps no timer, so an idle platform costs nothing.
      const had = this.at !== null && !options.alarmFired;
      this.at = null;
      return had ? this.storage.deleteAlarm() : Promise.resolve();
    }
    if (options.alarmFired || this.at === null || next < this.at || (options.finished && next !== this.at)) {
      this.at = next;
      return this.storage.setAlarm(next);
    }
    return Promise.resolve();
  }
}
