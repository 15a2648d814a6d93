import type { z } from "zod";
import type { StepFailure } from "../domain/run-status";
import type { TokenUsage } from "../domain/token-usage";
import type { WorstCaseTokens } from "../domain/worst-case";

/** Tokens an AI call used, one field per priced line: see src/domain/token-usage.ts. */
export type { TokenUsage } from "../domain/token-usage";

export type StepResult =
  | { ok: true; output: unknown; usage?: TokenUsage[] }
  | { ok: false; failure: StepFailure };

export interface StepContext {
  runId: string;
  stepName: string;
  attempt: number;
  /** When this attempt started (ms since epoch), as recorded by the run object. */
  startedAt: number;
  /** Aborted when the step's timeout passes. */
  signal: AbortSignal;
  env: Env;
  /**
   * The values of the step's {{secrets.NAME}} references. Everything the step reports is masked
   * with them afterwards anyway; a step that scrubs text of its own first (an endpoint's error
   * message) masks these as "[secret]" before its generic rules would call them "[redacted]".
   */
  secretValues: readonly string[];
}

/**
 * A step type: the schema its `config` must satisfy (checked when a run or run type is
 * created, so a bad config is a 400, not a failed run) and the code a worker runs.
 * `durable` types are carried out by the run object itself (timers) and hold no worker.
 */
export interface StepType<Config = unknown> {
  type: string;
  description: string;
  configSchema: z.ZodType<Config>;
  /**
   * Present for a type the run object carries out itself on its alarm, holding no worker: the
   * step waits `wakeAfterMs` from when it is reached, then succeeds.
   */
  durable?: { wakeAfterMs(config: Config): number };
  execute(config: Config, ctx: StepContext): Promise<StepResult>;
  /**
   * The models a step of this type is billed for, each with the path in its config that names
   * it (checked at run creation: a model without a price is refused before anything runs). The
   * config is the one the run was created with, not yet validated: read it defensively.
   */
  billedModels?(config: unknown): { model: string; path: string }[];
  /**
   * The most tokens one attempt can be billed for, from its resolved config: what a hard budget
   * holds before the attempt runs (with the attempt's infrastructure). Types that call no model
   * leave it out; a type that reports usage must not report more than this.
   */
  worstCaseTokens?(config: Config): WorstCaseTokens[];
}

export const fail = (type: StepFailure["type"], message: string, retryAfterMs?: number): StepResult => ({
  ok: false,
  failure: retryAfterMs === undefined ? { type, message } : { type, message, retryAfterMs },
});

/** Resolves after `ms`, or rejects as soon as the signal aborts. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
